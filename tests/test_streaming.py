"""Streaming DFNet: frame-by-frame output equals offline output, delayed by a fixed latency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mal import dsp
from mal.models import DFNet, build_model
from mal.models.dfnet import DFNetEncoder
from mal.streaming import DFNetStream, StreamingDFNet, enhance_streaming, run_stream

from conftest import eval_model  # noqa: E402

TOL = 1e-4


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Voiced harmonics with a gliding pitch and syllable-rate envelope, plus noise and a gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    x = 0.3 * envelope * voiced + 0.03 * rng.standard_normal(len(t))
    x[len(t) // 3 : len(t) // 3 + sample_rate // 10] = 0.0  # digital silence exercises the log floor
    return x.astype(np.float32)


def offline(model: DFNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.fixture(scope="module")
def model16() -> DFNet:
    return eval_model("dfnet_16k")


@pytest.fixture(scope="module")
def signal16() -> np.ndarray:
    return speech_like(3.0, 16000)[: 3 * 16000 - 77]  # not a whole number of hops


def test_streaming_equals_offline_16k(model16, signal16):
    reference = offline(model16, signal16)
    streamed = enhance_streaming(model16, signal16)
    assert streamed.shape == signal16.shape
    assert np.abs(reference).max() > 0.05  # the comparison is not between two near-zero signals
    assert np.abs(streamed - reference).max() < TOL


def test_streaming_equals_offline_48k():
    model = eval_model("dfnet_48k", seed=1)
    x = speech_like(0.4, 48000, seed=1)[:19_000]
    assert np.abs(enhance_streaming(model, torch.from_numpy(x)) - offline(model, x)).max() < TOL


def test_latency_is_window_plus_lookahead(model16):
    stream = DFNetStream(model16)
    cfg = model16.cfg
    assert stream.latency_samples == cfg.n_fft + cfg.lookahead * cfg.hop == 640  # 40 ms at 16 kHz
    # One hop of the latency is the input block being filled before process() is called.
    assert stream.delay_samples == stream.latency_samples - cfg.hop


def test_stream_output_is_offline_output_delayed(model16, signal16):
    stream = DFNetStream(model16)
    hop, delay = stream.hop, stream.delay_samples
    x = signal16[: 100 * hop]
    out = np.concatenate([stream.process(x[i : i + hop]) for i in range(0, len(x), hop)])
    assert out.shape == x.shape
    assert not out[:delay].any()  # before the first output sample exists
    assert np.abs(out[delay:] - offline(model16, x)[: len(x) - delay]).max() < TOL


def test_flush_returns_the_delayed_tail_and_restarts(model16, signal16):
    stream = DFNetStream(model16)
    x = signal16[: 40 * stream.hop]
    reference = offline(model16, x)
    first = np.concatenate((stream.process(x), stream.flush()))
    tail = first[len(x) :]
    assert len(tail) == stream.delay_samples
    assert np.abs(tail - reference[-stream.delay_samples :]).max() < TOL
    second = np.concatenate((stream.process(x), stream.flush()))  # flush left a fresh stream
    np.testing.assert_array_equal(first, second)
    assert len(stream.flush()) == 0  # nothing pending


def _features_keeping_frame_count(self, spec):
    """``DFNetEncoder.features`` with the look-ahead shift done as pad-then-drop.

    The model's slice-then-pad turns T < lookahead frames into ``lookahead`` frames, so its
    offline output for inputs shorter than ``lookahead - 1`` hops is not the causal result.
    """
    feat_erb = dsp.erb_features(spec, self.erb_fb, self.alpha)
    feat_spec = dsp.complex_features(spec, self.cfg.n_df, self.alpha)
    la = self.cfg.lookahead
    return F.pad(feat_erb, (0, 0, 0, la))[:, :, la:], F.pad(feat_spec, (0, 0, 0, la))[:, :, la:]


@pytest.mark.parametrize("length", [1, 159, 161, 2 * 160 + 3, 1617])
def test_arbitrary_lengths(model16, signal16, length, monkeypatch):
    monkeypatch.setattr(DFNetEncoder, "features", _features_keeping_frame_count)
    x = signal16[:length]
    streamed = enhance_streaming(model16, x)
    assert streamed.shape == (length,)
    assert np.abs(streamed - offline(model16, x)).max() < TOL


def test_blocks_of_several_hops_equal_single_hops(model16, signal16):
    x = signal16[: 30 * 160]
    single = DFNetStream(model16)
    one = np.concatenate([single.process(x[i : i + 160]) for i in range(0, len(x), 160)])
    np.testing.assert_allclose(DFNetStream(model16).process(x), one, atol=1e-6)


def test_run_stream_resets_between_signals(model16, signal16):
    stream = DFNetStream(model16)
    stream.process(signal16[:1600])  # a half-processed earlier signal must not leak in
    np.testing.assert_array_equal(run_stream(stream, signal16[:3200]), enhance_streaming(model16, signal16[:3200]))


def test_rejects_bad_input(model16):
    stream = DFNetStream(model16)
    with pytest.raises(ValueError, match="multiple of hop"):
        stream.process(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="eval mode"):
        DFNetStream(build_model({"preset": "dfnet_16k"}).train())
    with pytest.raises(ValueError, match="hop = n_fft / 2"):
        StreamingDFNet(build_model({"n_fft": 320, "hop": 80}))


def test_stream_reuses_the_model_weights(model16):
    step = StreamingDFNet(model16)
    own = {id(p) for p in model16.parameters()}
    assert {id(p) for p in step.parameters()} == own


def test_streaming_equals_offline_with_the_deep_filter_gain_bound(signal16):
    torch.manual_seed(2)
    model = build_model({"preset": "dfnet_16k", "df_gain_bound": True}).eval()
    torch.nn.init.normal_(model.df_decoder.out[0].weight, std=0.5)  # make the bound bite
    reference = offline(model, signal16)
    assert np.abs(enhance_streaming(model, signal16) - reference).max() < TOL
