"""The README's extract of the paper_pretrained report, printed from its committed results.

    python recipes/paper_pretrained/readme_table.py [--out results/paper_pretrained]

One row per model (public model first in each family), the paper's In / Out shape: mean [95%
CI] per cell; ▲/▼ = significantly better/worse than the family's public model, ↑/↓ = than the
family's baseline-continued (Wilcoxon signed-rank paired by file, Benjamini-Hochberg adjusted
over the family's rows, p < 0.05), the same tests as the report's contrast tables.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "recipes"))

from recipe_tools import mark, paired  # noqa: E402

COLUMNS = [("NISQA-MOS", "in-domain"), ("NISQA-MOS", "vbd-test"), ("DNSMOS-OVRL", "in-domain"), ("DNSMOS-OVRL", "vbd-test"),
           ("DNSMOS-SIG", "vbd-test"), ("WB-PESQ", "in-domain"), ("WB-PESQ", "vbd-test"), ("ESTOI", "vbd-test"),
           ("SI-SDR", "in-domain"), ("SI-SDR", "vbd-test")]
LABEL = {"NISQA-MOS": "NISQA", "DNSMOS-OVRL": "OVRL", "DNSMOS-SIG": "SIG", "WB-PESQ": "WB-PESQ", "ESTOI": "ESTOI", "SI-SDR": "SI-SDR"}
SET = {"in-domain": "In", "vbd-test": "VBD"}


def table(out: Path) -> list[str]:
    summaries = {s: json.loads((out / s / "summary.json").read_text()) for s in {s for _, s in COLUMNS}}
    systems = list(summaries["in-domain"]["systems"])
    families = [s.split("-", 1)[0] for s in systems if s.endswith("-public")]
    metrics = sorted({m for m, _ in COLUMNS})
    lines = ["| system | " + " | ".join(f"{LABEL[m]} {SET[s]}" for m, s in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in ["Noisy"]:
        lines.append(f"| {name} | " + " | ".join(_cell(summaries[s], name, m, "") for m, s in COLUMNS) + " |")
    for family in families:
        rows = [s for s in systems if s.startswith(family + "-")]
        tuned = [s for s in rows if s != f"{family}-public"]
        vs_public = {s: paired(out, s, tuned, f"{family}-public", metrics) for s in summaries}
        vs_control = {s: paired(out, s, [t for t in tuned if not t.endswith("baseline-continued")],
                                f"{family}-baseline-continued", metrics) for s in summaries}
        for name in rows:
            cells = []
            for metric, test_set in COLUMNS:
                marks = mark(vs_public[test_set].get(name, {}).get(metric))
                control = mark(vs_control[test_set].get(name, {}).get(metric)).replace("▲", "↑").replace("▼", "↓")
                cells.append(_cell(summaries[test_set], name, metric, marks + control))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name in [s for s in systems if s.startswith("DeepFilterNet3-runtime")]:
        lines.append(f"| {name} | " + " | ".join(_cell(summaries[s], name, m, "") for m, s in COLUMNS) + " |")
    return lines


def _cell(summary: dict, system: str, metric: str, marks: str) -> str:
    stats = (summary["systems"].get(system) or {}).get("metrics", {}).get(metric)
    if not stats or not stats["n"] or not math.isfinite(stats["mean"]):
        return "-"
    lo, hi = stats["ci95"]
    marks = marks.replace(" ", "")  # mark() returns " ▲"; the two kinds of mark sit together
    return f"{stats['mean']:.2f} [{lo:.2f}, {hi:.2f}]" + (f" {marks}" if marks else "")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "paper_pretrained"))
    print("\n".join(table(Path(p.parse_args().out))))
