"""Batch enhancement: files and folders in, one output per input, a record of what happened.

Output names keep the input's relative path; ``suffix`` is added to the stem (so outputs can
sit beside their inputs), and an input whose container this libsndfile cannot write (say an
mp3 without an MP3 encoder) is written as FLAC under the same stem. A folder walk never
enters the output folder, so a rerun never enhances its own outputs (:mod:`~mal.inference.paths`).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from mal.audio import AudioError, audio_info, missing_frames
from mal.inference.enhance import enhance_file
from mal.inference.paths import check_output_dir, expand_inputs, output_path
from mal.inference.stream import HopStream
from mal.models import EnhancementModel
from mal.util.files import remove_stale_parts
from mal.util.progress import Progress


@dataclass
class BatchResult:
    """What a batch job did: written outputs, skipped (already done) and failed inputs, and notes."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    renamed: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output in another container)
    over_full_scale: list[tuple[Path, int]] = field(default_factory=list)  # (output, samples above full scale)
    wider_band: list[tuple[Path, int]] = field(default_factory=list)  # (input, its rate) above the model's rate
    cut_short: list[tuple[Path, int, int]] = field(default_factory=list)  # (input, frames missing, its rate)


def enhance_files(
    model: EnhancementModel | HopStream,
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    suffix: str = "",
    jobs: int = 1,
    **chunk_options,
) -> BatchResult:
    """Enhance files and folders into ``out_dir`` keeping names, rates, lengths and channels.

    Existing outputs are skipped (so an interrupted job resumes) unless ``overwrite``. Bad
    inputs and outputs that cannot be written are recorded in ``failed`` and the job goes on.
    ``jobs > 1`` enhances that many files at a time in worker processes (one torch thread
    each; an offline model only: a frame stream holds one signal's state).
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, inputs, overwrite, suffix)
    items = expand_inputs(inputs, skip=out_dir, suffix=suffix)
    if jobs > 1 and hasattr(model, "process"):
        raise ValueError("--jobs needs an offline model: a frame stream (--streaming, --onnx) enhances one file at a time")
    result = BatchResult()
    claimed: dict[Path, Path] = {}  # output -> the input it is written from
    todo = []
    for src, rel in items:
        dst = output_path(out_dir, rel, suffix)
        if _plan(src, dst, overwrite, claimed, result):
            todo.append((src, dst))
    with Progress(len(items), "enhance", initial=len(items) - len(todo), quiet=not progress) as bar:
        if jobs <= 1 or len(todo) <= 1:
            for src, dst in todo:
                _record(model, src, dst, _attempt(enhance_file, model, src, dst, chunk_options), result)
                bar.update()
        else:
            # processes, not threads: DeepFilterNet-style models spend their time in per-frame
            # recurrent steps that one more torch thread barely speeds up; a file per worker does
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context(worker_start_method()),
                                     initializer=_init_worker, initargs=(model,)) as pool:
                futures = [(src, dst, pool.submit(_worker_enhance, src, dst, chunk_options)) for src, dst in todo]
                for src, dst, future in futures:  # in input order: the record reads like a serial run
                    _record(model, src, dst, future.result(), result)
                    bar.update()
    return result


def _plan(src: Path, dst: Path, overwrite: bool, claimed: dict[Path, Path], result: BatchResult) -> bool:
    """Whether ``src`` is to be enhanced into ``dst``; records why not in ``result``."""
    if dst.resolve() == src.resolve():
        result.failed.append((src, "output would overwrite the input"))
        return False
    if dst.resolve() in claimed:
        result.failed.append((src, f"{src}: output {dst} is already written from {claimed[dst.resolve()]}"))
        return False
    claimed[dst.resolve()] = src
    # A run killed mid-file leaves only a hidden temporary file: delete it, redo that file.
    remove_stale_parts(dst)
    if dst.exists() and not overwrite:
        result.skipped.append(src)
        return False
    return True


def _attempt(enhance_file, model, src: Path, dst: Path, chunk_options: dict) -> int | AudioError:
    """Samples above full scale, or the file's one-line error."""
    try:
        return enhance_file(model, src, dst, **chunk_options)
    except AudioError as err:
        return err


_WORKER_MODEL = None


def worker_start_method() -> str:
    """"fork" on Linux, else "spawn".

    A spawned worker imports torch and receives the model before its first file: 2.2-2.3 s,
    a quarter of the time of 64 short files (benchmarks/profile_jobs.py). A forked one
    starts with both already in memory. Forking a process that has used OpenMP threads is
    safe as long as the child stays on one thread (libgomp's pool does not survive a fork;
    one thread never enters it), which ``_init_worker`` makes sure of before any work, as
    PyTorch's own DataLoader workers do. macOS and Windows spawn (fork is unsafe there).
    """
    return "fork" if sys.platform.startswith("linux") else "spawn"


def _init_worker(model) -> None:
    global _WORKER_MODEL
    torch.set_num_threads(1)  # the pool provides the parallelism
    _WORKER_MODEL = model


def _worker_enhance(src: Path, dst: Path, chunk_options: dict) -> int | AudioError:
    return _attempt(enhance_file, _WORKER_MODEL, src, dst, chunk_options)


def _record(model, src: Path, dst: Path, outcome: int | AudioError, result: BatchResult) -> None:
    if isinstance(outcome, AudioError):
        result.failed.append((src, str(outcome)))
        return
    result.written.append(dst)
    if dst.suffix != src.suffix:
        result.renamed.append((src, dst))
    if outcome:
        result.over_full_scale.append((dst, outcome))
    rate = audio_info(src)[0]
    if rate > model.sample_rate:
        result.wider_band.append((src, rate))
    if missing := missing_frames(src):
        result.cut_short.append((src, missing, rate))
