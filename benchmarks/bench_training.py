"""Training-step time per loss: baseline-continued, each MAL variant, the WavLM loss and the
external-network losses (the public DeepFilterNet3's encoder, NISQA v2's CNN / self-attention).

Same model (the 16 kHz DeepFilterNet preset deepfilternet_16k), same batch, same process, at 1 and 2 threads. The WavLM loss uses
a randomly initialised WavLM-Base-sized network (94 M parameters; the weights don't change
the cost). An external loss whose network is not here (no NISQA weights) is left out and
named under "not_run". Writes benchmarks/results_training.json and prints a table.

    python benchmarks/bench_training.py [--steps 60] [--heavy-steps 15] [--passes 2] [--threads 1 2] [--only mal-frozen ...]

The model-sized losses (baseline-continued and the MAL variants) take turns in one rotation,
the heavy external-network losses in another (each with its own baseline), so a MAL step is
never timed right after a WavLM step. ``mal_extra_ms`` splits a MAL step's extra time: the
snapshot encoder on clean speech (no gradient) and on enhanced speech (forward + backward).
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

from mal.training.config import load_config
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


def one_step(task: EnhancementTask, opt: torch.optim.Optimizer, noisy: torch.Tensor, clean: torch.Tensor) -> float:
    """Seconds of one forward + losses + backward + AdamW step."""
    t0 = time.perf_counter()
    loss, _, _ = task.compute_losses(noisy, clean)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def step_times(variants: list[str], noisy: torch.Tensor, clean: torch.Tensor, steps: int) -> dict[str, float]:
    """Median step seconds per variant, the variants taking turns step by step.

    Taking turns puts every variant under the same load when the machine is shared (a
    background job slows all of them alike), so their ratios hold even when seconds drift.
    """
    tasks = {v: make_task(v).train() for v in variants}
    opts = {v: torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=1e-4) for v, t in tasks.items()}
    for v in variants:  # the first step warms up allocators
        one_step(tasks[v], opts[v], noisy, clean)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(steps):
        for v in variants:
            times[v].append(one_step(tasks[v], opts[v], noisy, clean))
    return {v: statistics.median(t) for v, t in times.items()}


def mal_extra(noisy: torch.Tensor, clean: torch.Tensor, steps: int) -> dict[str, float]:
    """Milliseconds of the parts of a mal-frozen step (medians over ``steps``)."""
    task = make_task("mal-frozen")
    model, mal = task.model, task.mal_loss

    def base():
        model.zero_grad()
        task.df_loss(model(noisy), clean).backward()

    def with_mal():
        model.zero_grad()
        enhanced = model(noisy)
        (task.df_loss(enhanced, clean) + mal(enhanced, clean)).backward()

    def clean_branch():
        with torch.no_grad():
            mal.snapshot(clean)

    def enhanced_branch():
        wave = clean.clone().requires_grad_(True)
        mal.snapshot(wave).embedding.abs().mean().backward()

    parts = {"model_step": base, "model_step_with_mal": with_mal, "snapshot_clean_no_grad": clean_branch,
             "snapshot_enhanced_forward_backward": enhanced_branch}
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(steps + 1):  # the first round warms up
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {k: 1000 * statistics.median(v[1:]) for k, v in times.items()}
    out["extra"] = out["model_step_with_mal"] - out["model_step"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60, help="steps per model-sized loss and pass (taking turns)")
    parser.add_argument("--heavy-steps", type=int, default=15, help="steps per external-network loss and pass")
    parser.add_argument("--passes", type=int, default=2, help="independent passes; the ratios of each are kept")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", help="measure only these variants (baseline-continued always)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_training.json")))
    args = parser.parse_args()
    torch.manual_seed(0)
    n = int(16000 * args.seconds)
    clean = 0.1 * torch.randn(args.batch, n)
    noisy = clean + 0.05 * torch.randn(args.batch, n)
    results = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
               "batch": args.batch, "seconds": args.seconds, "steps": args.steps, "heavy_steps": args.heavy_steps, "passes": args.passes, "threads": {}, "not_run": {}}
    variants = list(VARIANTS)
    for name in EXTERNAL:
        try:
            make_task(name)
            variants.append(name)
        except (FileNotFoundError, ImportError) as err:
            results["not_run"][name] = str(err)
    if args.only:
        variants = ["baseline-continued", *[v for v in variants if v in args.only and v != "baseline-continued"]]
    for threads in args.threads:
        torch.set_num_threads(threads)
        core = [v for v in variants if v == "baseline-continued" or v.startswith("mal")]
        heavy = ["baseline-continued", *[v for v in variants if v not in core]]
        passes = []
        for _ in range(args.passes):
            times = step_times(core, noisy, clean, args.steps)
            if len(heavy) > 1:  # ratios to the heavy rotation's own baseline, scaled onto the core one
                other = step_times(heavy, noisy, clean, args.heavy_steps)
                times.update({k: v / other["baseline-continued"] * times["baseline-continued"] for k, v in other.items() if k in heavy[1:]})
            passes.append(times)
        row = {v: statistics.median(p[v] for p in passes) for v in variants}
        base = row["baseline-continued"]
        results["threads"][threads] = {
            "passes_ratio_to_baseline": [{k: p[k] / p["baseline-continued"] for k in variants} for p in passes],
            "step_seconds": row,
            "ratio_to_baseline": {k: v / base for k, v in row.items()},
            "wavlm_over_mal": {k: row["wavlm"] / v for k, v in row.items() if k.startswith("mal") and "wavlm" in row},
            "over_mal_frozen": {k: v / row["mal-frozen"] for k, v in row.items() if (k in EXTERNAL or k == "wavlm") and "mal-frozen" in row},
            "audio_seconds_per_second": {k: args.batch * args.seconds / v for k, v in row.items()},
            "mal_extra_ms": mal_extra(noisy, clean, args.steps) if "mal-frozen" in variants else {},
        }
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"training step, batch {args.batch} x {args.seconds:g} s at 16 kHz (median of {args.passes} x {args.steps}, taking turns)")
    print(f"{'loss':<20}" + "".join(f"{f'{t} thr (s)':>12}{'x base':>8}" for t in args.threads))
    for variant in variants:
        cells = "".join(
            f"{results['threads'][t]['step_seconds'][variant]:>12.3f}{results['threads'][t]['ratio_to_baseline'][variant]:>8.2f}"
            for t in args.threads)
        print(f"{variant:<20}{cells}")
    for t in args.threads:
        print(f"{t} thread(s): ratio to baseline in each pass: " + "; ".join(
            ", ".join(f"{k} {v:.2f}" for k, v in p.items() if k != "baseline-continued")
            for p in results["threads"][t]["passes_ratio_to_baseline"]))
        extra = results["threads"][t]["mal_extra_ms"]
        if extra:
            print(f"{t} thread(s): a mal-frozen step adds {extra['extra']:.0f} ms to a {extra['model_step']:.0f} ms step; "
                  f"the snapshot encoder takes {extra['snapshot_clean_no_grad']:.0f} ms on clean speech (no gradient) "
                  f"and {extra['snapshot_enhanced_forward_backward']:.0f} ms forward + backward on enhanced speech")
        cheaper = results["threads"][t]["wavlm_over_mal"]
        if cheaper:
            print(f"{t} thread(s): the WavLM loss step costs " + ", ".join(f"{v:.1f}x {k}" for k, v in cheaper.items()))
        external = results["threads"][t]["over_mal_frozen"]
        if external:
            print(f"{t} thread(s): step cost over mal-frozen: " + ", ".join(f"{k} {v:.2f}x" for k, v in external.items()))
    for name, why in results["not_run"].items():
        print(f"not run: {name}: {why}")


if __name__ == "__main__":
    main()
