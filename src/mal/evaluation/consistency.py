"""Iterative self-enhancement (the paper's self-consistency test, Fig. 1 and 3).

Each input is enhanced, the output fed back in, ``iterations`` times. After every pass the
outputs are scored with non-intrusive metrics (NISQA, DNSMOS OVRL) and a harmonicity
measure; ``curves.csv`` holds the mean per model and iteration (iteration 0 = the input).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mal.audio import AudioError, read_audio
from mal.evaluation.metrics.dnsmos import dnsmos
from mal.evaluation.metrics.nisqa import NisqaScorer
from mal.util.files import write_text_atomic
from mal.util.progress import Progress

EnhanceFn = Callable[[np.ndarray, int], np.ndarray]
SPECTROGRAM_PASSES = (1, 10, 100)


def harmonics_to_noise_ratio(samples: np.ndarray, sample_rate: int) -> float:
    """Mean harmonics-to-noise ratio (dB) over voiced frames, Praat's autocorrelation method.

    Why HNR: the paper's claim is that repeated enhancement destroys speech harmonics. HNR
    (Boersma 1993, Praat "To Harmonicity (ac)": 10-ms step, 75 Hz minimum pitch, 4.5
    periods per window) measures exactly how much of the voiced signal's energy is periodic;
    it needs no clean reference (the iterated outputs have none), it ignores unvoiced and
    silent frames, and unlike an F0 tracker's voicing decision it degrades smoothly as
    harmonics are smeared. Computed with praat-parselmouth (Praat itself). NaN when no
    frame is voiced.
    """
    import parselmouth  # start-up: Praat loads only when harmonicity is measured
    from parselmouth.praat import call  # start-up: as parselmouth above

    sound = parselmouth.Sound(np.asarray(samples, dtype=np.float64), sampling_frequency=float(sample_rate))
    harmonicity = sound.to_harmonicity_ac(time_step=0.01, minimum_pitch=75.0, silence_threshold=0.1, periods_per_window=4.5)
    value = call(harmonicity, "Get mean", 0, 0)  # Praat averages voiced frames only
    return float(value) if value is not None and math.isfinite(value) else math.nan


def hnr_unavailable() -> str | None:
    """Why HNR cannot run here, or None when it can."""
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        return "praat-parselmouth not installed; pip install praat-parselmouth"
    return None


@dataclass
class ConsistencyResult:
    """Mean curves ``{model: {metric: [value per iteration 0..N]}}``; unreadable files
    (``errors``) and ``{model: {file: pass}}`` where a model's output stopped being finite."""

    curves: dict[str, dict[str, list[float]]]
    errors: list[str]
    csv_path: Path
    diverged: dict[str, dict[str, int]] = field(default_factory=dict)
    # (file, rate, {model: {pass: samples}}) of the clips kept for listening, the first always
    clips: list[tuple[str, int, dict[str, dict[int, np.ndarray]]]] = field(default_factory=list)
    passes: tuple[int, ...] = ()
    iterations: int = 0
    listen_clips: int = 0  # how many of ``clips`` go on the listening page


def _scorers(metrics: tuple[str, ...], nisqa_weights: str | None) -> dict[str, Callable[[np.ndarray, int], float]]:
    scorers: dict[str, Callable[[np.ndarray, int], float]] = {}
    if "nisqa" in metrics:
        nisqa = NisqaScorer(nisqa_weights)
        scorers["NISQA-MOS"] = lambda x, sr: nisqa.score(x, sr)["NISQA-MOS"]
    if "dnsmos" in metrics:
        scorers["DNSMOS-OVRL"] = lambda x, sr: dnsmos(x, sr)["DNSMOS-OVRL"]
    if "hnr" in metrics:
        scorers["HNR"] = harmonics_to_noise_ratio
    return scorers


def run_consistency(models: dict[str, EnhanceFn], inputs: list[Path], iterations: int, out_dir: str | os.PathLike,
                    metrics: tuple[str, ...] = ("nisqa", "dnsmos", "hnr"), nisqa_weights: str | None = None,
                    spectrogram_passes: tuple[int, ...] = SPECTROGRAM_PASSES, progress: bool = True,
                    score_every: int = 1, listen_clips: int | None = 3) -> ConsistencyResult:
    """Enhance each input ``iterations`` times with each model; write curves.csv.

    ``score_every=k`` scores passes 0, 1, k, 2k, ... and the last (enhancing still runs every
    pass): the metrics cost far more than the enhancement. The result keeps the outputs after
    ``spectrogram_passes`` (those run) and after the last pass, of the first ``listen_clips``
    inputs (None: all; 0: only the first, for the spectrogram figure), for
    :func:`mal.reports.pages.consistency.write_consistency_report`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scorers = _scorers(metrics, nisqa_weights)
    signals, errors = [], []
    diverged: dict[str, dict[str, int]] = {}
    for path in inputs:
        try:
            signals.append((path, *read_audio(path)))
        except AudioError as err:
            errors.append(str(err))
    if not signals:
        raise ValueError("no readable input files")
    passes = tuple(sorted({p for p in spectrogram_passes if 0 < p <= iterations} | ({iterations} if iterations > 0 else set())))
    score_at = {0, 1, iterations, *range(0, iterations + 1, max(1, score_every)), *passes}
    per_file = {name: np.full((len(scorers), iterations + 1, len(signals)), np.nan) for name in models}
    kept = len(signals) if listen_clips is None else min(listen_clips, len(signals))
    snapshots: dict[str, list[dict[int, np.ndarray]]] = {name: [{} for _ in range(max(1, kept))] for name in models}
    bar = Progress(len(models) * len(signals) * (iterations + 1), "consistency", unit="pass", quiet=not progress)
    for name, enhance in models.items():
        for f, (_, samples, rate) in enumerate(signals):
            x = samples
            for it in range(iterations + 1):
                if it > 0:
                    x = np.asarray(enhance(x, rate), dtype=np.float32)
                    if len(x) != len(samples):
                        raise RuntimeError(f"model {name} changed the length ({len(samples)} -> {len(x)})")
                    if not np.isfinite(x).all():  # diverged: later passes stay NaN
                        diverged.setdefault(name, {})[str(signals[f][0])] = it
                        bar.update(iterations + 1 - it)
                        break
                for k, score in enumerate(scorers.values()):
                    if it in score_at:
                        per_file[name][k, it, f] = score(x, rate)
                if f < max(1, kept) and (it in passes or it == 0):
                    snapshots[name][f][it] = x.copy()
                bar.update(1)
    bar.close()

    curves = {name: {metric: [float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for v in per_file[name][k]]
                     for k, metric in enumerate(scorers)} for name in models}
    csv_path = out_dir / "curves.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "iteration", "n_files", *[f"{m}_mean" for m in scorers], *[f"{m}_std" for m in scorers]])
    for name in models:
        for it in sorted(score_at):
            values = per_file[name][:, it, :]
            scored = int(np.isfinite(values).any(axis=0).sum())
            stds = [float(np.std(v[np.isfinite(v)])) if np.isfinite(v).any() else math.nan for v in values]
            writer.writerow([name, it, scored, *[f"{curves[name][m][it]:.6g}" for m in scorers], *[f"{s:.6g}" for s in stds]])
    write_text_atomic(csv_path, buffer.getvalue())
    clips = [(str(signals[f][0]), signals[f][2], {name: snapshots[name][f] for name in models}) for f in range(max(1, kept))]
    return ConsistencyResult(curves, errors, csv_path, diverged, clips, passes, iterations, kept)
