"""Score many files: pairing, length and level handling, a process pool, a cache.

Pairing: a processed file is matched with the reference file of the same stem.

Lengths: both signals are cut to the shorter one (published outputs are often end-trimmed by
tens of samples); a difference over ``LENGTH_TOLERANCE`` samples adds a warning to the row.

Level: published outputs are sometimes level-normalised (see shared/data/SOURCES.md). Most
metrics here do not depend on the processed signal's gain: PESQ aligns levels itself, STOI
and ESTOI normalise per frame, SI-SDR and LSD fit a least-squares gain, LLR and WSS compare
spectral shapes; DNSMOS and NISQA normalise their input (peak -10 dBFS, P.56 -26 dBov).
Only segmental SNR (inside CBAK) and MCD (its c0 term) do. ``level_align="none"`` (the
default) scores them as published tables do; ``"ls"`` first scales the processed signal by
its least-squares gain onto the reference. Every row records ``level_db``, the P.56 active
level of the processed file minus that of the reference, so a level-normalised system is
visible in the summary.

Cache: one SQLite file; a key covers both files' path, size and mtime, the metric group and
the options that change it, so a re-run scores only new or changed files and new groups.

Speed: each process loads DNSMOS, NISQA and DistillMOS once. What depends on a reference alone (its
P.56 level, the reference side of the composite measures and of MCD) is computed once per
reference and process and reused for every system scored against it; the composite
measures reuse the pair's WB-PESQ when the pesq group computed it, ESTOI reuses STOI's
envelopes. With ``n_jobs`` > 1 the
jobs sharing a reference go to one worker together (largest files first, to even out the
end), each worker runs its libraries on one thread and keeps to DNSMOS or to the other
groups until its own family's work runs out (so not every worker imports every library).
The numbers are those of scoring each file alone (tests/test_scoring_speed.py).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import sqlite3
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mal.audio import AudioError, active_speech_level, list_audio, read_audio, resample
from mal.evaluation.metrics import GROUPS, INTRUSIVE_GROUPS
from mal.evaluation.metrics import intrusive as m
from mal.evaluation.metrics.distillmos import distillmos_unavailable, weights_path
from mal.evaluation.metrics.distillmos import scorer as distillmos_scorer
from mal.evaluation.metrics.dnsmos import dnsmos_unavailable, scorer
from mal.evaluation.metrics.intrusive import composite_reference, mcd_reference
from mal.evaluation.metrics.nisqa import NisqaScorer, nisqa_unavailable
from mal.util.assets import find_nisqa_weights
from mal.util.progress import Progress

LENGTH_TOLERANCE = 100
CACHE_VERSION = 1
INFO_GROUP = "_info"
FAILURES = "_failures"


@dataclass(frozen=True)
class ScoreOptions:
    """What to compute: metric groups, NISQA weights, level alignment for CBAK/MCD.

    ``nisqa_weights`` None: looked up (:func:`mal.util.assets.find_nisqa_weights`) when scoring.
    """

    groups: tuple[str, ...]
    nisqa_weights: str | None = None
    level_align: str = "none"


def with_nisqa_weights(options: ScoreOptions) -> ScoreOptions:
    """``options`` with its NISQA weights looked up when NISQA is one of its groups."""
    if "nisqa" not in options.groups:
        return options
    weights = find_nisqa_weights(options.nisqa_weights)
    return dataclasses.replace(options, nisqa_weights=str(weights) if weights else None)


@dataclass(frozen=True)
class Job:
    """One processed file of one system, with its reference (None: non-intrusive only)."""

    system: str
    path: str
    reference: str | None = None


def job_groups(job: Job, groups: tuple[str, ...]) -> tuple[str, ...]:
    """The groups ``job`` computes: all of ``groups``, or without a reference the non-intrusive ones."""
    return groups if job.reference is not None else tuple(g for g in groups if g not in INTRUSIVE_GROUPS)


@dataclass
class RunResult:
    """Rows (one dict per scored file), bad files (one-line messages), and warnings."""

    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# What DNSMOS and NISQA import (speechmos, and the nisqa package's own module headers).
_DNSMOS_MODULES = ("speechmos", "onnxruntime", "librosa")
_NISQA_MODULES = ("nisqa", "torch", "pandas", "librosa", "matplotlib", "yaml", "scipy", "tqdm")


def check_groups(groups: tuple[str, ...], nisqa_weights: str | None, has_reference: bool,
                 light: bool = False) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split ``groups`` into those that can run and ``{group: reason}`` for the others.

    ``light``: check that the metrics' packages are installed instead of importing them. Importing NISQA's code (torch, pandas, matplotlib, scipy.stats) takes this process
    about 4 s, wasted when worker processes do the scoring; a package that is installed but
    fails to import then fails in the workers, each file's row saying so ("nisqa failed: ...").
    """
    usable, skipped = [], {}
    for group in groups:
        reason = None
        if group in INTRUSIVE_GROUPS and not has_reference:
            reason = "intrusive metric: no clean reference given"
        elif group == "dnsmos":
            reason = _not_installed(_DNSMOS_MODULES, "speechmos librosa onnxruntime") if light else dnsmos_unavailable()
        elif group == "nisqa":
            reason = nisqa_unavailable(Path(nisqa_weights) if nisqa_weights else None, import_check=not light)
            if reason is None and light:
                reason = _not_installed(_NISQA_MODULES, "--no-deps nisqa && pip install librosa pandas matplotlib")
        elif group == "distillmos":
            reason = distillmos_unavailable(import_check=not light)
        elif group in ("pesq", "composite"):
            reason = _not_installed(("pesq",), "pesq") if light else _import_reason("pesq")
        elif group in ("stoi", "estoi"):
            reason = _not_installed(("pystoi",), "pystoi") if light else _import_reason("pystoi")
        elif group == "mcd":
            reason = _not_installed(("librosa",), "librosa") if light else _import_reason("librosa")
        if reason:
            skipped[group] = reason
        else:
            usable.append(group)
    return tuple(usable), skipped


