"""Training-step time per loss: baseline-continued, each MAL variant, the WavLM loss and the
external-network losses (the public DeepFilterNet3's encoder, NISQA v2's CNN / self-attention).

Same model (16 kHz DFNet), same batch, same process, at 1 and 2 threads. The WavLM loss uses
a randomly initialised WavLM-Base-sized network (94 M parameters; the weights don't change
the cost). An external loss whose network is not here (no NISQA weights) is left out and
named under "not_run". Writes benchmarks/results_training.json and prints a table.

    python benchmarks/bench_training.py [--steps 6] [--batch 8] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from mal.config import load_config
from mal.losses import wavlm_base_random
from mal.training import EnhancementTask

VARIANTS = ["baseline-continued", "mal-frozen-fe", "mal-frozen", "mal-dynamic", "wavlm"]
EXTERNAL = {"ext-dfn3-emb": ("dfn3", "emb"), "ext-nisqa-cnn": ("nisqa", "cnn"), "ext-nisqa-sa": ("nisqa", "sa")}


def make_task(variant: str) -> EnhancementTask:
    if variant in EXTERNAL:  # the ext variant (own encoder trains) with that network and layer
        kind, layer = EXTERNAL[variant]
        return EnhancementTask(load_config(None, ["finetune.variant=ext", f"loss.ext.kind={kind}", f"loss.ext.layer={layer}"]))
    ssl = variant.startswith("wavlm")
    cfg = load_config(None, [f"finetune.variant={'baseline-continued' if ssl else variant}"])
    task = EnhancementTask(cfg)
    if ssl:  # same as the wavlm variant, with a random Base-sized network instead of a download
        task.ssl_loss, task.ssl_weight = wavlm_base_random(sample_rate=task.model.sample_rate), 1.0
    return task


def step_time(task: EnhancementTask, noisy: torch.Tensor, clean: torch.Tensor, steps: int) -> float:
    """Median seconds of forward + losses + backward + AdamW step."""
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss, _, _ = task.compute_losses(noisy, clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_training.json")))
    args = parser.parse_args()
    torch.manual_seed(0)
    n = int(16000 * args.seconds)
    clean = 0.1 * torch.randn(args.batch, n)
    noisy = clean + 0.05 * torch.randn(args.batch, n)
    results = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
               "batch": args.batch, "seconds": args.seconds, "steps": args.steps, "threads": {}, "not_run": {}}
    variants = list(VARIANTS)
    for name in EXTERNAL:
        try:
            make_task(name)
            variants.append(name)
        except (FileNotFoundError, ImportError) as err:
            results["not_run"][name] = str(err)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        row = {}
        for variant in variants:
            task = make_task(variant)
            task.train()
            row[variant] = step_time(task, noisy, clean, args.steps)
        base = row["baseline-continued"]
        results["threads"][threads] = {
            "step_seconds": row,
            "ratio_to_baseline": {k: v / base for k, v in row.items()},
            "wavlm_over_mal": {k: row["wavlm"] / v for k, v in row.items() if k.startswith("mal")},
            "over_mal_frozen": {k: v / row["mal-frozen"] for k, v in row.items() if k in EXTERNAL or k == "wavlm"},
            "audio_seconds_per_second": {k: args.batch * args.seconds / v for k, v in row.items()},
        }
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"training step, batch {args.batch} x {args.seconds:g} s at 16 kHz (median of {args.steps})")
    print(f"{'loss':<20}" + "".join(f"{f'{t} thr (s)':>12}{'x base':>8}" for t in (1, 2)))
    for variant in variants:
        cells = "".join(
            f"{results['threads'][t]['step_seconds'][variant]:>12.3f}{results['threads'][t]['ratio_to_baseline'][variant]:>8.2f}"
            for t in (1, 2))
        print(f"{variant:<20}{cells}")
    for t in (1, 2):
        cheaper = results["threads"][t]["wavlm_over_mal"]
        print(f"{t} thread(s): the WavLM loss step costs " + ", ".join(f"{v:.1f}x {k}" for k, v in cheaper.items()))
        external = results["threads"][t]["over_mal_frozen"]
        print(f"{t} thread(s): step cost over mal-frozen: " + ", ".join(f"{k} {v:.2f}x" for k, v in external.items()))
    for name, why in results["not_run"].items():
        print(f"not run: {name}: {why}")


if __name__ == "__main__":
    main()
