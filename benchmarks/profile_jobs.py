"""Where the time of `mal enhance --jobs 2` goes: worker start-up vs per-file work.

    python benchmarks/profile_jobs.py [--repeat 4] [--output benchmarks/results_profile_jobs.json]

DeepFilterNet3 over the 64 vbd-test noisy files, and over the same files repeated ``--repeat``
times (links under other names), with ``enhance_files`` on 1 job and on 2 jobs (one torch
thread each), and the time a worker takes to start before its first file: spawned (import mal
+ torch, receive the model) and forked (what enhance_files uses on Linux). A fixed start-up cost is what keeps 2 jobs from doubling the
throughput of a short folder; the longer folder shows the rate once the workers run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from mal.inference.batch import _init_worker, enhance_files, worker_start_method
from mal.models.public import load_public

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def _ready() -> float:
    return time.perf_counter()


def worker_start_seconds(model, method: str) -> float:
    """Wall time from creating a 1-worker pool (as enhance_files does) to its first answer."""
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context(method), initializer=_init_worker, initargs=(model,)) as pool:
        pool.submit(_ready).result()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results_profile_jobs.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_public("deepfilternet3")
    files = sorted((DATA / "vbd-test" / "noisy").glob("*.wav"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        long = []
        for r in range(args.repeat):
            for f in files:
                link = Path(tmp) / "in" / f"r{r}_{f.name}"
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(f)
                long.append(link)
        for name, folder in (("64 files", files), (f"{len(long)} files", long)):
            for jobs in (1, 2):
                out = Path(tmp) / f"out_{len(folder)}_{jobs}"
                t = time.perf_counter()
                enhance_files(model, folder, out, progress=False, jobs=jobs)
                wall = time.perf_counter() - t
                rows.append({"files": len(folder), "jobs": jobs, "seconds": wall, "files_per_s": len(folder) / wall})
        start = {method: [worker_start_seconds(model, method) for _ in range(3)] for method in ("spawn", "fork")}
    for n in {r["files"] for r in rows}:
        one, two = (next(r for r in rows if r["files"] == n and r["jobs"] == j) for j in (1, 2))
        two["throughput_vs_1_job"] = two["files_per_s"] / one["files_per_s"]
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_at_start": os.getloadavg(), "rows": rows,
              "worker_start_seconds": start, "start_method_used": worker_start_method(), "command": f"python benchmarks/profile_jobs.py --repeat {args.repeat}"}
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['files']:>4} files, {r['jobs']} job(s): {r['seconds']:6.1f} s  {r['files_per_s']:5.2f} files/s"
              + (f"  x{r['throughput_vs_1_job']:.2f} vs 1 job" if "throughput_vs_1_job" in r else ""))
    for method, seconds in start.items():
        print(f"a {method} worker's start-up: {', '.join(f'{s:.2f}' for s in seconds)} s")
    print(f"enhance_files starts its workers by {worker_start_method()}")


if __name__ == "__main__":
    main()
