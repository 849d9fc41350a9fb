"""``mal finetune --from STAGE1.ckpt --config configs/mal_dynamic.yaml``: stage 2."""

from __future__ import annotations

from mal.cli.train import add_training_options, config_from_args, quality_scorer, report_checkpoints


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="stage 2: continue from a stage-1 checkpoint with a variant's losses")
    p.add_argument("--from", dest="stage1", help="stage-1 checkpoint (.ckpt), model file, or deepfilternet2 / deepfilternet3 "
                   "(the public weights); default: finetune.from of --config (a run's config.yaml records it)")
    add_training_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    cfg = config_from_args(args)
    source = args.stage1 or cfg["finetune"]["from"]
    if not source:
        raise ValueError("--from is required: the model to fine-tune (or finetune.from in --config)")
    from mal.training import finetune

    report_checkpoints(finetune(cfg, source, resume=args.resume, quality_scorer=quality_scorer(cfg)), cfg)
    return 0
