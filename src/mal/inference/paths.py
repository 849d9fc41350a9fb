"""Where a batch job's inputs and outputs are: folder walks and output names, without torch
(so the CLI checks them before it loads anything heavy)."""

from __future__ import annotations

import os
from pathlib import Path

from mal.audio import CONTAINERS, FALLBACK_EXTENSION, AudioError, readable_extensions, writable


def expand_inputs(inputs: list[str | os.PathLike], skip: str | os.PathLike | None = None,
                  suffix: str = "") -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for files and folders (recursive).

    A folder walk lists every container libsndfile reads, and leaves out the folder ``skip``
    (the output folder) and, where outputs sit beside inputs, files already named ``*suffix``.
    An input that does not exist is an :class:`AudioError`, before any work.
    """
    extensions = readable_extensions()
    skip_dir = Path(skip).resolve() if skip is not None else None
    items: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise AudioError(f"{raw}: no such file or folder")
        if not path.is_dir():
            items.append((path, Path(path.name)))
            continue
        root = path.resolve()
        found = []
        for p in sorted(path.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in extensions:
                continue
            if skip_dir is not None and skip_dir != root and skip_dir in p.resolve().parents:
                continue  # an earlier run's outputs inside this input folder
            if suffix and skip_dir == root and p.stem.endswith(suffix):
                continue  # an earlier run's output beside its input
            found.append(p)
        if not found:
            raise AudioError(f"{path}: directory contains no audio files ({', '.join(extensions)})")
        items += [(p, p.relative_to(path)) for p in found]
    return items


def check_output_dir(out_dir: Path, inputs: list[str | os.PathLike], overwrite: bool, suffix: str = "") -> None:
    """Refuse an output folder named like an audio file, equal to an input folder (without
    ``suffix``) or inside one (without ``overwrite``)."""
    if Path(out_dir).suffix.lower() in CONTAINERS and not Path(out_dir).is_dir():
        raise ValueError(f"-o {out_dir}: -o is the output folder (outputs keep their input names), not a file name; "
                         f"choose a folder, e.g. -o {Path(out_dir).with_suffix('')}")
    out = Path(out_dir).resolve()
    for raw in inputs:
        if not Path(raw).is_dir():
            continue
        folder = Path(raw).resolve()
        if out == folder and not suffix:
            raise FileExistsError(f"{out_dir}: output folder is the input folder {raw}; pass --suffix _enhanced "
                                  f"to write NAME_enhanced.wav beside each input, or choose another -o folder")
        if folder in out.parents and not overwrite:
            raise FileExistsError(f"{out_dir}: output folder is inside input folder {raw}; pass --overwrite to allow "
                                  f"(the walk leaves the output folder out)")


def output_path(out_dir: Path, rel: Path, suffix: str = "") -> Path:
    """Where the input at ``rel`` goes: same relative path, ``suffix`` on the stem, a writable container."""
    extension = rel.suffix if writable(rel) else FALLBACK_EXTENSION
    return out_dir / rel.with_name(f"{rel.stem}{suffix}{extension}")
