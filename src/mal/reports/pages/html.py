"""HTML building blocks of the listening pages: page shell, sortable tables, signal panels.

The page's CSS and JavaScript (``assets/``) are inlined, so a page is one HTML file plus
its media folder, and opens from ``file://`` without network access.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from importlib.resources import files

from mal.evaluation.metrics import METRIC_INFO

KEY_HINT = ("Keys: 1-9, 0 switch to that signal of the active file (playback continues at the same time), "
            "space plays/pauses, n / p go to the next / previous file. A click on a name does the same.")


def page(title: str, body: list[str]) -> str:
    """A complete HTML document with the inlined stylesheet and script."""
    assets = files("mal.reports.pages") / "assets"
    css = (assets / "page.css").read_text(encoding="utf-8")
    script = (assets / "page.js").read_text(encoding="utf-8")
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(title)}</title><style>{css}</style></head><body>",
        f"<h1>{escape(title)}</h1>", *body, f"<script>{script}</script>", "</body></html>", ""])


def number(value: float, digits: int | None = None) -> str:
    """A metric value for a table cell ('-' for NaN)."""
    if value is None or not math.isfinite(value):
        return "-"
    digits = digits if digits is not None else (3 if abs(value) < 10 else 2)
    return f"{value:.{digits}f}"


def data_value(value: float | None) -> str:
    """The ``data-v`` sort key of a cell: empty for missing values (sorted last)."""
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def metric_header(metric: str) -> str:
    """Column title with the metric's direction."""
    info = METRIC_INFO[metric]
    return info.label + (" ↑" if info.higher_is_better else " ↓")


def summary_table(summary: dict, comparisons: dict, columns: list[str], systems: list[str], alpha: float) -> str:
    """Means with 95 % CIs; Noisy and Clean rows first (pinned), best mean per column bold (of the
    systems, not Clean), ▲/▼ vs the reference."""
    clean = summary.get("clean_reference")
    best = {}
    for c in columns:
        means = {s: summary["systems"][s]["metrics"][c]["mean"] for s in systems if s != clean}
        finite = {s: m for s, m in means.items() if m is not None and math.isfinite(m)}
        if finite:
            pick = max if METRIC_INFO[c].higher_is_better else min
            best[c] = pick(finite.values())
    head = "".join(f"<th>{escape(h)}</th>" for h in ["System", "Files", *[metric_header(c) for c in columns]])
    rows = []
    for s in systems:
        entry = summary["systems"][s]
        pinned = " class='noisy pinned'" if s.lower() == "noisy" else " class='clean pinned'" if s == clean else ""
        cells = [f"<td>{escape(s)}</td>", f"<td data-v='{entry['n_files']}'>{entry['n_files']}</td>"]
        for c in columns:
            st = entry["metrics"][c]
            mean = st["mean"] if st["n"] else math.nan
            lo, hi = st["ci95"]
            text = number(mean)
            if math.isfinite(mean) and lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
                text += f" <small>[{number(lo)}, {number(hi)}]</small>"
            mark = _significance(comparisons.get(s, {}).get(c), c, alpha)
            cls = " class='best'" if c in best and math.isfinite(mean) and mean == best[c] else ""
            cells.append(f"<td{cls} data-v='{data_value(mean)}'>{text}{mark}</td>")
        rows.append(f"<tr{pinned}>{''.join(cells)}</tr>")
    return f"<table class='sortable' id='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _significance(test: dict | None, metric: str, alpha: float) -> str:
    if not test or test.get("p_adj") is None or not math.isfinite(test["p_adj"]) or test["p_adj"] >= alpha:
        return ""
    better = (test["mean_diff"] > 0) == METRIC_INFO[metric].higher_is_better
    return " <span class='sig-up' title='significantly better'>▲</span>" if better else \
        " <span class='sig-down' title='significantly worse'>▼</span>"


@dataclass
class SignalView:
    """One row of a listening panel: a named signal with its media (paths relative to the page)."""

    name: str
    audio: str | None = None
    spectrogram: str | None = None
    difference: str | None = None
    note: str = ""
    detail: str = ""


def panel(anchor: str, title: str, meta: str, signals: list[SignalView], difference_title: str, reference: str) -> str:
    """A file's panel: per signal a pick button, spectrogram, difference image and audio player."""
    rows = [f"<div class='sigrow head'><span>signal (key)</span><span>spectrogram</span>"
            f"<span>{escape(difference_title)}</span><span>audio</span></div>"]
    index = 0
    for sig in signals:
        if sig.audio is None:
            rows.append(f"<div class='sigrow'><span>{escape(sig.name)}</span>"
                        f"<span class='note'>{escape(sig.note or 'not available')}</span></div>")
            continue
        key = (index + 1) % 10 if index < 10 else ""
        detail = f" <small>{escape(sig.detail)}</small>" if sig.detail else ""
        image = f"<img src='{escape(sig.spectrogram)}' alt='spectrogram of {escape(sig.name)}'>" if sig.spectrogram else "<span></span>"
        diff = (f"<img src='{escape(sig.difference)}' alt='difference of {escape(sig.name)}'>" if sig.difference
                else f"<span class='hint'>{'(reference)' if sig.name == reference else ''}</span>")
        rows.append(f"<div class='sigrow'><button class='pick' data-index='{index}'>{key} {escape(sig.name)}{detail}</button>"
                    f"{image}{diff}<audio controls preload='metadata' src='{escape(sig.audio)}'></audio></div>")
        if sig.note:
            rows.append(f"<div class='sigrow'><span></span><span class='note'>{escape(sig.note)}</span></div>")
        index += 1
    return (f"<section class='panel' id='{escape(anchor)}'><h3>{escape(title)}</h3><div class='meta'>{meta}</div>"
            + "".join(rows) + "</section>")


def scale_legend(bars: dict[str, str], low_db: float, high_db: float, diff_db: float) -> str:
    """Colour-bar legend of a panel's two image scales."""
    return (f"<span class='scale'>level {low_db:.0f} <img src='{escape(bars['level'])}' alt='level scale'> {high_db:.0f} dB"
            f" &nbsp; difference -{diff_db:.0f} <img src='{escape(bars['diff'])}' alt='difference scale'> +{diff_db:.0f} dB</span>")
