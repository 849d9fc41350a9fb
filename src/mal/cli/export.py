"""``mal export CKPT -o model.onnx``: write the streaming step of a model as ONNX."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model's streaming step to ONNX (state in/out)")
    p.add_argument("checkpoint", help="checkpoint (.ckpt), model file, or deepfilternet2 / deepfilternet3")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from mal.inference import load_model
    from mal.inference.export import export_onnx, open_stream

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    model = load_model(args.checkpoint)
    export_onnx(model, out, opset=args.opset)
    step = open_stream(out)
    rate = model.sample_rate
    print(f"wrote {out}: {rate} Hz, hop {step.hop} samples, latency {1000 * step.latency_samples / rate:.1f} ms "
          f"(window + look-ahead; output delayed by {1000 * step.delay_samples / rate:.1f} ms)")
    return 0
