"""Start-up time of the ``mal`` command: wall seconds until it exits, median of N fresh processes.

    python benchmarks/bench_startup.py [--repeats 5]

Targets (issue 16): ``mal --help`` and argument errors under 0.5 s, ``mal info`` under 2 s.
Writes benchmarks/results_startup.json. Not run by the tests (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(scratch: Path) -> dict[str, list[str]]:
    """What a user types first: help, mistakes, the model listing and a model's card."""
    folder = scratch / "in"
    folder.mkdir(exist_ok=True)
    (folder / "a.wav").write_bytes(b"")
    return {
        "mal --help": ["--help"],
        "mal --version": ["--version"],
        "mal enhance (missing -o)": ["enhance", "x.wav"],
        "mal enhance in -o in (refused)": ["enhance", str(folder), "-o", str(folder)],
        "mal train (missing data folder)": ["train", "--config", "configs/baseline.yaml", "--data", str(scratch / "none")],
        "mal info deepfilternet_16k": ["info", "deepfilternet_16k"],
        "mal models": ["models"],
    }


def measure(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mal", *args], cwd=REPO, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = {name: round(measure(argv, args.repeats), 3) for name, argv in commands(Path(scratch)).items()}
    for name, seconds in rows.items():
        print(f"{name:<36} {seconds:6.2f} s")
    result = {"median_seconds": rows, "repeats": args.repeats, "python": platform.python_version(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    (REPO / "benchmarks" / "results_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
