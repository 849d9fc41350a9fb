"""Where the time of ``mal evaluate --jobs 2`` goes (all metrics, the 64 vbd-test files).

    python benchmarks/profile_evaluate.py [--files 64]

Three measurements, each in a fresh process as ``bench_evaluate.py`` makes them:
1. ``run_jobs`` with two workers, every unit of work timed from the main process (a worker
   has one unit at a time, so submission to result is the unit's time in that worker);
2. each metric family alone in one process (DNSMOS; everything else), per file;
3. DNSMOS's onnxruntime sessions per file (features, the four 3x3 convolutions, the rest of
   the P.835 model, P.808) and the convolutions' arithmetic rate.
Writes ``benchmarks/results_profile_evaluate.json``. Not run by the tests.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MAL_SHARED_DATA", REPO.parent / "shared" / "data")) / "vbd-test"
WEIGHTS = os.environ.get("MAL_NISQA_WEIGHTS", str(REPO.parent / "shared" / "models" / "nisqa" / "nisqa.tar"))
ALL = ("pesq", "stoi", "estoi", "sisdr", "lsd", "mcd", "composite", "dnsmos", "nisqa")
OTHERS = tuple(g for g in ALL if g != "dnsmos")
# FLOPs of the P.835 model's four 3x3 convolutions per frame: 161 bins x 9 taps x
# (1*128 + 128*64 + 64*64 + 64*32) multiply-adds x 2 (their shapes in sig_bak_ovr.onnx)
CONV_FLOP_PER_FRAME = 161 * 9 * (128 + 128 * 64 + 64 * 64 + 64 * 32) * 2


def _jobs(files: int):
    from mal.evaluation.metrics import runner

    jobs, _ = runner.pair_jobs("noisy", str(DATA / "noisy"), str(DATA / "clean"))
    return jobs[:files] if files else jobs


def two_workers(files: int) -> dict:
    """``run_jobs(n_jobs=2)`` with each unit's time in its worker."""
    import concurrent.futures.process as process

    from mal.evaluation.metrics import runner
    from mal.evaluation.metrics.runner import ScoreOptions

    start, units = time.perf_counter(), []
    submit = process.ProcessPoolExecutor.submit

    def timed_submit(self, fn, *args, **kwargs):
        family = "dnsmos" if any("dnsmos" in groups for _, groups, _ in args[0]) else "other"
        submitted = time.perf_counter() - start
        future = submit(self, fn, *args, **kwargs)
        future.add_done_callback(lambda _, worker=id(self): units.append(
            (worker, family, submitted, time.perf_counter() - start)))
        return future

    process.ProcessPoolExecutor.submit = timed_submit
    result = runner.run_jobs(_jobs(files), ScoreOptions(ALL, WEIGHTS, "none"), n_jobs=2, progress=False)
    wall = time.perf_counter() - start
    workers = {}
    for number, worker in enumerate(sorted({u[0] for u in units}, key=lambda w: min(u[2] for u in units if u[0] == w))):
        mine = sorted((u for u in units if u[0] == worker), key=lambda u: u[2])
        entry = {"first_result_s": round(mine[0][3], 2), "last_result_s": round(mine[-1][3], 2)}
        for family in ("dnsmos", "other"):
            times = sorted(u[3] - u[2] for u in mine[1:] if u[1] == family)  # the first unit includes start-up
            if times:
                entry[family] = {"units": len(times), "median_s": round(times[len(times) // 2], 3), "sum_s": round(sum(times), 1)}
        workers[f"worker {number + 1} (starts on {mine[0][1]})"] = entry
    return {"wall_s": round(wall, 1), "files": len(result.rows), "errors": len(result.errors), "workers": workers}


def one_family(groups: tuple[str, ...], files: int) -> dict:
    """One process scoring ``groups``: start-up (to the first file's result) and time per file after."""
    from mal.evaluation.metrics import runner
    from mal.evaluation.metrics.runner import ScoreOptions

    jobs, options = _jobs(files), ScoreOptions(groups, WEIGHTS, "none")
    start = time.perf_counter()
    runner.run_jobs(jobs[:1], options, n_jobs=1, progress=False)
    first = time.perf_counter() - start
    runner.run_jobs(jobs[1:], options, n_jobs=1, progress=False)
    rest = time.perf_counter() - start - first
    return {"first_file_s": round(first, 2), "per_file_s": round(rest / (len(jobs) - 1), 3)}


def dnsmos_sessions(files: int) -> dict:
    """Per file: each DNSMOS session's time, and the convolutions' frames and GFLOP/s."""
    import soundfile as sf

    from mal.evaluation.metrics.dnsmos import DnsmosScorer

    scorer = DnsmosScorer()
    if scorer._parts is None:
        return {"note": "DNSMOS graph not split here (speechmos' own loop)"}
    seconds, calls, frames = collections.Counter(), collections.Counter(), [0]

    def timed(session, name):
        run = session.run

        def wrapper(outputs, feeds, *args):
            t = time.perf_counter()
            out = run(outputs, feeds, *args)
            seconds[name] += time.perf_counter() - t
            calls[name] += 1
            if name == "convolutions":
                x = next(iter(feeds.values()))
                frames[0] += x.shape[0] * x.shape[1] if x.ndim == 3 else x.shape[0]
            return out

        session.run = wrapper

    for session, name in zip(scorer._parts, ("features", "convolutions", "rest of P.835")):
        timed(session, name)
    timed(scorer._model.p808_onnx_sess, "P.808")
    audio = [sf.read(str(job.path), dtype="float32") for job in _jobs(files)]
    scorer.score(*audio[0])
    seconds.clear(), calls.clear()
    frames[0] = 0
    start = time.perf_counter()
    for x, rate in audio:
        scorer.score(x, rate)
    total = time.perf_counter() - start
    n = len(audio)
    return {"per_file_s": round(total / n, 3),
            "sessions_per_file_s": {k: round(v / n, 4) for k, v in seconds.items()},
            "calls_per_file": {k: round(v / n, 1) for k, v in calls.items()},
            "convolution_frames_per_file": round(frames[0] / n), "convolution_gflop_per_file": round(frames[0] / n * CONV_FLOP_PER_FRAME / 1e9, 1),
            "convolution_gflop_per_s": round(frames[0] * CONV_FLOP_PER_FRAME / seconds["convolutions"] / 1e9, 1)}


def _child(what: str, files: int) -> None:
    out = {"two_workers": lambda: two_workers(files), "dnsmos": lambda: one_family(("dnsmos",), files),
           "other": lambda: one_family(OTHERS, files), "sessions": lambda: dnsmos_sessions(files)}[what]()
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results_profile_evaluate.json"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.files)
        return 0
    if not (DATA / "noisy").is_dir():
        print(f"benchmark data not found at {DATA}", file=sys.stderr)
        return 2
    results = {"date": datetime.date.today().isoformat(), "command": "python benchmarks/profile_evaluate.py",
               "files": args.files, "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for what, label in (("two_workers", "mal evaluate --jobs 2 (run_jobs)"), ("dnsmos", "DNSMOS alone, one process"),
                        ("other", "the other metrics alone, one process"), ("sessions", "DNSMOS sessions, one process")):
        done = subprocess.run([sys.executable, __file__, "--child", what, "--files", str(args.files)], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        results[what] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label}: {json.dumps(results[what])}")
    out = Path(args.output)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
