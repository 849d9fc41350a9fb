"""``mal compare``: score several systems on the same clean references, with statistics.

    mal compare --clean DIR --systems Noisy=DIR CMGAN=DIR ... [--reference Noisy] -o OUT_DIR

Writes per_file.csv, summary.json, report.md and report.html (with PNG bar charts) to OUT_DIR,
and index.html: the listening report (sortable summary and per-file tables, audio players
and spectrograms of a few files: --listen ID... adds files, --listen all takes every file).
The Noisy row (a system named "Noisy") comes first, then the Clean row: the clean files
themselves scored by every non-intrusive metric (DNSMOS, NISQA, ...), where the targets stand
(its intrusive cells are blank). Each system is compared with the reference by a paired
Wilcoxon signed-rank test over the files both have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mal.cli.evaluate import add_scoring_args, check_output, finish, print_summary, score_and_summarize


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare systems: table with 95%% CIs, significance, report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean", help="clean reference folder (without it only non-intrusive metrics run)")
    p.add_argument("--systems", nargs="+", required=True, metavar="NAME=DIR", help="systems to compare")
    p.add_argument("--reference", default=None, help="system the others are tested against (default Noisy, else the first)")
    p.add_argument("--title", default="Speech enhancement evaluation", help="report title")
    p.add_argument("--listen", nargs="*", default=[], metavar="ID",
                   help="files (ids = names without extension) to put in the listening report besides the worst, "
                        "median and best; 'all' for every file")
    p.add_argument("--listen-system", default=None, help="system whose gain over Noisy ranks the files (default: "
                                                         "the reference, or the first system after Noisy)")
    p.add_argument("--listen-metric", default=None, help="metric that ranks the files (default WB-PESQ, else SI-SDR, ...)")
    p.add_argument("--listen-max-mb", type=float, default=20.0, help="size bound of the listening media (default 20 MB)")
    p.add_argument("--no-listen", action="store_true", help="no listening report (index.html)")
    add_scoring_args(p)
    p.set_defaults(run=run)


def parse_systems(items: list[str]) -> dict[str, str]:
    """``["A=dir", ...]`` -> ordered ``{name: dir}``, Noisy first; checks names and folders."""
    systems: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--systems: expected NAME=DIR, got {item!r}")
        if name in systems:
            raise ValueError(f"--systems: name {name!r} given twice")
        if not Path(folder).is_dir():
            raise ValueError(f"--systems: {folder}: not a directory")
        systems[name] = folder
    noisy = [n for n in systems if n.lower() == "noisy"]
    return {n: systems[n] for n in noisy + [n for n in systems if n not in noisy]}


def run(args) -> int:
    from mal.evaluation.metrics.stats import CLEAN_ROW, compare_to_reference
    from mal.reports.tables import write_json, write_report

    systems = parse_systems(args.systems)
    if args.clean and any(n.lower() == CLEAN_ROW.lower() for n in systems):
        raise ValueError(f"--systems: the name {CLEAN_ROW} is the clean references' own row (--clean); choose another")
    reference = args.reference or next(iter(systems))
    if reference not in systems:
        raise ValueError(f"--reference {reference!r} is not one of {', '.join(systems)}")
    out = Path(args.output)
    check_output(out, [args.clean, *systems.values()])
    if not args.no_listen:
        from mal.reports.pages.compare import file_universe, selection_system

        selection_system(list(systems), reference, args.listen_system)
        universe = file_universe(systems, args.clean)[2]
        unknown = [n for n in args.listen if n != "all" and n not in universe]
        if unknown:
            raise ValueError(f"--listen: no file named {', '.join(unknown)}")
        if args.listen_max_mb <= 0:
            raise ValueError("--listen-max-mb must be positive")
    result, summary, columns = score_and_summarize(args, systems, args.clean, clean_row=CLEAN_ROW)
    comparisons = compare_to_reference(result.rows, columns, list(systems), reference)
    summary["reference"] = reference
    summary["comparisons"] = comparisons
    write_json(out / "summary.json", summary)
    page = None
    if not args.no_listen:
        from mal.reports.pages.compare import write_compare_page

        page, selection = write_compare_page(
            out, systems, args.clean, result.rows, summary, comparisons, columns, reference, listen=args.listen,
            listen_system=args.listen_system, listen_metric=args.listen_metric,
            max_bytes=int(args.listen_max_mb * 1e6), title=args.title)
        if selection.left_out:
            print(f"mal: warning: listening report: {len(selection.left_out)} file(s) left out by --listen-max-mb",
                  file=sys.stderr)
    md, html = write_report(out, summary, comparisons, columns, list(systems), reference, args.title,
                            listening_page=page.name if page else None)
    print_summary(summary, columns)
    print(f"report: {md} and {html}" + (f"; listening report: {page}" if page else ""))
    return finish(result, out)
