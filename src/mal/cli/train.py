"""``mal train --config FILE [key=value ...]``: stage-1 training with Lightning."""

from __future__ import annotations

import argparse


def add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML experiment config (see configs/)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=3 data.batch_size=8")
    p.add_argument("-o", "--output-dir", help="run folder (checkpoints, metrics.csv, config.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir from checkpoints/last.ckpt")
    p.add_argument("--data", help="folder that relative data paths resolve against (default ../shared/data)")
    p.add_argument("--devices", help="devices per node (Lightning), e.g. 2")
    p.add_argument("--num-nodes", type=int, help="number of nodes (Lightning)")
    p.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    p.add_argument("--accelerator", help="cpu, gpu, auto ...")
    p.add_argument("--max-epochs", type=int, help="shortcut for trainer.max_epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bar (same as trainer.progress_bar=false)")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (stage 1, conventional loss)")
    add_training_options(p)
    p.set_defaults(run=run)


def config_from_args(args) -> dict:
    from mal.training.config import check_data_folders, load_config

    overrides = list(args.overrides)
    for flag, key in [("output_dir", "output_dir"), ("data", "data.root"), ("devices", "trainer.devices"),
                      ("num_nodes", "trainer.num_nodes"), ("strategy", "trainer.strategy"),
                      ("accelerator", "trainer.accelerator"), ("max_epochs", "trainer.max_epochs")]:
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "quiet", False):
        overrides.append("trainer.progress_bar=false")
    cfg = load_config(args.config, overrides)
    check_data_folders(cfg)  # before Lightning and torch load: a wrong --data fails at once
    if cfg["data"]["quality"]["metric"]:
        from mal.evaluation.quality import gate_metric

        gate_metric(cfg["data"]["quality"]["metric"])  # a wrong name fails at once too
    return cfg


def quality_scorer(cfg: dict):
    """The gate's scorer when ``data.quality`` asks for one (the training layer cannot import the metrics)."""
    if not cfg["data"]["quality"]["metric"]:
        return None
    from mal.evaluation.quality import clean_scorer
    from mal.util.threads import usable_cores

    return clean_scorer(cfg, jobs=usable_cores())  # before training starts: every core is free


def run(args) -> int:
    cfg = config_from_args(args)
    from mal.training import train

    report_checkpoints(train(cfg, resume=args.resume, quality_scorer=quality_scorer(cfg)), cfg)
    return 0


def report_checkpoints(ckpt_dir, cfg: dict) -> None:
    """Name the checkpoints this run wrote, and only those."""
    written = [ckpt_dir / name for name in ("last.ckpt", "best.ckpt") if (ckpt_dir / name).is_file()]
    if written:
        print("checkpoints: " + " and ".join(str(p) for p in written))
    else:
        print(f"no checkpoint written (trainer.max_epochs={cfg['trainer']['max_epochs']}); the run's config is in "
              f"{ckpt_dir.parent / 'config.yaml'}")
