"""Report media: playback gain, lossless audio copies and spectrogram images.

Playback level: every signal of one file (noisy, clean and each system) is multiplied by
one common gain, chosen so that the *reference* signal (noisy when present, else clean) has
an active speech level (ITU-T P.56) of ``PLAYBACK_LEVEL_DB``, then lowered if needed so that
no signal of that file peaks above ``PEAK_LIMIT``. Level differences between systems (a
level-normalised output, a model that loses gain) therefore stay audible and visible;
nothing is normalised per system.

Spectrograms: power STFT in dB of the gain-scaled signal; for one file every image shares
the time axis (padded to the longest signal), the frequency axis (all signals resampled to
the reference's rate) and the colour range (``DYNAMIC_RANGE_DB`` below the reference's
loudest bin). Difference images show dB(signal) - dB(clean), both floored at the colour
range's bottom, clipped at +-``DIFF_RANGE_DB``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mal.audio import active_speech_level, resample, write_audio
from mal.reports.pages.html import SignalView, scale_legend
from mal.util.files import atomic_path

PLAYBACK_LEVEL_DB = -26.0
PEAK_LIMIT = 0.98
DYNAMIC_RANGE_DB = 80.0
DIFF_RANGE_DB = 20.0
MAX_IMAGE_ROWS = 256
MAX_IMAGE_COLUMNS = 1200
AUDIO_EXTENSION = ".flac"  # lossless, about half of 16-bit WAV; every current browser plays it


def safe_name(name: str) -> str:
    """``name`` as a folder name and URL fragment: letters, digits, ``._-`` kept, the rest ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "x"


def playback_gain(reference: np.ndarray, rate: int, signals: list[np.ndarray]) -> float:
    """One gain for all ``signals`` of a file: P.56 level of ``reference`` to -26 dBov, no peak over 0.98."""
    level = active_speech_level(reference, rate)
    gain = 10 ** ((PLAYBACK_LEVEL_DB - level) / 20) if math.isfinite(level) else 1.0
    peak = max((float(np.max(np.abs(s))) for s in signals if s.size), default=0.0)
    if peak * gain > PEAK_LIMIT:
        gain = PEAK_LIMIT / peak
    return float(gain)


def write_listening_audio(path: Path, samples: np.ndarray, rate: int, gain: float) -> float:
    """Write ``samples * gain`` as 16-bit FLAC (atomically); return its duration in seconds."""
    write_audio(path, np.clip(samples * gain, -1.0, 1.0).astype(np.float32), rate, subtype="PCM_16")
    return len(samples) / rate


