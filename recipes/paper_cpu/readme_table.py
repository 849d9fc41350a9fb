"""The README's extract of the paper_cpu report, printed from its committed results.

    python recipes/paper_cpu/readme_table.py [--out results/paper_cpu] [--systems NAME ...]

Mean [95% CI] per cell; ▲/▼ = significantly better/worse than baseline-continued, read from the
same ``mal compare`` summaries as the report (Wilcoxon signed-rank paired by file,
Benjamini-Hochberg adjusted, p < 0.05), so every mark matches the report's.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLUMNS = [("NISQA-MOS", "in-domain"), ("NISQA-MOS", "vbd-test"), ("DNSMOS-OVRL", "in-domain"), ("DNSMOS-OVRL", "vbd-test"),
           ("WB-PESQ", "in-domain"), ("WB-PESQ", "vbd-test"), ("SI-SDR", "vbd-test")]
LABEL = {"NISQA-MOS": "NISQA", "DNSMOS-OVRL": "OVRL", "WB-PESQ": "WB-PESQ", "SI-SDR": "SI-SDR"}
SET = {"in-domain": "In", "vbd-test": "VBD"}
DEFAULT_SYSTEMS = ["Noisy", "Baseline", "baseline-continued", "mal-frozen-fe", "mal-frozen", "mal-dynamic",
                   "mal-dynamic-w100", "ext-dfn3", "ext-nisqa", "DeepFilterNet3"]


def table(out: Path, systems: list[str] = DEFAULT_SYSTEMS) -> list[str]:
    summaries = {s: json.loads((out / s / "summary.json").read_text()) for s in SET}
    lines = ["| system | " + " | ".join(f"{LABEL[m]} {SET[s]}" for m, s in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in systems:
        if not any(name in summaries[s]["systems"] for s in SET):
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(summaries[s], name, m) for m, s in COLUMNS) + " |")
    return lines


def _cell(summary: dict, system: str, metric: str) -> str:
    stats = (summary["systems"].get(system) or {}).get("metrics", {}).get(metric)
    if not stats or not stats["n"] or not math.isfinite(stats["mean"]):
        return "-"
    lo, hi = stats["ci95"]
    test = summary.get("comparisons", {}).get(system, {}).get(metric)
    mark = ""
    if test and math.isfinite(test.get("p_adj", math.nan)) and test["p_adj"] < 0.05:
        mark = " ▲" if test["mean_diff"] > 0 else " ▼"  # every column here is higher-better
    return f"{stats['mean']:.2f} [{lo:.2f}, {hi:.2f}]{mark}"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "paper_cpu"))
    p.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS)
    args = p.parse_args()
    print("\n".join(table(Path(args.out), args.systems)))
