"""Frame-by-frame DFNet inference with carried state: one hop in, one hop out.

:class:`StreamingDFNet` is one streaming step as a pure function of (frame, states) built
from the model's own modules (no copied weights); it is also the graph that
:mod:`mal.export` writes to ONNX. Complex numbers are carried as (re, im) pairs and the
FFTs are matrix products so the same code runs in torch and in onnxruntime.

Timing: network frame ``t`` needs spectrum frame ``t + lookahead``, so it runs at input
block ``s = t + lookahead``; it completes output samples ``[(t-1) hop, t hop)``. The output
stream is therefore the offline output delayed by ``delay_samples = (lookahead + 1) * hop``,
and the algorithmic latency (window + look-ahead, counting the input block being filled)
is ``latency_samples = n_fft + lookahead * hop = delay_samples + hop``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from mal.models.dfnet import DFNet, bound_taps
from mal.models.layers import GroupedGRU, GroupedLinear

STATE_NAMES = (
    "analysis", "erb_norm", "spec_norm", "erb_conv_buf", "df_conv_buf",
    "emb_gru", "erb_gru", "df_gru", "spec_buf", "ola",
)
# The offline network sees zeros before its first frame, so these restart once the
# look-ahead frames have filled the spectrum buffer and the normalisation states.
NETWORK_STATES = ("erb_conv_buf", "df_conv_buf", "emb_gru", "erb_gru", "df_gru", "ola")


def _without_time_pad(conv: nn.Sequential) -> nn.Sequential:
    """The conv stack minus its leading causal time pad (the stream supplies past frames)."""
    return nn.Sequential(*list(conv)[1:]) if conv.time_kernel > 1 else conv


def grouped_linear(layer: GroupedLinear, x: Tensor) -> Tensor:
    """``layer(x)`` for ``x`` (B, I) as (batched) MatMul: ONNX Runtime's Einsum is slow."""
    if layer.groups == 1:
        return x @ layer.weight[0] + layer.bias
    parts = x.view(x.shape[0], layer.groups, -1).transpose(0, 1) @ layer.weight  # (G, B, O/G)
    return parts.transpose(0, 1).reshape(x.shape[0], -1) + layer.bias


def linear_stack(stack: nn.Sequential, x: Tensor) -> Tensor:
    """``stack(x)`` for one frame, with its GroupedLinear layers run by :func:`grouped_linear`."""
    for layer in stack:
        x = grouped_linear(layer, x) if isinstance(layer, GroupedLinear) else layer(x)
    return x


