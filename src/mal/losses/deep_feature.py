"""Deep-feature loss with a frozen self-supervised speech model: L1 between its features of
clean and enhanced speech. The paper's Baseline_wavlm uses the output of the last
convolutional layer of WavLM-Base-Plus (Chen et al., "WavLM: Large-Scale Self-Supervised
Pre-Training for Full Stack Speech Processing", IEEE JSTSP 2022); wav2vec 2.0 (Baevski et
al., NeurIPS 2020) and HuBERT (Hsu et al., TASLP 2021) work the same way.

The SSL model is loaded from a local directory with ``transformers`` (imported lazily: it
is the optional ``[ssl]`` extra). It is a fixed external network, so it is kept out of this
module's ``parameters()`` and ``state_dict()`` (checkpoints stay small; rebuild it from its
path), but it follows ``.to()``/``.half()``. Input is resampled to 16 kHz inside the loss,
differentiably.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from mal.losses.frozen import FrozenFeatureLoss

SSL_RATE = 16000
KINDS = {"wavlm": "WavLMModel", "wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}
CONFIG_KINDS = {"WavLMConfig": "wavlm", "Wav2Vec2Config": "wav2vec2", "HubertConfig": "hubert"}


def _model_class(kind: str):
    if kind not in KINDS:
        raise ValueError(f"SSL model kind must be one of {sorted(KINDS)}, got {kind!r}")
    try:
        import transformers  # optional dependency ([ssl] extra): only the SSL feature losses need it
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("SSL feature losses need transformers: pip install 'mal[ssl]'") from err
    return getattr(transformers, KINDS[kind])


class SSLFeatureLoss(FrozenFeatureLoss):
    """Mean absolute difference of frozen SSL features of clean and enhanced speech.

    Args:
        model: a ``transformers`` WavLM/wav2vec 2.0/HuBERT model, or a local directory.
        kind: ``"wavlm"``, ``"wav2vec2"`` or ``"hubert"`` (used when ``model`` is a path).
        layer: ``"conv"`` = output of the last conv feature-extractor layer (the paper's
            choice), or an int ``i`` = ``hidden_states[i]`` of the transformer.
        sample_rate: rate of the waveforms given to ``forward``.
        normalize: zero-mean/unit-variance each input like the model's feature extractor;
            ``None`` reads ``do_normalize`` from the directory's preprocessor_config.json.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        kind: str = "wavlm",
        layer: str | int = "conv",
        sample_rate: int = SSL_RATE,
        normalize: bool | None = None,
    ):
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if not path.is_dir():
                raise FileNotFoundError(
                    f"SSL model directory not found: {path} (set ssl_model_path to a local {kind} checkpoint)"
                )
            if normalize is None:
                normalize = _read_do_normalize(path)
            model = _model_class(kind).from_pretrained(str(path), local_files_only=True)
        if isinstance(layer, str) and layer.lstrip("-").isdigit():
            layer = int(layer)  # "6" from a command-line override
        if layer != "conv" and not isinstance(layer, int):
            raise ValueError(f"layer must be 'conv' or an int, got {layer!r}")
        super().__init__(model, sample_rate, SSL_RATE)
        self.layer, self.normalize = layer, bool(normalize)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, kind: str = "wavlm", **kwargs) -> SSLFeatureLoss:
        """Load the SSL model from local directory ``path``."""
        return cls(path, kind=kind, **kwargs)

    @classmethod
    def from_config(cls, config, **kwargs) -> SSLFeatureLoss:
        """Randomly initialised SSL model from a transformers config (tests, benchmarks)."""
        kind = CONFIG_KINDS.get(type(config).__name__)
        if kind is None:
            raise ValueError(f"unsupported SSL config {type(config).__name__}; expected one of {sorted(CONFIG_KINDS)}")
        return cls(_model_class(kind)(config), kind=kind, **kwargs)

    @property
    def ssl_model(self) -> nn.Module:
        """The frozen SSL network."""
        return self.network

    def features(self, wave: Tensor) -> Tensor:
        """SSL features of ``wave`` (B, N) at ``sample_rate``."""
        x = self.resample(wave.reshape(-1, wave.shape[-1]))
        if self.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-7)
        model = self.network
        if self.layer == "conv":
            return model.feature_extractor(x)
        return model(x, output_hidden_states=True).hidden_states[self.layer]


def _read_do_normalize(path: Path) -> bool:
    config = path / "preprocessor_config.json"
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text()).get("do_normalize", False))


def wavlm_base_random(layer: str | int = "conv", sample_rate: int = SSL_RATE) -> SSLFeatureLoss:
    """SSL loss over a randomly initialised WavLM-Base-sized model (for benchmarks)."""
    from transformers import WavLMConfig  # optional dependency ([ssl] extra): only this benchmark model needs it

    return SSLFeatureLoss.from_config(WavLMConfig(), layer=layer, sample_rate=sample_rate)
