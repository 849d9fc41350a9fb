"""``mal enhance IN... -o OUT_DIR [--model CKPT]``: enhance files and folders."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("enhance", help="enhance audio files or folders")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output-dir", required=True, help="where enhanced files go (same names)")
    p.add_argument("--model", help="checkpoint (.ckpt), model file, or a public model: deepfilternet3, deepfilternet2; default: the model shipped with mal")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs / allow output inside an input folder")
    p.add_argument("--suffix", default="", help="added to each output's name (a.wav -> a_enhanced.wav with _enhanced); "
                                                "lets -o be the input folder")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="chunk length for long files (bounds memory)")
    p.add_argument("--threads", type=int, help="torch / onnxruntime CPU threads (default: the cores this process may use)")
    p.add_argument("--jobs", type=int, default=1, help="files enhanced at a time, in worker processes of one thread each "
                                                       "(offline models; default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--streaming", action="store_true", help="frame-by-frame with carried state (same output as offline)")
    mode.add_argument("--onnx", metavar="FILE", help="stream through an exported ONNX model (mal export) with onnxruntime")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from mal.inference.paths import check_output_dir, expand_inputs

    # the cheap checks first: a wrong folder is reported before torch and the model load
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs > 1 and (args.streaming or args.onnx):
        raise ValueError("--jobs needs an offline model: --streaming and --onnx enhance one file at a time")
    check_output_dir(Path(args.output_dir), args.inputs, args.overwrite, args.suffix)
    expand_inputs(args.inputs, skip=args.output_dir, suffix=args.suffix)
    import torch

    from mal.inference.batch import enhance_files
    from mal.inference import load_model

    from mal.util.threads import default_threads

    threads = args.threads or default_threads()
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    if args.onnx:
        from mal.inference.export import open_stream

        model = open_stream(args.onnx, num_threads=args.threads or 1)
    else:
        model = load_model(args.model, device=args.device)
        if args.streaming:
            from mal.inference.stream import stream_for

            model = stream_for(model)
    result = enhance_files(model, args.inputs, args.output_dir, overwrite=args.overwrite, progress=not args.quiet,
                           suffix=args.suffix, jobs=args.jobs, chunk_seconds=args.chunk_seconds)
    print(f"wrote {len(result.written)} file(s) to {args.output_dir}" + (f", {len(result.skipped)} already there (skipped)" if result.skipped else ""))
    print_notes(result, model.sample_rate)
    if result.failed:
        print(f"{len(result.failed)} file(s) failed:", file=sys.stderr)
        for path, reason in result.failed:
            print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def print_notes(result, model_rate: int) -> None:
    """Once per run: renamed outputs, samples above full scale, inputs cut short, inputs wider-band than the model."""
    for src, dst in result.renamed:
        print(f"mal: note: {src} written as {dst}: this libsndfile cannot write {src.suffix} files", file=sys.stderr)
    if result.over_full_scale:
        names = ", ".join(f"{path} ({count} samples)" for path, count in result.over_full_scale[:5])
        more = f" and {len(result.over_full_scale) - 5} more" if len(result.over_full_scale) > 5 else ""
        print(f"mal: warning: {len(result.over_full_scale)} output(s) went above full scale: {names}{more}; "
              "fixed-point files were soft-limited (peaks above 0.9 bent, nothing clipped), "
              "float files keep the values", file=sys.stderr)
    for src, missing, rate in result.cut_short:
        print(f"mal: warning: {src} is cut short: its header declares {missing} more frames ({missing / rate:.2f} s) "
              "than the file holds; enhanced what is there", file=sys.stderr)
    if result.wider_band:
        from mal.models.catalog import full_band_model

        src, rate = max(result.wider_band, key=lambda item: item[1])
        others = f" (and {len(result.wider_band) - 1} more file(s))" if len(result.wider_band) > 1 else ""
        better = full_band_model(rate)
        advice = (f"--model {better.name} ({better.sample_rate} Hz) keeps the full band" if better
                  else "no full-band pretrained model is available offline (`mal models`)")
        print(f"mal: note: {src} is {rate} Hz{others} but the model works at {model_rate} Hz: nothing above "
              f"{model_rate / 2000:g} kHz is kept; {advice}", file=sys.stderr)
