"""L_df: DeepFilterNet2's spectral losses (Schroeter et al., "DeepFilterNet2: Towards
Real-Time Speech Enhancement on Embedded Devices for Full-Band Audio", IWAENC 2022).

Both terms are mean squared errors between power-law compressed spectra ``|X|^gamma``
(magnitude) and ``|X|^gamma * exp(j angle X)`` (complex, as real/imaginary pairs).

- :class:`SpectralLoss`: one resolution, the model's own STFT (causal framing, Vorbis
  window, spectra scaled like DeepFilterNet's ``libdf`` analysis: ``hop / (n_fft * sum w^2)``).
- :class:`MultiResSpecLoss`: several ``torch.stft`` resolutions (Hann window, hop n_fft/4,
  ``normalized=True``), as DeepFilterNet's training code computes it, except that the
  centring pad is zeros rather than a reflection, so signals shorter than n_fft/2 work.
- :class:`DFLoss`: their sum with DeepFilterNet2's published weights (its pretrained
  ``config.ini``): SpectralLoss gamma 0.3, magnitude 1000, complex 1000; MultiResSpecLoss
  gamma 0.3, factor 500, complex 500, FFT sizes 256/512/1024. Its local-SNR term (weight
  1e-3) needs a model-specific SNR head and is left out; its mask, DF-alpha and SDR terms
  have weight 0 in that config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mal.audio import dsp


def compress(spec: Tensor, gamma: float, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """``(|X|^gamma, X * |X|^(gamma-1) as (..., 2) real pairs)``; gradient-safe at X = 0."""
    pairs = torch.view_as_real(spec)
    magnitude = pairs.square().sum(-1).clamp_min(eps * eps).sqrt()
    if gamma == 1:
        return magnitude, pairs
    compressed = magnitude.pow(gamma)
    return compressed, pairs * (compressed / magnitude).unsqueeze(-1)


def compressed_spec_mse(enhanced: Tensor, clean: Tensor, gamma: float, f_mag: float, f_complex: float) -> Tensor:
    """``f_mag * MSE(|Y|^g, |S|^g) + f_complex * MSE(compressed complex Y, S)``."""
    mag_e, cplx_e = compress(enhanced, gamma)
    mag_c, cplx_c = compress(clean, gamma)
    loss = torch.mean((mag_e - mag_c).square()) * f_mag
    if f_complex:
        loss = loss + torch.mean((cplx_e - cplx_c).square()) * f_complex
    return loss


def _check(enhanced: Tensor, clean: Tensor) -> None:
    if enhanced.shape != clean.shape:
        raise ValueError(f"enhanced and clean shapes differ: {tuple(enhanced.shape)} vs {tuple(clean.shape)}")


class SpectralLoss(nn.Module):
    """Compressed magnitude + complex MSE at one STFT resolution (the model's own)."""

    def __init__(
        self,
        n_fft: int = 960,
        hop: int = 480,
        gamma: float = 0.3,
        factor_magnitude: float = 1000.0,
        factor_complex: float = 1000.0,
        window: Tensor | None = None,
    ):
        super().__init__()
        self.n_fft, self.hop, self.gamma = n_fft, hop, gamma
        self.factor_magnitude, self.factor_complex = factor_magnitude, factor_complex
        window = dsp.vorbis_window(n_fft) if window is None else window
        self.register_buffer("window", window, persistent=False)
        self.scale = float(hop / (n_fft * window.square().sum()))  # libdf's analysis norm

    def spectrum(self, wave: Tensor) -> Tensor:
        """Scaled causal STFT (B, T, F) of ``wave`` (B, N)."""
        return dsp.stft(wave, self.n_fft, self.hop, self.window) * self.scale

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        _check(enhanced, clean)
        return compressed_spec_mse(
            self.spectrum(enhanced), self.spectrum(clean), self.gamma, self.factor_magnitude, self.factor_complex
        )


class MultiResSpecLoss(nn.Module):
    """Compressed magnitude (+ complex) MSE summed over several STFT resolutions."""

    def __init__(
        self,
        n_ffts: Sequence[int] = (256, 512, 1024),
        gamma: float = 0.3,
        factor: float = 500.0,
        f_complex: float | Sequence[float] | None = 500.0,
    ):
        super().__init__()
        self.n_ffts, self.gamma, self.factor = tuple(int(n) for n in n_ffts), gamma, factor
        if f_complex is None:
            f_complex = 0.0
        if isinstance(f_complex, (int, float)):
            f_complex = [float(f_complex)] * len(self.n_ffts)
        if len(f_complex) != len(self.n_ffts):
            raise ValueError(f"f_complex needs one weight per FFT size ({len(self.n_ffts)}), got {len(f_complex)}")
        self.f_complex = [float(f) for f in f_complex]
        for n_fft in self.n_ffts:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def spectrum(self, wave: Tensor, n_fft: int) -> Tensor:
        """Normalised STFT (B, F, T) with Hann window and hop n_fft/4 (zero padded, centred)."""
        flat = wave.reshape(-1, wave.shape[-1])
        return torch.stft(
            flat, n_fft, hop_length=n_fft // 4, window=getattr(self, f"window_{n_fft}"),
            normalized=True, center=True, pad_mode="constant", return_complex=True,
        )

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        _check(enhanced, clean)
        loss = enhanced.new_zeros(())
        for n_fft, f_complex in zip(self.n_ffts, self.f_complex):
            loss = loss + compressed_spec_mse(
                self.spectrum(enhanced, n_fft), self.spectrum(clean, n_fft), self.gamma, self.factor, f_complex
            )
        return loss


class DFLoss(nn.Module):
    """L_df: :class:`SpectralLoss` + :class:`MultiResSpecLoss` with DeepFilterNet2's weights."""

    def __init__(
        self,
        n_fft: int = 960,
        hop: int = 480,
        gamma: float = 0.3,
        factor_magnitude: float = 1000.0,
        factor_complex: float = 1000.0,
        mr_n_ffts: Sequence[int] = (256, 512, 1024),
        mr_factor: float = 500.0,
        mr_f_complex: float | Sequence[float] | None = 500.0,
        mr_gamma: float = 0.3,
    ):
        super().__init__()
        self.spectral = SpectralLoss(n_fft, hop, gamma, factor_magnitude, factor_complex)
        self.multires = MultiResSpecLoss(mr_n_ffts, mr_gamma, mr_factor, mr_f_complex) if mr_factor else None

    @classmethod
    def for_model(cls, model: nn.Module, **kwargs) -> DFLoss:
        """L_df at ``model``'s STFT (``model.cfg.n_fft/hop``), else 20 ms / 10 ms frames."""
        cfg = getattr(model, "cfg", None)
        if cfg is not None and hasattr(cfg, "n_fft") and hasattr(cfg, "hop"):
            n_fft, hop = cfg.n_fft, cfg.hop
        else:
            rate = int(getattr(model, "sample_rate", 48000))
            hop = rate // 100
            n_fft = 2 * hop
        return cls(n_fft=n_fft, hop=hop, **kwargs)

    def terms(self, enhanced: Tensor, clean: Tensor) -> dict[str, Tensor]:
        """Each weighted term separately (for logging)."""
        out = {"spectral": self.spectral(enhanced, clean)}
        if self.multires is not None:
            out["multires"] = self.multires(enhanced, clean)
        return out

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        return sum(self.terms(enhanced, clean).values())