def to_rate(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` at ``target`` Hz (unchanged when already there)."""
    return samples if rate == target else resample(samples, rate, target)


def stft_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Power spectrogram in dB, shape (frequency, frame): 32 ms Hann window, 75 % overlap."""
    n_fft = 1 << max(6, math.ceil(math.log2(0.032 * rate)))
    hop = n_fft // 4
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * np.hanning(n_fft), axis=1)
    power = (np.abs(spectrum) ** 2) / np.sum(np.hanning(n_fft) ** 2)
    return (10 * np.log10(power + 1e-12)).T


def frame_seconds(rate: int) -> float:
    """Seconds per spectrogram column at ``rate`` (before any column pooling)."""
    n_fft = 1 << max(6, math.ceil(math.log2(0.032 * rate)))
    return (n_fft // 4) / rate


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``target``; on success it replaces ``target`` (removed only then)."""
    stage = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        if target.exists():
            os.replace(target, old)
        os.replace(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def folder_size(folder: Path) -> int:
    """Bytes of all files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@dataclass(frozen=True)
class ColourScale:
    """The dB range one file's spectrograms share."""

    low_db: float
    high_db: float


def shared_scale(reference_db: np.ndarray) -> ColourScale:
    """Top = the reference's loudest bin (rounded up to 5 dB), bottom = top - 80 dB."""
    high = 5 * math.ceil(float(np.max(reference_db)) / 5)
    return ColourScale(high - DYNAMIC_RANGE_DB, high)


def _pool(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Average power-domain blocks down to at most ``rows`` x ``columns`` (dB in, dB out)."""
    fy = max(1, math.ceil(image.shape[0] / rows))
    fx = max(1, math.ceil(image.shape[1] / columns))
    if fy == 1 and fx == 1:
        return image
    h, w = image.shape[0] // fy * fy, math.ceil(image.shape[1] / fx) * fx
    padded = np.pad(image[:h], ((0, 0), (0, w - image.shape[1])), mode="edge")
    power = 10 ** (padded / 10)
    pooled = power.reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))
    return 10 * np.log10(pooled)


def pad_frames(spec_db: np.ndarray, frames: int, floor_db: float) -> np.ndarray:
    """Pad (with ``floor_db``) or cut ``spec_db`` to ``frames`` columns: one shared time axis."""
    if spec_db.shape[1] >= frames:
        return spec_db[:, :frames]
    return np.pad(spec_db, ((0, 0), (0, frames - spec_db.shape[1])), constant_values=floor_db)


def _palette_png(path: Path, indices: np.ndarray, cmap_name: str) -> None:
    """Write uint8 colour indices (row 0 = top) as a palette PNG coloured by a matplotlib map."""
    from matplotlib import colormaps  # start-up: matplotlib takes about 0.4 s to import, only the images need it
    from PIL import Image  # start-up: as matplotlib above (Pillow comes with it)

    colours = (colormaps[cmap_name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(indices), mode="P")
    image.putpalette(colours.reshape(-1).tolist())
    with atomic_path(path, suffix=".part.png") as tmp:
        image.save(tmp, format="PNG", optimize=True)


def _indices(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (np.clip(values, low, high) - low) / (high - low)
    return np.flipud((scaled * 255).round().astype(np.uint8))  # low frequencies at the bottom


def spectrogram_png(path: Path, spec_db: np.ndarray, scale: ColourScale) -> None:
    """Spectrogram image on ``scale`` (magma colours)."""
    pooled = _pool(spec_db, MAX_IMAGE_ROWS, MAX_IMAGE_COLUMNS)
    _palette_png(path, _indices(pooled, scale.low_db, scale.high_db), "magma")


def difference_png(path: Path, spec_db: np.ndarray, clean_db: np.ndarray, scale: ColourScale) -> None:
    """dB(signal) - dB(clean), both floored at the scale's bottom; red = more energy than clean."""
    a = _pool(np.maximum(spec_db, scale.low_db), MAX_IMAGE_ROWS, MAX_IMAGE_COLUMNS)
    b = _pool(np.maximum(clean_db, scale.low_db), MAX_IMAGE_ROWS, MAX_IMAGE_COLUMNS)
    _palette_png(path, _indices(a - b, -DIFF_RANGE_DB, DIFF_RANGE_DB), "RdBu_r")


def colour_bars(folder: Path) -> dict[str, str]:
    """Horizontal colour-bar PNGs for both scales; ``{kind: file name}``."""
    ramp = np.tile(np.linspace(0, 255, 256).round().astype(np.uint8), (12, 1))
    _palette_png(folder / "scale_level.png", ramp, "magma")
    _palette_png(folder / "scale_diff.png", ramp, "RdBu_r")
    return {"level": "scale_level.png", "diff": "scale_diff.png"}


def render_signals(folder: Path, rel: str, signals: list[tuple[str, np.ndarray | None, str]], rate: int,
                   reference: str, difference_to: str | None, bars: dict[str, str]):
    """Write audio and images of one file's signals (all at ``rate``) into ``folder``.

    ``signals``: (name, samples or None, note why missing). The playback gain and the colour
    scale come from ``reference``; difference images are against ``difference_to`` (when it
    is among the signals). Returns (meta html, ``SignalView`` per signal, links under ``rel``).
    """
    present = {n: s for n, s, _ in signals if s is not None}
    gain = playback_gain(present[reference], rate, list(present.values()))
    specs = {n: stft_db(s * gain, rate) for n, s in present.items()}
    scale = shared_scale(specs[reference])
    frames = max(s.shape[1] for s in specs.values())
    specs = {n: pad_frames(s, frames, scale.low_db) for n, s in specs.items()}
    base = specs.get(difference_to) if difference_to else None
    views = []
    for k, (name, samples, note) in enumerate(signals):
        if samples is None:
            views.append(SignalView(name, note=note))
            continue
        stem = f"{k:02d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:60]}"
        duration = write_listening_audio(folder / f"{stem}{AUDIO_EXTENSION}", samples, rate, gain)
        spectrogram_png(folder / f"{stem}.png", specs[name], scale)
        diff = None
        if base is not None and name != difference_to:
            difference_png(folder / f"{stem}_diff.png", specs[name], base, scale)
            diff = f"{rel}/{stem}_diff.png"
        views.append(SignalView(name, f"{rel}/{stem}{AUDIO_EXTENSION}", f"{rel}/{stem}.png", diff, note=note,
                                detail=f"{duration:.2f} s"))
    seconds = frames * frame_seconds(rate)
    meta = (f"0-{rate / 2000:.1f} kHz, 0-{seconds:.2f} s; playback gain {20 * math.log10(gain):+.1f} dB for every "
            f"signal (from {reference}); " + scale_legend(bars, scale.low_db, scale.high_db, DIFF_RANGE_DB))
    return meta, views
