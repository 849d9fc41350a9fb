"""A DeepFilterNet2-style network (Schroeter et al., IWAENC 2022), written from the paper.

Encoder: causal STFT (Vorbis window) -> ERB-band dB features and low-band complex features
(both exponential-mean normalised) -> conv stages -> grouped-GRU bottleneck (the embedding
Model-as-Loss compares). Decoders: an ERB-gain decoder with skip ("pathway") convs, and a
deep-filtering decoder that predicts complex filter taps for the low band. Causal except for
a configurable look-ahead of ``lookahead`` frames (paper: 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mal import dsp
from mal.models.base import EnhancementModel, Encoding
from mal.models.layers import CausalConv2d, FreqUpConv2d, GroupedGRU, GroupedLinear


@dataclass
class DFNetConfig:
    """Sizes of :class:`DFNet`. Defaults: the 16 kHz CPU model of our recipes."""

    sample_rate: int = 16000
    n_fft: int = 320
    hop: int = 160
    n_erb: int = 32
    n_df: int = 64
    df_order: int = 5
    lookahead: int = 2
    conv_ch: int = 32
    emb_dim: int = 128
    emb_layers: int = 2  # 1 in the encoder, the rest in the ERB decoder
    df_hidden: int = 128
    df_layers: int = 2
    gru_groups: int = 1
    lin_groups: int = 1
    norm_tau: float = 1.0
    # Beyond DeepFilterNet: scale each bin's taps so that sum_i |C_i| <= 1. The filter then
    # cannot make a bin louder than the loudest of the frames it reads, so a stationary
    # harmonic cannot grow when output is enhanced again (off: the paper's model).
    df_gain_bound: bool = False

    def __post_init__(self):
        if self.n_erb % 8:
            raise ValueError(f"n_erb must be divisible by 8, got {self.n_erb}")
        if self.n_df % 2 or self.n_df > self.n_fft // 2 + 1:
            raise ValueError(f"n_df must be even and at most n_fft/2+1, got {self.n_df}")
        if not 0 <= self.lookahead < self.df_order:
            raise ValueError(f"lookahead must be in [0, df_order), got {self.lookahead}")


def dfnet_48k() -> DFNetConfig:
    """The paper's 48 kHz configuration (960-point FFT, hop 480, ~2.3 M parameters)."""
    return DFNetConfig(
        sample_rate=48000, n_fft=960, hop=480, n_erb=32, n_df=96, conv_ch=64,
        emb_dim=256, emb_layers=3, df_hidden=256, df_layers=2, gru_groups=8, lin_groups=1,
    )


