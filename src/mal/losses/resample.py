"""Differentiable polyphase resampling with a Kaiser-windowed sinc (torch only).

Used inside losses that need another sample rate (e.g. 16 kHz for WavLM), where soxr
cannot pass gradients. Output sample ``k`` sits at input position ``k * orig / new``
(zero phase, like soxr), the signal is taken as zero outside its span, and the output has
``ceil(N * new / orig)`` samples. Reference: J. O. Smith, "Digital Audio Resampling Home
Page" (bandlimited interpolation); the rate ratio is reduced to ``up / down`` and each of
the ``up`` output phases is one strided ``conv1d`` channel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinc_kernels(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[np.ndarray, int]:
    """Polyphase taps (up, K) and the offset ``j_min`` of tap 0 relative to ``m * down``."""
    band = rolloff * min(up, down) / down  # cutoff * 2 in cycles per input sample
    half_width = zeros / band  # in input samples
    j_min = -math.ceil(half_width)
    j_max = math.ceil(half_width + down)
    j = np.arange(j_min, j_max + 1, dtype=np.float64)
    phases = np.arange(up, dtype=np.float64)[:, None] * down / up
    tau = phases - j[None, :]  # input position of the output sample minus tap position
    inside = np.abs(tau) <= half_width
    window = np.zeros_like(tau)
    window[inside] = np.i0(beta * np.sqrt(1 - (tau[inside] / half_width) ** 2)) / np.i0(beta)
    taps = band * np.sinc(band * tau) * window
    return taps, j_min


class Resample(nn.Module):
    """Resample (..., N) from ``orig_rate`` to ``new_rate``; differentiable, identity if equal.

    ``zeros``: sinc zero crossings each side; ``rolloff``: cutoff as a fraction of the lower
    Nyquist frequency; ``beta``: Kaiser window shape (about 100 dB stopband at 10).
    """

    def __init__(self, orig_rate: int, new_rate: int, zeros: int = 32, rolloff: float = 0.945, beta: float = 10.0):
        super().__init__()
        g = math.gcd(int(orig_rate), int(new_rate))
        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        self.up, self.down = self.new_rate // g, self.orig_rate // g
        taps, self.j_min = sinc_kernels(self.up, self.down, zeros, rolloff, beta)
        self.register_buffer("kernel", torch.from_numpy(taps).float().unsqueeze(1), persistent=False)

    def output_length(self, n: int) -> int:
        """Number of output samples for ``n`` input samples."""
        return math.ceil(n * self.up / self.down)

    def forward(self, wave: Tensor) -> Tensor:
        if self.up == self.down:
            return wave
        shape, n = wave.shape[:-1], wave.shape[-1]
        n_out = self.output_length(n)
        steps = math.ceil(n_out / self.up)  # conv outputs per phase
        k = self.kernel.shape[-1]
        pad_right = max((steps - 1) * self.down + k + self.j_min - n, 0)
        x = F.pad(wave.reshape(-1, 1, n), (-self.j_min, pad_right))
        y = F.conv1d(x, self.kernel.to(wave.dtype), stride=self.down)[..., :steps]  # (B, up, steps)
        y = y.transpose(1, 2).reshape(-1, steps * self.up)[:, :n_out]
        return y.reshape(*shape, n_out)

    def extra_repr(self) -> str:
        return f"{self.orig_rate} -> {self.new_rate}"
