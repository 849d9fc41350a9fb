"""The paper_cpu report: tables in the shape of the paper's Tables 1-2, claims, consistency.

Reads ``<out>/<test set>/summary.json`` (written by ``mal compare``) and
``<out>/consistency/curves.csv``; writes ``<out>/report.md`` and ``<out>/report.html``.
"""

from __future__ import annotations

import html
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recipe_tools import SHORT, consistency_table, contrast_header, contrasts  # noqa: E402

from mal.evaluation.metrics.stats import with_clean_row  # noqa: E402
from mal.reports.tables import clean_legend  # noqa: E402

# (column, label, test sets) in the order of the paper's tables; In = in-domain mixtures.
TABLE = [
    ("NISQA-MOS", "NISQA overall", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("DNSMOS-OVRL", "DNSMOS OVRL", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("DNSMOS-SIG", "DNSMOS SIG", ["in-domain", "vbd-test"]),
    ("DistillMOS", "DistillMOS", ["in-domain", "vbd-test"]),
    ("WB-PESQ", "WB-PESQ", ["in-domain", "vbd-test"]),
    ("ESTOI", "ESTOI", ["in-domain", "vbd-test"]),
    ("LSD", "LSD (lower better)", ["in-domain", "vbd-test"]),
    ("MCD", "MCD (lower better)", ["in-domain", "vbd-test"]),
    ("SI-SDR", "SI-SDR", ["in-domain", "vbd-test"]),
]
LOWER_BETTER = {"LSD", "MCD"}
MAL = ["mal-frozen-fe", "mal-frozen", "mal-dynamic", "mal-dynamic-w100"]  # the last: beyond the paper
EXT = ["ext-dfn3", "ext-mal-dfn3", "ext-nisqa", "ext-mal-nisqa"]  # external frozen-network feature losses


def _load(out: Path, sets: list[str]) -> dict[str, dict]:
    return {s: json.loads((out / s / "summary.json").read_text()) for s in sets if (out / s / "summary.json").is_file()}


def _cell(summary: dict, system: str, metric: str) -> str:
    entry = summary["systems"].get(system)
    if entry is None:
        return "-"
    stats = entry["metrics"].get(metric)
    if not stats or stats["n"] == 0 or not math.isfinite(stats["mean"]):
        return "-"
    lo, hi = stats["ci95"]
    mark = ""
    test = summary.get("comparisons", {}).get(system, {}).get(metric)
    if test and math.isfinite(test.get("p_adj", math.nan)) and test["p_adj"] < 0.05:
        better = (test["mean_diff"] > 0) != (metric in LOWER_BETTER)
        mark = " ▲" if better else " ▼"
    return f"{stats['mean']:.2f} [{lo:.2f}, {hi:.2f}]{mark}"


def _diff(summary: dict, system: str, metric: str) -> tuple[float, float, float, float] | None:
    test = summary.get("comparisons", {}).get(system, {}).get(metric)
    if not test or not math.isfinite(test.get("mean_diff", math.nan)):
        return None
    return test["mean_diff"], test["diff_ci95_lo"], test["diff_ci95_hi"], test.get("p_adj", math.nan)


def claims(summaries: dict[str, dict], systems: list[str]) -> list[tuple[str, str]]:
    """The paper's claims, each with what this run measured (difference vs baseline-continued)."""
    rows = []
    for variant in [v for v in MAL if v in systems]:
        for metric in ("NISQA-MOS", "DNSMOS-OVRL", "WB-PESQ"):
            parts = []
            for test_set, summary in summaries.items():
                d = _diff(summary, variant, metric)
                if d is None:
                    continue
                mean, lo, hi, p = d
                significant = math.isfinite(p) and p < 0.05
                verdict = "no significant difference" if not significant else "better" if mean > 0 else "worse"
                parts.append(f"{SHORT[test_set]}: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}], p_adj={p:.3g} ({verdict})")
            if parts:
                rows.append((f"{variant} beats baseline-continued on {metric}", "; ".join(parts)))
    return rows


def write_report(out: Path, sets: list[str], systems: list[str], not_run: list[str], meta: dict) -> Path:
    """Write report.md and report.html from the per-set summaries and the consistency curves."""
    summaries = _load(out, sets)
    first = next(iter(summaries.values()))
    all_systems = list(first["systems"])
    clean = first.get("clean_reference")  # the clean references' own row, after Noisy
    order = ["Noisy"] + [s for s in systems if s in all_systems] + [s for s in all_systems if s not in systems and s not in ("Noisy", clean)]
    order = with_clean_row(order, first)
    lines = [
        "# Model as Loss at CPU scale: results", "",
        f"Produced by `{meta['command']}` in {meta['minutes']:.0f} min. Model `{meta['model']}`; stage 1: "
        f"{meta['stage1_epochs']} epochs x {meta['stage1_mixtures_per_epoch']} mixtures; every stage-2 variant: "
        f"{meta['finetune_epochs']} epochs x {meta['finetune_mixtures_per_epoch']} mixtures from the same stage-1 checkpoint.",
        "",
        "Cells: mean [95% CI]; ▲/▼ = significantly better/worse than **baseline-continued** "
        "(Wilcoxon signed-rank, paired by file, Benjamini-Hochberg adjusted p < 0.05). "
        "In = held-out speakers and noises (in-domain); VBD = VoiceBank-DEMAND test (64 pairs); "
        "DNS = DNS 2020 no-reverb (3 pairs: too few for significance). Peer rows cover only the "
        "files their authors published (n per system in each set's report)."
        + (f" {clean_legend(clean)}" if clean else ""), "",
    ]
    header = ["system"] + [f"{label} {SHORT[s]}" for metric, label, ss in TABLE for s in ss if s in summaries]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for system in order:
        cells = [_cell(summaries[s], system, metric) for metric, _, ss in TABLE for s in ss if s in summaries]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    for name in not_run:
        lines.append(f"| {name} | not run: no pretrained WavLM checkpoint (set SSL_MODEL_PATH) |" + " |" * (len(header) - 2))
    lines += ["", "Files covered per system: " + "; ".join(
        f"{SHORT[s]}: " + ", ".join(f"{n} {v['n_files']}" for n, v in summaries[s]["systems"].items()) for s in summaries), ""]
    lines += ["## The paper's claims, measured here (difference to baseline-continued, bootstrap 95% CI)", "",
              "| claim | measured |", "|---|---|"]
    lines += [f"| {c} | {m} |" for c, m in claims(summaries, order)]
    ext = [s for s in EXT if s in order]
    if ext:
        lines += ["", "## External pretrained feature losses vs the model's own encoder", "",
                  "The paper's headline claim is that L_mal (the model's own encoder) beats a loss on an external "
                  "pretrained network's features. No WavLM weights can be had here; two well-trained external "
                  "networks stand in: the public DeepFilterNet3's encoder bottleneck (`ext-*-dfn3`, trained for "
                  "enhancement) and NISQA v2's CNN features (`ext-*-nisqa`, trained to predict quality ratings; "
                  "note NISQA-MOS is then also a metric of the network the loss uses). `ext-X`: L_df + L_ext, "
                  "encoder trains; `ext-mal-X`: encoder frozen, L_df + L_mal + L_ext. Differences paired by file, "
                  "mean [bootstrap 95% CI]; ▲/▼: the first system significantly better/worse (Wilcoxon, "
                  "BH-adjusted over the rows of one reference, p < 0.05).", ""]
        for reference in ["baseline-continued", *[m for m in MAL if m in order]]:
            rows = contrasts(out, list(summaries), ext, reference)
            if rows:
                lines += [f"Against **{reference}**:", "", *contrast_header(), *rows, ""]
    metric, table = consistency_table(out)
    if table:
        lines += ["", f"## Self-consistency: mean {metric.upper()} over {meta['consistency_clips']} in-domain clips, "
                  f"{meta['iterations']} passes", "", *table, "",
                  "![curves](consistency/curves.png)", "", "![spectrograms](consistency/spectrograms.png)"]
    pages = [f"[{s}]({s}/index.html)" for s in summaries if (out / s / "index.html").exists()]
    pages += ["[consistency](consistency/index.html)"] if (out / "consistency" / "index.html").exists() else []
    if pages:
        lines += ["", "Listening pages (audio, spectrograms, sortable per-file tables; open in a browser; written by the run and not committed, as their audio is the test sets' own): " + ", ".join(pages)]
    lines += ["", "Per-set reports: " + ", ".join(f"[{s}]({s}/report.md)" for s in summaries), "",
              "Run settings: `" + json.dumps(meta) + "`", ""]
    md = "\n".join(lines)
    (out / "report.md").write_text(md)
    body = "".join(f"<p>{html.escape(line)}</p>\n" if not line.startswith("|") else f"<pre>{html.escape(line)}</pre>\n" for line in lines)
    (out / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>paper_cpu</title><body>{body}"
                                     "<img src='consistency/curves.png'><img src='consistency/spectrograms.png'></body>")
    return out / "report.md"