class DFNetEncoder(nn.Module):
    """Front end + conv stages + GRU bottleneck. ``forward(wave) -> Encoding``."""

    def __init__(self, cfg: DFNetConfig):
        super().__init__()
        self.cfg = cfg
        c, e = cfg.conv_ch, cfg.n_erb
        self.register_buffer("window", dsp.vorbis_window(cfg.n_fft), persistent=False)
        erb_fb, erb_inv = dsp.erb_matrices(dsp.erb_band_widths(cfg.sample_rate, cfg.n_fft, cfg.n_erb))
        self.register_buffer("erb_fb", erb_fb, persistent=False)
        self.register_buffer("erb_inv", erb_inv, persistent=False)
        self.alpha = dsp.norm_alpha(cfg.sample_rate, cfg.hop, cfg.norm_tau)
        self.erb_conv0 = CausalConv2d(1, c, kernel=(3, 3))
        self.erb_conv1 = CausalConv2d(c, c, fstride=2)
        self.erb_conv2 = CausalConv2d(c, c, fstride=2)
        self.erb_conv3 = CausalConv2d(c, c)
        self.df_conv0 = CausalConv2d(2, c, kernel=(3, 3))
        self.df_conv1 = CausalConv2d(c, c, fstride=2)
        self.emb_in = c * e // 4
        self.df_fc_emb = nn.Sequential(GroupedLinear(c * cfg.n_df // 2, self.emb_in, cfg.lin_groups), nn.ReLU())
        self.emb_gru = GroupedGRU(self.emb_in, cfg.emb_dim, layers=1, groups=cfg.gru_groups)

    def features(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ERB and complex features, shifted by the look-ahead."""
        feat_erb = dsp.erb_features(spec, self.erb_fb, self.alpha)
        feat_spec = dsp.complex_features(spec, self.cfg.n_df, self.alpha)
        la = self.cfg.lookahead
        if la:  # frame t sees features of frame t + la
            feat_erb = F.pad(feat_erb, (0, 0, 0, la))[:, :, la:]
            feat_spec = F.pad(feat_spec, (0, 0, 0, la))[:, :, la:]
        return feat_erb, feat_spec

    def forward(self, wave: Tensor) -> Encoding:
        spec = dsp.stft(wave, self.cfg.n_fft, self.cfg.hop, self.window)
        feat_erb, feat_spec = self.features(spec)
        e0 = self.erb_conv0(feat_erb)
        e1 = self.erb_conv1(e0)
        e2 = self.erb_conv2(e1)
        e3 = self.erb_conv3(e2)
        c0 = self.df_conv0(feat_spec)
        c1 = self.df_conv1(c0)
        emb = e3.permute(0, 2, 3, 1).flatten(2) + self.df_fc_emb(c1.permute(0, 2, 3, 1).flatten(2))
        emb, _ = self.emb_gru(emb)
        extras = {"spec": spec, "e0": e0, "e1": e1, "e2": e2, "e3": e3, "c0": c0}
        return Encoding(embedding=emb, length=wave.shape[-1], extras=extras)


class ErbDecoder(nn.Module):
    """Bottleneck + encoder skips -> ERB gains in [0, 1], shape (B, 1, T, E)."""

    def __init__(self, cfg: DFNetConfig):
        super().__init__()
        c = cfg.conv_ch
        self.gru = GroupedGRU(cfg.emb_dim, cfg.emb_dim, layers=max(cfg.emb_layers - 1, 1), groups=cfg.gru_groups)
        self.fc = nn.Sequential(GroupedLinear(cfg.emb_dim, c * cfg.n_erb // 4, cfg.lin_groups), nn.ReLU())
        self.conv3p, self.convt3 = CausalConv2d(c, c, (1, 1)), CausalConv2d(c, c)
        self.conv2p, self.convt2 = CausalConv2d(c, c, (1, 1)), FreqUpConv2d(c)
        self.conv1p, self.convt1 = CausalConv2d(c, c, (1, 1)), FreqUpConv2d(c)
        self.conv0p = CausalConv2d(c, c, (1, 1))
        self.conv0_out = CausalConv2d(c, 1, activation=nn.Sigmoid)

    def forward(self, enc: Encoding) -> Tensor:
        x = enc.extras
        b, c, t, f4 = x["e3"].shape
        emb, _ = self.gru(enc.embedding)
        emb = self.fc(emb).view(b, t, f4, c).permute(0, 3, 1, 2)
        d3 = self.convt3(self.conv3p(x["e3"]) + emb)
        d2 = self.convt2(self.conv2p(x["e2"]) + d3)
        d1 = self.convt1(self.conv1p(x["e1"]) + d2)
        return self.conv0_out(self.conv0p(x["e0"]) + d1)


class DfDecoder(nn.Module):
    """Bottleneck + first complex conv stage -> deep-filter taps (B, T, n_df, order) complex."""

    def __init__(self, cfg: DFNetConfig):
        super().__init__()
        self.cfg = cfg
        self.gru = GroupedGRU(cfg.emb_dim, cfg.df_hidden, layers=cfg.df_layers, groups=cfg.gru_groups)
        self.skip = GroupedLinear(cfg.emb_dim, cfg.df_hidden, cfg.lin_groups)
        self.convp = CausalConv2d(cfg.conv_ch, 2 * cfg.df_order, (1, 1), activation=None)
        self.out = nn.Sequential(GroupedLinear(cfg.df_hidden, cfg.n_df * cfg.df_order * 2, cfg.lin_groups), nn.Tanh())
        # The learned part starts at zero (zero-initialised residual branches), so an untrained
        # deep filter is exactly the identity filter below.
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.convp[-1].weight)  # BatchNorm scale of the pathway conv
        identity = torch.zeros(cfg.df_order, 2)
        identity[cfg.lookahead, 0] = 1.0  # coefs index i multiplies X[t - i + lookahead]
        self.register_buffer("identity_tap", identity, persistent=False)

    def forward(self, enc: Encoding) -> Tensor:
        b, t, _ = enc.embedding.shape
        h, _ = self.gru(enc.embedding)
        h = h + self.skip(enc.embedding)
        coefs = self.out(h).view(b, t, self.cfg.n_df, 2 * self.cfg.df_order)
        coefs = coefs + self.convp(enc.extras["c0"]).permute(0, 2, 3, 1)
        coefs = coefs.view(b, t, self.cfg.n_df, self.cfg.df_order, 2)
        # Residual around the identity filter (tap on the current frame = 1): an untrained
        # decoder passes the low band through instead of scrambling its phase, which makes
        # early training far faster on CPU budgets. Our choice, not DeepFilterNet's.
        coefs = coefs + self.identity_tap
        if self.cfg.df_gain_bound:
            coefs = bound_taps(coefs)
        return torch.view_as_complex(coefs.contiguous())


def bound_taps(coefs: Tensor) -> Tensor:
    """Taps (..., order, 2) (real, imag) scaled so that sum over taps of |C_i| <= 1 per bin."""
    total = coefs.square().sum(-1).add(1e-12).sqrt().sum(-1, keepdim=True)  # (..., 1)
    return coefs / total.clamp(min=1.0).unsqueeze(-1)


def deep_filter(spec: Tensor, coefs: Tensor, lookahead: int) -> Tensor:
    """Apply complex filter taps over time: ``Y[t,f] = sum_i C[t,f,i] X[t - i + lookahead, f]``.

    ``spec`` (B, T, F) complex low band; ``coefs`` (B, T, F, order) complex.
    """
    order = coefs.shape[-1]
    padded = F.pad(torch.view_as_real(spec), (0, 0, 0, 0, order - 1 - lookahead, lookahead))
    padded = torch.view_as_complex(padded.contiguous())
    taps = padded.unfold(1, order, 1)  # (B, T, F, order): taps[..., k] = X[t - (order-1-la) + k]
    return (taps * coefs.flip(-1)).sum(-1)


class DFNet(EnhancementModel):
    """DeepFilterNet2-style enhancement network; see the module docstring."""

    def __init__(self, cfg: DFNetConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or DFNetConfig(**overrides)
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.encoder = DFNetEncoder(cfg)
        self.erb_decoder = ErbDecoder(cfg)
        self.df_decoder = DfDecoder(cfg)

    def decode(self, enc: Encoding) -> Tensor:
        cfg, spec = self.cfg, enc.extras["spec"]
        gains = self.erb_decoder(enc).squeeze(1) @ self.encoder.erb_inv  # (B, T, F)
        masked = spec * gains
        low = deep_filter(spec[..., : cfg.n_df], self.df_decoder(enc), cfg.lookahead)
        out = torch.cat((low, masked[..., cfg.n_df :]), dim=-1)
        return dsp.istft(out, cfg.n_fft, cfg.hop, self.encoder.window, enc.length)

    @property
    def lookahead_samples(self) -> int:
        return self.cfg.lookahead * self.cfg.hop

    @property
    def window_samples(self) -> int:
        return self.cfg.n_fft

    def config_dict(self) -> dict:
        return {"name": "dfnet", **asdict(self.cfg)}
