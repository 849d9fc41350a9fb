"""Files per second of `mal evaluate`'s scoring with --jobs 1 and --jobs 2 (no cache).

    python benchmarks/bench_evaluate.py [--files 12] [--metrics all] [--nisqa-weights PATH]

Scores the first N noisy VoiceBank-DEMAND test files of ../shared/data/vbd-test against their
clean references, once per job count, and writes benchmarks/results_evaluate.json. The time
includes starting the worker processes (each loads its models once). Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "vbd-test"))
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--metrics", default="all")
    parser.add_argument("--jobs", default="1,2", help="comma list of worker counts")
    parser.add_argument("--nisqa-weights", default=os.environ.get("MAL_NISQA_WEIGHTS",
                        str(REPO.parent / "shared" / "models" / "nisqa" / "nisqa.tar")))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results_evaluate.json"))
    args = parser.parse_args()

    from mal.metrics import parse_groups
    from mal.metrics.runner import ScoreOptions, check_groups, pair_jobs, run_jobs
    from mal.report import write_json

    data = Path(args.data)
    if not (data / "noisy").is_dir():
        print(f"benchmark data not found at {data}", file=sys.stderr)
        return 2
    jobs, _ = pair_jobs("Noisy", data / "noisy", data / "clean")
    jobs = jobs[: args.files]
    weights = args.nisqa_weights if Path(args.nisqa_weights).is_file() else None
    groups, skipped = check_groups(parse_groups(args.metrics), weights, True)
    options = ScoreOptions(groups, weights)
    audio_seconds = sum(_duration(j.path) for j in jobs)
    results = []
    for n_jobs in (int(j) for j in args.jobs.split(",")):
        start = time.perf_counter()
        result = run_jobs(jobs, options, n_jobs=n_jobs, cache_path=None, progress=False)
        wall = time.perf_counter() - start
        results.append({"jobs": n_jobs, "files": len(result.rows), "errors": len(result.errors), "wall_s": round(wall, 2),
                        "files_per_s": round(len(result.rows) / wall, 3),
                        "audio_s_per_s": round(audio_seconds / wall, 2)})
        print(f"--jobs {n_jobs}: {len(result.rows)} files in {wall:.1f} s = {len(result.rows) / wall:.2f} files/s")
    write_json(args.out, {"benchmark": "mal evaluate scoring throughput", "metric_groups": list(groups),
                          "skipped": skipped, "audio_seconds": round(audio_seconds, 1), "results": results,
                          "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                      "platform": platform.platform()},
                          "note": "wall time includes worker start-up and model loading; the CPU may be shared"})
    print(f"wrote {args.out}")
    return 0


def _duration(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate


if __name__ == "__main__":
    sys.exit(main())
