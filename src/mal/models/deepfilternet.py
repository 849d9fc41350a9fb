"""The public DeepFilterNet2 / DeepFilterNet3 (Schroeter et al.) in mal's own code.

Same layers, same weights and same processing as the official release, so that weights
imported from the official ONNX graphs (:mod:`mal.models.public`) give the official
outputs. One family: the public models and mal's own small 16 kHz preset
(:func:`deepfilternet_16k`, trained from scratch) are configs of :class:`DeepFilterNet`.

**One definition for offline and streaming.** Every stateful part (STFT memory, feature
normalisation, causal convs, GRUs, the deep-filter history, overlap-add) runs through
:meth:`DeepFilterNet.frames` on a block of any number of hops with explicit state in and
out. Offline enhancement is one call over the whole (padded) signal from the initial state;
:class:`mal.inference.stream.TorchStream` calls it once per block. The network sees every input frame, as
DeepFilterNet's C runtime does, and network frame ``s`` (which has seen the features of
frame ``s``) decides spectral frame ``s - conv_lookahead``.

**Deep filtering.** DeepFilterNet3 filters the noisy low band: ``Y[t] = sum_n C[t, n]
X[t - (order-1-df_lookahead) + n]``. DeepFilterNet2 filters the ERB-*masked* spectrum, whose
future frames need future masks, so its output frame ``t`` is ready ``conv_lookahead +
df_lookahead`` frames after the network frame that decides it.

**Local-SNR gating** (the C runtime's, ``lsnr_gate``; in eval mode only, never in training):
a frame whose predicted local SNR is below ``lsnr_min_db`` gets zero gain, above
``lsnr_max_erb_db`` it is left unprocessed, above ``lsnr_max_df_db`` it is only ERB-masked.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mal.audio import dsp
from mal.models.base import EnhancementModel, Encoding
from mal.models.layers import GroupedLinear


@dataclass
class DeepFilterNetConfig:
    """Sizes and processing options of :class:`DeepFilterNet`. Defaults: DeepFilterNet3."""

    variant: str = "dfn3"  # "dfn2": concatenated bottleneck, DF on the masked spectrum
    sample_rate: int = 48000
    n_fft: int = 960
    hop: int = 480
    n_erb: int = 32
    n_df: int = 96
    df_order: int = 5
    conv_lookahead: int = 2
    df_lookahead: int = 2
    conv_ch: int = 64
    emb_hidden: int = 256  # hidden size of the squeezed GRUs
    emb_layers: int = 3  # 1 in the encoder, the rest in the ERB decoder
    emb_out_linear: bool = True  # dfn3: the encoder GRU projects back to conv_ch * n_erb / 4
    enc_lin_groups: int = 32  # df_fc_emb
    lin_groups: int = 16  # encoder / ERB-decoder GRU linears, df_out, df_skip
    df_gru_groups: int = 8  # linear into the DF GRU
    df_hidden: int = 256
    df_layers: int = 2
    df_skip: bool = True  # dfn3: grouped linear from the bottleneck added to the DF GRU output
    gru_skip: bool = False  # dfn2: decoders add their GRU input to its output
    df_pathway_kernel: int = 5
    erb_widths: tuple[int, ...] | None = None  # None: dsp.erb_band_widths
    norm_alpha: float = 0.99
    lsnr_min: float = -15.0  # range of the local-SNR head
    lsnr_max: float = 35.0
    lsnr_gate: bool = True
    lsnr_min_db: float = -15.0
    lsnr_max_erb_db: float = 35.0
    lsnr_max_df_db: float = 35.0
    atten_lim_db: float | None = None  # mix the noisy input back in (C runtime's option)
    freeze_bn: bool = True  # BatchNorm statistics stay as imported
    # Beyond DeepFilterNet, for training from scratch: the deep filter is a residual around the
    # identity filter (tap on the current frame = 1) and its learned part starts at zero, so an
    # untrained deep filter passes the low band through instead of scrambling its phase (early
    # training is far faster on CPU budgets).
    df_identity: bool = False

    def __post_init__(self):
        if self.variant not in ("dfn2", "dfn3"):
            raise ValueError(f"variant must be 'dfn2' or 'dfn3', got {self.variant!r}")
        if self.conv_lookahead != self.df_lookahead:
            raise ValueError("conv_lookahead must equal df_lookahead (as in both public models)")
        if self.n_fft != 2 * self.hop:
            raise ValueError(f"n_fft must be 2 * hop, got {self.n_fft} and {self.hop}")
        if self.erb_widths is not None:
            self.erb_widths = tuple(int(w) for w in self.erb_widths)

    @property
    def df_on_masked(self) -> bool:
        return self.variant == "dfn2"


def deepfilternet3() -> DeepFilterNetConfig:
    """DeepFilterNet3 as released (``config.ini`` of ``DeepFilterNet3_onnx.tar.gz``)."""
    return DeepFilterNetConfig()


def deepfilternet_16k() -> DeepFilterNetConfig:
    """mal's small 16 kHz DeepFilterNet3-style network, trained from scratch on a CPU.

    The model of ``make demo`` and ``make paper``: 20 ms window, 10 ms hop, deep filter on
    the lowest 64 bins (3.2 kHz), one GRU layer in the encoder and one in the ERB decoder;
    BatchNorm trains, no local-SNR gate (its head is not trained from scratch).
    """
    return DeepFilterNetConfig(
        sample_rate=16000, n_fft=320, hop=160, n_erb=32, n_df=64, conv_ch=24, emb_hidden=96, emb_layers=2,
        enc_lin_groups=8, lin_groups=8, df_gru_groups=8, df_hidden=96, lsnr_gate=False, freeze_bn=False, df_identity=True,
    )


def deepfilternet2() -> DeepFilterNetConfig:
    """DeepFilterNet2 as released (``config.ini`` of ``DeepFilterNet2_onnx.tar.gz``)."""
    return DeepFilterNetConfig(
        variant="dfn2", emb_out_linear=False, enc_lin_groups=8, lin_groups=8, df_gru_groups=8,
        df_skip=False, gru_skip=True,
    )


class ConvBlock(nn.Module):
    """DeepFilterNet's conv block: (transposed) conv, 1x1 conv if separable, BN, activation.

    Causal in time: ``forward(x (B, C, T, F), context)`` prepends the ``kt - 1`` previous
    frames (zeros at the start) and returns the new context with the output.
    Grouping follows upstream: ``groups = gcd(in, out)``; a 1x1 conv follows only when the
    conv is grouped and its kernel is larger than 1 (so kernel-1 pathway convs are depthwise).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int], fstride: int = 1,
                 activation: type[nn.Module] | None = nn.ReLU, transposed: bool = False):
        super().__init__()
        kt, kf = kernel
        groups = math.gcd(in_ch, out_ch)
        separable = groups > 1 and (transposed or max(kernel) > 1)
        if transposed:
            conv = StuffedConvTranspose2d(in_ch, out_ch, kernel, stride=(1, fstride), padding=(kt - 1, kf // 2),
                                          output_padding=(0, kf // 2), groups=groups, bias=False)
        else:
            conv = nn.Conv2d(in_ch, out_ch, kernel, stride=(1, fstride), padding=(0, kf // 2), groups=groups, bias=False)
        layers: list[nn.Module] = [conv]
        if separable:
            layers.append(nn.Conv2d(out_ch, out_ch, 1, bias=False))
        layers.append(nn.BatchNorm2d(out_ch))
        if activation is not None:
            layers.append(activation())
        self.layers = nn.Sequential(*layers)
        self.context = 0 if transposed else kt - 1
        self.in_ch = in_ch

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if not self.context:
            return self.layers(x), None
        if context is None:
            context = x.new_zeros(x.shape[0], x.shape[1], self.context, x.shape[3])
        x = torch.cat((context, x), dim=2)
        return self.layers(x), x[:, :, -self.context :]


class StuffedConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same weights and result) computed by :func:`transposed_as_conv`."""

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        if output_size is not None:
            raise ValueError("StuffedConvTranspose2d takes no output_size")
        return transposed_as_conv(self, x)


def transposed_as_conv(conv: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """``conv(x)`` computed as a convolution of the zero-stuffed input with the flipped kernel.

    The same products and sums (plus zeros). Written out because onnxruntime's ConvTranspose
    kernel takes several times as long as its Conv for one streaming frame. Stride 1 in time.
    """
    (kt, kf), (st, sf), (pt, pf), (_, extra) = conv.kernel_size, conv.stride, conv.padding, conv.output_padding
    if st != 1 or conv.dilation != (1, 1):
        raise ValueError("transposed_as_conv handles time stride 1 and no dilation")
    groups, (c_in, c_out_group) = conv.groups, conv.weight.shape[:2]
    weight = conv.weight.view(groups, c_in // groups, c_out_group, kt, kf).transpose(1, 2)
    weight = weight.reshape(groups * c_out_group, c_in // groups, kt, kf).flip(-2, -1)
    b, c, t, f = x.shape
    if sf > 1:  # x[i] at i * sf, zeros between (and sf - 1 after the last)
        x = torch.cat((x.unsqueeze(-1), x.new_zeros(b, c, t, f, sf - 1)), dim=-1).reshape(b, c, t, f * sf)
    left, right, time_pad = kf - 1 - pf, kf - 1 - pf + extra - (sf - 1), kt - 1 - pt
    if left == right and time_pad >= 0:
        return F.conv2d(x, weight, conv.bias, padding=(time_pad, left), groups=groups)
    return F.conv2d(F.pad(x, (left, right, time_pad, time_pad)), weight, conv.bias, groups=groups)


class SqueezedGRU(nn.Module):
    """Grouped linear in (no bias) + ReLU -> GRU -> (+ its input) -> grouped linear out + ReLU."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int | None, layers: int, groups: int, skip: bool):
        super().__init__()
        self.linear_in = GroupedLinear(in_dim, hidden, groups, bias=False)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.linear_out = GroupedLinear(hidden, out_dim, groups, bias=False) if out_dim else None
        self.skip = skip

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = F.relu(self.linear_in(x))
        y, h = self.gru(x, h)
        if self.skip:
            y = y + x
        if self.linear_out is not None:
            y = F.relu(self.linear_out(y))
        return y, h


class DeepFilterNetEncoder(nn.Module):
    """STFT + features + conv stages + squeezed-GRU bottleneck (the MAL-encoder)."""

    def __init__(self, cfg: DeepFilterNetConfig):
        super().__init__()
        self.cfg = cfg
        c, e = cfg.conv_ch, cfg.n_erb
        self.register_buffer("window", dsp.vorbis_window(cfg.n_fft), persistent=False)
        widths = list(cfg.erb_widths) if cfg.erb_widths else dsp.erb_band_widths(cfg.sample_rate, cfg.n_fft, cfg.n_erb)
        erb_fb, erb_inv = dsp.erb_matrices(widths)
        self.register_buffer("erb_fb", erb_fb, persistent=False)
        self.register_buffer("erb_inv", erb_inv, persistent=False)
        self.spec_scale = 2 * cfg.hop / cfg.n_fft**2  # libDF's analysis normalisation
        self.dft: dsp.FactoredDFT | None = None  # FFTs as matrix products, for export
        self.erb_conv0 = ConvBlock(1, c, (3, 3))
        self.erb_conv1 = ConvBlock(c, c, (1, 3), fstride=2)
        self.erb_conv2 = ConvBlock(c, c, (1, 3), fstride=2)
        self.erb_conv3 = ConvBlock(c, c, (1, 3))
        self.df_conv0 = ConvBlock(2, c, (3, 3))
        self.df_conv1 = ConvBlock(c, c, (1, 3), fstride=2)
        emb_in = c * e // 4
        self.df_fc_emb = GroupedLinear(c * cfg.n_df // 2, emb_in, cfg.enc_lin_groups, bias=False)
        gru_in = 2 * emb_in if cfg.variant == "dfn2" else emb_in
        self.emb_dim = emb_in if cfg.emb_out_linear else cfg.emb_hidden
        self.emb_gru = SqueezedGRU(gru_in, cfg.emb_hidden, emb_in if cfg.emb_out_linear else None, 1, cfg.lin_groups, False)
        self.lsnr_fc = nn.Linear(self.emb_dim, 1)

    def initial_state(self, batch: int, device=None) -> dict[str, Tensor]:
        """State before the first sample (zeros; the feature means start where libDF's do)."""
        cfg = self.cfg
        z = lambda *shape: torch.zeros(*shape, device=device)  # noqa: E731
        return {
            "analysis": z(batch, cfg.n_fft - cfg.hop),
            "erb_norm": torch.linspace(-60.0, -90.0, cfg.n_erb, device=device).expand(batch, -1).clone(),
            "spec_norm": torch.linspace(1e-3, 1e-4, cfg.n_df, device=device).expand(batch, -1).clone(),
            "erb_conv0": z(batch, 1, self.erb_conv0.context, cfg.n_erb),
            "df_conv0": z(batch, 2, self.df_conv0.context, cfg.n_df),
            "emb_gru": z(1, batch, cfg.emb_hidden),
        }

    def analysis(self, chunks: Tensor) -> Tensor:
        """Windowed rfft of ``chunks`` (B, T, n_fft) as (B, T, F, 2) (re, im) pairs.

        With :meth:`DeepFilterNet.use_dft_matrices` small matrix products (ONNX export), else an FFT.
        """
        if self.dft is None:
            return torch.view_as_real(torch.fft.rfft(chunks * self.window, dim=-1))
        return self.dft.rfft(chunks)

    def features(self, samples: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """STFT of ``samples`` (B, k * hop) and libDF's features: (spec pairs, feat_erb, feat_spec, state)."""
        cfg, alpha = self.cfg, self.cfg.norm_alpha
        x = torch.cat((state["analysis"], samples), dim=1)
        chunks = x[:, None] if x.shape[1] == cfg.n_fft else x.unfold(-1, cfg.n_fft, cfg.hop)  # (B, T, n_fft)
        spec = self.analysis(chunks)  # (B, T, F, 2): (re, im) pairs
        scaled = spec * self.spec_scale
        power = scaled.square().sum(-1)
        db = 10 * torch.log10(power @ self.erb_fb + 1e-10)
        erb_mean = dsp.exp_mean(db, alpha, state["erb_norm"])
        feat_erb = ((db - erb_mean) / 40.0).unsqueeze(1)  # (B, 1, T, E)
        low = scaled[:, :, : cfg.n_df]
        mag_mean = dsp.exp_mean(torch.sqrt(low.square().sum(-1) + 1e-24), alpha, state["spec_norm"])
        # (re, im) first, then the division broadcasts over an outer axis (fast in onnxruntime).
        feat_spec = low.permute(0, 3, 1, 2) / torch.sqrt(mag_mean)[:, None]  # (B, 2, T, n_df)
        new_state = {"analysis": x[:, x.shape[1] - (cfg.n_fft - cfg.hop) :], "erb_norm": erb_mean[:, -1], "spec_norm": mag_mean[:, -1]}
        return spec, feat_erb, feat_spec, new_state

    def network(self, feat_erb: Tensor, feat_spec: Tensor, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The official ``enc.onnx`` graph: features -> e0..e3, c0, emb, lsnr (and conv/GRU state)."""
        cfg = self.cfg
        e0, erb_ctx = self.erb_conv0(feat_erb, state["erb_conv0"])
        e1, _ = self.erb_conv1(e0)
        e2, _ = self.erb_conv2(e1)
        e3, _ = self.erb_conv3(e2)
        c0, df_ctx = self.df_conv0(feat_spec, state["df_conv0"])
        c1, _ = self.df_conv1(c0)
        cemb = F.relu(self.df_fc_emb(c1.permute(0, 2, 3, 1).flatten(2)))
        emb = e3.permute(0, 2, 3, 1).flatten(2)
        emb = torch.cat((emb, cemb), dim=-1) if cfg.variant == "dfn2" else emb + cemb
        emb, emb_h = self.emb_gru(emb, state["emb_gru"])
        lsnr = torch.sigmoid(self.lsnr_fc(emb)).squeeze(-1) * (cfg.lsnr_max - cfg.lsnr_min) + cfg.lsnr_min
        out = {"e0": e0, "e1": e1, "e2": e2, "e3": e3, "c0": c0, "emb": emb, "lsnr": lsnr}
        return out, {"erb_conv0": erb_ctx, "df_conv0": df_ctx, "emb_gru": emb_h}

    def frames(self, samples: Tensor, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Encode ``samples`` (B, k * hop): one network frame per hop. Returns (outputs, state)."""
        spec, feat_erb, feat_spec, feat_state = self.features(samples, state)
        out, net_state = self.network(feat_erb, feat_spec, state)
        return {"spec": spec, **out}, {**feat_state, **net_state}

    def forward(self, wave: Tensor) -> Encoding:
        """Offline: pad ``wave`` (B, N) so every output sample is decided, encode from the start."""
        cfg = self.cfg
        n = wave.shape[-1]
        delay_frames = output_delay_frames(cfg)
        padded = F.pad(wave, (0, -n % cfg.hop + (delay_frames + 1) * cfg.hop))
        out, _ = self.frames(padded, self.initial_state(wave.shape[0], wave.device))
        return Encoding(embedding=out.pop("emb"), length=n, extras=out)


def output_delay_frames(cfg: DeepFilterNetConfig) -> int:
    """Network frames between a spectral frame's arrival and its output."""
    return cfg.conv_lookahead + (cfg.df_lookahead if cfg.df_on_masked else 0)


class ErbDecoder(nn.Module):
    """Bottleneck + encoder skips -> ERB gains in [0, 1] (B, 1, T, E)."""

    def __init__(self, cfg: DeepFilterNetConfig, emb_dim: int):
        super().__init__()
        c = cfg.conv_ch
        self.emb_gru = SqueezedGRU(emb_dim, cfg.emb_hidden, c * cfg.n_erb // 4, cfg.emb_layers - 1, cfg.lin_groups, cfg.gru_skip)
        self.conv3p = ConvBlock(c, c, (1, 1))
        self.convt3 = ConvBlock(c, c, (1, 3))
        self.conv2p = ConvBlock(c, c, (1, 1))
        self.convt2 = ConvBlock(c, c, (1, 3), fstride=2, transposed=True)
        self.conv1p = ConvBlock(c, c, (1, 1))
        self.convt1 = ConvBlock(c, c, (1, 3), fstride=2, transposed=True)
        self.conv0p = ConvBlock(c, c, (1, 1))
        self.conv0_out = ConvBlock(c, 1, (1, 3), activation=nn.Sigmoid)

    def forward(self, x: dict[str, Tensor], h: Tensor | None) -> tuple[Tensor, Tensor]:
        b, _, t, f8 = x["e3"].shape
        emb, h = self.emb_gru(x["emb"], h)
        emb = emb.view(b, t, f8, -1).permute(0, 3, 1, 2)
        d3 = self.convt3(self.conv3p(x["e3"])[0] + emb)[0]
        d2 = self.convt2(self.conv2p(x["e2"])[0] + d3)[0]
        d1 = self.convt1(self.conv1p(x["e1"])[0] + d2)[0]
        return self.conv0_out(self.conv0p(x["e0"])[0] + d1)[0], h


class DfDecoder(nn.Module):
    """Bottleneck + first complex conv stage -> deep-filter taps (B, T, n_df, order, 2)."""

    def __init__(self, cfg: DeepFilterNetConfig, emb_dim: int):
        super().__init__()
        self.cfg = cfg
        self.df_gru = SqueezedGRU(emb_dim, cfg.df_hidden, None, cfg.df_layers, cfg.df_gru_groups, cfg.gru_skip)
        self.df_skip = GroupedLinear(emb_dim, cfg.df_hidden, cfg.lin_groups, bias=False) if cfg.df_skip else None
        self.df_convp = ConvBlock(cfg.conv_ch, 2 * cfg.df_order, (cfg.df_pathway_kernel, 1))
        self.df_out = GroupedLinear(cfg.df_hidden, cfg.n_df * cfg.df_order * 2, cfg.lin_groups, bias=False)
        self.register_buffer("identity", None, persistent=False)
        if cfg.df_identity:  # see DeepFilterNetConfig.df_identity
            nn.init.zeros_(self.df_out.weight)
            nn.init.zeros_(self.df_convp.layers[-2].weight)  # BatchNorm scale of the pathway conv
            identity = torch.zeros(cfg.df_order, 2)
            identity[cfg.df_order - 1 - cfg.df_lookahead, 0] = 1.0  # tap n reads frame t - (order-1-la) + n
            self.identity = identity.flatten()

    def forward(self, x: dict[str, Tensor], h: Tensor | None, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x["emb"].shape
        c, h = self.df_gru(x["emb"], h)
        if self.df_skip is not None:
            c = c + self.df_skip(x["emb"])
        c0, context = self.df_convp(x["c0"], context)
        coefs = torch.tanh(self.df_out(c)).view(b, t, self.cfg.n_df, -1) + c0.permute(0, 2, 3, 1)
        if self.identity is not None:
            coefs = coefs + self.identity
        return coefs.view(b, t, self.cfg.n_df, self.cfg.df_order, 2), h, context


class DeepFilterNet(EnhancementModel):
    """DeepFilterNet2 / DeepFilterNet3; see the module docstring."""

    # Offline file enhancement may run the exact offline computation block by block with the
    # state carried over (:meth:`frames`, via :func:`mal.inference.stream.stream_for`): no chunk seams.
    block_streaming = True

    def __init__(self, cfg: DeepFilterNetConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or DeepFilterNetConfig(**overrides)
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.encoder = DeepFilterNetEncoder(cfg)
        self.erb_decoder = ErbDecoder(cfg, self.encoder.emb_dim)
        self.df_decoder = DfDecoder(cfg, self.encoder.emb_dim)
        self.delay_frames = output_delay_frames(cfg)
        # Frames of history the output stage keeps (see decode_frames): the spectrum for
        # delay_frames plus the filter's reach into the past; masks, taps and local SNRs only
        # as far back as an output frame still needs them (none for DeepFilterNet3, whose
        # output frame is decided by the newest network frame).
        past_taps = cfg.df_order - 1 - cfg.df_lookahead
        self.history = {
            "spec": self.delay_frames + past_taps,
            "gain": self.delay_frames - cfg.conv_lookahead + (past_taps if cfg.df_on_masked else 0),
            "coef": self.delay_frames - cfg.conv_lookahead,
        }
        # The band of every (bin, re/im) value: band gains straight onto (re, im) pairs by
        # indexing, the same numbers as the 0/1 matrix erb_inv without reading it every frame.
        bands = self.encoder.erb_inv.argmax(dim=0).repeat_interleave(2)
        self.register_buffer("pair_bands", bands, persistent=False)
        # Sums the deep filter's products (see decode_frames) into the output's (re, im).
        re_signs = torch.tensor([1.0, -1.0]).repeat(cfg.df_order)
        df_sum = torch.zeros(4 * cfg.df_order, 2)
        df_sum[: 2 * cfg.df_order, 0], df_sum[2 * cfg.df_order :, 1] = re_signs, 1.0
        self.register_buffer("df_sum", df_sum, persistent=False)

    def train(self, mode: bool = True) -> DeepFilterNet:
        """Set the mode; with ``freeze_bn`` BatchNorm keeps its (imported) statistics."""
        super().train(mode)
        if self.cfg.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    # -- the shared frame computation ----------------------------------------------------
    def initial_state(self, batch: int = 1, device=None) -> dict[str, Tensor]:
        """The whole model's state before the first sample."""
        cfg, h = self.cfg, self.history
        n_bins = cfg.n_fft // 2 + 1
        z = lambda *shape: torch.zeros(*shape, device=device)  # noqa: E731
        state = {
            **self.encoder.initial_state(batch, device),
            "erb_gru": z(cfg.emb_layers - 1, batch, cfg.emb_hidden),
            "df_gru": z(cfg.df_layers, batch, cfg.df_hidden),
            "df_convp": z(batch, cfg.conv_ch, cfg.df_pathway_kernel - 1, cfg.n_df),
            "spec_hist": z(batch, h["spec"], n_bins, 2),
            "ola": z(batch, cfg.n_fft - cfg.hop),
        }
        if h["gain"]:
            state |= {"gain_hist": z(batch, h["gain"], cfg.n_erb), "lsnr_hist": z(batch, h["gain"])}
        if h["coef"]:
            state["coef_hist"] = z(batch, h["coef"], cfg.n_df, cfg.df_order, 2)
        return state

    def decode_frames(self, enc: dict[str, Tensor], state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Decoders + mask + deep filter: one output spectral frame (B, T, F, 2) per network frame.

        Output frame ``j`` of the block is spectral frame ``s_j - delay_frames``; network frame
        ``s`` decides the mask of spectral frame ``s - conv_lookahead`` and the taps of the
        frame it masks. Each quantity is joined to its history, whose frame ``i`` is block
        frame ``i - history``.
        """
        cfg, hist, delay = self.cfg, self.history, self.delay_frames
        la, order, n_df = cfg.conv_lookahead, cfg.df_order, cfg.n_df
        gains, erb_h = self.erb_decoder(enc, state["erb_gru"])
        coefs, df_h, convp_ctx = self.df_decoder(enc, state["df_gru"], state["df_convp"])
        n_out = enc["spec"].shape[1]
        new_state = {"erb_gru": erb_h, "df_gru": df_h, "df_convp": convp_ctx}

        def joined(name: str, new: Tensor, length: int) -> Tensor:
            if not length:
                return new
            full = torch.cat((state[f"{name}_hist"], new), dim=1)
            new_state[f"{name}_hist"] = full[:, full.shape[1] - length :]
            return full

        spec = joined("spec", enc["spec"], hist["spec"])  # (B, Hs + T, F, 2)
        band_gain = joined("gain", gains[:, 0], hist["gain"])  # (B, Hg + T, E)
        lsnr = joined("lsnr", enc["lsnr"], hist["gain"])
        coef = joined("coef", coefs, hist["coef"])  # (B, Hc + T, n_df, order, 2)
        gain = band_gain.index_select(-1, self.pair_bands)  # (B, Hg + T, 2F): one gain per (re, im) value
        gate = cfg.lsnr_gate and not self.training
        if gate:  # per network frame: zero gain / unprocessed (the C runtime's thresholds)
            gain = torch.where((lsnr < cfg.lsnr_min_db)[..., None], torch.zeros_like(gain), gain)
            gain = torch.where((lsnr > cfg.lsnr_max_erb_db)[..., None], torch.ones_like(gain), gain)
        # Masked spectral frames: those decided by the network frames in band_gain.
        first = hist["spec"] - hist["gain"] - la
        masked = (spec[:, first : first + band_gain.shape[1]].flatten(2) * gain).unflatten(2, spec.shape[2:])
        # Output frame j is masked frame j + shift; its taps are source frames j .. j + order - 1.
        shift = hist["gain"] + la - delay
        source = masked if cfg.df_on_masked else spec
        # (slices stacked rather than Tensor.unfold: the ONNX exporter cannot unfold a dynamic batch)
        taps = torch.stack([source[:, k : k + n_out, :n_df] for k in range(order)], dim=3)  # (B, T, n_df, order, 2)
        # Complex products summed over the taps, re = sum(t_re c_re - t_im c_im) and
        # im = sum(t_re c_im + t_im c_re): the four products of every tap, then one matrix
        # product with +-1 sums them into (re, im). (onnxruntime is slow at broadcasting over,
        # or reducing across, a last axis of 2, so neither is used.)
        c = coef[:, :n_out]  # (B, T, n_df, order, 2)
        flat = taps.flatten(-2)
        products = torch.cat((flat * c.flatten(-2), flat * c.flip(-1).flatten(-2)), dim=-1)  # (B, T, n_df, 4 order)
        low = products @ self.df_sum  # (B, T, n_df, 2)
        out = masked[:, shift : shift + n_out]
        if gate:
            frame_lsnr = lsnr[:, hist["gain"] - hist["coef"] : hist["gain"] - hist["coef"] + n_out]
            apply_df = (frame_lsnr >= cfg.lsnr_min_db) & (frame_lsnr <= min(cfg.lsnr_max_df_db, cfg.lsnr_max_erb_db))
            low = torch.where(apply_df[..., None, None], low, out[:, :, :n_df])
        out = torch.cat((low, out[:, :, n_df:]), dim=2)
        if cfg.atten_lim_db is not None:
            lim = 10 ** (-abs(cfg.atten_lim_db) / 20)
            offset = hist["spec"] - delay
            out = out * (1 - lim) + spec[:, offset : offset + n_out] * lim
        return out, new_state

    def frames(self, samples: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Enhance ``samples`` (B, k * hop) from ``state``: k hops out, ``(delay_frames + 1) * hop`` late."""
        cfg = self.cfg
        enc, enc_state = self.encoder.frames(samples, state)
        spec, dec_state = self.decode_frames(enc, state)
        if self.encoder.dft is None:
            frames = torch.fft.irfft(torch.view_as_complex(spec.contiguous()), n=cfg.n_fft, dim=-1) * self.encoder.window
        else:
            frames = self.encoder.dft.irfft(spec)  # (B, T, n_fft)
        # Overlap-add (hop = n_fft / 2): output hop j = previous second half + this first half.
        firsts, seconds = frames[..., : cfg.hop], frames[..., cfg.hop :]
        prev = torch.cat((state["ola"][:, None], seconds[:, :-1]), dim=1)
        out = (prev + firsts).flatten(1)
        return out, {**enc_state, **dec_state, "ola": seconds[:, -1]}

    def unlossed_parameters(self) -> list[nn.Parameter]:
        """The local-SNR head: DeepFilterNet trains it with its own LSNR loss, which mal has not;
        it only gates frames at inference (``lsnr_gate``)."""
        return list(self.encoder.lsnr_fc.parameters())

    def use_dft_matrices(self, enabled: bool = True) -> None:
        """Compute the FFTs as matrix products (for ONNX export, which has no complex tensors)."""
        self.encoder.dft = dsp.FactoredDFT(self.encoder.window) if enabled else None

    # -- the model contract ----------------------------------------------------------------
    def decode(self, enc: Encoding) -> Tensor:
        cfg = self.cfg
        x = {"emb": enc.embedding, **enc.extras}
        batch = enc.embedding.shape[0]
        spec, _ = self.decode_frames(x, self.initial_state(batch, enc.embedding.device))
        spec = torch.view_as_complex(spec[:, self.delay_frames :].contiguous())  # the first outputs precede the signal
        return dsp.istft(spec, cfg.n_fft, cfg.hop, self.encoder.window, enc.length)

    @property
    def lookahead_samples(self) -> int:
        return self.delay_frames * self.cfg.hop

    @property
    def window_samples(self) -> int:
        return self.cfg.n_fft

    def config_dict(self) -> dict:
        spec = {"name": "deepfilternet", **asdict(self.cfg)}
        if spec["erb_widths"] is not None:
            spec["erb_widths"] = list(spec["erb_widths"])
        return spec
