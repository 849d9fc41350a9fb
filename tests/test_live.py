"""The live stream (mal.inference.stream.LiveStream): any chunk size, any rate, mono; its output,
latency removed, equals offline enhancement (`mal enhance`'s enhance_array)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mal.inference import enhance_array, live_stream
from mal.inference.stream import RATES
from mal.models import build_model

TINY = {"conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}


@pytest.fixture(scope="module", params=["deepfilternet_16k", "deepfilternet3_arch"])
def model(request):
    torch.manual_seed(0)
    return build_model({"preset": request.param, **TINY}).eval()


def _signal(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _run(stream, x: np.ndarray, chunk: int) -> np.ndarray:
    outs = []
    for i in range(0, len(x), chunk):
        piece = x[i : i + chunk]
        out = stream.process(piece)
        assert len(out) == len(piece)  # as many samples out as in, every call
        outs.append(out)
    tail = stream.flush()
    assert len(tail) == stream.latency_samples
    return np.concatenate(outs + [tail])


def _snr(ref: np.ndarray, y: np.ndarray) -> float:
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - y).astype(np.float64) ** 2), 1e-30))


@pytest.mark.parametrize("rate", RATES)
def test_equals_offline_at_every_rate_and_chunk(model, rate):
    x = _signal(rate, 0.45)
    ref = enhance_array(model, x, rate)
    stream = live_stream(model, rate)
    assert stream.latency_samples > 0
    for chunk in (1, 7, 160, 441, 4000, rate):
        if chunk == 1 and rate > 16000:
            continue  # one-sample chunks at every rate would only make the test slow (16 kHz and below have them)
        y = _run(stream, x, chunk)
        assert len(y) == len(x) + stream.latency_samples
        y = y[stream.latency_samples :]
        assert np.all(np.isfinite(y))
        if rate == model.sample_rate:
            assert np.abs(y - ref).max() < 1e-4, (rate, chunk)
        else:
            assert _snr(ref, y) > 40, (rate, chunk, _snr(ref, y))


def test_the_first_latency_samples_are_silence_and_the_stream_restarts(model):
    rate = 16000
    stream = live_stream(model, rate)
    x = _signal(rate, 0.3)
    first = _run(stream, x, 320)
    assert np.all(first[: stream.latency_samples] == 0)
    again = _run(stream, x, 320)  # flush() started a new stream: same input, same output
    assert np.array_equal(first, again)


def test_int16_pcm_bytes_in_and_out(model):
    rate = 24000
    x = _signal(rate, 0.3)
    pcm = np.round(x * 32767).astype("<i2")
    ref = _run(live_stream(model, rate), pcm.astype(np.float32) / 32768.0, 480)
    stream = live_stream(model, rate)
    data = pcm.tobytes()
    outs = [stream.process(data[i : i + 966]) for i in range(0, len(data), 966)]  # 483 samples a chunk
    assert all(isinstance(o, bytes) for o in outs)
    outs.append(stream.flush(pcm=True))
    y = np.frombuffer(b"".join(outs), dtype="<i2")
    assert len(y) == len(x) + stream.latency_samples
    assert np.abs(y.astype(np.float32) / 32768.0 - ref).max() <= 1.0 / 32768 + 1e-6  # rounding only


def test_bad_input_gets_a_clear_error(model):
    stream = live_stream(model, 16000)
    with pytest.raises(ValueError, match="even number of bytes"):
        stream.process(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="mono"):
        stream.process(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="rate"):
        live_stream(model, 0)
