"""On-the-fly mixing of clean speech with noise at a random SNR and level.

Mixture ``i`` of epoch ``e`` is drawn from ``np.random.SeedSequence([seed, e, i])`` and from
nothing else, so it is the same in any DataLoader worker or DDP process, different indices
give different mixtures, and ``set_epoch`` gives new ones. No worker_init_fn is needed.
Only the needed stretch of each file is read, so hours of audio never sit in RAM.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from mal.audio import AUDIO_EXTENSIONS, AudioError, audio_info, check_samples, resample

SPEECH_TRIES = 4  # crops tried per mixture before keeping the most active one
MIN_ACTIVE_FRACTION = 0.5  # a crop with this share of active 20-ms frames is accepted at once
ACTIVE_FLOOR_DB = -50.0  # frames quieter than this (dBFS) are never speech
ACTIVE_RANGE_DB = 30.0  # ... nor frames this far below the loudest frame of the crop
SILENCE_POWER = 10 ** (ACTIVE_FLOOR_DB / 10)  # clean power floor when scaling noise to an SNR
MAX_PEAK = 0.99
RESAMPLE_MARGIN_S = 0.02  # extra audio read on both sides of a crop that is resampled


@dataclass(frozen=True)
class MixtureParams:
    """What one mixture was made of (starts and offsets in samples at the dataset rate)."""

    speech: Path
    speech_start: int  # first sample of the crop in the speech file
    speech_offset: int  # where the speech begins in the segment (> 0 only for short files)
    noise: Path
    noise_start: int
    snr_db: float
    gain_db: float
    clip_scale: float  # 1.0 unless the mixture was scaled down to keep |noisy| <= 0.99


class MixtureDataset(Dataset):
    """``(noisy, clean)`` float32 segments mixed on the fly from speech and noise files.

    The noise is scaled so that the segment has the drawn SNR (clean vs noise power), then
    both are scaled by the drawn gain, and by less than 1 where the mixture would clip.
    Call ``set_epoch(e)`` at each epoch start (e.g. in ``on_train_epoch_start``); the epoch
    lives in shared memory, so persistent DataLoader workers see it. ``fixed=True`` ignores
    the epoch: the same mixtures every time, as a validation set needs.
    """

    def __init__(
        self,
        speech_files: Sequence[str | os.PathLike],
        noise_files: Sequence[str | os.PathLike],
        sample_rate: int = 16000,
        segment_seconds: float = 3.0,
        snr_range_db: tuple[float, float] = (-5.0, 20.0),
        gain_range_db: tuple[float, float] = (-6.0, 6.0),
        epoch_size: int | None = None,
        seed: int = 0,
        fixed: bool = False,
    ) -> None:
        if not speech_files:
            raise AudioError("MixtureDataset: no speech files given")
        if not noise_files:
            raise AudioError("MixtureDataset: no noise files given")
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        for name, (low, high) in (("snr_range_db", snr_range_db), ("gain_range_db", gain_range_db)):
            if low > high:
                raise ValueError(f"{name}: low {low} is above high {high}")
        self.speech_files = [Path(p) for p in speech_files]
        self.noise_files = [Path(p) for p in noise_files]
        self.sample_rate = int(sample_rate)
        self.segment = int(round(segment_seconds * sample_rate))
        self.snr_range_db = (float(snr_range_db[0]), float(snr_range_db[1]))
        self.gain_range_db = (float(gain_range_db[0]), float(gain_range_db[1]))
        self.epoch_size = len(self.speech_files) if epoch_size is None else int(epoch_size)
        if self.epoch_size <= 0:
            raise ValueError(f"epoch_size must be positive, got {epoch_size}")
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._lengths: dict[Path, int] = {}

    @property
    def epoch(self) -> int:
        """The epoch whose mixtures are drawn (always 0 when ``fixed``)."""
        return 0 if self.fixed else int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw the mixtures of ``epoch`` from now on (no effect when ``fixed``)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        noisy, clean, _ = self.mix(index)
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    def mixture_params(self, index: int) -> MixtureParams:
        """The drawn files, crops, SNR and gain of mixture ``index`` in the current epoch."""
        return self.mix(index)[2]

    def mix(self, index: int) -> tuple[np.ndarray, np.ndarray, MixtureParams]:
        """Mixture ``index`` of the current epoch as ``(noisy, clean, params)``."""
        if not 0 <= index < self.epoch_size:
            raise IndexError(f"index {index} out of range for {self.epoch_size} mixtures")
        seeds = np.random.SeedSequence([self.seed, self.epoch, index]).spawn(3)
        # separate streams: the SNR and noise crop do not depend on how many speech crops were tried
        speech_rng, noise_rng, level_rng = (np.random.default_rng(s) for s in seeds)
        snr_db = float(level_rng.uniform(*self.snr_range_db))
        gain_db = float(level_rng.uniform(*self.gain_range_db))
        speech_path = self.speech_files[int(speech_rng.integers(len(self.speech_files)))]
        clean, speech_start, speech_offset = self._speech_crop(speech_path, speech_rng)
        noise_path = self.noise_files[int(noise_rng.integers(len(self.noise_files)))]
        noise, noise_start = self._noise_crop(noise_path, noise_rng)

        clean64, noise64 = clean.astype(np.float64), noise.astype(np.float64)
        clean_power = max(float(np.mean(clean64**2)), SILENCE_POWER)
        noise_power = float(np.mean(noise64**2))
        if noise_power > 0:
            noise64 *= np.sqrt(clean_power / (noise_power * 10 ** (snr_db / 10)))
        gain = 10 ** (gain_db / 20)
        noisy64, clean64 = (clean64 + noise64) * gain, clean64 * gain
        peak = float(np.max(np.abs(noisy64)))
        clip_scale = MAX_PEAK / peak if peak > MAX_PEAK else 1.0
        params = MixtureParams(
            speech_path, speech_start, speech_offset, noise_path, noise_start, snr_db, gain_db, clip_scale
        )
        return (noisy64 * clip_scale).astype(np.float32), (clean64 * clip_scale).astype(np.float32), params

    def _length(self, path: Path) -> int:
        """Length of ``path`` in samples at the dataset rate (cached per process)."""
        if path not in self._lengths:
            rate, _, frames = audio_info(path)
            if frames == 0:
                raise AudioError(f"{path}: file has no samples")
            self._lengths[path] = max(frames * self.sample_rate // rate, 1)
        return self._lengths[path]

    def _speech_crop(self, path: Path, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
        """A segment of speech with speech in it: (samples, start in file, offset in segment)."""
        length = self._length(path)
        if length <= self.segment:
            offset = int(rng.integers(0, self.segment - length + 1))
            out = np.zeros(self.segment, dtype=np.float32)
            out[offset:] = read_segment(path, 0, self.segment - offset, self.sample_rate)
            return out, 0, offset
        best: tuple[float, np.ndarray, int] | None = None
        for _ in range(SPEECH_TRIES):
            start = int(rng.integers(0, length - self.segment + 1))
            crop = read_segment(path, start, self.segment, self.sample_rate)
            active = active_fraction(crop, self.sample_rate)
            if best is None or active > best[0]:
                best = (active, crop, start)
            if active >= MIN_ACTIVE_FRACTION:
                break
        assert best is not None
        return best[1], best[2], 0

    def _noise_crop(self, path: Path, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A segment of noise, looped when the file is shorter: (samples, start in file)."""
        length = self._length(path)
        if length >= self.segment:
            start = int(rng.integers(0, length - self.segment + 1))
            return read_segment(path, start, self.segment, self.sample_rate), start
        start = int(rng.integers(0, length))
        whole = read_segment(path, 0, length, self.sample_rate)
        return np.resize(np.roll(whole, -start), self.segment), start


