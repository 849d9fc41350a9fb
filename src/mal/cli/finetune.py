"""``mal finetune --from STAGE1.ckpt --config configs/mal_dynamic.yaml``: stage 2."""

from __future__ import annotations

from mal.cli.train import add_training_options, config_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="stage 2: continue from a stage-1 checkpoint with a variant's losses")
    p.add_argument("--from", dest="stage1", required=True, help="stage-1 checkpoint (.ckpt), model file, or deepfilternet2 / deepfilternet3 (the public weights)")
    add_training_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    cfg = config_from_args(args)
    from mal.training import finetune

    ckpt_dir = finetune(cfg, args.stage1, resume=args.resume)
    print(f"checkpoints: {ckpt_dir}/last.ckpt and {ckpt_dir}/best.ckpt")
    return 0
