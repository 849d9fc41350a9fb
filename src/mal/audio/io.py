"""Audio input/output, resampling, and level normalisation.

Everything here works on mono ``float32`` numpy arrays in [-1, 1]. Reading goes through
soundfile (wav/flac/ogg), resampling through soxr. Errors are :class:`AudioError`, whose
message is one line naming the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mal.util.files import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class AudioError(ValueError):
    """A user-facing audio problem; ``str(err)`` is one line naming the file."""


def list_audio(folder: str | os.PathLike) -> list[Path]:
    """Sorted audio files (wav/flac/ogg) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioError(f"{folder}: not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, channels, frames) of an audio file, without reading its samples."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for corrupt input
        raise AudioError(f"{path}: cannot read audio ({error_reason(err)})") from None
    return int(info.samplerate), int(info.channels), int(info.frames)


def missing_frames(path: str | os.PathLike) -> int:
    """Frames a WAV file's header declares beyond the data it holds (a copy cut short); 0 otherwise.

    libsndfile reads such a file as far as it goes and reports only the frames present, so the
    RIFF ``data`` chunk's declared size is compared with the bytes after it. 0 for other
    containers and for the sizes streaming writers leave as placeholders (0, 0xFFFFFFFF).
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        block_align = 0
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                present = os.fstat(f.fileno()).st_size - f.tell()
                if not block_align or size in (0, 0xFFFFFFFF):
                    return 0
                return max(size // block_align - present // block_align, 0)
            if chunk[:4] == b"fmt ":
                block_align = int.from_bytes(f.read(size)[12:14], "little")
                f.seek(size % 2, 1)
            else:
                f.seek(size + size % 2, 1)  # chunks are padded to an even size
    return 0


# A floating-point file can hold any value; past this level (80 dB over full scale) it is a
# damaged file, not a loud recording, and its squares overflow float32 in any spectrum.
MAX_FLOAT_LEVEL = 1e4
CHECK_BLOCK = 1 << 16  # rows check_samples scans at a time


def check_samples(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Raise :class:`AudioError` naming ``path`` when ``samples`` hold NaN, Inf or absurd values.

    Checks blocks of ``CHECK_BLOCK`` rows: whole-signal ``isfinite``/``abs`` temporaries cost
    5 bytes per sample, a third signal's worth while `mal evaluate` holds a long pair.
    """
    peak = 0.0
    for begin in range(0, len(samples), CHECK_BLOCK):
        block = samples[begin : begin + CHECK_BLOCK]
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: contains NaN or infinite samples")
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
    if peak > MAX_FLOAT_LEVEL:
        raise AudioError(f"{path}: samples reach {peak:.3g}, over {MAX_FLOAT_LEVEL:g} times full scale "
                         "(a damaged floating-point file)")


def check_audio_file(path: str | os.PathLike) -> None:
    """Raise :class:`AudioError` when ``path`` is not usable audio, without holding it in memory.

    Reads the header (missing, unreadable, empty files); floating-point files, the only ones
    that can hold NaN or Inf, are also scanned block by block.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
        if info.frames == 0:
            raise AudioError(f"{path}: file has no samples")
        if info.subtype in ("FLOAT", "DOUBLE"):
            for block in sf.blocks(str(path), blocksize=1 << 16, dtype="float32"):
                check_samples(path, block)
    except AudioError:
        raise
    except Exception as err:  # soundfile raises several types for corrupt input
        raise AudioError(f"{path}: cannot read audio ({error_reason(err)})") from None


def read_audio(
    path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32; mix to mono (channel mean) and resample when asked.

    Returns ``(samples, rate)``: shape ``(n,)`` when ``mono`` else ``(n, channels)``.
    Raises :class:`AudioError` for a missing, unreadable, empty or non-finite file, or one whose
    samples are absurdly large (:func:`check_samples`).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{path}: cannot read audio ({error_reason(err)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file has no samples")
    check_samples(path, data)
    if mono:
        data = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # no copy for mono files (long inputs)
    if sample_rate is not None and sample_rate != rate:
        data = resample(data, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample along axis 0 with soxr (high quality)."""
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x.astype(np.float32, copy=False), rate_in, rate_out, quality="HQ")


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write audio atomically: to a temporary file in the same folder, then rename.

    A crash never leaves a half-written file at ``path``. Format follows the extension.
    """
    path = Path(path)
    samples = np.asarray(samples, dtype=np.float32)
    fmt, subtype = output_format(path, subtype)
    if needs_clipping(subtype) and samples.size and np.abs(samples).max() > 1.0:
        samples = np.clip(samples, -1.0, 1.0)  # only copy when something actually clips
    with atomic_path(path) as tmp:
        sf.write(tmp, samples, sample_rate, format=fmt, subtype=subtype)


# Containers ``mal enhance`` reads by extension (libsndfile's), their format name and default sample format.
CONTAINERS = {
    ".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".oga": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III"), ".aif": ("AIFF", "PCM_16"),
    ".aiff": ("AIFF", "PCM_16"), ".au": ("AU", "PCM_16"), ".caf": ("CAF", "PCM_16"), ".w64": ("W64", "PCM_16"),
    ".rf64": ("RF64", "PCM_16"),
}
FALLBACK_EXTENSION = ".flac"  # what an input whose container cannot be written is enhanced to


def readable_extensions() -> tuple[str, ...]:
    """Extensions of the containers this libsndfile build reads (mp3 needs libsndfile >= 1.1)."""
    available = sf.available_formats()
    return tuple(ext for ext, (fmt, _) in CONTAINERS.items() if fmt in available)


def writable(path: Path) -> bool:
    """Whether this libsndfile build can write ``path``'s container."""
    fmt, subtype = CONTAINERS.get(path.suffix.lower(), (None, None))
    return fmt is not None and sf.check_format(fmt, subtype)


