"""Model as Loss (Phaye, Cernak, Harper, "Model as Loss: A Self-Consistent Training
Paradigm", Interspeech 2025, arXiv 2505.21156).

``L_mal = mean |Enc(clean) - Enc(enhanced)|`` (paper eq. 3), where ``Enc`` is a *snapshot*
of the enhancement model's own encoder (the "MAL-encoder"): a deep copy, every parameter
``requires_grad=False``, always in eval mode. Gradients flow through it into the enhanced
signal and on into the model, never into the snapshot. The clean branch runs without
gradient. The snapshot is a registered submodule, so checkpoints carry it.

Beyond the paper (off by default):

- ``stages="all"``: compare every encoder stage the model exposes in ``Encoding.extras``
  (keys like ``e0``, ``e1``, ``c0``: a letter prefix and a number, real-valued) plus the
  bottleneck; each stage's L1 distance is divided by the clean features' mean magnitude,
  and the stages are averaged.
- ``ema_decay``: :meth:`update_ema` moves the snapshot towards the live encoder,
  ``w <- decay * w + (1 - decay) * w_live`` (buffers are copied), a smooth alternative to
  the dynamic variant's per-epoch :meth:`refresh`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

STAGE_KEY = re.compile(r"^[a-z]+\d+$")


def _encoder_of(model: nn.Module) -> nn.Module:
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"{type(model).__name__} has no `encoder` module; see the model contract in mal.models.base")
    return encoder


class ModelAsLoss(nn.Module):
    """L1 distance between MAL-encoder embeddings of clean and enhanced waveforms."""

    def __init__(
        self,
        model: nn.Module,
        stages: str = "bottleneck",
        ema_decay: float | None = None,
        stage_keys: Sequence[str] | None = None,
        eps: float = 1e-8,
    ):
        super().__init__()
        if stages not in ("bottleneck", "all"):
            raise ValueError(f"stages must be 'bottleneck' or 'all', got {stages!r}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.stages, self.ema_decay, self.eps = stages, ema_decay, eps
        self.stage_keys = list(stage_keys) if stage_keys is not None else None
        self.snapshot = copy.deepcopy(_encoder_of(model))
        self._freeze()
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def _freeze(self) -> None:
        for p in self.snapshot.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.snapshot.eval()

    def train(self, mode: bool = True) -> ModelAsLoss:
        """Set the mode of this module; the snapshot stays in eval mode."""
        super().train(mode)
        self.snapshot.eval()
        return self

    @torch.no_grad()
    def refresh(self, model: nn.Module) -> None:
        """Re-take the snapshot: copy ``model.encoder``'s weights and buffers in place."""
        self.snapshot.load_state_dict(_encoder_of(model).state_dict())
        self._freeze()
        self.refreshes += 1

    @torch.no_grad()
    def update_ema(self, model: nn.Module) -> None:
        """Move the snapshot towards ``model.encoder`` by ``1 - ema_decay``; copy buffers."""
        if self.ema_decay is None:
            raise ValueError("update_ema needs ModelAsLoss(ema_decay=...); use refresh() otherwise")
        live = _encoder_of(model)
        for ours, theirs in zip(self.snapshot.parameters(), live.parameters(), strict=True):
            ours.lerp_(theirs.detach().to(ours.dtype), 1.0 - self.ema_decay)
        for ours, theirs in zip(self.snapshot.buffers(), live.buffers(), strict=True):
            ours.copy_(theirs)
        self.ema_updates += 1

    def _features(self, wave: Tensor) -> dict[str, Tensor]:
        encoding = self.snapshot(wave)
        feats = {"embedding": encoding.embedding}
        if self.stages == "all":
            keys = self.stage_keys
            if keys is None:
                keys = [k for k in encoding.extras if STAGE_KEY.match(k)]
            for key in keys:
                value = encoding.extras[key]
                if torch.is_tensor(value) and value.is_floating_point():
                    feats[key] = value
        return feats

    def forward(self, enhanced: Tensor, clean: Tensor) -> Tensor:
        if enhanced.shape != clean.shape:
            raise ValueError(f"enhanced and clean shapes differ: {tuple(enhanced.shape)} vs {tuple(clean.shape)}")
        if any(p.requires_grad for p in self.snapshot.parameters()):
            self._freeze()  # someone called requires_grad_(True) on a parent module
        self.snapshot.eval()
        with torch.no_grad():
            target = self._features(clean)
        feats = self._features(enhanced)
        if self.stages == "bottleneck":
            return torch.mean(torch.abs(feats["embedding"] - target["embedding"]))
        distances = [
            torch.mean(torch.abs(feats[k] - target[k])) / (torch.mean(torch.abs(target[k])) + self.eps)
            for k in target
        ]
        return torch.stack(distances).mean()

    def state(self) -> dict:
        """Variant-agnostic facts about the loss, for logs and checkpoints' metadata."""
        return {
            "stages": self.stages,
            "ema_decay": self.ema_decay,
            "refreshes": int(self.refreshes),
            "ema_updates": int(self.ema_updates),
            "snapshot_parameters": sum(p.numel() for p in self.snapshot.parameters()),
            "snapshot_checksum": float(sum(p.double().sum() for p in self.snapshot.parameters())),
        }

    def extra_repr(self) -> str:
        return f"stages={self.stages!r}, ema_decay={self.ema_decay}"
