"""Training and validation data from a config: on-the-fly mixtures (speaker split) or pairs."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from mal.audio import AudioError, check_audio_file
from mal.training.config import ConfigError, data_root, resolve_dirs
from mal.data.quality import Scorer, apply_gate, gate_summary, summary_lines, write_summary
from mal.data import (
    MixtureDataset,
    PairedDataset,
    collect_audio,
    find_pairs_in,
    read_split,
    split_by_speaker,
    split_files,
    write_split,
)


def make_split(cfg: dict) -> dict[str, dict[str, list[Path]]]:
    """Speech split by speaker, noise split by file; written once and reused (comparable runs)."""
    split_path = Path(cfg["data"]["split_file"] or Path(cfg["output_dir"]) / "split.json")
    root = data_root(cfg)
    if split_path.is_file():
        return _nest(read_split(split_path, root))
    fractions = cfg["data"]["split_fractions"]
    speech_dirs, noise_dirs = resolve_dirs(cfg, "speech_dirs"), resolve_dirs(cfg, "noise_dirs")
    speech, noise = collect_audio(speech_dirs), collect_audio(noise_dirs)
    if not speech:
        raise ConfigError(f"data.speech_dirs: no audio files found in {', '.join(map(str, speech_dirs)) or '(no folders)'}")
    if not noise:
        raise ConfigError(f"data.noise_dirs: no audio files found in {', '.join(map(str, noise_dirs)) or '(no folders)'}")
    flat = {f"speech/{part}": files for part, files in split_by_speaker(speech, fractions, seed=cfg["seed"]).items()}
    flat.update({f"noise/{part}": files for part, files in split_files(noise, fractions, seed=cfg["seed"]).items()})
    write_split(split_path, flat, root)
    return _nest(read_split(split_path, root))


def check_files(files: list[Path], key: str) -> None:
    """Fail before training, in one line naming the files, when some cannot be used.

    Without this a corrupt file would stop the run mid-epoch, when a mixture first draws it.
    """
    problems = []
    for path in files:
        try:
            check_audio_file(path)
        except AudioError as err:
            problems.append(str(err))
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise AudioError(f"data.{key}: {len(problems)} unusable audio file(s): " + "; ".join(problems[:3]) + more)


def _nest(flat: dict[str, list[Path]]) -> dict[str, dict[str, list[Path]]]:
    """{"speech/train": [...], ...} -> {"speech": {"train": [...]}, ...}."""
    nested: dict[str, dict[str, list[Path]]] = {"speech": {}, "noise": {}}
    for key, files in flat.items():
        kind, part = key.split("/", 1)
        nested.setdefault(kind, {})[part] = files
    return nested


def gate_speech(cfg: dict, parts: dict[str, list[Path]], scorer: Scorer | None) -> dict[str, list[Path]]:
    """``parts`` (train, val) through the quality gate of ``data.quality``; writes quality.json.

    ``scorer`` rates clean files (:func:`mal.evaluation.quality.clean_scorer`, which the
    ``mal`` commands pass in: this layer cannot import the metrics).
    """
    quality = cfg["data"]["quality"]
    if not quality["metric"]:
        return parts
    if scorer is None:
        raise ConfigError("data.quality.metric: the gate needs a scorer; from Python pass "
                          "quality_scorer=mal.evaluation.quality.clean_scorer(cfg) to train/finetune")
    files = sorted({p for f in parts.values() for p in f})
    scores = scorer(files)
    kept = apply_gate(parts, scores, float(quality["threshold"]))
    summary = gate_summary(parts, kept, scores, quality["metric"], float(quality["threshold"]), data_root(cfg))
    for line in summary_lines(summary):
        print(line)
    write_summary(Path(cfg["output_dir"]) / "quality.json", summary)
    empty = [part for part, files in kept.items() if not files]
    if empty:
        raise ConfigError(f"data.quality.threshold: {quality['threshold']} leaves no {' or '.join(empty)} utterance "
                          f"({quality['metric']}); lower it")
    return kept


class EnhancementData(L.LightningDataModule):
    """Mixtures made on the fly, new ones every epoch (the dataloader is rebuilt each epoch)."""

    def __init__(self, config: dict, quality_scorer: Scorer | None = None):
        super().__init__()
        self.config = config
        self.quality_scorer = quality_scorer
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        cfg, d = self.config, self.config["data"]
        if d["train_pairs"]:
            pairs = find_pairs_in(Path(d["train_pairs"]))
            check_files([p for pair in pairs for p in (pair.clean, pair.noisy)], "train_pairs")
            n_val = max(1, len(pairs) // 10)
            by_part = {"train": pairs[n_val:], "val": pairs[:n_val]}
            kept = gate_speech(cfg, {part: [p.clean for p in ps] for part, ps in by_part.items()}, self.quality_scorer)
            by_part = {part: [p for p in ps if p.clean in set(kept[part])] for part, ps in by_part.items()}
            self.train_set = PairedDataset(by_part["train"], d["sample_rate"], d["segment_seconds"], seed=cfg["seed"])
            self.val_set = PairedDataset(by_part["val"], d["sample_rate"], d["segment_seconds"], seed=cfg["seed"] + 1)
            return
        split = make_split(cfg)
        for kind in ("speech", "noise"):  # every part: a bad test file would fail the evaluation later
            check_files([p for files in split[kind].values() for p in files], f"{kind}_dirs")
        # the gate after the split: the same speakers held out as without it (comparable runs)
        speech = gate_speech(cfg, {part: split["speech"][part] for part in ("train", "val")}, self.quality_scorer)
        common = dict(sample_rate=d["sample_rate"], segment_seconds=d["segment_seconds"], snr_range_db=tuple(d["snr_range_db"]))
        self.train_set = MixtureDataset(speech["train"], split["noise"]["train"], epoch_size=d["train_size"], seed=cfg["seed"], **common)
        self.val_set = MixtureDataset(speech["val"], split["noise"]["val"], epoch_size=d["val_size"], seed=cfg["seed"] + 10_000, fixed=True, **common)

    def _loader(self, dataset, shuffle: bool = False) -> DataLoader:
        workers = int(self.config["data"]["num_workers"])
        return DataLoader(dataset, batch_size=self.config["data"]["batch_size"], shuffle=shuffle, num_workers=workers, drop_last=False, persistent_workers=False)

    def train_dataloader(self) -> DataLoader:
        # Mixtures depend on (seed, epoch, index) only: sequential order is already random,
        # identical after --resume, and DDP ranks get disjoint indices from their sampler.
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        return self._loader(self.train_set)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