def _not_installed(modules: tuple[str, ...], install: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{', '.join(missing)} not installed; pip install {install}" if missing else None


def _import_reason(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as err:
        return f"{module} not importable ({type(err).__name__}); pip install {module}"
    return None


def pair_jobs(system: str, folder: str | os.PathLike, clean: str | os.PathLike | None) -> tuple[list[Job], list[str]]:
    """Jobs for every audio file in ``folder`` (paired by stem with ``clean``), and warnings."""
    files = _some_audio(folder)
    if clean is None:
        return [Job(system, str(p)) for p in files], []
    references = {p.stem: p for p in _some_audio(clean)}
    jobs, unmatched = [], []
    for p in files:
        ref = references.get(p.stem)
        if ref is None:
            unmatched.append(p.name)
        else:
            jobs.append(Job(system, str(p), str(ref)))
    warnings = [f"{system}: {len(unmatched)} file(s) without a clean reference skipped: {', '.join(unmatched[:5])}"
                + (" ..." if len(unmatched) > 5 else "")] if unmatched else []
    return jobs, warnings


def _some_audio(folder: str | os.PathLike) -> list[Path]:
    """The audio files of ``folder``; an empty folder is an error (else it scores as 0 files, exit 0)."""
    files = list_audio(folder)
    if not files:
        raise AudioError(f"{folder}: directory contains no audio files (.wav, .flac, .ogg)")
    return files


class ReferenceSide:
    """What is computed from one (trimmed) reference alone, made on first use."""

    def __init__(self, reference: np.ndarray, rate: int) -> None:
        self.reference, self.rate = reference, rate

    @cached_property
    def level(self) -> float:
        return active_speech_level(self.reference, self.rate)

    @cached_property
    def composite(self):
        return composite_reference(self.reference, self.rate)

    @cached_property
    def mcd(self) -> np.ndarray:
        return mcd_reference(self.reference, self.rate)


# The reference side of the last reference scored in this process: run_jobs hands the jobs
# sharing a reference to one process one after another, so one is enough; it is dropped
# before the next reference's is made, so two long references are never held at once.
_REFERENCE_SIDES: dict[tuple, ReferenceSide] = {}


def _reference_side(path: str, reference: np.ndarray, rate: int) -> ReferenceSide:
    # file identity plus the trimmed length: the same key means the same reference samples
    key = (*_stat(path), len(reference), rate)
    if key not in _REFERENCE_SIDES:
        _REFERENCE_SIDES.clear()
        _REFERENCE_SIDES[key] = ReferenceSide(reference, rate)
    return _REFERENCE_SIDES[key]


@dataclass
class Shared:
    """What the groups of one pair reuse: the reference side, WB-PESQ and STOI's envelopes once computed."""

    reference: ReferenceSide | None = None
    pesq: float | None = None
    stoi: object | None = None  # intrusive.StoiSegments of the pair, shared by STOI and ESTOI


def _load_pair(job: Job, level_align: str, with_level: bool = True) -> tuple[np.ndarray, np.ndarray | None, int, dict,
                                                                          ReferenceSide | None]:
    processed, rate = read_audio(job.path)
    info: dict = {"samples": int(len(processed)), "rate": rate, "notes": ""}
    if job.reference is None:
        return processed, None, rate, info, None
    reference, ref_rate = read_audio(job.reference)
    if ref_rate != rate:
        processed = resample(processed, rate, ref_rate)
        rate = ref_rate
    diff = len(processed) - len(reference)
    info["length_diff"] = int(diff)
    if abs(diff) > LENGTH_TOLERANCE:
        info["notes"] = f"length differs from the reference by {diff} samples; trimmed to the shorter"
    n = min(len(processed), len(reference))
    processed, reference = processed[:n], reference[:n]
    side = _reference_side(job.reference, reference, rate)
    if with_level:
        info["level_db"] = active_speech_level(processed, rate) - side.level
    if level_align == "ls":
        gain = float(np.dot(reference, processed) / max(float(np.dot(processed, processed)), 1e-20))
        processed = (processed * gain).astype(np.float32)
    return processed, reference, rate, info, side


_NISQA_SCORERS: dict[str | None, object] = {}


def _nisqa(weights: str | None):
    if weights not in _NISQA_SCORERS:
        _NISQA_SCORERS[weights] = NisqaScorer(weights)
    return _NISQA_SCORERS[weights]


def compute_group(group: str, processed: np.ndarray, reference: np.ndarray | None, rate: int, options: ScoreOptions,
                  shared: Shared | None = None) -> dict[str, float]:
    """The metric values of one group for one (aligned, equal-length) pair.

    ``shared``: the pair's reference side and WB-PESQ, reused by composite and MCD, and
    the envelopes STOI and ESTOI share (the same numbers as without it).
    """
    shared = shared or Shared()

    if group == "pesq":
        return {"WB-PESQ": m.wb_pesq(reference, processed, rate)}
    if group in ("stoi", "estoi"):
        if shared.stoi is None:
            shared.stoi = m.stoi_segments(reference, processed, rate)
        name, extended = ("ESTOI", True) if group == "estoi" else ("STOI", False)
        return {name: m.stoi(reference, processed, rate, extended=extended, segments=shared.stoi)}
    if group == "sisdr":
        return {"SI-SDR": m.si_sdr(reference, processed)}
    if group == "lsd":
        return {"LSD": m.lsd(reference, processed, rate)}
    if group == "mcd":
        return {"MCD": m.mcd(reference, processed, rate, shared.reference.mcd if shared.reference else None)}
    if group == "composite":
        pesq_score = shared.pesq if shared.pesq is not None and math.isfinite(shared.pesq) else None
        return m.composite(reference, processed, rate, pesq_score, shared.reference.composite if shared.reference else None)
    if group == "dnsmos":
        return scorer().score(processed, rate)  # one ORT thread, in any process: the same numbers for any --jobs
    if group == "nisqa":
        return _nisqa(options.nisqa_weights).score(processed, rate)
    if group == "distillmos":
        return distillmos_scorer().score(processed, rate)  # one torch thread: the same numbers for any --jobs
    raise ValueError(f"unknown metric group {group}")


# Shortest signal each group is defined on (seconds): PESQ refuses < 0.25 s; STOI needs 30
# frames of 25.6 ms at a 12.8 ms hop and returns a meaningless 1e-5 below that; LSD needs one
# 32-ms frame, MCD one 1024-sample frame (64 ms at 16 kHz).
MIN_SECONDS = {"pesq": 0.25, "composite": 0.25, "stoi": 0.4, "estoi": 0.4, "lsd": 0.032}
MIN_SAMPLES = {"mcd": 1024}


def _undefined_reason(group: str, processed: np.ndarray, reference: np.ndarray | None, rate: int) -> str | None:
    """Why ``group`` has no value for this pair (too short, silent reference), or None."""
    seconds = len(processed) / rate
    if seconds < MIN_SECONDS.get(group, 0.0) or len(processed) < MIN_SAMPLES.get(group, 0):
        need = max(MIN_SECONDS.get(group, 0.0), MIN_SAMPLES.get(group, 0) / rate)
        return f"{group} undefined: {seconds:.3f} s file, needs {need:.3f} s"
    if reference is not None and group in INTRUSIVE_GROUPS:
        # against or of a constant signal the intrusive metrics are 0/0 (SI-SDR comes out as 0 dB,
        # PESQ fails inside the library): say so instead
        for name, signal in (("clean reference", reference), ("processed file", processed)):
            if np.ptp(signal) == 0:
                return f"{group} undefined: the {name} is silent"
    return None


def score_job(job: Job, groups: tuple[str, ...], options: ScoreOptions, with_info: bool = True) -> dict:
    """Scores of ``groups`` for one job: ``{group: values}`` plus ``_info``; raises AudioError.

    ``with_info=False``: no ``_info`` (the file's level and length notes), when another unit
    of work on the same job computes it.
    """
    processed, reference, rate, info, side = _load_pair(job, options.level_align, with_level=with_info)
    out: dict = {INFO_GROUP: info, FAILURES: {}} if with_info else {FAILURES: {}}
    shared = Shared(side)
    for group in groups:
        reason = _undefined_reason(group, processed, reference, rate)
        if reason:  # NaN with a note saying why, rather than a library's cryptic error or a fake value
            out[group] = {name: math.nan for name in GROUPS[group]}
            out[FAILURES][group] = reason
            continue
        try:
            out[group] = compute_group(group, processed, reference, rate, options, shared)
            if group == "pesq":
                shared.pesq = out[group]["WB-PESQ"]
        except AudioError:
            raise
        except Exception as err:  # a metric failing on one file: NaN and a note, batch goes on
            out[group] = {name: math.nan for name in GROUPS[group]}
            out[FAILURES][group] = f"{group} failed: {_one_line(err)}"
    return out


def score_chunk(chunk: list[tuple[Job, tuple[str, ...], bool]], options: ScoreOptions) -> list[dict | str]:
    """``score_job`` for each (job, groups, with_info), in order; a job that fails gives its one-line message."""
    out: list[dict | str] = []
    for job, groups, with_info in chunk:
        try:
            out.append(score_job(job, groups, options, with_info))
        except Exception as err:  # a bad file: reported, the chunk goes on
            out.append(_error_message(job, err))
    return out


def _error_message(job: Job, err: BaseException) -> str:
    return str(err) if isinstance(err, AudioError) else f"{job.path}: {_one_line(err)}"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


class ScoreCache:
    """SQLite store of per-file, per-group scores keyed by file identity and options."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self._db = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path))
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT)")

    @staticmethod
    def key(job: Job, group: str, options: ScoreOptions) -> str:
        """Digest of both files' path/size/mtime, the group and its options."""
        parts: list = [CACHE_VERSION, group, _stat(job.path), _stat(job.reference)]
        if group in ("composite", "mcd", INFO_GROUP):
            parts.append(options.level_align)
        if group == "nisqa":
            parts.append(_stat(options.nisqa_weights))
        if group == "distillmos":  # the package's weights file: a new release scores again
            weights = weights_path()
            parts.append(_stat(str(weights)) if weights is not None and weights.is_file() else None)
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM scores WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?)", (key, json.dumps(value)))
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _stat(path: str | None) -> list | None:
    if not path:
        return None
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


# One thread per worker: the pool provides the parallelism. DNSMOS runs ONNX Runtime on one
# thread in every process; these reach OpenMP, MKL and OpenBLAS (numpy's), torch.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_children():
    """Processes started inside this block have one BLAS / OpenMP thread from their first import.

    A spawned worker imports this module, and with it numpy, whose OpenBLAS reads
    OPENBLAS_NUM_THREADS once when it loads, to unpickle its initializer, before the
    initializer runs: variables set there came too late, and each of two workers ran BLAS on
    two threads (the 64 vbd-test files, all metrics, --jobs 2: 31.5 s instead of 21.8 s).
    So they are in the environment the workers are started with.
    """
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _init_worker() -> None:
    """A scoring worker's start (its thread variables come with its environment: _one_thread_children)."""
    atexit.register(_exit_worker)


def _exit_worker() -> None:
    """A worker's last step: remove NISQA's temporary folders, then leave without the teardown.

    A spawned worker otherwise exits through the interpreter's full teardown of torch,
    onnxruntime and NISQA's modules, 2.2 s (measured) that the pool's shutdown waits for.
    Nothing is lost: every result has been sent (the pool's result queue is written
    synchronously) and the cache is written by the main process.
    """
    for nisqa_scorer in _NISQA_SCORERS.values():
        nisqa_scorer.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _chunks(jobs: list[Job], todo: list[tuple[int, tuple[str, ...]]], largest_first: bool) -> list[list[tuple[int, tuple[str, ...]]]]:
    """``todo`` grouped by reference (in first-seen order), each group one unit of work."""
    groups: dict = {}
    for i, groups_todo in todo:
        reference = jobs[i].reference
        groups.setdefault(reference if reference is not None else ("", i), []).append((i, groups_todo))
    chunks = list(groups.values())
    if largest_first:  # the longest files first, so no worker is left with a long one at the end
        chunks.sort(key=lambda chunk: -sum(_size(jobs[i].path) for i, _ in chunk))
    return chunks


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # reported when scored


# The metric families worker processes keep to: DNSMOS needs onnxruntime and speechmos, the
# others torch and NISQA's code, pesq, pystoi, scipy.signal. A worker that scores every group
# imports all of them first (about 9 s on this 2-core machine, the same in each worker); with
# ``n_jobs`` > 1, each worker starts on one family's work and takes the other's only when its
# own runs out, so the imports are not all made in every worker.
def _family(group: str) -> str:
    return "dnsmos" if group == "dnsmos" else "other"


_FAMILIES = ("dnsmos", "other")  # the order workers are given their first family in


def _family_units(chunks: list[list[tuple[int, tuple[str, ...]]]]) -> list[tuple[str, list[tuple[int, tuple[str, ...], bool]]]]:
    """Each chunk split into (family, [(job index, that family's groups, with_info)]) units, chunk order kept.

    A job's ``_info`` is computed once, by its "other" unit when it has one; a job with
    nothing but its ``_info`` to compute goes with the "other" family.
    """
    units = []
    for chunk in chunks:
        by_family: dict[str, list] = {}
        for i, groups in chunk:
            families = {_family(g) for g in groups} or {"other"}
            for family in families:
                with_info = family == "other" or "other" not in families
                by_family.setdefault(family, []).append((i, tuple(g for g in groups if _family(g) == family), with_info))
        units += [(family, by_family[family]) for family in _FAMILIES if family in by_family]
    return units


def _run_units(units: list[tuple[str, list]], jobs: list[Job], options: ScoreOptions, n_jobs: int, finish) -> None:
    """Score ``units`` in ``n_jobs`` worker processes, each preferring one family; ``finish(i, out)`` per job result.

    One single-process executor per worker, so each unit can be given to the worker whose
    libraries are loaded for it (a shared pool hands any task to any worker).
    """
    queues = {family: deque(unit for f, unit in units if f == family) for family in _FAMILIES}
    present = [family for family in _FAMILIES if queues[family]]
    n_workers = min(n_jobs, len(units))
    prefer = [present[k % len(present)] for k in range(n_workers)]

    def executor() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_init_worker)

    with _one_thread_children():
        _feed_units(queues, prefer, executor, n_workers, jobs, options, finish)


