"""Pick the recipe's best model on the in-domain test set and ship it inside the package.

Criterion: the lowest mean rank over the paper's headline metrics on the in-domain test set
(NISQA overall, DNSMOS OVRL, WB-PESQ, ESTOI); out-of-domain sets are not used for the choice.
Writes ``src/mal/pretrained/default.ckpt`` (architecture + weights only) and
``<out>/default_model.json`` (the choice and the ranks).

    python recipes/paper_cpu/ship_model.py [--out results/paper_cpu] [--work runs/paper_cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

sys.path.insert(0, str(REPO / "recipes"))

from recipe_tools import HEADLINE, choose  # noqa: E402  (the criterion both recipes use)


def ship(out: Path, work: Path) -> Path:
    from mal.enhance import DEFAULT_MODEL, load_model, save_model
    from mal.io import write_text_atomic

    summary = json.loads((out / "in-domain" / "summary.json").read_text())
    candidates = [s for s in summary["systems"] if (work / ("stage1" if s == "Baseline" else s) / "checkpoints" / "best.ckpt").is_file()]
    best, mean_rank = choose(summary, candidates)
    ckpt = work / ("stage1" if best == "Baseline" else best) / "checkpoints" / "best.ckpt"
    save_model(load_model(ckpt), DEFAULT_MODEL)
    write_text_atomic(out / "default_model.json", json.dumps(
        {"chosen": best, "criterion": f"lowest mean rank on the in-domain test set over {HEADLINE}",
         "mean_rank": mean_rank, "checkpoint": str(ckpt.relative_to(work.parent.parent) if ckpt.is_relative_to(work.parent.parent) else ckpt),
         "in_domain": {m: summary["systems"][best]["metrics"][m]["mean"] for m in HEADLINE}}, indent=1) + "\n")
    return DEFAULT_MODEL


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "paper_cpu"))
    p.add_argument("--work", default=str(REPO / "runs" / "paper_cpu"))
    a = p.parse_args()
    print(f"shipped {ship(Path(a.out), Path(a.work))}")
