"""Steps shared by the recipes (paper_cpu, paper_pretrained): running ``mal`` commands with
repository-relative paths, the in-domain test mixtures, DeepFilterNet3's own runtime as a
peer, and the paired contrasts and consistency tables of the reports."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHORT = {"in-domain": "In", "vbd-test": "VBD", "dns-test-noreverb": "DNS"}
# the metrics every contrast is stated on, higher is better for all of them
CONTRAST_METRICS = ["WB-PESQ", "ESTOI", "SI-SDR", "DNSMOS-OVRL", "DNSMOS-SIG", "NISQA-MOS"]
# the default model's criterion: lowest mean rank over these in-domain metrics (higher is better)
HEADLINE = ["NISQA-MOS", "DNSMOS-OVRL", "WB-PESQ", "ESTOI"]


def relative(arg: str) -> str:
    """An absolute path under the repository's parent folder (the repo, ../shared), alone or
    after ``NAME=``, rewritten relative to the repository, where :func:`sh` runs: the reports
    the commands write then name no machine's folders."""
    prefix, sep, value = arg.partition("=") if "=" in arg else ("", "", arg)
    if os.path.isabs(value):
        # compare the path as written (a symlinked ../shared stays ../shared) and, failing that, resolved
        for path, repo in ((Path(os.path.abspath(value)), REPO), (Path(value).resolve(), REPO.resolve())):
            if path.is_relative_to(repo.parent):
                return prefix + sep + os.path.relpath(path, repo)
    return prefix + sep + value


