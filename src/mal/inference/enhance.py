"""Inference: load a model, enhance arrays of any length and rate, enhance files and folders.

Long inputs are enhanced in overlapping chunks so memory stays bounded: each chunk is run
with ``context_seconds`` of preceding audio (so recurrent state and feature normalisation
have settled) and enough following audio to cover the model's window and look-ahead; the
chunk outputs are joined with a short linear cross-fade.

Files are streamed: read in blocks, resampled with a streaming resampler, chunked, and written
block by block to a hidden ``.part`` file that is renamed over the output at the end. Peak
memory does not grow with the file's length (a one-hour file needs no more than a minute's).

Channels: every channel is enhanced independently (as one batch), so a stereo file comes out
stereo.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from mal.audio import (
    AudioError,
    check_samples,
    error_reason,
    needs_clipping,
    output_format,
    read_audio,
    resample,
    soft_limit,
)
from mal.inference.stream import HopStream, run_stream, stream_for
from mal.models import EnhancementModel
from mal.util.files import atomic_path

@torch.no_grad()
def enhance_array(
    model: EnhancementModel | HopStream,
    samples: np.ndarray,
    sample_rate: int,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
    crossfade_seconds: float = 0.05,
) -> np.ndarray:
    """Enhance ``samples`` ((n,) or (n, channels)) recorded at ``sample_rate``.

    ``model`` is a model (offline, chunked) or a frame stream (``TorchStream``,
    ``OnnxStream``). Returns an array of the same shape at the same rate.
    """
    samples = np.asarray(samples, dtype=np.float32)
    n_in = len(samples)
    if hasattr(model, "process"):  # a frame stream (mal.inference.stream / mal.inference.export): one hop at a time
        if samples.ndim == 2:
            return np.stack([enhance_array(model, samples[:, c], sample_rate) for c in range(samples.shape[1])], axis=1)
        y = resample(run_stream(model, resample(samples, sample_rate, model.sample_rate)), model.sample_rate, sample_rate)
        return _fit_length(y, n_in)
    block = samples[:, None] if samples.ndim == 1 else samples
    parts = list(enhance_blocks(model, [block], sample_rate, block.shape[1], chunk_seconds, context_seconds, crossfade_seconds))
    y = _fit_length(np.concatenate(parts) if parts else np.zeros((0, block.shape[1]), np.float32), n_in)
    return y[:, 0] if samples.ndim == 1 else y


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples (resampling can be a sample off)."""
    if len(y) < n:
        y = np.pad(y, [(0, n - len(y))] + [(0, 0)] * (y.ndim - 1))
    return y[:n].astype(np.float32, copy=False)


@torch.no_grad()
def enhance_blocks(
    model: EnhancementModel,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
    crossfade_seconds: float = 0.05,
) -> Iterator[np.ndarray]:
    """Enhance a signal given as consecutive ``(n, channels)`` blocks; yields output blocks.

    Memory is bounded by one chunk plus its context, whatever the signal's length. The
    output has the input's rate; its total length can differ from the input's by a sample
    when resampling (callers cut or pad).
    """
    rate = model.sample_rate
    down = _StreamResampler(sample_rate, rate, channels)
    at_model_rate = (down(block, last) for block, last in _flag_last(blocks))
    up = _StreamResampler(rate, sample_rate, channels)
    if getattr(model, "block_streaming", False):
        chunks = _block_streamed(model, at_model_rate, channels)
    else:
        chunks = _chunked(model, at_model_rate, channels, chunk_seconds, context_seconds, crossfade_seconds)
    for y, last in chunks:
        out = up(y, last)
        if len(out):
            yield out


class _StreamResampler:
    """soxr's streaming resampler; its output equals one-shot ``resample`` of the whole signal."""

    def __init__(self, rate_in: int, rate_out: int, channels: int):
        self.stream = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x if self.stream is None else self.stream.resample_chunk(x, last=last)


