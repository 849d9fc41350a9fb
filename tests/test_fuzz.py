"""Property tests (hypothesis): the audio reader, the pairing logic, streaming/offline equality.

Few examples each (the suite runs on 2 shared cores); ``derandomize`` keeps CI reproducible.
"""

from __future__ import annotations

import io
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mal.audio import AudioError, check_audio_file, read_audio, write_audio
from mal.data import find_pairs
from mal.inference import enhance_array, enhance_blocks, enhance_file
from mal.models import build_model
from mal.inference import run_stream, stream_for

FUZZ = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TINY = {"preset": "deepfilternet_16k", "conv_ch": 8, "emb_hidden": 32, "df_hidden": 32}


@pytest.fixture(scope="module")
def model():
    """The tiny DeepFilterNet with every path active: random BatchNorm statistics and deep-filter weights."""
    torch.manual_seed(0)
    net = build_model(TINY)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    torch.nn.init.normal_(net.df_decoder.df_out.weight, std=0.1)  # zero-initialised: make it matter
    return net.eval()


def _wav_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


VALID = [_wav_bytes(np.linspace(-0.5, 0.5, n, dtype=np.float32), rate, fmt, subtype)
         for n, rate, fmt, subtype in [(400, 16000, "WAV", "PCM_16"), (300, 8000, "WAV", "FLOAT"),
                                       (500, 44100, "FLAC", "PCM_24"), (200, 16000, "WAV", "PCM_U8")]]


@st.composite
def damaged_files(draw) -> tuple[str, bytes]:
    """Valid files cut short or with bytes overwritten, and arbitrary bytes, under audio names."""
    kind = draw(st.sampled_from(["cut", "flip", "random"]))
    if kind == "random":
        data = draw(st.binary(max_size=600))
    else:
        data = bytearray(draw(st.sampled_from(VALID)))
        if kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        else:
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = bytes(data)
    name = draw(st.sampled_from(["x.wav", "x.flac", "x.ogg"]))
    return name, data


@FUZZ
@given(damaged_files())
def test_reader_gives_finite_audio_or_a_one_line_error_naming_the_file(model, sample):
    name, data = sample
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            samples, rate = read_audio(path)
        except AudioError as err:
            message = str(err)
            assert message.startswith(f"{path}: ") and "\n" not in message
            with pytest.raises(AudioError):  # enhance refuses it too, leaving nothing behind
                enhance_file(model, path, Path(tmp) / "out" / name)
            assert not (Path(tmp) / "out").exists() or not any((Path(tmp) / "out").iterdir())
            return
        assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
        assert np.isfinite(samples).all() and rate > 0
        check_audio_file(path)  # the training-data check agrees
        out = Path(tmp) / "out" / name
        enhance_file(model, path, out)
        assert sf.info(str(out)).frames == len(samples) and sorted(p.name for p in out.parent.iterdir()) == [name]


