"""One stream protocol for every model that streams, PyTorch and ONNX runners alike.

A stream takes a signal in blocks of whole hops and returns as many samples as it takes:
the model's offline output delayed by ``delay_samples``. ``flush()`` feeds that many zeros
and returns the rest; ``reset()`` starts a new signal. ``latency_samples`` is the
algorithmic latency (window + look-ahead, counting the hop being filled).

:class:`TorchStream` runs a model's own frame computation (:meth:`DeepFilterNet.frames`),
:class:`mal.inference.export.OnnxStream` an exported step in onnxruntime: both are :class:`HopStream`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from mal.audio.polyphase import StreamResampler
from mal.models import DeepFilterNet, EnhancementModel


class HopStream:
    """``process(hops)``, ``flush()``, ``reset()``; subclasses give ``_initial_state()`` and ``_run(block)``."""

    hop: int
    sample_rate: int
    delay_samples: int
    latency_samples: int

    def reset(self) -> None:
        """Start a new signal."""
        self._state = self._initial_state()
        self._steps = 0

    def process(self, frame) -> np.ndarray:
        """Enhance the next block (a multiple of ``hop`` samples)."""
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if len(frame) % self.hop:
            raise ValueError(f"process() takes a multiple of hop={self.hop} samples, got {len(frame)}")
        if not len(frame):
            return np.zeros(0, dtype=np.float32)
        self._steps += len(frame) // self.hop
        return self._run(frame)

    def flush(self) -> np.ndarray:
        """End the signal: the last ``delay_samples`` of output; the stream restarts."""
        if self._steps == 0:
            return np.zeros(0, dtype=np.float32)
        tail = self.process(np.zeros(self.delay_samples, dtype=np.float32))
        self.reset()
        return tail

    def _initial_state(self):
        raise NotImplementedError

    def _run(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchStream(HopStream):
    """A :class:`DeepFilterNet` in eval mode as a stream: the offline computation, block by block."""

    def __init__(self, model: DeepFilterNet):
        if not isinstance(model, DeepFilterNet):
            raise ValueError(f"streaming needs a DeepFilterNet-family model, got {type(model).__name__}")
        if model.training:
            raise ValueError("streaming runs the model in eval mode: call model.eval() first")
        self.model = model
        cfg = model.cfg
        self.hop, self.sample_rate = cfg.hop, cfg.sample_rate
        self.delay_samples = (model.delay_frames + 1) * cfg.hop
        self.latency_samples = cfg.n_fft + model.delay_frames * cfg.hop
        self.device = next(model.parameters()).device
        self.reset()

    def _initial_state(self) -> dict[str, Tensor]:
        return self.model.initial_state(1, self.device)

    @torch.inference_mode()
    def _run(self, frame: np.ndarray) -> np.ndarray:
        out, self._state = self.model.frames(torch.from_numpy(frame).to(self.device)[None], self._state)
        return out[0].cpu().numpy()


def stream_for(model: EnhancementModel) -> TorchStream:
    """The stream of ``model`` (a DeepFilterNet-family model; others enhance offline only)."""
    return TorchStream(model)


def run_stream(stream: HopStream, samples: np.ndarray | Tensor) -> np.ndarray:
    """Run ``samples`` (1-D, any length) through ``stream``; the result lines up with offline output."""
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = len(samples)
    stream.reset()
    out = np.concatenate((stream.process(np.pad(samples, (0, -n % stream.hop))), stream.flush()))
    return out[stream.delay_samples : stream.delay_samples + n]


# -- any chunk, any rate -----------------------------------------------------------------------

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@lru_cache(maxsize=None)
def _resampler_lag(rate_in: int, rate_out: int) -> int:
    """The most output samples the streaming resampler holds back behind ``n * rate_out /
    rate_in`` at any point of a stream (measured by feeding it one sample at a time: its hold-back
    depends only on how many samples went in, and single samples reach every count)."""
    if rate_in == rate_out:
        return 0
    rs = StreamResampler(rate_in, rate_out)
    one, made, lag = np.ones(1, np.float32), 0, 0.0
    for n in range(1, rate_in // 5 + 1):  # 0.2 s: several filter lengths, the lag is periodic by then
        made += len(rs.resample_chunk(one))
        lag = max(lag, n * rate_out / rate_in - made)
    return math.ceil(lag)


class LiveStream:
    """A stream for any chunk size at any rate: the caller's audio in, the enhanced audio out.

    ``process(chunk)`` takes any number of mono samples (a float array, or little-endian int16
    PCM ``bytes``) and returns as many enhanced samples (the same type) - the enhanced signal
    delayed by exactly ``latency_samples`` at the caller's ``rate``, the first ``latency_samples``
    being zeros; ``flush()`` ends the stream and returns the last ``latency_samples`` (the output
    has as many samples as went in, plus the latency). Dropping the first ``latency_samples``
    gives what ``mal enhance`` writes for the same audio. Audio is resampled to the model's rate
    and back by :class:`mal.audio.polyphase.StreamResampler`, which gives output for every chunk
    (soxr's streaming resampler, which ``mal enhance`` uses offline, gives it in blocks that held
    a 16 kHz stream 73 ms longer and in bursts of three hops); the network runs in
    whole hops through any :class:`HopStream` (``hops``), or, split into :meth:`push` and
    :meth:`pull`, through a server's batch of many streams (:mod:`mal.serve.engine`).
    """

    def __init__(self, hops: HopStream, rate: int):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"rate must be a positive integer number of Hz, got {rate!r}")
        self.hops, self.rate = hops, int(rate)
        self.model_rate, self.hop, self.delay = hops.sample_rate, hops.hop, hops.delay_samples
        ratio = self.rate / self.model_rate
        # The most the output can trail the input: the input resampler's hold-back, a hop
        # being filled, the network's delay, the output resampler's hold-back (+1 for rounding).
        behind = _resampler_lag(self.rate, self.model_rate) + self.hop - 1 + self.delay
        self.latency_samples = math.ceil(behind * ratio) + _resampler_lag(self.model_rate, self.rate) + 1
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        make = lambda a, b: None if a == b else StreamResampler(a, b)  # noqa: E731
        self._down, self._up = make(self.rate, self.model_rate), make(self.model_rate, self.rate)
        self._pending = np.zeros(0, np.float32)  # model-rate samples short of a whole hop
        self._ready = [np.zeros(self.latency_samples, np.float32)]  # output not yet returned
        self._n_ready = self.latency_samples
        self._n_in = self._n_out = 0  # caller-rate samples in / returned
        self._model_in = self._model_out = 0  # model-rate samples into / out of the network (after its delay)
        self._skip = self.delay  # the network's first outputs precede the signal
        if self.hops is not None:
            self.hops.reset()

    # The two halves of process(): the server batches the network between them.
    def push(self, chunk, last: bool = False) -> np.ndarray:
        """Take the caller's samples; the whole hops at the model's rate now due for the network
        (``last``: the rest, zero-padded, and the zeros that bring out the network's delay)."""
        x = _as_float(chunk)
        self._n_in += len(x)
        y = x if self._down is None else self._down.resample_chunk(x, last=last)
        self._model_in += len(y)
        pending = np.concatenate((self._pending, y)) if len(self._pending) else y
        if last:
            pending = np.pad(pending, (0, -len(pending) % self.hop + self.delay))
        cut = len(pending) // self.hop * self.hop
        self._pending = pending[cut:].astype(np.float32, copy=True)
        return pending[:cut].astype(np.float32, copy=False)

    def pull(self, enhanced: np.ndarray, last: bool = False, pcm: bool = False):
        """Take the network's output for the hops :meth:`push` gave; return the output now ready
        (as many samples as came in so far; with ``last``, all the rest). An empty ``enhanced``
        returns what is ready without running anything: a server calls it when a chunk brings no
        whole hop, so the output keeps pace with the input as in :meth:`process`."""
        y = np.asarray(enhanced, np.float32).reshape(-1)
        if self._skip:
            drop = min(self._skip, len(y))
            y, self._skip = y[drop:], self._skip - drop
        keep = max(0, min(len(y), self._model_in - self._model_out)) if last else len(y)
        y = y[:keep]
        self._model_out += len(y)
        if len(y) or last:
            z = y if self._up is None else self._up.resample_chunk(y, last=last)
            self._ready.append(z)
            self._n_ready += len(z)
        want = self._n_in + self.latency_samples if last else self._n_in
        out = np.concatenate(self._ready) if len(self._ready) > 1 else self._ready[0]
        n = min(len(out), want - self._n_out)
        if last and n < want - self._n_out:
            out, n = np.pad(out, (0, want - self._n_out - len(out))), want - self._n_out
        result, self._ready = out[:n], [out[n:]]
        self._n_out += n
        if last:
            self.reset()
        return _as_pcm(result) if pcm else result

    def process(self, chunk):
        """Enhance the next ``chunk``: as many samples out as in (int16 bytes in, bytes out)."""
        pcm = isinstance(chunk, (bytes, bytearray, memoryview))
        return self.pull(self._run(self.push(chunk)), pcm=pcm)

    def flush(self, pcm: bool = False):
        """End the stream: the last ``latency_samples`` samples; the stream starts anew."""
        return self.pull(self._run(self.push(np.zeros(0, np.float32), last=True)), last=True, pcm=pcm)

    def _run(self, hops: np.ndarray) -> np.ndarray:
        return self.hops.process(hops) if len(hops) else hops


def live_stream(model, rate: int) -> LiveStream:
    """A :class:`LiveStream` at ``rate`` for a model (or a :class:`HopStream`, e.g. an ONNX one)."""
    return LiveStream(model if isinstance(model, HopStream) else stream_for(model), rate)


def _as_float(chunk) -> np.ndarray:
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        if len(chunk) % 2:
            raise ValueError(f"int16 PCM needs an even number of bytes, got {len(chunk)}")
        return np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
    x = np.asarray(chunk, dtype=np.float32)
    if x.ndim > 1 and x.size != x.shape[0]:
        raise ValueError(f"a live stream is mono: got an array of shape {x.shape}")
    return x.reshape(-1)


def _as_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
