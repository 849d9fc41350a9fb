"""Experiment configuration: YAML files + ``key.sub=value`` overrides, validated up front.

Every key has a default in :data:`DEFAULTS`; an unknown key or a value of the wrong type is
an error naming the key, raised before any work starts. ``model`` is validated by
:func:`mal.models.build_model`, which knows each architecture's fields.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from mal.util.files import write_text_atomic


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "runs/experiment",
    "model": {"preset": "deepfilternet_16k"},
    "data": {
        "root": None,  # folder that relative dirs are resolved against (default: ../shared/data)
        "speech_dirs": ["librispeech-train-clean-100-subset/clean", "speech-extra/clean"],
        "noise_dirs": ["noise-real/noise", "noise-extra/noise"],
        "train_pairs": None,  # alternatively a paired folder with clean/ and noisy/
        "sample_rate": 16000,
        "segment_seconds": 2.0,
        "snr_range_db": [-5.0, 20.0],
        "train_size": 2000,  # mixtures per epoch
        "val_size": 100,  # fixed validation mixtures
        "split_fractions": {"train": 0.8, "val": 0.1, "test": 0.1},
        "split_file": None,  # default: <output_dir>/split.json (reused when present)
        "batch_size": 16,
        "num_workers": 2,
    },
    "loss": {
        "df": {"weight": 1.0},
        "mal": {
            "weight": 0.0,  # 0 = off (stage 1); fine-tuning configs set 1.0
            "stages": "bottleneck",
            "ema_decay": None,
            # N > 0: before fine-tuning, scale L_mal so that weight * L_mal equals the weighted
            # L_df on average over the first N training batches ("equal proportion" as equal
            # size); the scale is stored in the checkpoint (mal_balance buffer). 0 = off.
            "balance": 0,
        },
        "ssl": {
            "weight": 0.0,
            "kind": "wavlm",
            "ssl_model_path": None,
            "layer": "conv",
        },
        "ext": {  # a frozen external network's features (mal.losses.external)
            "weight": 0.0,
            "kind": "dfn3",  # dfn3 | dfn2 | nisqa | wavlm | wav2vec2 | hubert
            "path": None,  # model file / public name / nisqa.tar / SSL directory; None = the default
            "layer": None,  # None = the kind's default (emb, cnn, conv)
        },
    },
    "finetune": {
        "variant": None,  # baseline-continued | mal-frozen-fe | mal-frozen | mal-dynamic | ext | ext-fe | ext-mal | wavlm | wavlm-fe | wavlm-mal
        "refresh_every_steps": None,
        "select_by": "val/loss",
        "select_mode": "min",
    },
    "optim": {
        "lr": 1e-3,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "warmup_steps": 100,
        "min_lr_ratio": 0.05,
        "grad_clip": 1.0,
    },
    "trainer": {
        "max_epochs": 10,
        "max_time": None,  # e.g. "00:00:05:00" (DD:HH:MM:SS): stop after this wall time
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "log_every_n_steps": 10,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "progress_bar": True,
        "threads": None,  # torch.set_num_threads for CPU training
    },
}

# Keys whose value is a free-form mapping (no per-key validation here).
FREE_FORM = {"model", "data.split_fractions"}


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides; validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        _merge(cfg, user, DEFAULTS, prefix="")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        apply_override(cfg, key.strip(), _parse_value(raw))
    return cfg


def _parse_value(raw: str) -> Any:
    """An override's value as YAML, except that ``5e-5``-style numbers are numbers (YAML 1.1,
    which PyYAML follows, reads a float without a dot as a string)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def apply_override(cfg: dict, dotted: str, value: Any) -> None:
    """Set ``cfg[a][b] = value`` for ``dotted == "a.b"``, validating like a config file."""
    parts = dotted.split(".")
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    _merge(cfg, nested, DEFAULTS, prefix="")


def _merge(cfg: dict, user: dict, defaults: dict, prefix: str) -> None:
    for key, value in user.items():
        full = f"{prefix}{key}"
        if full in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping, got {type(value).__name__}")
            if full == "model" and ("preset" in value or "name" in value):
                cfg[key] = copy.deepcopy(value)  # a new architecture replaces the default
            else:
                cfg[key] = {**cfg.get(key, {}), **copy.deepcopy(value)}
            continue
        if key not in defaults:
            valid = ", ".join(sorted(defaults))
            raise ConfigError(f"{full}: unknown config key (valid here: {valid})")
        default = defaults[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping, got {type(value).__name__}")
            _merge(cfg[key], value, default, prefix=f"{full}.")
        else:
            cfg[key] = _check_type(full, value, default)


def _check_type(key: str, value: Any, default: Any) -> Any:
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return value
    if isinstance(default, str) and not isinstance(value, (str, int)):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def data_root(cfg: dict) -> Path:
    """The folder that relative data paths are resolved against."""
    root = cfg["data"]["root"] or os.environ.get("MAL_DATA") or "../shared/data"
    return Path(root).expanduser()


def root_origin(cfg: dict) -> str:
    """The data root and where it came from, for error messages."""
    root = data_root(cfg)
    absolute = root if root.is_absolute() else f"{root}, i.e. {Path.cwd() / root}"
    if cfg["data"]["root"]:
        return f"the data root {absolute} (--data / data.root)"
    if os.environ.get("MAL_DATA"):
        return f"the data root {absolute} ($MAL_DATA)"
    return f"the default data root {absolute}; pass --data DIR to set it"


def resolve_dirs(cfg: dict, key: str) -> list[Path]:
    """Absolute folders for ``data.<key>``; a missing folder is a config error naming it."""
    root = data_root(cfg)
    dirs = []
    for raw in cfg["data"][key] or []:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_dir():
            hint = "" if Path(raw).expanduser().is_absolute() else f" ({raw} resolved against {root_origin(cfg)})"
            raise ConfigError(f"data.{key}: folder not found: {path}{hint}")
        dirs.append(path)
    return dirs


def check_data_folders(cfg: dict) -> None:
    """Fail on a missing data folder before the heavy libraries load (``mal train`` starts in a second)."""
    d = cfg["data"]
    split_file = Path(d["split_file"] or Path(cfg["output_dir"]) / "split.json")
    if d["train_pairs"] or split_file.is_file():
        return
    for key in ("speech_dirs", "noise_dirs"):
        resolve_dirs(cfg, key)


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved config next to a run (atomically) so it can be reproduced."""
    write_text_atomic(path, yaml.safe_dump(cfg, sort_keys=False))