@FUZZ
@given(
    n=st.integers(1, 3000),
    channels=st.integers(1, 6),
    rate=st.sampled_from([8000, 16000, 44100, 96000]),
    target=st.sampled_from([("x.wav", "PCM_U8", 1 / 64), ("x.wav", "PCM_16", 1e-4), ("x.wav", "PCM_24", 1e-6),
                            ("x.wav", "FLOAT", 0), ("x.wav", "DOUBLE", 0), ("x.flac", "PCM_S8", 1 / 64),
                            ("x.flac", "PCM_24", 1e-6)]),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 2.0),
)
def test_write_then_read_round_trips(n, channels, rate, target, seed, scale):
    name, subtype, tolerance = target
    x = (scale * np.random.default_rng(seed).uniform(-1, 1, (n, channels))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write_audio(path, x, rate, subtype=subtype)
        assert [p.name for p in Path(tmp).iterdir()] == [name]  # no temporary file left
        y, read_rate = read_audio(path, mono=False)
        assert read_rate == rate and y.shape == (n, channels) and sf.info(str(path)).subtype == subtype
        expected = x if subtype in ("FLOAT", "DOUBLE") else np.clip(x, -1, 1)
        np.testing.assert_allclose(y, expected, atol=tolerance + 1e-7)


STEMS = ["p232_001", "p232_002", "a", "b_1", "clean_fileid_3", "book_07_fileid_3", "fileid_03", "noisy_fileid_7",
         "clean_fileid_7", "x_fileid_12", "y_fileid_12", "z_fileid_12"]


@FUZZ
@given(clean=st.sets(st.sampled_from(STEMS), max_size=8), noisy=st.sets(st.sampled_from(STEMS), max_size=8))
def test_pairing_properties(clean, noisy):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder, stems in (("clean", clean), ("noisy", noisy)):
            (root / folder).mkdir()
            for stem in stems:
                sf.write(root / folder / f"{stem}.wav", np.zeros(16, np.float32), 16000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pairs = find_pairs(root / "clean", root / "noisy")
            except AudioError as err:
                assert "no clean/noisy pairs" in str(err) and not clean & noisy
                return
        fileid = lambda stem: (re.findall(r"fileid_(\d+)", stem) or [None])[-1]  # noqa: E731
        used_clean = [p.clean.stem for p in pairs]
        used_noisy = [p.noisy.stem for p in pairs]
        assert all(p.clean.parent.name == "clean" and p.noisy.parent.name == "noisy" for p in pairs)
        assert len(set(used_clean)) == len(used_clean) and len(set(used_noisy)) == len(used_noisy)  # no file twice
        assert [p.name for p in pairs] == sorted(p.name for p in pairs) and len({p.name for p in pairs}) == len(pairs)
        assert clean & noisy <= set(used_clean) & set(used_noisy)  # equal names always pair with each other
        for pair in pairs:
            c, n = pair.clean.stem, pair.noisy.stem
            assert c == n or (c not in noisy and n not in clean and fileid(c) is not None
                              and int(fileid(c)) == int(fileid(n)))
        unpaired = (clean - set(used_clean)) | (noisy - set(used_noisy))
        message = " ".join(str(w.message) for w in caught)
        assert all(f"{stem}.wav" in message for stem in unpaired)
        assert bool(unpaired) == ("without a partner" in message)


@FUZZ
@given(length=st.integers(1, 4000), seed=st.integers(0, 2**16), amplitude=st.floats(1e-4, 1.0),
       kind=st.sampled_from(["noise", "tone", "burst"]))
def test_streaming_equals_offline(model, length, seed, amplitude, kind):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000
    x = {"noise": rng.standard_normal(length), "tone": np.sin(2 * np.pi * rng.uniform(50, 7000) * t),
         "burst": rng.standard_normal(length) * (np.arange(length) > length // 2)}[kind]
    x = (amplitude * x).astype(np.float32)
    with torch.no_grad():
        offline = model(torch.from_numpy(x)[None])[0].numpy()
    streamed = run_stream(stream_for(model), x)
    assert streamed.shape == x.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-5 + 1e-4 * np.abs(offline).max())


@FUZZ
@given(length=st.integers(1, 24000), rate=st.sampled_from([16000, 22050, 8000]), seed=st.integers(0, 2**16),
       chunk=st.floats(0.05, 0.6), context=st.floats(0.0, 0.2), fade=st.floats(0.0, 0.05),
       cuts=st.lists(st.integers(1, 5000), max_size=6))
def test_file_streaming_is_independent_of_block_boundaries(model, length, rate, seed, chunk, context, fade, cuts):
    """enhance_file reads blocks of any size: the output equals the one-block (in-memory) result."""
    x = (0.3 * np.random.default_rng(seed).standard_normal((length, 2))).astype(np.float32)
    options = dict(chunk_seconds=chunk, context_seconds=context, crossfade_seconds=fade)
    whole = enhance_array(model, x, rate, **options)
    edges = sorted({0, length, *(c for c in np.cumsum(cuts) if c < length)})
    blocks = [x[a:b] for a, b in zip(edges[:-1], edges[1:])]
    pieces = list(enhance_blocks(model, blocks, rate, 2, **options))
    streamed = np.concatenate(pieces) if pieces else np.zeros((0, 2), np.float32)
    n = min(len(streamed), length)
    assert abs(len(streamed) - length) <= 1
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-6)
