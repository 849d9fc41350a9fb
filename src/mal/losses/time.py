"""Time-domain losses: scale-invariant SDR (Le Roux et al., "SDR - half-baked or well done?",
ICASSP 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def si_sdr(est: Tensor, ref: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB of ``est`` against ``ref`` (..., N), one value per item."""
    if est.shape != ref.shape:
        raise ValueError(f"si_sdr: shapes differ: {tuple(est.shape)} vs {tuple(ref.shape)}")
    scale = (est * ref).sum(-1, keepdim=True) / (ref.square().sum(-1, keepdim=True) + eps)
    target = scale * ref
    residual = est - target
    return 10 * torch.log10((target.square().sum(-1) + eps) / (residual.square().sum(-1) + eps))


class SISDRLoss(nn.Module):
    """Negative mean SI-SDR (dB) over the batch, times ``factor``."""

    def __init__(self, factor: float = 1.0):
        super().__init__()
        self.factor = factor

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        return -si_sdr(enhanced, clean).mean() * self.factor