def _feed_units(queues: dict, prefer: list[str], executor, n_workers: int, jobs: list[Job], options: ScoreOptions,
                finish) -> None:
    """The scheduling loop of :func:`_run_units`: each worker takes its family's units, then the rest."""
    pools = [executor() for _ in range(n_workers)]
    running: dict = {}

    def feed(k: int) -> None:
        own = queues[prefer[k]]
        queue = own if own else max(queues.values(), key=len)  # own family's work done: help with the rest
        if queue:
            unit = queue.popleft()
            running[pools[k].submit(score_chunk, [(jobs[i], groups, with_info) for i, groups, with_info in unit],
                                    options)] = (k, unit)

    try:
        for k in range(n_workers):
            feed(k)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                k, unit = running.pop(future)
                try:
                    outs = future.result()
                except Exception as err:  # the worker died (or could not take the unit): each job is reported
                    outs = [_error_message(jobs[i], err) for i, *_ in unit]
                    if isinstance(err, BrokenProcessPool):
                        pools[k].shutdown(wait=False, cancel_futures=True)
                        pools[k] = executor()  # a fresh worker for what is left
                for (i, *_), out in zip(unit, outs):
                    finish(i, out)
                feed(k)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def run_jobs(jobs: list[Job], options: ScoreOptions, n_jobs: int = 1, cache_path: str | os.PathLike | None = None,
             progress: bool = True) -> RunResult:
    """Score every job (cached groups are reused), in ``n_jobs`` processes; never raises per file."""
    options = with_nisqa_weights(options)
    cache = ScoreCache(cache_path)
    result = RunResult()
    scored: dict[int, dict] = {}
    errors: dict[int, str] = {}  # by job index: reported in job order whatever order jobs finish in
    todo: list[tuple[int, tuple[str, ...]]] = []
    for i, job in enumerate(jobs):
        try:
            have = {g: cache.get(ScoreCache.key(job, g, options)) for g in (INFO_GROUP, *options.groups)}
        except OSError as err:
            errors[i] = f"{job.path}: {_one_line(err)}"
            continue
        missing = tuple(g for g in job_groups(job, options.groups) if have[g] is None)
        scored[i] = {g: v for g, v in have.items() if v is not None}
        if missing or have[INFO_GROUP] is None:
            todo.append((i, missing))

    bar = Progress(len(jobs), "scoring", initial=len(jobs) - len(todo), quiet=not progress)
    parts_left: dict[int, int] = {}  # job index -> units of work not yet back (a job's groups may be split)

    def finish(i: int, out: dict | str) -> None:
        """One unit's result for job ``i``; the job counts as done when its last unit is back."""
        job = jobs[i]
        if isinstance(out, str):  # the file's one-line error (every unit of a bad file gives the same)
            errors.setdefault(i, out)
        elif i not in errors:
            for group, values in out.items():
                if group == FAILURES or group in out[FAILURES]:
                    continue  # failures are not cached: retried on the next run
                cache.put(ScoreCache.key(job, group, options), values)
            failures = {**scored[i].get(FAILURES, {}), **out[FAILURES]}
            scored[i].update(out)
            scored[i][FAILURES] = failures
        parts_left[i] = parts_left.get(i, 1) - 1
        if parts_left[i] > 0:
            return
        if i in errors:
            bar.write(f"error: {errors[i]}")
            scored.pop(i, None)
        bar.update(1)

    parallel = n_jobs > 1 and len(todo) > 1
    chunks = _chunks(jobs, todo, largest_first=parallel)
    try:
        if not parallel or len(chunks) <= 1:
            # One BLAS thread here too, as in the workers: a sum split over two threads differs
            # in the last bits (SI-SDR by 3e-15), and the scores must not depend on --jobs.
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                for chunk in chunks:
                    for i, groups in chunk:
                        finish(i, score_chunk([(jobs[i], groups, True)], options)[0])
        else:
            units = _family_units(chunks)
            for _, unit in units:
                for i, *_ in unit:
                    parts_left[i] = parts_left.get(i, 0) + 1
            _run_units(units, jobs, options, n_jobs, finish)
    finally:
        bar.close()
        cache.close()
    result.errors = [errors[i] for i in sorted(errors)]

    for i in sorted(scored):
        job, parts = jobs[i], scored[i]
        info = parts.get(INFO_GROUP, {})
        row = {"system": job.system, "file": Path(job.path).stem, "path": job.path}
        for group in options.groups:
            row.update(parts.get(group, {name: math.nan for name in GROUPS[group]}))
        notes = "; ".join(filter(None, [info.get("notes", ""), *parts.get(FAILURES, {}).values()]))
        row.update({"length_diff": info.get("length_diff", 0), "level_db": info.get("level_db", math.nan),
                    "notes": notes})
        if row["notes"]:
            result.warnings.append(f"{job.path}: {row['notes']}")
        result.rows.append(row)
    return result



