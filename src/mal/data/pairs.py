"""Paired clean/noisy folders: generic ``clean/`` + ``noisy/``, VoiceBank-DEMAND, DNS.

Files pair by equal stem; files left over pair by their DNS ``fileid_N`` number
(``clean_fileid_12.wav`` with ``book_..._fileid_12.wav``). Files that find no partner are
named in a warning, never dropped silently.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mal.audio import AudioError, audio_info, list_audio
from mal.data.mixing import read_segment

# (clean, noisy) folder names recognised by find_pairs_in, most generic first.
LAYOUTS = (
    ("clean", "noisy"),
    ("clean_testset_wav", "noisy_testset_wav"),
    ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    ("clean_trainset_56spk_wav", "noisy_trainset_56spk_wav"),
)
MAX_LENGTH_DIFF = 4  # samples; VBD and DNS pairs differ by at most one
_FILEID = re.compile(r"fileid_(\d+)")
_LISTED = 10  # unpaired files named in the warning before a count


@dataclass(frozen=True)
class Pair:
    """One utterance: its name and the clean and noisy files."""

    name: str
    clean: Path
    noisy: Path


def find_pairs(clean_dir: str | os.PathLike, noisy_dir: str | os.PathLike) -> list[Pair]:
    """Pair the audio files of two folders by stem, then by DNS ``fileid_N``; sorted by name."""
    clean_dir, noisy_dir = Path(clean_dir), Path(noisy_dir)
    clean = _by_stem(list_audio(clean_dir))
    noisy = _by_stem(list_audio(noisy_dir))
    pairs = [Pair(stem, clean.pop(stem), noisy.pop(stem)) for stem in sorted(clean.keys() & noisy.keys())]
    clean_ids, noisy_ids = _by_fileid(clean.values()), _by_fileid(noisy.values())
    for number in sorted(clean_ids.keys() & noisy_ids.keys(), key=int):
        c, n = clean_ids[number], noisy_ids[number]
        pairs.append(Pair(f"fileid_{number}", clean.pop(c.stem), noisy.pop(n.stem)))
    if not pairs:
        raise AudioError(
            f"no clean/noisy pairs between {clean_dir} and {noisy_dir}: "
            "no equal file names and no matching fileid_N numbers"
        )
    unpaired = sorted(clean.values()) + sorted(noisy.values())
    if unpaired:
        names = ", ".join(str(p) for p in unpaired[:_LISTED])
        more = f" and {len(unpaired) - _LISTED} more" if len(unpaired) > _LISTED else ""
        warnings.warn(f"{len(unpaired)} file(s) without a partner, not used: {names}{more}", stacklevel=2)
    for pair in pairs:
        _check_lengths(pair)
    return sorted(pairs, key=lambda p: p.name)


def find_pairs_in(root: str | os.PathLike) -> list[Pair]:
    """Pairs in ``root`` laid out as ``clean/`` + ``noisy/`` or with the VoiceBank-DEMAND folder names."""
    root = Path(root)
    if not root.is_dir():
        raise AudioError(f"{root}: not a directory")
    found = [(c, n) for c, n in LAYOUTS if (root / c).is_dir() and (root / n).is_dir()]
    if not found:
        expected = "; ".join(f"{c}/ + {n}/" for c, n in LAYOUTS)
        raise AudioError(f"{root}: no paired folders found (expected one of: {expected})")
    if len(found) > 1:
        listed = "; ".join(f"{c}/ + {n}/" for c, n in found)
        raise AudioError(f"{root}: several paired layouts ({listed}); pass the two folders to find_pairs")
    clean, noisy = found[0]
    return find_pairs(root / clean, root / noisy)


class PairedDataset(Dataset):
    """``(noisy, clean)`` float32 tensors from pairs; an aligned random crop when a segment is set.

    Whole files (trimmed to the shorter side) when ``segment_seconds`` is None; otherwise a
    crop of exactly that length, zero-padded for short files. The crop is drawn from
    ``SeedSequence([seed, epoch, index])``, so it does not depend on the worker or process.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        sample_rate: int,
        segment_seconds: float | None = None,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise ValueError("PairedDataset needs at least one pair")
        if segment_seconds is not None and segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        self.pairs = list(pairs)
        self.sample_rate = int(sample_rate)
        self.segment = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()  # seen by persistent workers

    @property
    def epoch(self) -> int:
        """The epoch whose crops are drawn."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw the crops of ``epoch`` from now on."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        if self.segment is None:
            start, frames = 0, self._length(pair)
        else:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
            frames = self.segment
            start = int(rng.integers(0, max(self._length(pair) - frames, 0) + 1))
        noisy = read_segment(pair.noisy, start, frames, self.sample_rate)
        clean = read_segment(pair.clean, start, frames, self.sample_rate)
        return torch.from_numpy(noisy), torch.from_numpy(clean)

    def _length(self, pair: Pair) -> int:
        """Samples at the dataset rate that both files cover."""
        lengths = []
        for path in (pair.clean, pair.noisy):
            rate, _, frames = audio_info(path)
            lengths.append(frames * self.sample_rate // rate)
        return min(lengths)


def _by_stem(files: list[Path]) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise AudioError(f"{path.parent}: two files named {path.stem} ({by_stem[path.stem].name}, {path.name})")
        by_stem[path.stem] = path
    return by_stem


def _by_fileid(files: Iterable[Path]) -> dict[str, Path]:
    """Files by DNS fileid number; numbers held by several files stay unpaired."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        match = _FILEID.findall(path.stem)
        if match:
            groups.setdefault(str(int(match[-1])), []).append(path)
    return {number: paths[0] for number, paths in groups.items() if len(paths) == 1}


def _check_lengths(pair: Pair) -> None:
    clean_rate, _, clean_frames = audio_info(pair.clean)
    noisy_rate, _, noisy_frames = audio_info(pair.noisy)
    # compare at the clean file's rate so that a resampled partner is judged fairly
    noisy_at_clean_rate = round(noisy_frames * clean_rate / noisy_rate)
    if abs(clean_frames - noisy_at_clean_rate) > MAX_LENGTH_DIFF:
        raise AudioError(
            f"pair {pair.name}: lengths differ by more than {MAX_LENGTH_DIFF} samples "
            f"({pair.clean}: {clean_frames} at {clean_rate} Hz, {pair.noisy}: {noisy_frames} at {noisy_rate} Hz)"
        )
