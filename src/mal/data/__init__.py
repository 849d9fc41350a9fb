"""Datasets: paired clean/noisy folders, on-the-fly mixing, and train/val/test splits."""

from mal.data.mixing import MixtureDataset, MixtureParams, active_fraction, collect_audio, read_segment
from mal.data.pairs import Pair, PairedDataset, find_pairs, find_pairs_in
from mal.data.splits import read_split, speaker_of, split_by_speaker, split_files, write_split

__all__ = [
    "MixtureDataset",
    "MixtureParams",
    "Pair",
    "PairedDataset",
    "active_fraction",
    "collect_audio",
    "find_pairs",
    "find_pairs_in",
    "read_segment",
    "read_split",
    "speaker_of",
    "split_by_speaker",
    "split_files",
    "write_split",
]
