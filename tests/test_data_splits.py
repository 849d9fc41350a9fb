"""Speaker and file splits, and their JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mal.data import collect_audio, read_split, speaker_of, split_by_speaker, split_files, write_split


@pytest.mark.parametrize(
    "name, speaker",
    [
        ("103-1240-0000.wav", "103"),
        ("libri-2033_164914-0002.flac", "libri-2033"),
        ("vctk-p225_001.flac", "vctk-p225"),
        ("so762-0024_000010086.flac", "so762-0024"),
        ("lj_LJ001-0001.flac", "lj"),
        ("p232_005.wav", "p232"),
        ("LJ001-0001.wav", "LJ"),
        ("book_00000_chp_0009_reader_06709_0.wav", "reader_06709"),
        ("clean_fileid_12.wav", "clean_fileid_12"),
        ("recording.wav", "recording"),
    ],
)
def test_speaker_of(name, speaker):
    assert speaker_of(Path("some/dir") / name) == speaker


def _corpus(speakers: int, per_speaker) -> list[Path]:
    return [Path(f"data/s{s:03d}_{u}.wav") for s in range(speakers) for u in range(per_speaker(s))]


def test_speakers_stay_in_one_part():
    files = _corpus(40, lambda s: 1 + s % 7)
    split = split_by_speaker(files, seed=1)
    assert list(split) == ["train", "val", "test"]
    owners: dict[str, str] = {}
    for part, part_files in split.items():
        for path in part_files:
            assert owners.setdefault(speaker_of(path), part) == part, path
    assert sorted(p for files in split.values() for p in files) == sorted(files)
    counts = {part: len(f) for part, f in split.items()}
    assert counts["val"] > 0 and counts["test"] > 0
    assert abs(counts["train"] / len(files) - 0.8) < 0.1


def test_every_part_gets_a_speaker_when_there_are_enough():
    split = split_by_speaker(_corpus(3, lambda s: 10), seed=0)
    assert sorted({speaker_of(f) for files in split.values() for f in files}) == ["s000", "s001", "s002"]
    assert all(len({speaker_of(f) for f in files}) == 1 for files in split.values())


def test_split_is_deterministic_and_ignores_input_order():
    files = _corpus(30, lambda s: 2 + s % 3)
    split = split_by_speaker(files, seed=4)
    assert split_by_speaker(list(reversed(files)), seed=4) == split
    assert split_by_speaker(files, seed=5) != split


def test_split_files_by_fraction():
    files = [Path(f"noise/n{i}.wav") for i in range(100)]
    split = split_files(files, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=2)
    assert {part: len(f) for part, f in split.items()} == {"train": 70, "val": 20, "test": 10}
    assert sorted(p for f in split.values() for p in f) == sorted(files)
    assert split_files(files, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=2) == split
    assert split_files(files, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3) != split


@pytest.mark.parametrize("fractions", [{"train": 0.8, "val": 0.3}, {"train": 1.1, "val": -0.1}, {}])
def test_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_files([Path("a.wav")], fractions)


def test_write_read_round_trip_is_byte_identical(tmp_path):
    root = tmp_path / "data"
    files = [root / "spk" / f"a{i}_x.wav" for i in range(5)] + [root / f"b{i}_x.wav" for i in range(5)]
    outside = tmp_path / "elsewhere" / "c_1.wav"
    split = split_by_speaker(files + [outside], {"train": 0.5, "val": 0.5}, seed=0)
    write_split(tmp_path / "out" / "split.json", split, root=root)
    first = (tmp_path / "out" / "split.json").read_bytes()
    write_split(tmp_path / "out" / "split.json", {k: list(reversed(v)) for k, v in split.items()}, root=root)
    assert (tmp_path / "out" / "split.json").read_bytes() == first
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["split.json"]  # no temp file left behind

    stored = json.loads(first)
    assert "spk/a0_x.wav" in stored["train"] + stored["val"]
    assert outside.as_posix() in stored["train"] + stored["val"]
    loaded = read_split(tmp_path / "out" / "split.json", root=root)
    assert {part: sorted(files) for part, files in loaded.items()} == split


def test_read_split_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"train": 3}')
    with pytest.raises(ValueError, match="not a split file"):
        read_split(tmp_path / "x.json")


def test_real_speech_split_keeps_speakers_apart(shared_data):
    files = collect_audio(
        [shared_data / "librispeech-train-clean-100-subset" / "clean", shared_data / "speech-extra" / "clean"]
    )
    split = split_by_speaker(files, seed=0)
    speakers = {part: {speaker_of(f) for f in part_files} for part, part_files in split.items()}
    assert not speakers["train"] & speakers["val"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]
    assert sum(len(f) for f in split.values()) == len(files) == 251 + 933
    assert all(0.05 < len(split[p]) / len(files) < 0.15 for p in ("val", "test"))


def test_quality_gate_sources_and_threshold(tmp_path):
    from mal.data.quality import apply_gate, source_of

    root = tmp_path
    assert source_of(root / "speech-extra/clean/libri-2033_164914-0002.flac", root) == "speech-extra/clean (libri)"
    assert source_of(root / "speech-extra/clean/so762-0001_000010115.flac", root) == "speech-extra/clean (so762)"
    assert source_of(root / "speech-extra/clean/lj_001-0001.flac", root) == "speech-extra/clean (lj)"
    assert source_of(root / "speech-extra/clean/vctk-p225_001.flac", root) == "speech-extra/clean (vctk)"
    assert source_of(root / "libri/clean/103-1240-0000.wav", root) == "libri/clean"  # LibriSpeech names: no tag
    assert source_of(root / "vctk/p232_001.wav", root) == "vctk"
    a, b, c = (root / f"{n}.wav" for n in "abc")
    kept = apply_gate({"train": [a, b], "val": [c]}, {a: 3.0, b: 2.9}, 3.0)
    assert kept == {"train": [a], "val": []}  # at the threshold kept; unscored left out
