"""The base of the external-network losses: a frozen network hidden from the module tree.

The network is kept out of ``parameters()``, ``state_dict()`` and ``train()`` (a checkpoint
holds only the enhancement model; the loss is rebuilt from its config), always in eval mode
with ``requires_grad`` off, but it follows ``.to()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mal.losses.resample import Resample


class FrozenFeatureLoss(nn.Module):
    """Base: holds a frozen network hidden from the module tree; ``forward`` = L1 of ``features``."""

    def __init__(self, network: nn.Module, sample_rate: int, network_rate: int):
        super().__init__()
        network.eval()
        for p in network.parameters():
            p.requires_grad_(False)
        self._net = [network]  # a list hides it from parameters()/state_dict()/train()
        self.sample_rate = int(sample_rate)
        self.resample = Resample(self.sample_rate, int(network_rate))

    @property
    def network(self) -> nn.Module:
        """The frozen external network (always in eval mode)."""
        self._net[0].eval()
        return self._net[0]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._net[0] = self._net[0]._apply(fn, *args, **kwargs)
        return self

    def features(self, wave: Tensor) -> Tensor:
        """Features of ``wave`` (B, N) at ``sample_rate``; subclasses define them."""
        raise NotImplementedError

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        return feature_l1(self.features, enhanced, clean)

    def extra_repr(self) -> str:
        return f"{type(self._net[0]).__name__}, layer={getattr(self, 'layer', None)!r}, {self.resample.extra_repr()}"


def feature_l1(features, enhanced: Tensor, clean: Tensor) -> Tensor:
    """``mean |features(enhanced) - features(clean)|``, the clean side without gradient."""
    if enhanced.shape != clean.shape:
        raise ValueError(f"enhanced and clean shapes differ: {tuple(enhanced.shape)} vs {tuple(clean.shape)}")
    with torch.no_grad():
        target = features(clean)
    return F.l1_loss(features(enhanced), target)
