"""``mal consistency``: the paper's iterative self-enhancement test.

    mal consistency --model A.ckpt B.ckpt --input DIR --iterations 150 -o OUT_DIR

Each file of DIR is enhanced, the output fed back in, N times, per model. Writes
OUT_DIR/curves.csv (mean NISQA, DNSMOS OVRL and HNR per pass), curves.png,
spectrograms.png (input, 1, 10, 100 and the last pass), consistency.json (settings, skipped
metrics) and index.html: the listening page (both figures; audio and spectrograms of the first
--listen-clips clips after 1, 10, 100 and the last pass, per model, in listen/<file id>/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("consistency", help="iterative self-enhancement curves (paper Fig. 1/3)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="*", default=[], metavar="CKPT", help="checkpoints to test, optionally named: NAME=CKPT")
    p.add_argument("--identity", action="store_true", help="add an identity 'model' (a flat reference curve)")
    p.add_argument("--input", required=True, help="folder of (noisy) speech files")
    p.add_argument("--iterations", type=int, default=150, help="enhancement passes (default 150, as the paper)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N files (paper: 200)")
    p.add_argument("--metrics", default="nisqa,dnsmos,hnr", help="comma list of nisqa, dnsmos, hnr")
    p.add_argument("--nisqa-weights", default=None, help="NISQA weights (default $MAL_NISQA_WEIGHTS, else shared/models/nisqa/nisqa.tar "
                                                             "in or beside the working folder or the checkout)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--score-every", type=int, default=1, help="score passes 0, 1, k, 2k, ... only (enhancement runs every pass)")
    p.add_argument("--listen-clips", type=int, default=3,
                   help="clips with audio and spectrograms in index.html (default 3; 0: no page; -1: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from mal.audio import list_audio
    from mal.evaluation.consistency import hnr_unavailable, run_consistency
    from mal.evaluation.metrics.dnsmos import dnsmos_unavailable
    from mal.evaluation.metrics.nisqa import find_nisqa_weights, nisqa_unavailable
    from mal.reports.pages.consistency import write_consistency_report
    from mal.reports.tables import write_json

    if args.iterations < 1:
        raise ValueError("--iterations must be at least 1")
    if not args.model and not args.identity:
        raise ValueError("give --model CKPT... and/or --identity")
    out = Path(args.output)
    if out.resolve() == Path(args.input).resolve():
        raise ValueError("output folder must differ from the input folder")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = set(metrics) - {"nisqa", "dnsmos", "hnr"}
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(sorted(unknown))}; choose nisqa, dnsmos, hnr")
    weights = find_nisqa_weights(args.nisqa_weights)
    skipped = {}
    if "nisqa" in metrics and (reason := nisqa_unavailable(weights)):
        skipped["nisqa"] = reason
    if "dnsmos" in metrics and (reason := dnsmos_unavailable()):
        skipped["dnsmos"] = reason
    if "hnr" in metrics and (reason := hnr_unavailable()):
        skipped["hnr"] = reason
    for name, reason in skipped.items():
        print(f"mal: warning: {name} skipped: {reason}", file=sys.stderr)
    metrics = tuple(m for m in metrics if m not in skipped)
    if not metrics:
        raise ValueError("no metric left to compute")

    models = model_functions(args.model, args.identity)
    inputs = list_audio(args.input)[: args.limit]
    result = run_consistency(models, inputs, args.iterations, out, metrics=metrics,
                             nisqa_weights=str(weights) if weights else None, progress=not args.quiet,
                             score_every=args.score_every,
                             listen_clips=None if args.listen_clips < 0 else args.listen_clips)
    figures, page = write_consistency_report(result, out)
    write_json(out / "consistency.json", {"models": {n: p.partition("=")[2] or p for n, p in zip(models, [*args.model, "identity"])},
                                          "input": str(args.input), "files": len(inputs) - len(result.errors),
                                          "iterations": args.iterations, "metrics": list(metrics),
                                          "skipped_metrics": skipped, "bad_files": result.errors,
                                          "diverged_at_pass": result.diverged,
                                          "harmonicity": "HNR, Praat autocorrelation method, mean over voiced frames (dB)"})
    print(f"wrote {result.csv_path} and {', '.join(str(f) for f in figures)}"
          + (f"; listening page: {page}" if page else ""))
    for message in result.errors:
        print(f"mal: skipped {message}", file=sys.stderr)
    for name, files in result.diverged.items():
        print(f"mal: {name}: output not finite after {', '.join(f'{p} passes ({Path(f).name})' for f, p in files.items())}",
              file=sys.stderr)
    return 1 if result.errors or result.diverged else 0


def model_functions(checkpoints: list[str], identity: bool) -> dict:
    """``{name: enhance_fn}``: one per checkpoint (``NAME=CKPT``, else named by its run
    folder when the file is ``checkpoints/*.ckpt``, else by file stem), plus identity."""
    from mal.inference import enhance_array, load_model

    functions = {}
    for item in checkpoints:
        name, sep, path = item.partition("=")
        if not sep:
            path = item
            p = Path(path)
            name = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        model = load_model(path)
        base, k = name, 2
        while name in functions:
            name, k = f"{base}-{k}", k + 1
        functions[name] = lambda x, sr, model=model: enhance_array(model, x, sr)
    if identity:
        functions["identity"] = lambda x, sr: x
    return functions