def output_format(path: Path, subtype: str | None = None) -> tuple[str, str]:
    """(soundfile format, subtype) for ``path``'s extension; a default subtype when None."""
    fmt, default = CONTAINERS.get(path.suffix.lower(), ("WAV", "FLOAT"))
    return fmt, subtype or default


def needs_clipping(subtype: str) -> bool:
    """Whether ``subtype`` needs samples clipped to [-1, 1] first (companded ones, e.g. ULAW, wrap around)."""
    return subtype not in ("FLOAT", "DOUBLE", "VORBIS", "OPUS")


LIMIT_KNEE = 0.9  # soft_limit leaves samples below this magnitude untouched
LIMIT_CEILING = 0.99  # and keeps every sample below this one (-0.09 dBFS; 32440 in 16-bit)


def soft_limit(x: np.ndarray, knee: float = LIMIT_KNEE, ceiling: float = LIMIT_CEILING) -> tuple[np.ndarray, int]:
    """Bend peaks above ``knee`` smoothly towards ``ceiling`` so nothing clips; (samples, count over 1).

    ``knee + (ceiling - knee) * tanh((|x| - knee) / (ceiling - knee))``: equal to ``x`` up to
    the knee, the same slope there, never above the ceiling. It works sample by sample, so
    streamed output needs no second pass; the count is of samples plain clipping would cut.
    """
    magnitude = np.abs(x)
    over = magnitude > knee
    count = int(np.count_nonzero(magnitude > 1.0))
    if not over.any():
        return x, count
    y = x.copy()
    span = ceiling - knee
    y[over] = np.sign(x[over]) * (knee + span * np.tanh((magnitude[over] - knee) / span))
    return y, count


def peak_normalize(x: np.ndarray, peak_db: float = -10.0) -> np.ndarray:
    """Scale so the absolute peak is ``peak_db`` dBFS (silence is returned unchanged)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0.0:
        return x.astype(np.float32, copy=True)
    return (x * (10 ** (peak_db / 20) / peak)).astype(np.float32)


LEVEL_BLOCK = 1 << 18  # samples per block in active_speech_level


def active_speech_level(x: np.ndarray, sample_rate: int) -> float:
    """ITU-T P.56 method B active speech level in dBov (dB re. full-scale amplitude 1).

    Written by hand: no maintained Python package implements P.56 (pyloudnorm is BS.1770).
    Envelope: two first-order smoothers (time constant 0.03 s) of |x|; hangover 0.2 s;
    margin 15.9 dB; thresholds 2^-15 .. 2^0. Returns -inf for silence.

    Runs over blocks of ``LEVEL_BLOCK`` samples, carrying the filter states and, per
    threshold, the last sample above it: memory stays constant for an hour-long file
    (whole-signal float64/int64 temporaries took ~55 bytes per sample).
    """
    from scipy.signal import lfilter  # here, not at the top: scipy.signal takes a while to import

    x = np.asarray(x)
    margin_db, hangover = 15.9, int(np.ceil(0.2 * sample_rate))
    g = np.exp(-1.0 / (0.03 * sample_rate))
    smoother = ([1 - g], [1, -g])
    thresholds = 2.0 ** np.arange(-15, 1)
    active_counts = np.zeros(len(thresholds))
    last_above = np.full(len(thresholds), -hangover - 1, dtype=np.int64)  # "never" for every threshold
    state1, state2 = np.zeros(1), np.zeros(1)
    energy = 0.0
    for begin in range(0, len(x), LEVEL_BLOCK):
        block = np.asarray(x[begin : begin + LEVEL_BLOCK], dtype=np.float64)
        energy += float(np.dot(block, block))
        smoothed, state1 = lfilter(*smoother, np.abs(block), zi=state1)
        envelope, state2 = lfilter(*smoother, smoothed, zi=state2)
        index = np.arange(begin, begin + len(block))
        for j, c in enumerate(thresholds):
            above = envelope >= c
            if not above.any() and index[0] - last_above[j] > hangover:
                continue  # nothing above c here and the hangover has run out: no active samples
            # samples since the envelope last reached c; active while within the hangover
            last = np.maximum.accumulate(np.where(above, index, last_above[j]))
            active_counts[j] += np.count_nonzero(index - last <= hangover)
            last_above[j] = last[-1]
    if energy <= 0.0:
        return float("-inf")
    with np.errstate(divide="ignore"):
        level_db = 10 * np.log10(energy / np.maximum(active_counts, 1e-20))
    threshold_db = 20 * np.log10(thresholds)
    delta = level_db - threshold_db - margin_db
    valid = active_counts > 0
    for j in range(1, len(thresholds)):
        if valid[j] and delta[j] <= 0 < delta[j - 1]:
            # interpolate between thresholds j-1 and j where level - threshold == margin
            frac = delta[j - 1] / (delta[j - 1] - delta[j])
            return float(level_db[j - 1] + frac * (level_db[j] - level_db[j - 1]))
    if delta[0] <= 0:
        return float(level_db[0])
    # Never fell below the margin: fall back to the long-term level.
    return float(10 * np.log10(energy / len(x)))


def normalize_active_level(x: np.ndarray, sample_rate: int, target_db: float = -26.0) -> np.ndarray:
    """Scale ``x`` so its P.56 active speech level is ``target_db`` dBov (silence unchanged)."""
    level = active_speech_level(x, sample_rate)
    if not np.isfinite(level):
        return x.astype(np.float32, copy=True)
    return (x * 10 ** ((target_db - level) / 20)).astype(np.float32)


def error_reason(err: Exception) -> str:
    """The last line of an exception's message (libraries put the reason there)."""
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__
