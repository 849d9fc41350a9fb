"""One stream protocol for every model that streams, PyTorch and ONNX runners alike.

A stream takes a signal in blocks of whole hops and returns as many samples as it takes:
the model's offline output delayed by ``delay_samples``. ``flush()`` feeds that many zeros
and returns the rest; ``reset()`` starts a new signal. ``latency_samples`` is the
algorithmic latency (window + look-ahead, counting the hop being filled).

:class:`TorchStream` runs a model's own frame computation (:meth:`DeepFilterNet.frames`),
:class:`mal.export.OnnxStream` an exported step in onnxruntime: both are :class:`HopStream`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

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