def read_segment(path: str | os.PathLike, start: int, frames: int, sample_rate: int) -> np.ndarray:
    """``frames`` mono float32 samples at ``sample_rate`` from sample ``start`` (at that rate); zeros past the end."""
    path = Path(path)
    rate, _, total = audio_info(path)
    if rate == sample_rate:
        first, last, skip = start, start + frames, 0
    else:
        # Read from a point where both sample grids meet (a multiple of rate / gcd input samples),
        # so the crop is not shifted by a fraction of a sample, with RESAMPLE_MARGIN_S of extra
        # audio on both sides for the resampler's filter: the crop then equals the same stretch
        # of the whole file resampled (to ~1e-7), instead of differing by up to 0.1 mid-file.
        common = math.gcd(rate, sample_rate)
        step_in, step_out = rate // common, sample_rate // common
        block = max(start - int(RESAMPLE_MARGIN_S * sample_rate), 0) // step_out
        first, skip = block * step_in, start - block * step_out
        last = -(-(start + frames) * rate // sample_rate) + int(RESAMPLE_MARGIN_S * rate)
    try:
        data, _ = sf.read(str(path), start=min(first, total), stop=min(last, total), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for corrupt input
        raise AudioError(f"{path}: cannot read audio ({type(err).__name__}: {str(err).strip()[:200]})") from None
    samples = data.mean(axis=1)
    check_samples(path, samples)
    if rate != sample_rate and len(samples):
        samples = resample(samples, rate, sample_rate)[skip:]
    out = np.zeros(frames, dtype=np.float32)
    n = min(frames, len(samples))
    out[:n] = samples[:n]
    return out


def active_fraction(samples: np.ndarray, sample_rate: int) -> float:
    """Share of 20-ms frames that look like speech (above -50 dBFS and within 30 dB of the loudest)."""
    size = max(sample_rate // 50, 1)
    count = len(samples) // size
    if count == 0:
        return 0.0
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    level_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    threshold = max(ACTIVE_FLOOR_DB, float(level_db.max()) - ACTIVE_RANGE_DB)
    return float(np.mean(level_db > threshold))


def collect_audio(dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Audio files (wav/flac/ogg) under the given folders, recursively; hidden ones skipped; sorted per folder."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    files: list[Path] = []
    for folder in map(Path, dirs):
        if folder.is_file() and folder.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(folder)
            continue
        if not folder.is_dir():
            raise AudioError(f"{folder}: not a directory")
        files.extend(
            sorted(
                path
                for path in folder.rglob("*")
                if path.suffix.lower() in AUDIO_EXTENSIONS
                and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            )
        )
    return files