def score_systems(systems: dict[str, str], clean: str | None, options: ScoreOptions, n_jobs: int = 1,
                  cache_path: str | os.PathLike | None = None, progress: bool = True,
                  clean_row: str | None = None) -> tuple[RunResult, dict[str, str]]:
    """Pair and score each ``{name: folder}``; returns the result and ``{group: skip reason}``.

    ``clean_row``: also score the clean files themselves, as rows of the system of that name,
    by every non-intrusive group (none run: no such rows), so a table shows where the targets
    stand; their intrusive metrics are NaN. The warnings name each system's missing files:
    those of the clean folder (else of any system) that the system's folder lacks.
    """
    options = with_nisqa_weights(options)
    groups, skipped = check_groups(options.groups, options.nisqa_weights, clean is not None, light=n_jobs > 1)
    usable = ScoreOptions(groups, options.nisqa_weights, options.level_align)
    jobs, warnings, present = [], [], {}
    for name, folder in systems.items():
        system_jobs, system_warnings = pair_jobs(name, folder, clean)
        jobs += system_jobs
        warnings += system_warnings
        present[name] = {Path(job.path).stem for job in system_jobs}
    clean_files = _some_audio(clean) if clean is not None else []
    universe = sorted({p.stem for p in clean_files} if clean is not None else set().union(*present.values()))
    for name, have in present.items():
        missing = [f for f in universe if f not in have]
        if missing:
            warnings.append(missing_line(name, missing, len(universe)))
    if clean_row and clean_files and job_groups(Job(clean_row, ""), groups):
        if clean_row in systems:
            raise ValueError(f"a system is named {clean_row!r}: that is the clean references' row")
        jobs += [Job(clean_row, str(p)) for p in clean_files]
    result = run_jobs(jobs, usable, n_jobs=n_jobs, cache_path=cache_path, progress=progress)
    result.warnings[:0] = warnings
    return result, skipped


def missing_line(system: str, missing: list[str], total: int) -> str:
    """``"CMGAN: 3 of 6 file(s) missing: a, b, c"`` (at most 10 named)."""
    return (f"{system}: {len(missing)} of {total} file(s) missing: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else ""))
