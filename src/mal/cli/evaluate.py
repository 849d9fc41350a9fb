"""``mal evaluate``: score enhanced files (or enhance with a model, then score).

    mal evaluate --clean DIR --enhanced DIR [--noisy DIR] -o OUT_DIR
    mal evaluate --model CKPT --noisy DIR [--clean DIR] -o OUT_DIR

Writes OUT_DIR/per_file.csv and OUT_DIR/summary.json (and OUT_DIR/enhanced/ with --model).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mal.evaluation.metrics import GROUPS


def add_scoring_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``evaluate`` and ``compare``."""
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--metrics", default="all",
                        help=f"comma list of groups (default all): {', '.join(GROUPS)}; the non-intrusive ones "
                             "(DNSMOS, NISQA, DistillMOS) need no clean reference")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--nisqa-weights", default=None,
                        help="NISQA v2 weights (nisqa.tar); default $MAL_NISQA_WEIGHTS, else shared/models/nisqa/"
                             "nisqa.tar in or beside the working folder or the checkout; NISQA is skipped without")
    parser.add_argument("--level-align", choices=["none", "ls"], default="none",
                        help="'ls': scale each processed file by its least-squares gain onto the clean one before "
                             "intrusive scoring (matters for CBAK and MCD only; default none, as published tables)")
    parser.add_argument("--no-cache", action="store_true", help="score everything again, ignore OUT/cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score enhanced speech: intrusive and non-intrusive metrics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean", help="clean reference folder (intrusive metrics need it)")
    p.add_argument("--enhanced", help="enhanced files to score")
    p.add_argument("--noisy", help="noisy input folder: scored as the 'Noisy' row; with --model, the input to enhance")
    p.add_argument("--model", help="checkpoint: enhance --noisy first, into OUT/enhanced, then score")
    p.add_argument("--name", default=None, help="name of the enhanced system in the outputs (default Enhanced / model file stem)")
    add_scoring_args(p)
    p.set_defaults(run=run)


def check_output(out_dir: Path, inputs: list[str | None]) -> None:
    """Refuse an output folder that is, holds, or lies inside one of the input folders."""
    resolved = out_dir.resolve()
    for folder in filter(None, inputs):
        src = Path(folder).resolve()
        if resolved == src or resolved in src.parents or src in resolved.parents:
            raise ValueError(f"output folder {out_dir} would overwrite input folder {folder}")


def scoring_options(args):
    """ScoreOptions from the shared arguments."""
    from mal.evaluation.metrics import parse_groups
    from mal.evaluation.metrics.nisqa import find_nisqa_weights
    from mal.evaluation.metrics.runner import ScoreOptions

    weights = find_nisqa_weights(args.nisqa_weights)
    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    return ScoreOptions(parse_groups(args.metrics), str(weights) if weights else None, args.level_align)


def score_and_summarize(args, systems: dict[str, str], clean: str | None, earlier_errors: list[str] | None = None,
                        clean_row: str | None = None):
    """Score ``systems``, write per_file.csv and summary.json; return (result, summary, columns).

    ``clean_row``: also score the clean files by the non-intrusive metrics, as a row of that name.
    """
    from mal.evaluation.metrics import metric_columns
    from mal.evaluation.metrics.runner import score_systems
    from mal.evaluation.metrics.stats import build_summary
    from mal.reports.tables import write_json, write_per_file_csv

    out = Path(args.output)
    options = scoring_options(args)
    cache = None if args.no_cache else out / "cache" / "scores.sqlite"
    result, skipped = score_systems(systems, clean, options, n_jobs=args.jobs, cache_path=cache, progress=not args.quiet,
                                    clean_row=clean_row)
    result.errors[:0] = earlier_errors or []
    for group, reason in skipped.items():
        print(f"mal: warning: {group} skipped: {reason}", file=sys.stderr)
    columns = metric_columns(tuple(g for g in options.groups if g not in skipped))
    summary = build_summary(result.rows, columns, list(systems), skipped, result.errors, result.warnings, options.level_align,
                            clean_row)
    write_per_file_csv(out / "per_file.csv", result.rows, columns)
    write_json(out / "summary.json", summary)
    for warning in result.warnings:
        print(f"mal: warning: {warning}", file=sys.stderr)
    return result, summary, columns


def print_summary(summary: dict, columns: list[str]) -> None:
    """A compact mean table on stdout."""
    width = max([len(s) for s in summary["systems"]] + [6])
    print(f"{'system':<{width}}  files  " + "  ".join(f"{c:>11}" for c in columns))
    for system, entry in summary["systems"].items():
        means = [entry["metrics"][c]["mean"] for c in columns]
        print(f"{system:<{width}}  {entry['n_files']:>5}  "
              + "  ".join(f"{m:>11.3f}" if math.isfinite(m) else f"{'-':>11}" for m in means))


def finish(result, out: Path) -> int:
    """Report bad files; exit status 1 when any file could not be scored."""
    if result.errors:
        print(f"mal: {len(result.errors)} file(s) could not be scored:", file=sys.stderr)
        for message in result.errors:
            print(f"  {message}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def enhance_folder(model_path: str, noisy: str, out_dir: Path) -> list[str]:
    """Enhance every file of ``noisy`` into ``out_dir`` (kept if newer than input and model); errors."""
    from mal.audio import AudioError, list_audio, read_audio, write_audio
    from mal.inference import enhance_array, load_model
    from mal.util.files import remove_stale_parts

    model = load_model(model_path)
    model_mtime = Path(model_path).stat().st_mtime
    errors = []
    for src in list_audio(noisy):
        dst = out_dir / f"{src.stem}.wav"
        remove_stale_parts(dst)  # left by a killed run (hidden, never scored)
        if dst.exists() and dst.stat().st_mtime > max(src.stat().st_mtime, model_mtime):
            continue
        try:
            samples, rate = read_audio(src)
            write_audio(dst, enhance_array(model, samples, rate), rate)
        except AudioError as err:
            print(f"mal: error: {err}", file=sys.stderr)
            errors.append(str(err))
    return errors


def run(args) -> int:
    out = Path(args.output)
    check_output(out, [args.clean, args.enhanced, args.noisy])
    systems: dict[str, str] = {}
    if args.noisy:
        systems["Noisy"] = args.noisy
    enhance_errors: list[str] = []
    if args.model:
        if not args.noisy:
            raise ValueError("--model needs --noisy (the files to enhance)")
        if args.enhanced:
            raise ValueError("give either --model or --enhanced, not both")
        name = args.name or Path(args.model).stem
        enhanced_dir = out / "enhanced"
        enhance_errors = enhance_folder(args.model, args.noisy, enhanced_dir)
        systems[name] = str(enhanced_dir)
    elif args.enhanced:
        systems[args.name or "Enhanced"] = args.enhanced
    else:
        raise ValueError("give --enhanced DIR, or --model CKPT with --noisy DIR")
    result, summary, columns = score_and_summarize(args, systems, args.clean, enhance_errors)
    print_summary(summary, columns)
    return finish(result, out)
