"""Pairing of clean/noisy folders and the paired dataset."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mal.audio import AudioError
from mal.data import Pair, PairedDataset, find_pairs, find_pairs_in

RATE = 16000


def _write(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "FLOAT" if path.suffix == ".wav" else None  # FLAC holds integer PCM only
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype=subtype)
    return path


def _tone(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _folders(root: Path, clean_names, noisy_names, n: int = 800) -> tuple[Path, Path]:
    for name in clean_names:
        _write(root / "clean" / name, _tone(n))
    for name in noisy_names:
        _write(root / "noisy" / name, _tone(n, 1))
    return root / "clean", root / "noisy"


def test_pairs_by_equal_stem_sorted(tmp_path):
    clean, noisy = _folders(tmp_path, ["b.wav", "a.wav"], ["a.wav", "b.wav"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairs = find_pairs(clean, noisy)
    assert pairs == [Pair("a", clean / "a.wav", noisy / "a.wav"), Pair("b", clean / "b.wav", noisy / "b.wav")]


def test_dns_names_pair_by_fileid(tmp_path):
    clean, noisy = _folders(
        tmp_path,
        ["clean_fileid_12.wav", "clean_fileid_3.wav"],
        ["book_00001_chp_0002_reader_00003_5_snr10_fileid_12.wav", "book_x_snr0_fileid_3.wav"],
    )
    pairs = find_pairs(clean, noisy)
    assert [(p.name, p.clean.name, p.noisy.name) for p in pairs] == [
        ("fileid_12", "clean_fileid_12.wav", "book_00001_chp_0002_reader_00003_5_snr10_fileid_12.wav"),
        ("fileid_3", "clean_fileid_3.wav", "book_x_snr0_fileid_3.wav"),
    ]


def test_unpaired_files_are_named_in_a_warning(tmp_path):
    clean, noisy = _folders(tmp_path, ["a.wav", "only_clean.wav"], ["a.wav", "only_noisy.flac"])
    with pytest.warns(UserWarning, match="2 file") as record:
        pairs = find_pairs(clean, noisy)
    assert [p.name for p in pairs] == ["a"]
    message = str(record[0].message)
    assert "only_clean.wav" in message and "only_noisy.flac" in message


def test_many_unpaired_files_are_counted(tmp_path):
    clean, noisy = _folders(tmp_path, ["a.wav"] + [f"c{i:02d}.wav" for i in range(15)], ["a.wav"], n=100)
    with pytest.warns(UserWarning, match="15 file") as record:
        find_pairs(clean, noisy)
    message = str(record[0].message)
    assert "c00.wav" in message and "c14.wav" not in message and "and 5 more" in message


def test_length_mismatch_over_four_samples_names_the_pair(tmp_path):
    _write(tmp_path / "clean" / "ok.wav", _tone(1000))
    _write(tmp_path / "noisy" / "ok.wav", _tone(1004))
    _write(tmp_path / "clean" / "bad.wav", _tone(1000))
    _write(tmp_path / "noisy" / "bad.wav", _tone(1010))
    with pytest.raises(AudioError, match="pair bad") as info:
        find_pairs(tmp_path / "clean", tmp_path / "noisy")
    assert "1000" in str(info.value) and "1010" in str(info.value)


def test_length_check_compares_at_a_common_rate(tmp_path):
    _write(tmp_path / "clean" / "x.wav", _tone(16000), 16000)
    _write(tmp_path / "noisy" / "x.wav", _tone(44100), 44100)
    assert len(find_pairs(tmp_path / "clean", tmp_path / "noisy")) == 1


def test_no_pairs_is_a_one_line_error_naming_both_folders(tmp_path):
    clean, noisy = _folders(tmp_path, ["a.wav"], ["b.wav"])
    with pytest.raises(AudioError) as info:
        find_pairs(clean, noisy)
    message = str(info.value)
    assert str(clean) in message and str(noisy) in message and "\n" not in message


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(AudioError, match="not a directory"):
        find_pairs(tmp_path / "nope", tmp_path)


def test_two_files_with_one_stem_are_an_error(tmp_path):
    clean, noisy = _folders(tmp_path, ["a.wav", "a.flac"], ["a.wav"])
    with pytest.raises(AudioError, match="two files named a"):
        find_pairs(clean, noisy)


@pytest.mark.parametrize(
    "clean_name, noisy_name",
    [
        ("clean", "noisy"),
        ("clean_testset_wav", "noisy_testset_wav"),
        ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    ],
)
def test_find_pairs_in_detects_layout(tmp_path, clean_name, noisy_name):
    _write(tmp_path / clean_name / "p232_001.wav", _tone(500))
    _write(tmp_path / noisy_name / "p232_001.wav", _tone(500))
    pairs = find_pairs_in(tmp_path)
    assert [(p.name, p.clean.parent.name, p.noisy.parent.name) for p in pairs] == [("p232_001", clean_name, noisy_name)]


def test_find_pairs_in_without_or_with_several_layouts(tmp_path):
    with pytest.raises(AudioError, match="no paired folders"):
        find_pairs_in(tmp_path)
    for folder in ("clean_testset_wav", "noisy_testset_wav", "clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"):
        _write(tmp_path / folder / "x.wav", _tone(100))
    with pytest.raises(AudioError, match="several paired layouts"):
        find_pairs_in(tmp_path)


def _ramp_pair(root: Path, n: int, rate: int = RATE) -> Pair:
    ramp = np.arange(n, dtype=np.float32) / n * 0.5
    return Pair("r", _write(root / "clean" / "r.wav", ramp, rate), _write(root / "noisy" / "r.wav", ramp + 0.25, rate))


def test_paired_dataset_whole_file_is_noisy_then_clean(tmp_path):
    pair = _ramp_pair(tmp_path, 1000)
    noisy, clean = PairedDataset([pair], RATE)[0]
    assert noisy.dtype == clean.dtype == torch.float32
    assert noisy.shape == clean.shape == (1000,)
    torch.testing.assert_close(noisy - clean, torch.full((1000,), 0.25))


def test_paired_dataset_crop_is_aligned_and_seeded(tmp_path):
    pair = _ramp_pair(tmp_path, 8 * RATE)
    dataset = PairedDataset([pair] * 6, RATE, segment_seconds=0.5, seed=3)
    crops = [dataset[i] for i in range(6)]
    for noisy, clean in crops:
        assert noisy.shape == clean.shape == (RATE // 2,)
        torch.testing.assert_close(noisy - clean, torch.full((RATE // 2,), 0.25))
    starts = [round(float(clean[0]) / 0.5 * 8 * RATE) for _, clean in crops]
    assert len(set(starts)) == 6  # each index its own crop
    again = PairedDataset([pair] * 6, RATE, segment_seconds=0.5, seed=3)
    assert all(torch.equal(again[i][1], crops[i][1]) for i in range(6))
    again.set_epoch(1)
    assert not all(torch.equal(again[i][1], crops[i][1]) for i in range(6))


def test_paired_dataset_pads_short_files(tmp_path):
    pair = _ramp_pair(tmp_path, 3000)
    noisy, clean = PairedDataset([pair], RATE, segment_seconds=0.5)[0]
    assert noisy.shape == (RATE // 2,)
    assert torch.all(noisy[3000:] == 0) and torch.all(clean[3000:] == 0)
    torch.testing.assert_close(noisy[:3000] - clean[:3000], torch.full((3000,), 0.25))


def test_paired_dataset_resamples_44k_files(tmp_path):
    pair = _ramp_pair(tmp_path, 44100, rate=44100)
    noisy, clean = PairedDataset([pair], RATE)[0]
    assert noisy.shape == clean.shape == (RATE,)
    torch.testing.assert_close(noisy[100:-100] - clean[100:-100], torch.full((RATE - 200,), 0.25), atol=2e-3, rtol=0)
    # the ramp keeps its timing: sample k at 16 kHz is the ramp at time k / 16000
    expected = torch.arange(RATE, dtype=torch.float32) / RATE * 0.5
    torch.testing.assert_close(clean[100:-100], expected[100:-100], atol=2e-3, rtol=0)


def test_vbd_test_set_has_64_pairs(shared_data):
    pairs = find_pairs(shared_data / "vbd-test" / "clean", shared_data / "vbd-test" / "noisy")
    assert len(pairs) == 64
    assert all(p.clean.name == p.noisy.name for p in pairs)
    assert find_pairs_in(shared_data / "vbd-test") == pairs


def test_dns_no_reverb_has_3_pairs(shared_data):
    pairs = find_pairs_in(shared_data / "dns-test-noreverb")
    assert sorted(p.name for p in pairs) == ["fileid_170", "fileid_44", "fileid_58"]
    noisy, clean = PairedDataset(pairs, RATE, segment_seconds=1.0)[0]
    assert noisy.shape == clean.shape == (RATE,)
    assert float((noisy - clean).abs().max()) > 0
