"""Differentiable signal processing in torch: STFT/ISTFT, ERB filterbank, input features.

The STFT is causal: the signal is left-padded by ``n_fft - hop`` so frame ``t`` ends at
sample ``(t + 1) * hop``. With the Vorbis window and ``hop = n_fft / 2`` the squared window
sums to one (Princen-Bradley), so analysis + synthesis windowing reconstructs exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def vorbis_window(n_fft: int) -> Tensor:
    """Vorbis power-complementary window of length ``n_fft`` (DeepFilterNet's choice)."""
    n = torch.arange(n_fft, dtype=torch.float64)
    inner = torch.sin(math.pi * (n + 0.5) / n_fft) ** 2
    return torch.sin(0.5 * math.pi * inner).float()


def stft(wave: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """Causal STFT. ``wave`` (B, N) -> complex (B, T, F) with T = ceil(N / hop)."""
    n = wave.shape[-1]
    frames = math.ceil(n / hop)
    pad_right = frames * hop - n
    padded = F.pad(wave, (n_fft - hop, pad_right))
    chunks = padded.unfold(-1, n_fft, hop)  # (B, T, n_fft)
    return torch.fft.rfft(chunks * window, dim=-1)


def istft(spec: Tensor, n_fft: int, hop: int, window: Tensor, length: int) -> Tensor:
    """Inverse of :func:`stft` by windowed overlap-add. ``spec`` (B, T, F) -> (B, length)."""
    frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * window  # (B, T, n_fft)
    batch, n_frames, _ = frames.shape
    total = (n_frames - 1) * hop + n_fft
    out = F.fold(
        frames.transpose(1, 2),
        output_size=(1, total),
        kernel_size=(1, n_fft),
        stride=(1, hop),
    ).reshape(batch, total)
    # Each output sample is covered by n_fft/hop frames; with hop = n_fft/2 the squared
    # Vorbis window sums to 1, so no normalisation is needed. Other hops are normalised.
    if n_fft != 2 * hop:
        wsum = F.fold(
            (window**2).expand(1, n_frames, n_fft).transpose(1, 2),
            output_size=(1, total), kernel_size=(1, n_fft), stride=(1, hop),
        ).reshape(1, total)
        out = out / wsum.clamp_min(1e-8)
    start = n_fft - hop
    return out[:, start : start + length]


def erb_band_widths(sample_rate: int, n_fft: int, n_bands: int, min_bins: int = 2) -> list[int]:
    """Number of STFT bins in each of ``n_bands`` bands equally spaced on the ERB scale.

    Bands narrower than ``min_bins`` are widened (as in DeepFilterNet); the widths sum to
    ``n_fft // 2 + 1``.
    """
    n_bins = n_fft // 2 + 1
    if n_bands * min_bins > n_bins:
        raise ValueError(f"{n_bands} ERB bands of at least {min_bins} bins do not fit in {n_bins} bins")
    hz_to_erb = lambda f: 9.265 * np.log1p(f / (24.7 * 9.265))  # noqa: E731
    erb_to_hz = lambda e: 24.7 * 9.265 * (np.exp(e / 9.265) - 1)  # noqa: E731
    edges_hz = erb_to_hz(np.linspace(0, hz_to_erb(sample_rate / 2), n_bands + 1))
    bin_hz = sample_rate / n_fft
    widths, prev_edge = [], 0
    for i in range(1, n_bands + 1):
        edge = int(round(edges_hz[i] / bin_hz))
        width = max(edge - prev_edge, min_bins)
        remaining = n_bins - (prev_edge + width)
        width = min(width, remaining - min_bins * (n_bands - i)) if i < n_bands else n_bins - prev_edge
        widths.append(width)
        prev_edge += width
    assert sum(widths) == n_bins and min(widths) >= 1
    return widths


def erb_matrices(widths: list[int]) -> tuple[Tensor, Tensor]:
    """(forward (F, E): mean over each band's bins, inverse (E, F): copy gain to its bins)."""
    n_bins, n_bands = sum(widths), len(widths)
    inverse = torch.zeros(n_bands, n_bins)
    start = 0
    for band, width in enumerate(widths):
        inverse[band, start : start + width] = 1.0
        start += width
    forward = (inverse / inverse.sum(dim=1, keepdim=True)).T.contiguous()
    return forward, inverse


def norm_alpha(sample_rate: int, hop: int, tau_s: float = 1.0) -> float:
    """Decay of the exponential mean used for feature normalisation (time constant ``tau_s``)."""
    return float(math.exp(-hop / sample_rate / tau_s))


def exp_mean(x: Tensor, alpha: float, init: Tensor, chunk: int = 128) -> Tensor:
    """Exponential running mean along dim 1: ``s_t = alpha s_{t-1} + (1 - alpha) x_t``.

    ``x`` (B, T, ...), ``init`` broadcastable to ``x[:, 0]``. Computed chunk-wise as a
    lower-triangular matrix product so it is fast and differentiable (a frame loop is not).
    Returns the running means ``s_t`` for every frame.
    """
    batch, n_frames = x.shape[:2]
    if n_frames == 1:  # one streaming step: the recursion itself
        previous = init.unsqueeze(1) if init.dim() == x.dim() - 1 else init  # broadcasts against x
        return (1 - alpha) * x + alpha * (previous if previous.dtype == x.dtype else previous.to(x.dtype))
    flat = x.reshape(batch, n_frames, -1)
    state = init.expand(x.shape[0:1] + x.shape[2:]).reshape(batch, -1).to(x.dtype)
    t = min(chunk, n_frames)
    idx = torch.arange(t, device=x.device)
    diff = (idx[:, None] - idx[None, :]).to(x.dtype)
    kernel = torch.where(diff >= 0, (1 - alpha) * alpha ** diff.clamp_min(0), torch.zeros_like(diff))
    carry = alpha ** (idx.to(x.dtype) + 1)  # weight of the previous state at each step
    outs = []
    for start in range(0, n_frames, t):
        block = flat[:, start : start + t]
        m = block.shape[1]
        out = torch.einsum("ij,bjc->bic", kernel[:m, :m], block) + carry[:m, None] * state[:, None]
        outs.append(out)
        state = out[:, -1]
    return torch.cat(outs, dim=1).reshape(x.shape)


def erb_features(spec: Tensor, erb_fb: Tensor, alpha: float) -> Tensor:
    """ERB-band log power (dB), mean-normalised. ``spec`` (B, T, F) -> (B, 1, T, E)."""
    power = spec.real**2 + spec.imag**2
    db = 10 * torch.log10(power @ erb_fb + 1e-10)
    init = torch.linspace(-60.0, -90.0, erb_fb.shape[1], device=spec.device)
    mean = exp_mean(db, alpha, init)
    return ((db - mean) / 40.0).unsqueeze(1)


def complex_features(spec: Tensor, n_df: int, alpha: float) -> Tensor:
    """Low-band complex spectrum divided by the root of its running magnitude mean.

    ``spec`` (B, T, F) -> (B, 2, T, n_df) with real and imaginary channels.
    """
    low = spec[..., :n_df]
    magnitude = torch.sqrt(low.real**2 + low.imag**2 + 1e-12)
    init = torch.linspace(1e-3, 1e-4, n_df, device=spec.device)
    norm = torch.sqrt(exp_mean(magnitude, alpha, init))
    low = low / norm
    return torch.stack((low.real, low.imag), dim=1)


class FactoredDFT:
    """Real FFT and its inverse as two small matrix products each (Cooley-Tukey, ``n = n1 * n2``).

    For graphs without complex tensors or an FFT op (ONNX export): about ``2 n (n1 + n2)``
    real multiplies per transform instead of a dense DFT matrix's ``n^2``, and small enough
    matrices to stay in cache. The analysis window and the inverse's ``1 / n`` and synthesis
    window are folded in, as in libDF's STFT. Only the ``n / 2 + 1`` bins of a real signal are
    computed (forward) or read (inverse): bin ``k = k1 + n1 k2`` with ``k2 < k2_count``.
    """

    def __init__(self, window: Tensor):
        n = window.shape[0]
        n1 = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
        n2 = n // n1
        self.n, self.n1, self.n2, self.bins = n, n1, n2, n // 2 + 1
        self.k2_count = -(-self.bins // n1)  # k2 values that reach the bins of a real signal
        f64 = dict(dtype=torch.float64)
        i1, i2, k2 = torch.arange(n1, **f64), torch.arange(n2, **f64), torch.arange(self.k2_count, **f64)
        a1 = 2 * math.pi * torch.outer(i1, i1) / n1  # (k1, m1)
        tw = 2 * math.pi * torch.outer(i1, i2) / n  # (k1, m2)
        a2 = 2 * math.pi * torch.outer(i2, k2) / n2  # (m2, k2)
        as32 = lambda t: t.float().to(window.device)  # noqa: E731
        # Forward: x[m1, m2] = x[n2 m1 + m2]; Y = sum_m1 x e^{-i a1} (rows: re, then im);
        # Z = Y e^{-i tw}; X[k1 + n1 k2] = sum_m2 Z e^{-i a2}, columns (k2, re/im) interleaved.
        self.stage1 = as32(torch.cat((torch.cos(a1), -torch.sin(a1))))  # (2 n1, n1)
        self.tw_cos, self.tw_sin = as32(torch.cos(tw)), as32(torch.sin(tw))
        c2, s2 = torch.cos(a2), torch.sin(a2)
        top = torch.stack((c2, -s2), dim=-1).reshape(n2, -1)  # Zr's share of (re, im) per k2
        bottom = torch.stack((s2, c2), dim=-1).reshape(n2, -1)  # Zi's share
        self.stage2 = as32(torch.cat((top, bottom)))  # (2 n2, 2 k2_count)
        # Inverse (real output): x[n2 m1 + m2] = (1/n) sum_k c_k Re(X[k] e^{+2 pi i k n / n}),
        # c_k = 2 but 1 for DC and Nyquist. Over k2 first: Y[k1, m2] = sum_k2 c X e^{+i a2};
        # Z = Y e^{+i tw}; x[m1, m2] = Re sum_k1 Z e^{+i a1} = cos(a1)^T Zr - sin(a1)^T Zi.
        self.inv_stage1 = as32(torch.cat((torch.stack((c2.T, -s2.T), dim=1), torch.stack((s2.T, c2.T), dim=1)), dim=-1)
                               .reshape(2 * self.k2_count, 2 * n2))  # rows (k2, re/im), columns (Yr | Yi)
        self.inv_stage2 = as32(torch.cat((torch.cos(a1).T, -torch.sin(a1).T), dim=1))  # (m1, [k1 re | k1 im])
        weight = torch.full((self.bins, 2), 2.0, **f64)
        weight[0], weight[-1] = 1.0, 1.0
        self.inv_weight = as32(weight)  # c_k for the (re, im) pairs
        self.window = window
        self.inv_window = window / n

    def rfft(self, frames: Tensor) -> Tensor:
        """Windowed rfft of (..., n) -> (..., n/2 + 1, 2) (re, im) pairs."""
        shape, n1, n2 = frames.shape[:-1], self.n1, self.n2
        y = self.stage1 @ (frames * self.window).reshape(*shape, n1, n2)  # (..., 2 n1, n2)
        yr, yi = y[..., :n1, :], y[..., n1:, :]
        z = torch.cat((yr * self.tw_cos + yi * self.tw_sin, yi * self.tw_cos - yr * self.tw_sin), dim=-1)  # (..., n1, 2 n2)
        out = (z @ self.stage2).reshape(*shape, n1, self.k2_count, 2).transpose(-3, -2)  # (..., k2, k1, 2)
        return out.reshape(*shape, n1 * self.k2_count, 2)[..., : self.bins, :]

    def irfft(self, spec: Tensor) -> Tensor:
        """Inverse of :meth:`rfft` for (..., n/2 + 1, 2) pairs -> windowed real frames (..., n).

        The imaginary parts of DC and Nyquist are ignored, as by ``torch.fft.irfft``.
        """
        shape, n1, k2 = spec.shape[:-2], self.n1, self.k2_count
        x = torch.cat((spec * self.inv_weight, spec.new_zeros(*shape, n1 * k2 - self.bins, 2)), dim=-2)
        x = x.reshape(*shape, k2, n1, 2).transpose(-3, -2).reshape(*shape, n1, 2 * k2)  # rows k1: (k2, re/im)
        y = x @ self.inv_stage1  # (..., n1, 2 n2): Yr | Yi
        yr, yi = y[..., : self.n2], y[..., self.n2 :]
        z = torch.cat((yr * self.tw_cos - yi * self.tw_sin, yr * self.tw_sin + yi * self.tw_cos), dim=-2)  # (..., 2 n1, n2)
        return (self.inv_stage2 @ z).reshape(*shape, self.n) * self.inv_window


def band_energy_db(samples: np.ndarray, sample_rate: int, cutoff_hz: float) -> float:
    """Share of a signal's energy above ``cutoff_hz``, in dB relative to its whole energy
    (one FFT of the whole signal; -300 dB for a silent one)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x if x.ndim == 1 else x.mean(axis=1)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    total = float(power.sum())
    return float(10 * np.log10(max(float(power[freqs > cutoff_hz].sum()) / total, 1e-30))) if total > 0 else -300.0
