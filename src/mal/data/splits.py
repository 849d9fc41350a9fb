"""Deterministic train/val/test splits, by speaker or by file, saved as JSON."""

from __future__ import annotations

from mal.util.files import write_text_atomic

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}

# Speaker patterns tried in order, before the "<speaker>_<utterance>" rule.
_LIBRISPEECH = re.compile(r"^(\d+)-\d+-\d+$")  # 103-1240-0000 -> 103
_DNS_READER = re.compile(r"reader_(\d+)")  # book_00000_chp_0009_reader_06709_0 -> reader_06709
_DNS_FILEID = re.compile(r"fileid_\d+")  # clean_fileid_12: speaker unknown, the file stands alone
_LJSPEECH = re.compile(r"^LJ\d+-\d+$")  # LJ001-0001: one speaker


def speaker_of(path: str | os.PathLike) -> str:
    """Speaker id from a file name (LibriSpeech, VCTK, DNS, LJ Speech, ``<speaker>_<utt>``), else the stem."""
    stem = Path(path).stem
    if match := _LIBRISPEECH.match(stem):
        return match.group(1)
    if match := _DNS_READER.search(stem):
        return f"reader_{match.group(1)}"
    if _DNS_FILEID.search(stem):
        return stem
    if _LJSPEECH.match(stem):
        return "LJ"
    return stem.split("_", 1)[0] or stem


def split_by_speaker(
    files: Iterable[str | os.PathLike], fractions: Mapping[str, float] | None = None, seed: int = 0
) -> dict[str, list[Path]]:
    """Split files so that each speaker's files all go to one part; parts near ``fractions`` of the files."""
    by_speaker: dict[str, list[Path]] = {}
    for path in _unique_sorted(files):
        by_speaker.setdefault(speaker_of(path), []).append(path)
    return _assign([by_speaker[s] for s in sorted(by_speaker)], fractions, seed)


def split_files(
    files: Iterable[str | os.PathLike], fractions: Mapping[str, float] | None = None, seed: int = 0
) -> dict[str, list[Path]]:
    """Split files one by one (e.g. noise files) into parts of ``fractions`` of the files."""
    return _assign([[path] for path in _unique_sorted(files)], fractions, seed)


def write_split(
    path: str | os.PathLike, split: Mapping[str, Iterable[str | os.PathLike]], root: str | os.PathLike | None = None
) -> None:
    """Write a split as JSON, atomically; paths under ``root`` are stored relative to it."""
    path = Path(path)
    base = None if root is None else Path(os.path.abspath(root))
    content = {part: sorted(_relative(Path(p), base) for p in files) for part, files in split.items()}
    text = json.dumps(content, indent=1, ensure_ascii=False) + "\n"
    write_text_atomic(path, text)


def read_split(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Read a split written by :func:`write_split`; relative paths are joined to ``root``."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read split ({err})") from None
    if not isinstance(content, dict) or not all(
        isinstance(files, list) and all(isinstance(f, str) for f in files) for files in content.values()
    ):
        raise ValueError(f"{path}: not a split file (expected {{part: [paths]}})")
    base = None if root is None else Path(root)
    return {
        part: [p if base is None or p.is_absolute() else base / p for p in map(Path, files)]
        for part, files in content.items()
    }


def _unique_sorted(files: Iterable[str | os.PathLike]) -> list[Path]:
    return sorted({Path(f) for f in files}, key=lambda p: p.as_posix())


def _assign(groups: list[list[Path]], fractions: Mapping[str, float] | None, seed: int) -> dict[str, list[Path]]:
    """Deal shuffled groups to the part furthest below its target share of files."""
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    if not fractions or any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    total = sum(len(g) for g in groups)
    targets = {part: fraction * total for part, fraction in fractions.items() if fraction > 0}
    counts = dict.fromkeys(fractions, 0)
    split: dict[str, list[Path]] = {part: [] for part in fractions}
    for k in np.random.default_rng(seed).permutation(len(groups)):
        group = groups[k]
        # relative shortfall, so every non-empty part gets a group before any part gets a second
        part = max(targets, key=lambda p: 1 - counts[p] / targets[p])
        split[part].extend(group)
        counts[part] += len(group)
    return {part: sorted(files, key=lambda p: p.as_posix()) for part, files in split.items()}


def _relative(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` when under it, else absolute; as given without a base."""
    if base is None:
        return path.as_posix()
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return absolute.as_posix()
