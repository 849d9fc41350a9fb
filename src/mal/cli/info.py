"""``mal info CKPT_OR_CONFIG``: parameters, MACs per second of audio, rate, latency."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a model's size, compute and latency")
    p.add_argument("source", nargs="?", help="checkpoint (.ckpt / model file), YAML config, or preset name (deepfilternet_16k, deepfilternet2_arch)")
    p.add_argument("--list", action="store_true", help="list the pretrained models and presets (as `mal models`)")
    p.set_defaults(run=run)


def describe(source: str) -> dict:
    from mal.models import PRESETS, build_model, count_macs, count_parameters

    path = Path(source)
    trains: list[str] = []
    if source.lower() in PRESETS:
        model = build_model({"preset": source.lower()})
    elif path.suffix in (".yaml", ".yml"):
        from mal.training.config import load_config

        from mal.training.variants import describe_training

        cfg = load_config(path)
        model = build_model(cfg["model"])
        trains = describe_training(cfg)
    else:
        from mal.inference import load_model

        model = load_model(path)
    rate = model.sample_rate
    latency = model.window_samples + model.lookahead_samples
    return {
        "model": model.config_dict()["name"],
        "parameters": count_parameters(model),
        "encoder_parameters": count_parameters(model.encoder),
        "macs_per_second": count_macs(model),
        "sample_rate": rate,
        "lookahead_ms": 1000 * model.lookahead_samples / rate,
        "latency_ms": 1000 * latency / rate,
        "trains": trains,
    }


def run(args) -> int:
    if args.list:
        from mal.cli.models import print_catalog

        print_catalog()
        return 0
    if args.source is None:
        raise ValueError("info: give a checkpoint, YAML config or preset name, or --list for what is available")
    d = describe(args.source)
    print(f"model:            {d['model']}")
    print(f"parameters:       {d['parameters']:,} ({d['parameters'] / 1e6:.2f} M; encoder {d['encoder_parameters']:,})")
    print(f"MACs / s audio:   {d['macs_per_second'] / 1e6:.1f} M")
    print(f"sample rate:      {d['sample_rate']} Hz")
    print(f"look-ahead:       {d['lookahead_ms']:.1f} ms")
    print(f"latency:          {d['latency_ms']:.1f} ms (window + look-ahead)")
    for i, line in enumerate(d["trains"]):
        print(f"{'trains:' if i == 0 else '':<18}{line}")
    return 0
