"""The one stream protocol: for every DeepFilterNet preset, stream output = offline output,
delayed by a fixed latency; blocks, flush and reset behave the same for any runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mal.inference import TorchStream, run_stream, stream_for
from mal.models import PRESETS, build_model

from conftest import eval_model  # noqa: E402

TOL = 1e-4
DFN_PRESETS = [name for name, (family, _) in PRESETS.items() if family == "deepfilternet"]


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


def offline(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.fixture(scope="module")
def model16():
    return eval_model("deepfilternet_16k")


@pytest.fixture(scope="module")
def signal16() -> np.ndarray:
    return speech_like(3.0, 16000)[: 3 * 16000 - 77]  # not a whole number of hops


def test_every_deepfilternet_preset_is_listed():
    assert {"deepfilternet_16k", "deepfilternet2_arch", "deepfilternet3_arch"} <= set(DFN_PRESETS)


@pytest.mark.parametrize("preset", DFN_PRESETS)
def test_streaming_equals_offline_for_every_preset(preset):
    model = eval_model(preset, seed=1)
    rate = model.sample_rate
    x = speech_like(0.4, rate, seed=1)[: int(0.4 * rate) - 37]
    reference = offline(model, x)
    streamed = run_stream(stream_for(model), torch.from_numpy(x))
    assert streamed.shape == x.shape
    assert np.abs(reference).max() > 1e-3  # not a comparison of two near-zero signals
    assert np.abs(streamed - reference).max() < TOL


def test_latency_is_window_plus_lookahead(model16):
    stream = TorchStream(model16)
    cfg = model16.cfg
    assert stream.latency_samples == cfg.n_fft + cfg.conv_lookahead * cfg.hop == 640  # 40 ms at 16 kHz
    # One hop of the latency is the input block being filled before process() is called.
    assert stream.delay_samples == stream.latency_samples - cfg.hop


def test_stream_output_is_offline_output_delayed(model16, signal16):
    stream = TorchStream(model16)
    hop, delay = stream.hop, stream.delay_samples
    x = signal16[: 100 * hop]
    out = np.concatenate([stream.process(x[i : i + hop]) for i in range(0, len(x), hop)])
    assert out.shape == x.shape
    assert np.abs(out[delay:] - offline(model16, x)[: len(x) - delay]).max() < TOL


def test_flush_returns_the_delayed_tail_and_restarts(model16, signal16):
    stream = TorchStream(model16)
    x = signal16[: 40 * stream.hop]
    reference = offline(model16, x)
    first = np.concatenate((stream.process(x), stream.flush()))
    tail = first[len(x) :]
    assert len(tail) == stream.delay_samples
    assert np.abs(tail - reference[-stream.delay_samples :]).max() < TOL
    second = np.concatenate((stream.process(x), stream.flush()))  # flush left a fresh stream
    np.testing.assert_array_equal(first, second)
    assert len(stream.flush()) == 0  # nothing pending


@pytest.mark.parametrize("length", [1, 159, 161, 2 * 160 + 3, 1617])
def test_arbitrary_lengths(model16, signal16, length):
    x = signal16[:length]
    streamed = run_stream(stream_for(model16), x)
    assert streamed.shape == (length,)
    assert np.abs(streamed - offline(model16, x)).max() < TOL


def test_blocks_of_several_hops_equal_single_hops(model16, signal16):
    x = signal16[: 30 * 160]
    single = TorchStream(model16)
    one = np.concatenate([single.process(x[i : i + 160]) for i in range(0, len(x), 160)])
    np.testing.assert_allclose(TorchStream(model16).process(x), one, atol=1e-6)


def test_run_stream_resets_between_signals(model16, signal16):
    stream = TorchStream(model16)
    stream.process(signal16[:1600])  # a half-processed earlier signal must not leak in
    np.testing.assert_array_equal(run_stream(stream, signal16[:3200]), run_stream(TorchStream(model16), signal16[:3200]))


def test_rejects_bad_input(model16):
    stream = TorchStream(model16)
    with pytest.raises(ValueError, match="multiple of hop"):
        stream.process(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="eval mode"):
        TorchStream(build_model({"preset": "deepfilternet_16k"}).train())
    with pytest.raises(ValueError, match="DeepFilterNet-family"):
        stream_for(build_model({"preset": "demucs_16k"}).eval())


def test_stream_runs_the_model_itself(model16):
    assert TorchStream(model16).model is model16  # no copied weights: the offline definition streams
