"""On-the-fly mixing: reproducibility, SNR, gain, clipping, resampling, looping, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import mal.data.mixing as mixing
from mal.audio import AudioError
from mal.data import MixtureDataset, active_fraction, collect_audio, read_segment

RATE = 16000
SEGMENT = 0.5  # seconds


def _write(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


def _speechlike(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """Noise bursts of syllable length with short pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + seed), 0, None) + 0.05
    return (0.1 * envelope * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("corpus")
    speech = [_write(root / "speech" / f"s{i}.wav", _speechlike(4.0, i)) for i in range(3)]
    speech.append(_write(root / "speech" / "short.wav", _speechlike(0.3, 9)))
    rng = np.random.default_rng(0)
    noise = [
        _write(root / "noise" / "white.wav", 0.05 * rng.standard_normal(3 * RATE)),
        _write(root / "noise" / "short.wav", 0.2 * rng.standard_normal(RATE // 10)),
        _write(root / "noise" / "hi.wav", 0.02 * rng.standard_normal(2 * 44100), 44100),
    ]
    return speech, noise


def _dataset(corpus, **kwargs) -> MixtureDataset:
    speech, noise = corpus
    kwargs = {"segment_seconds": SEGMENT, "epoch_size": 16, "seed": 7, **kwargs}
    return MixtureDataset(speech, noise, sample_rate=RATE, **kwargs)


def _snr_db(noisy: np.ndarray, clean: np.ndarray) -> float:
    clean64, noise64 = clean.astype(np.float64), (noisy - clean).astype(np.float64)
    return float(10 * np.log10(np.sum(clean64**2) / np.sum(noise64**2)))


def test_items_are_float32_segments(corpus):
    dataset = _dataset(corpus)
    assert len(dataset) == 16
    for i in range(len(dataset)):
        noisy, clean = dataset[i]
        assert noisy.dtype == clean.dtype == torch.float32
        assert noisy.shape == clean.shape == (int(SEGMENT * RATE),)
        assert torch.isfinite(noisy).all() and float(noisy.abs().max()) <= 0.99 + 1e-6
    with pytest.raises(IndexError):
        dataset[16]


def test_same_seed_epoch_index_same_mixture(corpus):
    first, second = _dataset(corpus), _dataset(corpus)
    for i in (0, 5, 15):
        a, b = first[i], second[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    second.set_epoch(3)
    first.set_epoch(3)
    assert torch.equal(first[4][0], second[4][0])


def test_index_epoch_and_seed_change_the_mixture(corpus):
    dataset = _dataset(corpus)
    epoch0 = [dataset[i][0] for i in range(8)]
    assert all(not torch.equal(epoch0[i], epoch0[j]) for i in range(8) for j in range(i))
    dataset.set_epoch(1)
    assert all(not torch.equal(dataset[i][0], epoch0[i]) for i in range(8))
    other_seed = _dataset(corpus, seed=8)
    assert all(not torch.equal(other_seed[i][0], epoch0[i]) for i in range(8))


def test_fixed_ignores_the_epoch(corpus):
    dataset = _dataset(corpus, fixed=True)
    before = [dataset[i][0] for i in range(4)]
    dataset.set_epoch(5)
    assert dataset.epoch == 0
    assert all(torch.equal(dataset[i][0], before[i]) for i in range(4))


def test_measured_snr_matches_the_drawn_snr(corpus):
    dataset = _dataset(corpus, epoch_size=32, snr_range_db=(-5.0, 20.0))
    drawn = []
    for i in range(len(dataset)):
        noisy, clean, params = dataset.mix(i)
        assert params == dataset.mixture_params(i)
        assert abs(_snr_db(noisy, clean) - params.snr_db) < 0.5, params
        drawn.append(params.snr_db)
    assert min(drawn) >= -5.0 and max(drawn) <= 20.0 and np.ptp(drawn) > 10


def test_clean_is_the_speech_crop_times_gain(corpus):
    dataset = _dataset(corpus, epoch_size=12)
    for i in range(len(dataset)):
        _, clean, p = dataset.mix(i)
        crop = read_segment(p.speech, p.speech_start, dataset.segment - p.speech_offset, RATE)
        expected = np.zeros(dataset.segment, np.float32)
        expected[p.speech_offset :] = crop
        scale = 10 ** (p.gain_db / 20) * p.clip_scale
        np.testing.assert_allclose(clean, expected * scale, atol=1e-6)
        assert -6.0 <= p.gain_db <= 6.0


def test_loud_mixtures_are_scaled_below_clipping(corpus):
    dataset = _dataset(corpus, gain_range_db=(30.0, 30.0), snr_range_db=(0.0, 0.0))
    for i in range(8):
        noisy, clean, p = dataset.mix(i)
        assert p.clip_scale < 1.0
        assert np.max(np.abs(noisy)) == pytest.approx(0.99, abs=1e-6)
        assert abs(_snr_db(noisy, clean) - 0.0) < 0.5


def test_44k_noise_is_resampled(tmp_path):
    speech = [_write(tmp_path / "s.wav", _speechlike(2.0, 0))]
    t = np.arange(3 * 44100) / 44100
    noise = [_write(tmp_path / "tone.wav", 0.1 * np.sin(2 * np.pi * 1000 * t), 44100)]
    dataset = MixtureDataset(speech, noise, sample_rate=RATE, segment_seconds=1.0, epoch_size=2)
    noisy, clean = dataset[0]
    spectrum = np.abs(np.fft.rfft((noisy - clean).numpy()))
    assert np.argmax(spectrum) * RATE / len(noisy) == pytest.approx(1000, abs=2)


def test_short_noise_is_looped(tmp_path):
    speech = [_write(tmp_path / "s.wav", _speechlike(2.0, 0))]
    period = RATE // 10
    noise = [_write(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(period) * 0.1)]
    dataset = MixtureDataset(speech, noise, sample_rate=RATE, segment_seconds=1.0, epoch_size=2)
    noisy, clean = dataset[1]
    added = (noisy - clean).numpy()
    assert np.std(added) > 0
    np.testing.assert_allclose(added[period:], added[:-period], atol=1e-6)


def test_short_speech_is_zero_padded(tmp_path):
    speech = [_write(tmp_path / "s.wav", 0.1 * np.ones(RATE // 10))]
    noise = [_write(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(RATE) * 0.1)]
    dataset = MixtureDataset(speech, noise, sample_rate=RATE, segment_seconds=1.0, epoch_size=4)
    for i in range(4):
        _, clean, p = dataset.mix(i)
        assert np.count_nonzero(clean) == RATE // 10
        assert np.all(clean[p.speech_offset : p.speech_offset + RATE // 10] != 0)


def test_silent_speech_gives_finite_audio(tmp_path):
    speech = [_write(tmp_path / "s.wav", np.zeros(RATE))]
    noise = [_write(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(RATE) * 0.1)]
    noisy, clean = MixtureDataset(speech, noise, sample_rate=RATE, segment_seconds=0.5, epoch_size=1)[0]
    assert torch.isfinite(noisy).all() and torch.all(clean == 0) and float(noisy.abs().max()) > 0


def test_crops_prefer_speech_over_silence(tmp_path):
    # 9 s of silence, then 3 s of speech: a blind crop of 1 s has speech ~27 % of the time
    samples = np.concatenate([np.zeros(9 * RATE, np.float32), _speechlike(3.0, 1)])
    speech = [_write(tmp_path / "s.wav", samples)]
    noise = [_write(tmp_path / "n.wav", np.random.default_rng(1).standard_normal(RATE) * 0.1)]
    dataset = MixtureDataset(speech, noise, sample_rate=RATE, segment_seconds=1.0, epoch_size=40)
    active = [active_fraction(dataset.mix(i)[1], RATE) >= 0.5 for i in range(40)]
    assert np.mean(active) > 0.55


def test_only_the_segment_is_read(corpus, monkeypatch):
    spans = []
    real_read = mixing.sf.read

    def spy(path, *args, start=0, stop=None, **kwargs):
        spans.append(stop - start)
        return real_read(path, *args, start=start, stop=stop, **kwargs)

    monkeypatch.setattr(mixing.sf, "read", spy)
    speech, noise = corpus
    dataset = MixtureDataset(speech[:3], noise[:1], sample_rate=RATE, segment_seconds=SEGMENT, epoch_size=4)
    for i in range(4):
        dataset[i]
    assert spans and max(spans) == int(SEGMENT * RATE)


def test_dataloader_workers_match_single_process(corpus):
    dataset = _dataset(corpus, epoch_size=8)
    single = torch.cat([noisy for noisy, _ in DataLoader(dataset, batch_size=4, num_workers=0)])
    multi = torch.cat([noisy for noisy, _ in DataLoader(dataset, batch_size=2, num_workers=2)])
    assert torch.equal(single, multi)
    assert all(not torch.equal(multi[i], multi[j]) for i in range(8) for j in range(i))


def test_persistent_workers_see_set_epoch(corpus):
    dataset = _dataset(corpus, epoch_size=4)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    epoch0 = next(iter(loader))[0]
    dataset.set_epoch(1)
    epoch1 = next(iter(loader))[0]
    expected = torch.stack([dataset[i][0] for i in range(4)])
    assert torch.equal(epoch1, expected) and not torch.equal(epoch0, epoch1)


def test_invalid_arguments(corpus):
    speech, noise = corpus
    with pytest.raises(AudioError, match="no noise"):
        MixtureDataset(speech, [])
    with pytest.raises(ValueError, match="snr_range_db"):
        MixtureDataset(speech, noise, snr_range_db=(10, 0))
    assert len(MixtureDataset(speech, noise)) == len(speech)


def test_collect_audio_walks_folders(tmp_path):
    for name in ("b/x.flac", "a/y.wav", "a/deep/z.ogg", "a/notes.txt", "a/.hidden/h.wav", "top.WAV"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    expected = ["a/deep/z.ogg", "a/y.wav", "b/x.flac", "top.WAV"]
    assert collect_audio(tmp_path) == [tmp_path / name for name in expected]
    expected = ["b/x.flac", "a/deep/z.ogg", "a/y.wav"]
    assert collect_audio([tmp_path / "b", tmp_path / "a"]) == [tmp_path / name for name in expected]
    with pytest.raises(AudioError, match="not a directory"):
        collect_audio([tmp_path / "missing"])


def test_mixing_real_speech_and_noise(shared_data):
    speech = collect_audio(shared_data / "librispeech-train-clean-100-subset" / "clean")[:20]
    noise = collect_audio([shared_data / "noise-real", shared_data / "noise-extra"])
    dataset = MixtureDataset(speech, noise, segment_seconds=2.0, epoch_size=6)
    for i in range(len(dataset)):
        noisy, clean, params = dataset.mix(i)
        assert noisy.shape == (32000,) and np.isfinite(noisy).all()
        assert abs(_snr_db(noisy, clean) - params.snr_db) < 0.5
