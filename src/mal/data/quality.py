"""A clean-speech quality gate: train only on clean utterances rated well enough.

The DNS Challenge built its clean set by keeping the clips that listeners (and later a
predictor) rated highly; here a non-intrusive predictor (NISQA, DNSMOS SIG, DistillMOS) rates
every training and validation clean utterance and those below ``threshold`` are left out. The
scores come from a scorer the caller supplies (``mal.evaluation.quality``): this layer only
keeps, counts and describes. The summary says per source how many utterances and hours survive.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from mal.audio import audio_info
from mal.util.files import write_text_atomic

Scorer = Callable[[list[Path]], dict[Path, float]]

# "<corpus>-<speaker>_<utt>" or "<corpus>_<utt>" (../shared/data/SOURCES.md: libri-2033_..., so762-0001_...,
# vctk-p225_..., lj_001-0001): a corpus tag starts with a letter; a LibriSpeech "103-1240-0000" has none.
_CORPUS = re.compile(r"^([A-Za-z][A-Za-z0-9]*)-[^_]*_|^([A-Za-z]+)_")


def source_of(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The source an utterance comes from: its folder (relative to ``root``), and a corpus tag from its name."""
    path = Path(path)
    folder = path.parent
    if root is not None:
        try:
            folder = Path(os.path.abspath(folder)).relative_to(Path(os.path.abspath(root)))
        except ValueError:
            pass
    match = _CORPUS.match(path.stem)
    tag = (match.group(1) or match.group(2)) if match else None
    return f"{folder.as_posix()} ({tag})" if tag else folder.as_posix()


def apply_gate(parts: Mapping[str, list[Path]], scores: Mapping[Path, float], threshold: float) -> dict[str, list[Path]]:
    """Each part's files whose score reaches ``threshold`` (a file without a score is left out)."""
    return {part: [p for p in files if scores.get(p, float("-inf")) >= threshold] for part, files in parts.items()}


def gate_summary(parts: Mapping[str, list[Path]], kept: Mapping[str, list[Path]], scores: Mapping[Path, float],
                 metric: str, threshold: float, root: str | os.PathLike | None = None) -> dict:
    """Per source and part: utterances and hours before and after the gate, and the mean score;
    every file's score (None: it could not be scored), by its path relative to ``root``."""
    sources: dict[str, dict] = {}
    for part, files in parts.items():
        survivors = set(kept.get(part, []))
        for path in files:
            rate, _, frames = audio_info(path)
            row = sources.setdefault(source_of(path, root), {}).setdefault(
                part, {"utterances": 0, "kept": 0, "hours": 0.0, "kept_hours": 0.0, "score_sum": 0.0})
            hours = frames / rate / 3600
            row["utterances"] += 1
            row["hours"] += hours
            row["score_sum"] += scores.get(path, float("nan"))
            if path in survivors:
                row["kept"] += 1
                row["kept_hours"] += hours
    for rows in sources.values():
        for row in rows.values():
            row["mean_score"] = row.pop("score_sum") / row["utterances"]
    base = None if root is None else Path(os.path.abspath(root))

    def name(path: Path) -> str:
        absolute = Path(os.path.abspath(path))
        return absolute.relative_to(base).as_posix() if base and absolute.is_relative_to(base) else path.as_posix()

    files = sorted({p for f in parts.values() for p in f}, key=name)
    return {"metric": metric, "threshold": threshold, "sources": dict(sorted(sources.items())),
            "scores": {name(p): scores.get(p) for p in files}}


def summary_lines(summary: dict) -> list[str]:
    """One line per source: kept of all utterances and hours, per part."""
    lines = [f"quality gate: {summary['metric']} >= {summary['threshold']:g}"]
    for source, rows in summary["sources"].items():
        parts = "; ".join(f"{part} {r['kept']}/{r['utterances']} utterances, {r['kept_hours']:.2f}/{r['hours']:.2f} h"
                          for part, r in rows.items())
        lines.append(f"  {source}: {parts}")
    return lines


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    write_text_atomic(Path(path), json.dumps(summary, indent=1) + "\n")
