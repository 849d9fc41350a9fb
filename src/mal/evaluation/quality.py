"""The scorer of the clean-speech quality gate (``data.quality``, :mod:`mal.data.quality`).

Scores come from the same runner as ``mal evaluate`` and go to its SQLite cache, so a second
run, or a second fine-tune of a recipe sharing ``data.quality.cache``, scores nothing again.
"""

from __future__ import annotations

import math
from pathlib import Path

from mal.data.quality import Scorer
from mal.evaluation.metrics import GROUPS, NON_INTRUSIVE_GROUPS
from mal.evaluation.metrics.runner import Job, ScoreOptions, check_groups, run_jobs, with_nisqa_weights

ALIASES = {"nisqa": "NISQA-MOS", "dnsmos": "DNSMOS-OVRL"}


def gate_metric(name: str) -> tuple[str, str]:
    """(group, column) of a non-intrusive metric named in any case (``distillmos``, ``DNSMOS-SIG``, ``nisqa``)."""
    columns = {c.lower(): (g, c) for g in NON_INTRUSIVE_GROUPS for c in GROUPS[g]}
    key = ALIASES.get(name.strip().lower(), name).strip().lower()
    if key not in columns:
        choices = ", ".join(c for _, c in columns.values())
        raise ValueError(f"data.quality.metric: {name!r} is not a non-intrusive metric; choose from {choices}")
    return columns[key]


def clean_scorer(cfg: dict, jobs: int = 1, progress: bool = True) -> Scorer:
    """A scorer of clean files by ``cfg['data']['quality']['metric']``, cached in ``data.quality.cache``
    (default: ``quality_scores.sqlite`` in the run folder). A file that cannot be scored gets no
    score, so the gate leaves it out."""
    quality = cfg["data"]["quality"]
    group, column = gate_metric(quality["metric"])
    options = with_nisqa_weights(ScoreOptions((group,)))
    usable, skipped = check_groups(options.groups, options.nisqa_weights, has_reference=False)
    if not usable:
        raise ValueError(f"data.quality.metric: {column} cannot run here ({skipped[group]})")
    cache = quality["cache"] or Path(cfg["output_dir"]) / "quality_scores.sqlite"

    def score(files: list[Path]) -> dict[Path, float]:
        print(f"quality gate: rating {len(files)} clean utterance(s) with {column} (cache {cache})")
        result = run_jobs([Job("clean", str(p)) for p in files], options, n_jobs=jobs, cache_path=cache,
                          progress=progress)
        for message in result.errors:
            print(f"quality gate: left out: {message}")
        by_path = {row["path"]: row[column] for row in result.rows}
        return {p: float(by_path[str(p)]) for p in files if math.isfinite(by_path.get(str(p), math.nan))}

    return score