def sh(args: list[str], log: Path, ok: tuple[int, ...] = (0,)) -> None:
    """Run ``mal ARGS`` (this interpreter) in the repository, appending output to ``log``; stop on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [relative(a) for a in args]
    cmd = [sys.executable, "-m", "mal", *args]
    print(f"[{time.strftime('%H:%M:%S')}] mal {' '.join(args[:3])} ...", flush=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if code not in ok:
        raise SystemExit(f"step failed (exit {code}): mal {' '.join(args)}; see {log}")


def make_in_domain_test(split_file: Path, data: Path, out: Path, n_clips: int, seed: int) -> None:
    """Fixed test mixtures of the held-out (test-split) speakers and noises, 4.6 s each

    (DNSMOS tiles shorter clips to 9 s or more: 4.6 s gives one 9.2 s window, not seven)."""
    from mal.audio import write_audio
    from mal.data import MixtureDataset, read_split

    if (out / "noisy").is_dir() and len(list((out / "noisy").glob("*.wav"))) == n_clips:
        return
    split = read_split(split_file, data)
    speech = split["speech/test"]
    noise = split["noise/test"]
    test = MixtureDataset(speech, noise, sample_rate=16000, segment_seconds=4.6, snr_range_db=(-5.0, 20.0),
                          epoch_size=n_clips, seed=seed + 99_999, fixed=True)
    for i in range(n_clips):
        noisy, clean, params = test.mix(i)
        name = f"in_{i:03d}_snr{params.snr_db:+05.1f}.wav"
        write_audio(out / "clean" / name, clean, 16000)
        write_audio(out / "noisy" / name, noisy, 16000)


def run_dfn3(noisy_dir: Path, out_dir: Path) -> None:
    """DeepFilterNet3 on every file of ``noisy_dir`` (same names, rates, lengths)."""
    from mal.audio import list_audio, read_audio, write_audio
    from mal.evaluation.peers import DeepFilterNet3

    dfn3 = DeepFilterNet3()
    for path in list_audio(noisy_dir):
        x, rate = read_audio(path)
        write_audio(out_dir / path.name, dfn3.enhance(x, rate), rate)
    dfn3.close()


def per_file_rows(out: Path, test_set: str) -> list[dict]:
    """``<out>/<test_set>/per_file.csv`` (written by ``mal compare``) as rows with float metrics."""
    with open(out / test_set / "per_file.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key not in ("system", "file", "notes", "path"):
                try:
                    row[key] = float(value) if value != "" else math.nan
                except ValueError:
                    row[key] = math.nan
    return rows


def paired(out: Path, test_set: str, systems: list[str], reference: str, metrics: list[str]) -> dict:
    """``{system: {metric: paired test}}`` of ``systems`` against ``reference`` on one set, from
    its per_file.csv: paired by file, Wilcoxon p Benjamini-Hochberg adjusted over ``systems`` per
    metric (as ``mal compare`` does against its own reference). Empty when the set is missing."""
    from mal.evaluation.metrics.stats import compare_to_reference

    if not (out / test_set / "per_file.csv").is_file():
        return {}
    rows = per_file_rows(out, test_set)
    present = {r["system"] for r in rows}
    mine = [s for s in systems if s in present and s != reference]
    if reference not in present or not mine:
        return {}
    columns = [m for m in metrics if m in rows[0]]
    return compare_to_reference(rows, columns, [reference, *mine], reference)


def mark(test: dict | None, lower_better: bool = False) -> str:
    """▲/▼: significantly better/worse (BH-adjusted p < 0.05), '' otherwise."""
    if not test or not math.isfinite(test.get("p_adj", math.nan)) or test["p_adj"] >= 0.05:
        return ""
    return " ▲" if (test["mean_diff"] > 0) != lower_better else " ▼"


def contrasts(out: Path, sets: list[str], systems: list[str], reference: str,
              metrics: list[str] = CONTRAST_METRICS) -> list[str]:
    """Markdown rows ``| system − reference | set | Δ [95% CI] per metric |`` (see :func:`paired`);
    ▲/▼ mark a significant gain/loss of ``system``."""
    lines = []
    for test_set in sets:
        result = paired(out, test_set, systems, reference, metrics)
        for system in result:
            cells = []
            for metric in metrics:
                t = result[system].get(metric)
                if not t or not math.isfinite(t["mean_diff"]):
                    cells.append("-")
                else:
                    cells.append(f"{t['mean_diff']:+.3f} [{t['diff_ci95_lo']:+.3f}, {t['diff_ci95_hi']:+.3f}]{mark(t)}")
            lines.append(f"| {system} − {reference} | {SHORT.get(test_set, test_set)} | " + " | ".join(cells) + " |")
    return lines


def contrast_header(metrics: list[str] = CONTRAST_METRICS) -> list[str]:
    return ["| difference | set | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]


def consistency_table(out: Path) -> tuple[str, list[str]]:
    path = out / "consistency" / "curves.csv"
    if not path.is_file():
        return "", []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    metric = "nisqa_mean" if "nisqa_mean" in rows[0] else next(k for k in rows[0] if k.endswith("_mean"))
    last = max(int(r["iteration"]) for r in rows)
    marks = [i for i in (0, 1, 10, 50, 100, 150) if i <= last]
    if last not in marks:
        marks.append(last)
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [f"| model | " + " | ".join(f"pass {i}" for i in marks) + " | peak (pass) |", "|---" * (len(marks) + 2) + "|"]
    for model in models:
        values = {int(r["iteration"]): float(r[metric]) for r in rows if r["model"] == model}
        peak_it = max(values, key=lambda i: values[i] if math.isfinite(values[i]) else -1e9)
        lines.append(f"| {model} | " + " | ".join(f"{values[i]:.2f}" for i in marks) + f" | {values[peak_it]:.2f} ({peak_it}) |")
    return metric.replace("_mean", ""), lines


def choose(summary: dict, candidates: list[str]) -> tuple[str, dict]:
    """(best system, {system: mean rank}) over the HEADLINE metrics (higher is better)."""
    ranks: dict[str, list[int]] = {c: [] for c in candidates}
    for metric in HEADLINE:
        order = sorted(candidates, key=lambda c: -summary["systems"][c]["metrics"][metric]["mean"])
        for rank, name in enumerate(order, 1):
            ranks[name].append(rank)
    mean_rank = {c: sum(r) / len(r) for c, r in ranks.items()}
    return min(candidates, key=lambda c: (mean_rank[c], candidates.index(c))), mean_rank