def grouped_gru_step(gru: GroupedGRU, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One time step of ``gru`` for ``x`` (B, I): every group of a layer in one batched MatMul.

    ``state`` (layers*groups, B, H/groups) as :class:`GroupedGRU` lays it out.
    """
    groups, batch = gru.groups, x.shape[0]
    new_state = []
    for layer in range(gru.layers):
        cells = gru.grus[layer * groups : (layer + 1) * groups]
        h = state[layer * groups : (layer + 1) * groups]  # (G, B, H/G)
        if groups == 1:
            w_ih, w_hh = cells[0].weight_ih_l0.t()[None], cells[0].weight_hh_l0.t()[None]
            b_ih, b_hh = cells[0].bias_ih_l0[None, None], cells[0].bias_hh_l0[None, None]
        else:
            w_ih = torch.stack([c.weight_ih_l0.t() for c in cells])
            w_hh = torch.stack([c.weight_hh_l0.t() for c in cells])
            b_ih = torch.stack([c.bias_ih_l0 for c in cells])[:, None]
            b_hh = torch.stack([c.bias_hh_l0 for c in cells])[:, None]
        gx = x.view(batch, groups, -1).transpose(0, 1) @ w_ih + b_ih  # (G, B, 3H/G), gates r, z, n
        gh = h @ w_hh + b_hh
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)
        new_state.append(h)
        x = h.transpose(0, 1).reshape(batch, -1)
        if groups > 1 and layer < gru.layers - 1:  # GroupedGRU interleaves groups between layers
            x = x.view(batch, groups, -1).transpose(1, 2).reshape(batch, -1)
    return x, torch.cat(new_state, dim=0)


def _dft_matrices(window: Tensor, n_fft: int) -> tuple[Tensor, Tensor]:
    """(analysis (n_fft, 2F), synthesis (2F, n_fft)) real matrices with the window folded in."""
    n_bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_bins, dtype=torch.float64)
    angle = 2 * math.pi * n[:, None] * k[None, :] / n_fft  # (n_fft, F)
    w = window.double()[:, None]
    analysis = torch.cat((w * torch.cos(angle), -w * torch.sin(angle)), dim=1)
    weight = torch.full((n_bins,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    weight[-1] = 1.0  # n_fft is even: the Nyquist bin appears once
    synthesis = torch.cat((weight[:, None] * torch.cos(angle.T), -weight[:, None] * torch.sin(angle.T)), dim=0)
    synthesis = synthesis / n_fft * window.double()[None, :]
    return analysis.float(), synthesis.float()


class StreamingDFNet(nn.Module):
    """One streaming step of a :class:`DFNet`: ``forward(frame, valid, *states) -> (out, *states)``.

    ``frame`` (B, hop) is the next input block, ``valid`` (1,) is 1 for real input and 0 for
    the flush steps (zero features and spectrum, as the offline model pads at the end).
    """

    def __init__(self, model: DFNet):
        super().__init__()
        if not isinstance(model, DFNet):
            raise ValueError(f"streaming and export support DFNet models, got {type(model).__name__}")
        cfg = model.cfg
        if cfg.n_fft != 2 * cfg.hop:
            raise ValueError(f"streaming needs hop = n_fft / 2, got n_fft={cfg.n_fft}, hop={cfg.hop}")
        self.model = model
        self.cfg = cfg
        enc = model.encoder
        self.erb_conv0 = _without_time_pad(enc.erb_conv0)
        self.df_conv0 = _without_time_pad(enc.df_conv0)
        self.conv_context = (enc.erb_conv0.time_kernel - 1, enc.df_conv0.time_kernel - 1)
        self.spec_frames = max(cfg.df_order, cfg.lookahead + 1)
        analysis, synthesis = _dft_matrices(enc.window, cfg.n_fft)
        self.register_buffer("analysis", analysis, persistent=False)
        self.register_buffer("synthesis", synthesis, persistent=False)

    @property
    def delay_samples(self) -> int:
        """Output index shift: ``stream_out[n + delay] == offline_out[n]``."""
        return (self.cfg.lookahead + 1) * self.cfg.hop

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: window + look-ahead."""
        return self.cfg.n_fft + self.cfg.lookahead * self.cfg.hop

    def initial_states(self, batch: int = 1) -> dict[str, Tensor]:
        """The state before the first frame, keyed by :data:`STATE_NAMES`."""
        cfg, m = self.cfg, self.model
        device = self.analysis.device

        def gru_state(gru) -> Tensor:
            return torch.zeros(gru.layers * gru.groups, batch, gru.hidden // gru.groups, device=device)

        n_bins = cfg.n_fft // 2 + 1
        return {
            "analysis": torch.zeros(batch, cfg.n_fft - cfg.hop, device=device),
            # The same initial means as dsp.erb_features / dsp.complex_features.
            "erb_norm": torch.linspace(-60.0, -90.0, cfg.n_erb, device=device).expand(batch, -1).clone(),
            "spec_norm": torch.linspace(1e-3, 1e-4, cfg.n_df, device=device).expand(batch, -1).clone(),
            "erb_conv_buf": torch.zeros(batch, 1, self.conv_context[0], cfg.n_erb, device=device),
            "df_conv_buf": torch.zeros(batch, 2, self.conv_context[1], cfg.n_df, device=device),
            "emb_gru": gru_state(m.encoder.emb_gru),
            "erb_gru": gru_state(m.erb_decoder.gru),
            "df_gru": gru_state(m.df_decoder.gru),
            "spec_buf": torch.zeros(batch, self.spec_frames, n_bins, 2, device=device),
            "ola": torch.zeros(batch, cfg.n_fft - cfg.hop, device=device),
        }

    def forward(self, frame: Tensor, valid: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        cfg, enc = self.cfg, self.model.encoder
        analysis, erb_norm, spec_norm, erb_buf, df_buf, emb_h, erb_h, df_h, spec_buf, ola = states
        n_bins, n_df, alpha = cfg.n_fft // 2 + 1, cfg.n_df, enc.alpha

        # Analysis: one windowed rfft as a matrix product.
        samples = torch.cat((analysis, frame), dim=1)
        spec = (samples @ self.analysis) * valid
        re, im = spec[:, :n_bins], spec[:, n_bins:]

        # Features with their exponential-mean normalisation (dsp.erb_features/complex_features).
        db = 10 * torch.log10((re * re + im * im) @ enc.erb_fb + 1e-10)
        erb_norm = alpha * erb_norm + (1 - alpha) * db
        feat_erb = ((db - erb_norm) / 40.0 * valid)[:, None, None, :]  # (B, 1, 1, E)
        low_re, low_im = re[:, :n_df], im[:, :n_df]
        spec_norm = alpha * spec_norm + (1 - alpha) * torch.sqrt(low_re * low_re + low_im * low_im + 1e-12)
        scale = valid / torch.sqrt(spec_norm)
        feat_spec = torch.stack((low_re * scale, low_im * scale), dim=1)[:, :, None, :]  # (B, 2, 1, n_df)

        # Encoder; the kernel-3 input convs see their last frames from the buffers.
        erb_in = torch.cat((erb_buf, feat_erb), dim=2)
        df_in = torch.cat((df_buf, feat_spec), dim=2)
        e0 = self.erb_conv0(erb_in)
        e1 = enc.erb_conv1(e0)
        e2 = enc.erb_conv2(e1)
        e3 = enc.erb_conv3(e2)
        c0 = self.df_conv0(df_in)
        c1 = enc.df_conv1(c0)
        emb = e3.permute(0, 2, 3, 1).flatten(1) + linear_stack(enc.df_fc_emb, c1.permute(0, 2, 3, 1).flatten(1))
        emb, emb_h = grouped_gru_step(enc.emb_gru, emb, emb_h)

        gains, erb_h = self._erb_gains(emb, erb_h, e0, e1, e2, e3)
        coef_re, coef_im, df_h = self._df_coefs(emb, df_h, c0)

        # Spectrum ring buffer: the newest frame is s = t + lookahead.
        spec_buf = torch.cat((spec_buf[:, 1:], torch.stack((re, im), dim=-1)[:, None]), dim=1)
        current = spec_buf[:, self.spec_frames - 1 - cfg.lookahead]  # X[t], (B, F, 2)
        taps = spec_buf[:, self.spec_frames - cfg.df_order :, :n_df]  # X[t-(order-1-la) .. t+la]
        x_re, x_im = taps[..., 0], taps[..., 1]
        low_out_re = (x_re * coef_re - x_im * coef_im).sum(1)
        low_out_im = (x_re * coef_im + x_im * coef_re).sum(1)
        out_re = torch.cat((low_out_re, current[:, n_df:, 0] * gains[:, n_df:]), dim=1)
        out_im = torch.cat((low_out_im, current[:, n_df:, 1] * gains[:, n_df:]), dim=1)

        # Synthesis and overlap-add (hop = n_fft / 2: no window-sum normalisation).
        frame_out = torch.cat((out_re, out_im), dim=1) @ self.synthesis
        out = ola + frame_out[:, : cfg.hop]
        return (
            out, samples[:, cfg.hop :], erb_norm, spec_norm, erb_in[:, :, 1:], df_in[:, :, 1:],
            emb_h, erb_h, df_h, spec_buf, frame_out[:, cfg.hop :],
        )

    def _erb_gains(
        self, emb: Tensor, h: Tensor, e0: Tensor, e1: Tensor, e2: Tensor, e3: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One frame of ``ErbDecoder.forward`` -> per-bin gains (B, F) and the GRU state."""
        dec = self.model.erb_decoder
        b, c, t, f4 = e3.shape
        x, h = grouped_gru_step(dec.gru, emb, h)
        x = linear_stack(dec.fc, x).view(b, t, f4, c).permute(0, 3, 1, 2)
        d3 = dec.convt3(dec.conv3p(e3) + x)
        d2 = dec.convt2(dec.conv2p(e2) + d3)
        d1 = dec.convt1(dec.conv1p(e1) + d2)
        gains = dec.conv0_out(dec.conv0p(e0) + d1)  # (B, 1, 1, E)
        return gains[:, 0, 0] @ self.model.encoder.erb_inv, h

    def _df_coefs(self, emb: Tensor, h: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One frame of ``DfDecoder.forward`` -> taps (re, im) (B, order, n_df) in buffer order."""
        dec, cfg = self.model.df_decoder, self.cfg
        x, h = grouped_gru_step(dec.gru, emb, h)
        x = x + grouped_linear(dec.skip, emb)
        coefs = linear_stack(dec.out, x).view(-1, cfg.n_df, 2 * cfg.df_order)
        coefs = coefs + dec.convp(c0).permute(0, 2, 3, 1)[:, 0]
        coefs = coefs.view(-1, cfg.n_df, cfg.df_order, 2) + dec.identity_tap
        if cfg.df_gain_bound:
            coefs = bound_taps(coefs)
        # Tap k of the buffer (X[t-(order-1-la)+k]) takes coefficient order-1-k.
        coefs = coefs.flip(2).transpose(1, 2)
        return coefs[..., 0], coefs[..., 1], h


class FrameStream:
    """Stream protocol shared by the torch and ONNX runners: ``process(frame)``, ``flush()``.

    Output block ``k`` of the stream is offline output block ``k - delay_samples / hop``;
    the first ``delay_samples`` are zeros and ``flush()`` returns the last ``delay_samples``.
    """

    hop: int
    lookahead: int
    delay_samples: int
    latency_samples: int
    sample_rate: int

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Start a new signal."""
        self._states = self._initial_states()
        self._steps = 0

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Enhance the next block (a multiple of ``hop`` samples, normally one hop)."""
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if len(frame) % self.hop:
            raise ValueError(f"process() takes a multiple of hop={self.hop} samples, got {len(frame)}")
        blocks = [self._advance(frame[i : i + self.hop], 1.0) for i in range(0, len(frame), self.hop)]
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)

    def flush(self) -> np.ndarray:
        """End the signal: the remaining ``delay_samples`` of output; the stream restarts."""
        if self._steps == 0:
            return np.zeros(0, dtype=np.float32)
        zeros = np.zeros(self.hop, dtype=np.float32)
        tail = [self._advance(zeros, 0.0) for _ in range(self.lookahead)]
        tail.append(self._ola_tail())
        self.reset()
        return np.concatenate(tail)

    def _advance(self, frame: np.ndarray, valid: float) -> np.ndarray:
        out = self._step(frame, valid)
        self._steps += 1
        if self._steps == self.lookahead:
            self._reset_network_states()
        # Steps before the first network frame, and the first one (it ends at sample 0).
        return out if self._steps > self.lookahead + 1 else np.zeros(self.hop, dtype=np.float32)

    def _initial_states(self):
        raise NotImplementedError

    def _step(self, frame: np.ndarray, valid: float) -> np.ndarray:
        raise NotImplementedError

    def _reset_network_states(self) -> None:
        raise NotImplementedError

    def _ola_tail(self) -> np.ndarray:
        raise NotImplementedError


class DFNetStream(FrameStream):
    """Real-time PyTorch stream over a DFNet in eval mode: ``process(hop samples) -> hop samples``."""

    def __init__(self, model: DFNet):
        if model.training:
            raise ValueError("streaming runs the model in eval mode: call model.eval() first")
        self.step_module = StreamingDFNet(model)
        cfg = model.cfg
        self.hop, self.lookahead, self.sample_rate = cfg.hop, cfg.lookahead, cfg.sample_rate
        self.delay_samples = self.step_module.delay_samples
        self.latency_samples = self.step_module.latency_samples
        self._one, self._zero = torch.ones(1), torch.zeros(1)
        super().__init__()

    def _initial_states(self) -> list[Tensor]:
        return list(self.step_module.initial_states().values())

    @torch.inference_mode()
    def _step(self, frame: np.ndarray, valid: float) -> np.ndarray:
        x = torch.from_numpy(frame).to(self.step_module.analysis.device)[None]
        out, *self._states = self.step_module(x, self._one if valid else self._zero, *self._states)
        return out[0].cpu().numpy()

    def _reset_network_states(self) -> None:
        initial = self.step_module.initial_states()
        for i, name in enumerate(STATE_NAMES):
            if name in NETWORK_STATES:
                self._states[i] = initial[name]

    def _ola_tail(self) -> np.ndarray:
        return self._states[STATE_NAMES.index("ola")][0].cpu().numpy()


def run_stream(stream: FrameStream, samples: np.ndarray) -> np.ndarray:
    """Run ``samples`` (any length) through ``stream``; the result lines up with offline output."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = len(samples)
    padded = np.pad(samples, (0, -n % stream.hop))
    stream.reset()
    out = np.concatenate((stream.process(padded), stream.flush()))
    return out[stream.delay_samples : stream.delay_samples + n]


def enhance_streaming(model: DFNet, samples: np.ndarray | Tensor) -> np.ndarray:
    """Enhance a 1-D signal through :class:`DFNetStream`, delay removed: equals ``model(samples)``."""
    if isinstance(samples, Tensor):
        samples = samples.detach().cpu().numpy()
    return run_stream(DFNetStream(model), samples)


def stream_for(model) -> FrameStream:
    """The frame stream of ``model``: :class:`DFNetStream`, or the DeepFilterNet one (same API)."""
    from mal.models.deepfilternet import DeepFilterNet, DeepFilterNetStream

    if isinstance(model, DeepFilterNet):
        return DeepFilterNetStream(model)
    return DFNetStream(model)
