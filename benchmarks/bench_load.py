"""Default threads on a shared machine: `mal enhance` and a short `mal finetune` while another
CPU-bound job runs, default settings against each `--threads` / `trainer.threads` value.

The competing job is another PyTorch process doing matrix products on every core this process
may use (as a second training would). Each configuration runs as its own `mal` process, the
configurations taking turns, each twice; the faster pass is kept. "before" is the code's defaults
before issue 29 (torch's thread count, spinning OpenMP threads). Writes
benchmarks/results_load.json:
``{"enhance": {"default": s, "threads=1": s, ...}, "finetune": {...}, "default_over_best": {...}}``.

    python benchmarks/bench_load.py [--files 5] [--passes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MAL_DATA", REPO.parent / "shared" / "data"))
COMPETITOR = """
import torch
a = torch.randn(384, 384)
while True:
    a = torch.tanh(a @ a)
"""


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5, help="VoiceBank-DEMAND test files to enhance")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_load.json")))
    args = parser.parse_args()
    noisy = sorted((DATA / "vbd-test" / "noisy").glob("*.wav"))[: args.files]
    if not noisy:
        print(f"no VoiceBank-DEMAND test files under {DATA}: nothing to measure")
        return 1
    mal = [sys.executable, "-m", "mal"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    spinning = env | {"OMP_WAIT_POLICY": "ACTIVE"}
    threads = list(range(1, cores() + 1))
    with tempfile.TemporaryDirectory() as tmp:
        # "before": the defaults of the code before issue 29 (torch's thread count, every core of the
        # machine; OpenMP threads spinning between regions, libgomp's default)
        enhance = {"default": [], "before": []} | {f"threads={n}": [] for n in threads}
        finetune = {"default": [], "before": []} | {f"threads={n}": [] for n in threads}
        run_args = ["--config", "configs/mal_frozen.yaml", "--data", str(DATA), "data.train_size=16", "data.val_size=4",
                    "data.batch_size=4", "data.segment_seconds=1.0", "trainer.max_epochs=1", "--quiet"]
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
        try:
            time.sleep(2)  # the competitor at full speed first
            for p in range(args.passes):
                for name in enhance:
                    n = os.cpu_count() if name == "before" else name.partition("=")[2]
                    extra = ["--threads", str(n)] if n else []
                    out = Path(tmp) / f"enh-{name}-{p}"
                    cmd = [*mal, "enhance", *map(str, noisy), "-o", str(out), "--quiet", *extra]
                    enhance[name].append(timed(cmd, spinning if name == "before" else env))
                for name in finetune:
                    n = os.cpu_count() if name == "before" else name.partition("=")[2]
                    extra = [f"trainer.threads={n}"] if n else []
                    out = Path(tmp) / f"ft-{name}-{p}"
                    cmd = [*mal, "finetune", "--from", "deepfilternet3", "-o", str(out), *run_args, *extra]
                    finetune[name].append(timed(cmd, spinning if name == "before" else env))
        finally:
            competitor.kill()
            competitor.wait()
    best = {"enhance": {k: min(v) for k, v in enhance.items()}, "finetune": {k: min(v) for k, v in finetune.items()}}
    ratio = {task: row["default"] / min(v for k, v in row.items() if k.startswith("threads=")) for task, row in best.items()}
    before = {task: row["before"] / row["default"] for task, row in best.items()}
    results = {"date": str(date.today()), "machine": platform.processor() or platform.machine(), "cores": cores(),
               "competitor": "one PyTorch process, matrix products on every core", "files": len(noisy),
               "finetune": "mal finetune --from deepfilternet3, configs/mal_frozen.yaml, 4 steps of 4 x 1 s + validation",
               "seconds": best, "all_passes": {"enhance": enhance, "finetune": finetune}, "default_over_best": ratio,
               "before_over_default": before}
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"with a competing CPU-bound process on {cores()} core(s); seconds (best of {args.passes}):")
    for task, row in best.items():
        print(f"  {task:<9}" + "".join(f"  {k} {v:.1f}" for k, v in row.items()) + f"   default / best {ratio[task]:.2f}x, before / default {before[task]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
