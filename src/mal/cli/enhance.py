"""``mal enhance IN... -o OUT_DIR [--model CKPT]``: enhance files and folders."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("enhance", help="enhance audio files or folders")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output-dir", required=True, help="where enhanced files go (same names)")
    p.add_argument("--model", help="checkpoint (.ckpt) or model file; default: the model shipped with mal")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs / allow output inside an input folder")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="chunk length for long files (bounds memory)")
    p.add_argument("--threads", type=int, help="torch / onnxruntime CPU threads")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--streaming", action="store_true", help="frame-by-frame with carried state (same output as offline)")
    mode.add_argument("--onnx", metavar="FILE", help="stream through an exported ONNX model (mal export) with onnxruntime")
    p.set_defaults(run=run)


def run(args) -> int:
    import torch

    from mal.enhance import enhance_files, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.onnx:
        from mal.export import OnnxStream

        model = OnnxStream(args.onnx, num_threads=args.threads or 1)
    else:
        model = load_model(args.model, device=args.device)
        if args.streaming:
            from mal.streaming import DFNetStream

            model = DFNetStream(model)
    result = enhance_files(model, args.inputs, args.output_dir, overwrite=args.overwrite, chunk_seconds=args.chunk_seconds)
    print(f"wrote {len(result.written)} file(s) to {args.output_dir}" + (f", {len(result.skipped)} already there (skipped)" if result.skipped else ""))
    if result.failed:
        print(f"{len(result.failed)} file(s) failed:", file=sys.stderr)
        for path, reason in result.failed:
            print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0
