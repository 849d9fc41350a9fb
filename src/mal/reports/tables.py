"""Reports: per-file CSV, summary JSON, markdown and HTML tables with PNG bar charts.

Every file is written atomically (temporary file in the same folder, then rename).
Charts use matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path

from mal.util.files import atomic_path, write_text_atomic  # noqa: F401  (write_text_atomic re-exported)
from mal.evaluation.metrics import METRIC_INFO
from mal.evaluation.metrics.stats import SIGNIFICANCE_METHOD, with_clean_row

ALPHA = 0.05


def write_json(path: str | os.PathLike, data: dict) -> None:
    """JSON with NaN/inf written as null, atomically."""
    write_text_atomic(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_per_file_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    """Write rows as CSV: system, file, metric columns, length/level info, notes, path."""
    fields = ["system", "file", *columns, "length_diff", "level_db", "notes", "path"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(path, buffer.getvalue())


def _cell(stats: dict, metric: str) -> str:
    mean, (lo, hi) = stats["mean"], stats["ci95"]
    if stats["n"] == 0 or not math.isfinite(mean):
        return "-"
    digits = 3 if abs(mean) < 10 else 2
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def _marker(test: dict | None, metric: str) -> str:
    """▲ significantly better than the reference, ▼ significantly worse, '' otherwise."""
    if not test or not math.isfinite(test.get("p_adj", math.nan)) or test["p_adj"] >= ALPHA:
        return ""
    better = (test["mean_diff"] > 0) == METRIC_INFO[metric].higher_is_better
    return " ▲" if better else " ▼"


def _table(summary: dict, comparisons: dict, columns: list[str], systems: list[str]) -> tuple[list[str], list[list[str]]]:
    header = ["System", "Files", *[METRIC_INFO[c].label + (" ↑" if METRIC_INFO[c].higher_is_better else " ↓") for c in columns]]
    body = []
    for system in systems:
        entry = summary["systems"][system]
        cells = [system, str(entry["n_files"])]
        for c in columns:
            cells.append(_cell(entry["metrics"][c], c) + _marker(comparisons.get(system, {}).get(c), c))
        body.append(cells)
    return header, body


def _significance_rows(comparisons: dict, columns: list[str]) -> list[list[str]]:
    rows = []
    for system, tests in comparisons.items():
        for c in columns:
            t = tests[c]
            if not t["n"]:
                continue
            rows.append([system, METRIC_INFO[c].label, str(t["n"]), f"{t['mean_diff']:+.3f}",
                         f"[{t['diff_ci95_lo']:+.3f}, {t['diff_ci95_hi']:+.3f}]", f"{t['p']:.2g}", f"{t['p_adj']:.2g}"])
    return rows


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def bar_charts(out_dir: Path, summary: dict, columns: list[str], systems: list[str]) -> list[str]:
    """One PNG per metric: mean per system with 95 % CI error bars (systems without a value left
    out: the Clean row on intrusive metrics); returns file names."""
    import matplotlib  # start-up: matplotlib takes about 0.4 s to import, only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): as matplotlib above

    names = []
    for c in columns:
        shown = [s for s in systems if summary["systems"][s]["metrics"][c]["n"]]
        stats = [summary["systems"][s]["metrics"][c] for s in shown]
        means = [st["mean"] if st["n"] else math.nan for st in stats]
        if not any(math.isfinite(m) for m in means):
            continue
        errors = [[_finite_or_zero(m - st["ci95"][0]) for m, st in zip(means, stats)],
                  [_finite_or_zero(st["ci95"][1] - m) for m, st in zip(means, stats)]]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(shown) + 1.5), 3.2))
        colours = ["#8C8C8C" if s == summary.get("clean_reference") else "#4C72B0" for s in shown]  # Clean: grey
        ax.bar(range(len(shown)), means, yerr=errors, capsize=3, color=colours)
        ax.set_xticks(range(len(shown)), shown, rotation=35, ha="right")
        ax.set_ylabel(METRIC_INFO[c].label + (f" ({METRIC_INFO[c].unit})" if METRIC_INFO[c].unit else ""))
        ax.set_title(METRIC_INFO[c].label + (" (higher is better)" if METRIC_INFO[c].higher_is_better else " (lower is better)"))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"fig_{c.lower().replace('-', '_')}.png"
        _save_figure(fig, out_dir / name)
        plt.close(fig)
        names.append(name)
    return names


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _save_figure(fig, path: Path) -> None:
    with atomic_path(path, suffix=".part.png") as tmp:
        fig.savefig(tmp, dpi=110)


def write_report(out_dir: str | os.PathLike, summary: dict, comparisons: dict, columns: list[str],
                 systems: list[str], reference: str, title: str = "Speech enhancement evaluation",
                 listening_page: str | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html (with PNG charts) into ``out_dir``; return both paths.

    ``listening_page``: the listening report's file name in ``out_dir``, linked from both. The
    summary's clean reference row (``clean_reference``), if any, comes after Noisy.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    systems = with_clean_row(systems, summary)
    charts = bar_charts(out_dir, summary, columns, systems)
    header, body = _table(summary, comparisons, columns, systems)
    sig_header = ["System", "Metric", "Pairs", f"Δ vs {reference}", "Δ 95% CI (bootstrap)", "p", "p (BH)"]
    sig_rows = _significance_rows(comparisons, columns)
    notes = _notes(summary)
    legend = (f"Mean ± half-width of the {summary['ci_method']}. Files = files scored for that system. "
              f"▲/▼: significantly better/worse than **{reference}** (p < {ALPHA} after adjustment); "
              f"test: {SIGNIFICANCE_METHOD}; paired on the files both systems have.")
    if summary.get("clean_reference"):
        legend += " " + clean_legend(summary["clean_reference"])

    link = (f"Listen, sort and drill down per file: [{listening_page}]({listening_page}) "
            "(audio, spectrograms, per-file tables; open it in a browser)." if listening_page else "")
    md = [f"# {title}", "", *([link, ""] if link else []), legend, "", _markdown_table(header, body), ""]
    if sig_rows:
        md += [f"## Paired comparison with {reference}", "", _markdown_table(sig_header, sig_rows), ""]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    md += ["## Charts", "", *[f"![{c}]({c})" for c in charts], ""]
    md_path = out_dir / "report.md"
    write_text_atomic(md_path, "\n".join(md))

    legend_html = html.escape(legend).replace("**", "")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{margin:6px;border:1px solid #eee}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             *([f"<p><a href='{html.escape(listening_page)}'>Listening report</a>: audio, spectrograms, "
                "sortable per-file tables.</p>"] if listening_page else []),
             f"<p>{legend_html}</p>", _html_table(header, body)]
    if sig_rows:
        parts += [f"<h2>Paired comparison with {html.escape(reference)}</h2>", _html_table(sig_header, sig_rows)]
    if notes:
        parts += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    parts += ["<h2>Charts</h2>", *[f"<img src='{html.escape(c)}' alt='{html.escape(c)}'>" for c in charts], "</body></html>"]
    html_path = out_dir / "report.html"
    write_text_atomic(html_path, "\n".join(parts))
    return md_path, html_path


def clean_legend(name: str) -> str:
    """What the clean reference row is, for a table's legend."""
    return (f"{name} = the clean reference files themselves, scored by the non-intrusive metrics: where the "
            "targets stand (the intrusive metrics compare with them, so their cells are blank).")


def _notes(summary: dict) -> list[str]:
    notes = [f"Metric skipped: {name}: {reason}" for name, reason in summary.get("skipped_metrics", {}).items()]
    notes += [f"{s}: {e['note']}" for s, e in summary["systems"].items() if e.get("note")]
    if summary.get("level_align") == "ls":
        notes.append("Processed signals were scaled by their least-squares gain onto the reference before scoring.")
    if summary.get("bad_files"):
        notes.append(f"{len(summary['bad_files'])} file(s) could not be read: " + "; ".join(summary["bad_files"][:10]))
    return notes
