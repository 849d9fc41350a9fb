"""A small waveform-domain U-Net in the style of DEMUCS (Defossez, Synnaeve, Adi, "Real Time
Speech Enhancement in the Waveform Domain", Interspeech 2020), written from the paper.

Encoder: input normalised by its standard deviation, padded to a valid length, ``depth``
stages of strided Conv1d + ReLU + 1x1 Conv1d + GLU, then an LSTM bottleneck (unidirectional
when ``causal``; the paper's "causal" model). Its output (B, T, H) is the embedding that
Model-as-Loss compares. Decoder: per stage 1x1 Conv1d + GLU + ConvTranspose1d (+ ReLU except
the last), each fed the matching encoder stage output through a U-Net skip. No input
upsampling (the paper's ``resample`` factor is 1 here).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mal.models.base import EnhancementModel, Encoding


@dataclass
class DemucsConfig:
    """Sizes of :class:`Demucs`. Defaults: a small 16 kHz model (~2.1 M parameters, 1.0 M in the LSTM)."""

    sample_rate: int = 16000
    hidden: int = 32
    depth: int = 4
    kernel: int = 8
    stride: int = 4
    growth: float = 2.0
    max_hidden: int = 512
    lstm_layers: int = 2
    causal: bool = True
    normalize: bool = True
    floor: float = 1e-3
    rescale: float = 0.1

    def __post_init__(self):
        if self.depth < 1 or self.hidden < 1:
            raise ValueError(f"depth and hidden must be positive, got {self.depth}, {self.hidden}")
        if not 1 <= self.stride <= self.kernel:
            raise ValueError(f"stride must be in [1, kernel], got stride={self.stride}, kernel={self.kernel}")

    def channels(self) -> list[int]:
        """Output channels of each encoder stage."""
        out, ch = [], self.hidden
        for _ in range(self.depth):
            out.append(ch)
            ch = min(int(self.growth * ch), self.max_hidden)
        return out


def valid_length(cfg: DemucsConfig, length: int) -> int:
    """Smallest length >= ``length`` that the strided convs consume without remainder."""
    for _ in range(cfg.depth):
        length = max(math.ceil((length - cfg.kernel) / cfg.stride) + 1, 1)
    for _ in range(cfg.depth):
        length = (length - 1) * cfg.stride + cfg.kernel
    return int(length)


def _rescale(module: nn.Module, reference: float) -> None:
    # DEMUCS's init: divide conv weights by sqrt(std / reference) (arXiv 1911.13254).
    for sub in module.modules():
        if isinstance(sub, (nn.Conv1d, nn.ConvTranspose1d)):
            scale = (sub.weight.std().detach() / reference) ** 0.5
            sub.weight.data /= scale
            if sub.bias is not None:
                sub.bias.data /= scale


class DemucsEncoder(nn.Module):
    """Normalise, pad, strided conv stages, LSTM. ``forward(wave) -> Encoding``.

    ``extras``: ``e0``..``e{depth-1}`` (stage outputs, the skips, (B, C, T_i)) and ``std``
    (B, 1, 1), the input scale the decoder restores.
    """

    def __init__(self, cfg: DemucsConfig):
        super().__init__()
        self.cfg = cfg
        self.stages = nn.ModuleList()
        ch_in = 1
        for ch in cfg.channels():
            self.stages.append(nn.Sequential(
                nn.Conv1d(ch_in, ch, cfg.kernel, cfg.stride), nn.ReLU(), nn.Conv1d(ch, 2 * ch, 1), nn.GLU(1),
            ))
            ch_in = ch
        bidirectional = not cfg.causal
        self.lstm = nn.LSTM(ch_in, ch_in, cfg.lstm_layers, batch_first=True, bidirectional=bidirectional)
        self.lstm_proj = nn.Linear(2 * ch_in, ch_in) if bidirectional else None

    def forward(self, wave: Tensor) -> Encoding:
        length = wave.shape[-1]
        x = wave.reshape(-1, 1, length)
        if self.cfg.normalize:
            std = x.std(dim=-1, keepdim=True) if length > 1 else torch.zeros_like(x[..., :1])
            std = std + self.cfg.floor
        else:
            std = torch.ones_like(x[..., :1])
        x = F.pad(x / std, (0, valid_length(self.cfg, length) - length))
        extras: dict[str, Tensor] = {"std": std}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            extras[f"e{i}"] = x
        emb, _ = self.lstm(x.transpose(1, 2))
        if self.lstm_proj is not None:
            emb = self.lstm_proj(emb)
        return Encoding(embedding=emb, length=length, extras=extras)


class Demucs(EnhancementModel):
    """DEMUCS-style waveform U-Net; see the module docstring."""

    def __init__(self, cfg: DemucsConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or DemucsConfig(**overrides)
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.encoder = DemucsEncoder(cfg)
        self.decoder = nn.ModuleList()
        ch_out = 1
        for i, ch in enumerate(cfg.channels()):  # built outermost first, run innermost first
            layers: list[nn.Module] = [
                nn.Conv1d(ch, 2 * ch, 1), nn.GLU(1), nn.ConvTranspose1d(ch, ch_out, cfg.kernel, cfg.stride),
            ]
            if i > 0:
                layers.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*layers))
            ch_out = ch
        if cfg.rescale:
            _rescale(self, cfg.rescale)

    def decode(self, enc: Encoding) -> Tensor:
        x = enc.embedding.transpose(1, 2)
        for i, stage in enumerate(self.decoder):
            skip = enc.extras[f"e{self.cfg.depth - 1 - i}"]
            x = stage(x + skip[..., : x.shape[-1]])
        return (x[..., : enc.length] * enc.extras["std"]).squeeze(1)

    @property
    def lookahead_samples(self) -> int:
        """Future samples one output sample sees through the convs (the std uses the whole input)."""
        return valid_length(self.cfg, 1) - 1

    @property
    def window_samples(self) -> int:
        return self.cfg.stride**self.cfg.depth

    def config_dict(self) -> dict:
        return {"name": "demucs", **asdict(self.cfg)}
