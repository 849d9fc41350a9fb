"""Deep-feature losses with a frozen external network: L1 between its features of clean and
enhanced speech, the input resampled to the network's rate inside the loss (differentiably).

Kinds (``loss.ext.kind``): ``dfn3`` / ``dfn2`` = the encoder of an imported DeepFilterNet
(its bottleneck ``emb``, or a stage ``e0``..``e3``, ``c0``; 48 kHz), ``nisqa`` = NISQA v2's
frame features (:mod:`mal.losses.nisqa_features`), ``wavlm`` / ``wav2vec2`` / ``hubert`` = a
self-supervised model (:class:`~mal.losses.deep_feature.SSLFeatureLoss`).

The external network is kept out of ``parameters()``, ``state_dict()`` and ``train()`` (a
checkpoint holds only the enhancement model; the loss is rebuilt from its config), always in
eval mode with ``requires_grad`` off, but it follows ``.to()``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor, nn

from mal.losses.deep_feature import SSLFeatureLoss
from mal.losses.frozen import FrozenFeatureLoss
from mal.losses.nisqa_features import NisqaFeatureLoss
from mal.models.store import load_model

KINDS = ("dfn3", "dfn2", "nisqa", "wavlm", "wav2vec2", "hubert")
DFN_LAYERS = ("emb", "e0", "e1", "e2", "e3", "c0")
DEFAULT_LAYER = {"dfn3": "emb", "dfn2": "emb", "nisqa": "cnn", "wavlm": "conv", "wav2vec2": "conv", "hubert": "conv"}


class DeepFilterNetFeatureLoss(FrozenFeatureLoss):
    """L1 between a frozen DeepFilterNet encoder's ``layer`` of clean and enhanced speech.

    ``model``: a :class:`~mal.models.deepfilternet.DeepFilterNet`, a public name
    (``deepfilternet3``/``deepfilternet2``) or a mal model file; ``layer``: ``emb`` (the
    bottleneck, (B, T, 512) for DeepFilterNet3) or a stage ``e0``..``e3``, ``c0``.
    """

    def __init__(self, model: nn.Module | str | os.PathLike = "deepfilternet3", layer: str = "emb",
                 sample_rate: int = 16000):
        if layer not in DFN_LAYERS:
            raise ValueError(f"DeepFilterNet layer must be one of {DFN_LAYERS}, got {layer!r}")
        if not isinstance(model, nn.Module):
            if str(model) not in ("deepfilternet2", "deepfilternet3") and not Path(model).is_file():
                raise FileNotFoundError(f"DeepFilterNet model not found: {model} (a public name or a mal model file)")
            model = load_model(model)
        if not hasattr(model, "cfg") or not hasattr(model.cfg, "variant"):
            raise ValueError(f"a DeepFilterNet model is needed, got {type(model).__name__}")
        super().__init__(model, sample_rate, model.sample_rate)
        self.layer = layer

    def features(self, wave: Tensor) -> Tensor:
        """The encoder's ``layer`` for ``wave`` (B, N) at ``sample_rate``."""
        encoding = self.network.encoder(self.resample(wave.reshape(-1, wave.shape[-1])))
        return encoding.embedding if self.layer == "emb" else encoding.extras[self.layer]


def build_external_loss(ext: dict, sample_rate: int) -> nn.Module:
    """The loss that ``loss.ext`` (kind, path, layer) describes, for a model at ``sample_rate``."""
    kind, path = ext["kind"], ext["path"]
    if kind not in KINDS:
        raise ValueError(f"loss.ext.kind must be one of {list(KINDS)}, got {kind!r}")
    layer = ext["layer"] if ext["layer"] is not None else DEFAULT_LAYER[kind]
    if kind in ("dfn3", "dfn2"):
        source = path or ("deepfilternet3" if kind == "dfn3" else "deepfilternet2")
        return DeepFilterNetFeatureLoss(source, layer=str(layer), sample_rate=sample_rate)
    if kind == "nisqa":
        return NisqaFeatureLoss(path, layer=str(layer), sample_rate=sample_rate)
    if path is None:
        raise ValueError(f"loss.ext.path: the local {kind} model directory is needed")
    return SSLFeatureLoss(path, kind=kind, layer=layer, sample_rate=sample_rate)