def _flag_last(items: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """``(item, is_last)`` pairs, so the last block can flush the resampler."""
    it = iter(items)
    previous = next(it, None)
    if previous is None:
        return
    for item in it:
        yield previous, False
        previous = item
    yield previous, True


# Block length of :func:`_block_streamed`. Measured on DeepFilterNet3 (30 s at 48 kHz, 1 thread):
# 2-10 s blocks take 0.55-0.7x the time of one whole-signal call (smaller tensors stay in cache)
# and the activations of a 4 s block are ~50 MB where a 34 s chunk's are ~440 MB.
BLOCK_SECONDS = 4.0


def _block_streamed(model: EnhancementModel, blocks: Iterator[np.ndarray], channels: int) -> Iterator[tuple[np.ndarray, bool]]:
    """A model whose stream is its offline computation (``block_streaming``, DeepFilterNet):
    fixed blocks through one stream per channel, the stream's delay dropped and its tail flushed,
    so the output equals the whole-signal output (to float rounding) with one block in memory."""
    streams = [stream_for(model) for _ in range(channels)]
    hop, delay = streams[0].hop, streams[0].delay_samples
    size = max(1, int(BLOCK_SECONDS * model.sample_rate) // hop) * hop
    pending, n_in = np.zeros((0, channels), np.float32), 0

    def run(x: np.ndarray) -> np.ndarray:
        return np.stack([s.process(x[:, c]) for c, s in enumerate(streams)], axis=1)

    emitted = 0  # stream output samples seen so far (the first `delay` precede the signal)
    for block in blocks:
        n_in += len(block)
        pending = np.concatenate((pending, block)) if len(pending) else block
        k = len(pending) // size * size
        for start in range(0, k, size):
            y = run(pending[start : start + size])
            piece = y[max(0, delay - emitted) :]
            emitted += len(y)
            if len(piece):
                yield piece, False
        pending = pending[k:]
    rest = np.pad(pending, ((0, -len(pending) % hop), (0, 0)))
    tail = run(rest) if len(rest) else np.zeros((0, channels), np.float32)
    tail = np.concatenate((tail, np.stack([s.flush() for s in streams], axis=1)))
    piece = tail[max(0, delay - emitted) :]
    done = max(0, emitted - delay)  # signal samples already yielded
    yield piece[: max(0, n_in - done)], True


def _chunked(
    model: EnhancementModel, blocks: Iterator[np.ndarray], channels: int, chunk_s: float, context_s: float, fade_s: float
) -> Iterator[tuple[np.ndarray, bool]]:
    """Overlapping chunks with context, joined by a linear cross-fade: ``(output block, is_last)``.

    Chunk k covers samples ``[k * chunk, (k + 1) * chunk)``; it is run on that span plus
    ``context`` samples before and the window + look-ahead + fade after. The last ``fade``
    samples of each chunk are held back until the next chunk has been faded in over them.
    """
    device = next(model.parameters()).device
    rate = model.sample_rate
    chunk = max(int(chunk_s * rate), 1)
    fade = min(int(fade_s * rate), chunk)
    context = max(int(context_s * rate), fade)  # a chunk must cover the fade it shares with the previous one
    tail = model.window_samples + model.lookahead_samples + fade

    def run(seg: np.ndarray) -> np.ndarray:  # (n, C) -> (n, C); channels are a batch
        return model(torch.from_numpy(np.ascontiguousarray(seg.T)).to(device)).cpu().numpy().T

    buffer, buffer_start, ended = np.zeros((0, channels), np.float32), 0, False

    def fill(until: int) -> None:  # read blocks until the buffer reaches sample `until`, or the end
        nonlocal buffer, ended
        parts, have = [buffer], buffer_start + len(buffer)
        while not ended and have < until:
            block = next(blocks, None)
            if block is None:
                ended = True
            elif len(block):
                parts.append(block)
                have += len(block)
        if len(parts) > 1:
            buffer = np.concatenate(parts)

    fill(chunk + context + 1)
    if ended and len(buffer) <= chunk + context:  # short signal: one pass, no chunking
        if len(buffer):
            yield run(buffer), True
        return
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
    held = None
    start = 0
    while True:
        fill(start + chunk + tail)
        available = buffer_start + len(buffer)  # the signal's length once `ended`
        lo, hi = max(0, start - context), min(available, start + chunk + tail)
        y = run(buffer[lo - buffer_start : hi - buffer_start])
        seg_start = start if start == 0 else start - fade  # overlap the previous chunk by `fade`
        seg_end = min(available, start + chunk)
        piece = y[seg_start - lo : seg_end - lo]
        if held is not None:
            piece = piece.copy()
            piece[:fade] = held * (1.0 - ramp) + piece[:fade] * ramp
        if ended and seg_end >= available:
            yield piece, True
            return
        held = piece[len(piece) - fade :].copy() if fade else None
        yield piece[: len(piece) - fade], False
        start += chunk
        drop = start - context - buffer_start
        if drop > 0:
            buffer, buffer_start = buffer[drop:], buffer_start + drop


def enhance_file(
    model: EnhancementModel | HopStream,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    subtype: str | None = None,
    block_seconds: float = 10.0,
    **chunk_options,
) -> int:
    """Enhance one file into ``dst`` (written atomically) with the same rate, length and channels.

    The sample format is the input's where ``dst``'s container supports it (else ``subtype``
    or the container's default). Formats that clip (PCM) get peaks above 0.9 soft-limited
    (:func:`mal.audio.soft_limit`) instead of clipped. Returns the number of samples that
    were above full scale. Raises :class:`AudioError` (one line, naming ``src``) for an
    unreadable, empty or non-finite input or an output that cannot be written; nothing is
    left at ``dst`` then.
    """
    try:
        return _enhance_file(model, src, dst, subtype, block_seconds, **chunk_options)
    except (OSError, RuntimeError) as err:  # libsndfile errors are RuntimeErrors naming the hidden .part file
        # the user's file names, not our hidden temporary file
        reason = re.sub(r"\s*'[^']*\.part'\s*:?", "", error_reason(err)).strip(" :")
        raise AudioError(f"{src}: cannot write {dst} ({reason})") from None


def _enhance_file(model, src, dst, subtype: str | None, block_seconds: float, **chunk_options) -> int:
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise AudioError(f"{src}: file not found")
    if src.is_dir():
        raise AudioError(f"{src}: is a directory, not an audio file")
    try:
        reader = sf.SoundFile(str(src))
    except Exception as err:  # soundfile raises several types for corrupt input
        raise AudioError(f"{src}: cannot read audio ({error_reason(err)})") from None
    with reader:
        rate, channels = reader.samplerate, reader.channels
        fmt, subtype = output_format(dst, _keep_subtype(reader.subtype, dst) or subtype)
        clip = needs_clipping(subtype)
        if hasattr(model, "process"):  # frame streams keep one state: the whole file, channel by channel
            samples, _ = read_audio(src, mono=False)
            enhanced = enhance_array(model, samples if channels > 1 else samples[:, 0], rate)
            enhanced, over = soft_limit(enhanced) if clip else (enhanced, int(np.count_nonzero(np.abs(enhanced) > 1)))
            with atomic_path(dst) as tmp:
                sf.write(tmp, enhanced, rate, format=fmt, subtype=subtype)
            return over
        count = {"read": 0, "written": 0, "over": 0}

        def blocks() -> Iterator[np.ndarray]:
            while True:
                try:
                    block = reader.read(max(int(block_seconds * rate), 1), dtype="float32", always_2d=True)
                except Exception as err:
                    raise AudioError(f"{src}: cannot read audio ({error_reason(err)})") from None
                if not len(block):
                    return
                check_samples(src, block)
                count["read"] += len(block)
                yield block

        with atomic_path(dst) as tmp, sf.SoundFile(tmp, "w", rate, channels, subtype=subtype, format=fmt) as writer:
            for y in enhance_blocks(model, blocks(), rate, channels, **chunk_options):
                y = y[: count["read"] - count["written"]]  # never more samples than were read
                if clip:
                    y, over = soft_limit(y)
                else:
                    over = int(np.count_nonzero(np.abs(y) > 1.0))
                writer.write(y)
                count["written"] += len(y)
                count["over"] += over
            if count["read"] == 0:
                raise AudioError(f"{src}: file has no samples")
            if count["written"] < count["read"]:
                writer.write(np.zeros((count["read"] - count["written"], channels), np.float32))
    return count["over"]


def _keep_subtype(subtype: str, dst: Path) -> str | None:
    """The input's sample format when the output container supports it, else None."""
    fmt, _ = output_format(dst)
    return subtype if sf.check_format(fmt, subtype) else None
