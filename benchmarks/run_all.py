"""``make bench``: run every benchmark, merge their JSON into benchmarks/results.json.

Each benchmark also writes its own ``results_*.json`` and prints its table. The machine may be
shared: quote only ratios measured in the same run (each benchmark measures its baseline
alongside), and re-run on a quiet machine for absolute numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ("speed", "bench_speed.py", []),
    ("training", "bench_training.py", []),
    ("serve", "bench_serve.py", []),
    # default threads against the best --threads while another CPU-bound process runs
    ("load", "bench_load.py", []),
    # scoring measured beside the code before its speed-up (commit 6cb4f3b), in the same run,
    # every configuration twice, taking turns, the faster pass kept
    ("evaluate", "bench_evaluate.py", ["--baseline", "6cb4f3b"]),
    ("startup", "bench_startup.py", []),
    # where the time of `--jobs 2` goes (worker start-up, short vs long folders)
    ("profile_jobs", "profile_jobs.py", []),
    # where a hop of the DeepFilterNet3 stream goes (GRU layers vs the rest, by ablation)
    ("profile_stream", "profile_stream.py", []),
    # where the time of `mal evaluate --jobs 2` goes (per worker, per metric family, DNSMOS sessions)
    ("profile_evaluate", "profile_evaluate.py", []),
    # where mal serve's time goes at 32 streams a rate (server threads' and clients' CPU, GIL holders)
    ("profile_serve", "bench_serve.py", ["--profile", "32"]),
]


def main() -> int:
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    merged = {"date": datetime.date.today().isoformat(), "command": "make bench", "commit": commit + ("+changes" if dirty else ""),
              "load_average_start": os.getloadavg()}
    failed = []
    for name, script, args in BENCHMARKS:
        path = HERE / script
        if not path.is_file():
            failed.append(f"{script} missing")
            continue
        print(f"\n=== {name}: python benchmarks/{script} {' '.join(args)}", flush=True)
        if subprocess.call([sys.executable, str(path), *args]) != 0:
            failed.append(script)
            continue
        result = HERE / f"results_{name}.json"
        if result.is_file():
            merged[name] = json.loads(result.read_text())
    out = HERE / "results.json"
    tmp = out.with_suffix(".json.part")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
