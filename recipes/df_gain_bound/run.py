"""Does bounding the deep filter's gain keep repeated enhancement stable? (beyond the paper)

    python recipes/df_gain_bound/run.py            # about 25 min on 2 cores
    python recipes/df_gain_bound/run.py --epochs 4

In the paper_cpu run every model's output diverged after 16-23 self-enhancement passes: the
deep filter raises the power of the band it filters (below 3.2 kHz at 16 kHz) a little on
every pass. This recipe trains the paper_cpu stage-1 model twice, identical (data, split,
seed, steps) except ``model.df_gain_bound``, then, on held-out speakers and noises:
1. the power gain per pass inside and above the deep-filter band, on clean speech;
2. ``mal consistency`` over ``--iterations`` passes of the noisy test mixtures;
3. ``mal compare`` on the in-domain test mixtures (what the bound costs in quality).
Writes ``results/df_gain_bound/report.md``. Steps whose output exists are skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "recipes" / "paper_cpu"))  # its run.py imports its neighbours


def _paper_cpu():
    """recipes/paper_cpu/run.py as a module (this file is also called run.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_cpu_run", REPO / "recipes" / "paper_cpu" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_paper = _paper_cpu()
MODEL, common_overrides, make_in_domain_test, sh = _paper.MODEL, _paper.common_overrides, _paper.make_in_domain_test, _paper.sh

VARIANTS = {"df-unbounded": "false", "df-gain-bound": "true"}


def band_gains(ckpt: Path, clean_dir: Path, passes: int, limit: int) -> list[dict]:
    """Mean power ratio (pass k / pass k-1) inside and above the deep-filter band."""
    import torch

    from mal.audio import list_audio, read_audio
    from mal.enhance import enhance_array, load_model

    torch.set_num_threads(2)
    model = load_model(ckpt)
    cut_hz = model.cfg.n_df * model.sample_rate / model.cfg.n_fft

    def powers(x: np.ndarray, rate: int) -> tuple[float, float]:
        n = 512
        frames = x[: len(x) // n * n].reshape(-1, n) * np.hanning(n)
        spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / rate)
        return float(spec[:, freqs < cut_hz].sum()), float(spec[:, freqs >= cut_hz].sum())

    ratios = np.full((passes, limit, 2), np.nan)
    for f, path in enumerate(list_audio(clean_dir)[:limit]):
        x, rate = read_audio(path)
        before = powers(x, rate)
        for k in range(passes):
            x = enhance_array(model, x, rate)
            if not np.isfinite(x).all():
                break
            after = powers(x, rate)
            ratios[k, f] = [a / b for a, b in zip(after, before)]
            before = after
    return [{"pass": k + 1, "low_band_gain": float(np.nanmean(ratios[k, :, 0])),
             "high_band_gain": float(np.nanmean(ratios[k, :, 1])), "cut_hz": cut_hz} for k in range(passes)]


def consistency_rows(path: Path) -> dict[str, dict[int, tuple[float, int]]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out: dict[str, dict[int, tuple[float, int]]] = {}
    for r in rows:
        out.setdefault(r["model"], {})[int(r["iteration"])] = (float(r["NISQA-MOS_mean"]), int(r["n_files"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8, help="stage-1 epochs of each model (x 1200 mixtures)")
    p.add_argument("--iterations", type=int, default=60, help="self-enhancement passes")
    p.add_argument("--clips", type=int, default=4, help="test mixtures in the consistency test")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--work", default=str(REPO / "runs" / "df_gain_bound"))
    p.add_argument("--out", default=str(REPO / "results" / "df_gain_bound"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data, work, out = Path(args.data).resolve(), Path(args.work).resolve(), Path(args.out).resolve()
    if not (data / "librispeech-train-clean-100-subset").is_dir():
        raise SystemExit(f"{data}: training data not found (expected the layout of ../shared/data)")
    os.environ.setdefault("MAL_NISQA_WEIGHTS", str(data.parent / "models" / "nisqa" / "nisqa.tar"))
    started, logs = time.time(), work / "logs"

    ckpts = {}
    for name, bound in VARIANTS.items():
        run_dir = work / name
        if not (run_dir / "DONE").is_file():
            resume = ["--resume"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
            sh(["train", "--config", "configs/baseline.yaml", "-o", str(run_dir), "--data", str(data), *resume,
                *common_overrides(args, args.epochs, 1200), f"model.df_gain_bound={bound}",
                "optim.lr=0.002", "optim.warmup_steps=100"], logs / f"{name}.log")
            (run_dir / "DONE").touch()
        ckpts[name] = run_dir / "checkpoints" / "best.ckpt"

    # held-out speakers and noises of the (identical) split; 48 mixtures as in paper_cpu
    test = work / "test_in"
    make_in_domain_test(work / "df-unbounded" / "split.json", data, test, 48, args.seed)
    gains = {name: band_gains(ckpt, test / "clean", 5, 16) for name, ckpt in ckpts.items()}

    enhanced = work / "enhanced"
    for name, ckpt in ckpts.items():
        if len(list((enhanced / name).glob("*.wav"))) < 48:
            sh(["enhance", str(test / "noisy"), "-o", str(enhanced / name), "--model", str(ckpt),
                "--threads", str(args.threads)], logs / "enhance.log")
    sh(["compare", "--clean", str(test / "clean"), "--systems", f"Noisy={test / 'noisy'}",
        *[f"{n}={enhanced / n}" for n in ckpts], "--reference", "df-unbounded", "--jobs", str(args.jobs),
        "--title", "Deep-filter gain bound: quality on held-out speakers and noises", "-o", str(out / "in-domain")],
       logs / "compare.log")
    sh(["consistency", "--model", *[f"{n}={c}" for n, c in ckpts.items()], "--input", str(test / "noisy"),
        "--limit", str(args.clips), "--iterations", str(args.iterations), "--score-every", "5", "--metrics", "nisqa",
        "--quiet", "-o", str(out / "consistency")], logs / "consistency.log", ok=(0, 1))

    write_report(out, args, gains, (time.time() - started) / 60)
    print(f"report: {out / 'report.md'}")


def write_report(out: Path, args, gains: dict, minutes: float) -> None:
    from mal.io import write_text_atomic

    summary = json.loads((out / "in-domain" / "summary.json").read_text())
    curves = consistency_rows(out / "consistency" / "curves.csv")
    cut = next(iter(gains.values()))[0]["cut_hz"]
    lines = [
        "# Deep-filter gain bound: repeated enhancement and quality (beyond the paper)", "",
        f"Produced by `python recipes/df_gain_bound/run.py {' '.join(sys.argv[1:])}` in {minutes:.0f} min. Two "
        f"stage-1 models `{MODEL}`, {args.epochs} epochs x 1200 mixtures each, identical except "
        "`model.df_gain_bound` (sum of |deep-filter taps| <= 1 per bin). Test data: held-out speakers and noises.", "",
        f"## Power gain per pass on clean speech (16 held-out clips; deep-filter band below {cut:.0f} Hz)", "",
        "| model | " + " | ".join(f"pass {g['pass']} low / high" for g in next(iter(gains.values()))) + " |",
        "|---" * (1 + len(next(iter(gains.values())))) + "|",
    ]
    for name, rows in gains.items():
        lines.append(f"| {name} | " + " | ".join(f"{g['low_band_gain']:.3f} / {g['high_band_gain']:.3f}" for g in rows) + " |")
    marks = sorted({0, 1, 5, 10, 20, 30, 40, 60, args.iterations} & set(range(args.iterations + 1)))
    lines += ["", f"## Self-consistency: mean NISQA-MOS of {args.clips} noisy test mixtures, {args.iterations} passes "
              "(n = clips still finite)", "",
              "| model | " + " | ".join(f"pass {i}" for i in marks) + " |", "|---" * (1 + len(marks)) + "|"]
    for name, values in curves.items():
        cells = [f"{values[i][0]:.2f} (n={values[i][1]})" if i in values and math.isfinite(values[i][0]) else "diverged"
                 for i in marks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Quality on the 48 in-domain test mixtures (mean [95% CI]; difference to df-unbounded, "
              "bootstrap 95% CI, Wilcoxon + Benjamini-Hochberg)", "",
              "| metric | Noisy | df-unbounded | df-gain-bound | bound - unbounded | p_adj |", "|---|---|---|---|---|---|"]
    for metric in ("NISQA-MOS", "DNSMOS-OVRL", "WB-PESQ", "ESTOI", "SI-SDR", "LSD"):
        cells = []
        for system in ("Noisy", "df-unbounded", "df-gain-bound"):
            s = summary["systems"][system]["metrics"].get(metric)
            cells.append(f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]" if s and s["n"] else "-")
        d = summary.get("comparisons", {}).get("df-gain-bound", {}).get(metric)
        diff = f"{d['mean_diff']:+.3f} [{d['diff_ci95_lo']:+.3f}, {d['diff_ci95_hi']:+.3f}] | {d['p_adj']:.3g}" if d else "- | -"
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {diff} |")
    lines += ["", "Figures: [consistency/curves.png](consistency/curves.png), "
              "[consistency/spectrograms.png](consistency/spectrograms.png); full table: [in-domain/report.md](in-domain/report.md)."]
    pages = [f"[{p}]({p}/index.html)" for p in ("in-domain", "consistency") if (out / p / "index.html").exists()]
    if pages:
        lines += ["", "Listening pages (audio, spectrograms, per-file tables; open in a browser): " + ", ".join(pages) + "."]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "gains.json", json.dumps(gains, indent=1) + "\n")


if __name__ == "__main__":
    main()
