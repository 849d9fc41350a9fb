"""Pick the recipe's best model on the in-domain test set and ship it inside the package.

Criterion: the lowest mean rank over the paper's headline metrics on the in-domain test set
(NISQA overall, DNSMOS OVRL, WB-PESQ, ESTOI); out-of-domain sets are not used for the choice.
Writes ``<out>/default_model.json`` (the choice and the ranks); with ``install`` (``run.py
--ship``) also ``src/mal/pretrained/default.ckpt`` (architecture + weights only). The package's
default is shipped by ``recipes/paper_pretrained`` (fine-tunes of the public DeepFilterNets):
a model trained for an hour on a CPU is a demo, so this recipe no longer replaces it unless
asked to.

    python recipes/paper_cpu/ship_model.py [--out results/paper_cpu] [--work runs/paper_cpu] [--install]
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


def ship(out: Path, work: Path, install: bool = False) -> str:
    from mal.models.store import DEFAULT_MODEL, DEFAULT_POINTER, load_model, save_model
    from mal.util.files import write_text_atomic

    summary = json.loads((out / "in-domain" / "summary.json").read_text())
    candidates = [s for s in summary["systems"] if (work / ("stage1" if s == "Baseline" else s) / "checkpoints" / "best.ckpt").is_file()]
    best, mean_rank = choose(summary, candidates)
    ckpt = work / ("stage1" if best == "Baseline" else best) / "checkpoints" / "best.ckpt"
    if install:
        save_model(load_model(ckpt), DEFAULT_MODEL)
        DEFAULT_POINTER.unlink(missing_ok=True)
    write_text_atomic(out / "default_model.json", json.dumps(
        {"chosen": best, "criterion": f"lowest mean rank on the in-domain test set over {HEADLINE}",
         "mean_rank": mean_rank, "checkpoint": str(ckpt.relative_to(work.parent.parent) if ckpt.is_relative_to(work.parent.parent) else ckpt),
         "in_domain": {m: summary["systems"][best]["metrics"][m]["mean"] for m in HEADLINE}}, indent=1) + "\n")
    return f"{best} ({'installed as ' + str(DEFAULT_MODEL) if install else 'recorded in ' + str(out / 'default_model.json')})"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results" / "paper_cpu"))
    p.add_argument("--work", default=str(REPO / "runs" / "paper_cpu"))
    p.add_argument("--install", action="store_true", help="also make it the package's default model")
    a = p.parse_args()
    print(f"best model: {ship(Path(a.out), Path(a.work), a.install)}")
