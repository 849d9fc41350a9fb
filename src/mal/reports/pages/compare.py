"""The listening report of ``mal compare``: summary, per-file tables, audio and spectrograms.

Selection (which files get audio and pictures): each file's *gain* is the selection metric
of the selection system minus that of Noisy (sign flipped for lower-is-better metrics; the
system's own value when there is no Noisy row, or when the selection system is Noisy).
By default the files named with ``--listen ID`` come first, then the worst, best and
median file by that gain; ``--listen all`` adds every other file, worst first. Files are
added in that order until the media would pass ``max_bytes``; the rest are listed as left
out; with nothing to rank by, the first three files. The selection system is ``--listen-system``, else the reference when it is not Noisy,
else the first system after Noisy.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from mal.audio import AudioError, list_audio, read_audio
from mal.util.files import write_text_atomic
from mal.evaluation.metrics import METRIC_INFO
from mal.evaluation.metrics.runner import missing_line
from mal.evaluation.metrics.stats import SIGNIFICANCE_METHOD, insert_after_noisy, with_clean_row
from mal.reports.pages import html, media
from mal.reports.tables import clean_legend

SELECTION_METRICS = ("WB-PESQ", "SI-SDR", "ESTOI", "STOI", "DNSMOS-OVRL", "NISQA-MOS")
DEFAULT_MAX_BYTES = 20_000_000
MEDIA_FOLDER = "listen"
PAGE_NAME = "index.html"


@dataclass
class Selection:
    """Files chosen for listening, in priority order, with why each was chosen."""

    files: list[str]
    reasons: dict[str, list[str]]
    gains: dict[str, float]
    system: str
    metric: str | None
    left_out: list[str] = field(default_factory=list)

    def describe(self, noisy: str | None) -> str:
        """What the gain is, in words."""
        if self.metric is None:
            return "nothing (no metric was scored)"
        if noisy and noisy != self.system:
            return f"{self.metric} of {self.system} minus {noisy}"
        return f"{self.metric} of {self.system}"


def selection_system(systems: list[str], reference: str, chosen: str | None = None) -> str:
    """``chosen``, else the reference unless it is Noisy, else the first non-Noisy system."""
    if chosen is not None:
        if chosen not in systems:
            raise ValueError(f"--listen-system {chosen!r} is not one of {', '.join(systems)}")
        return chosen
    if reference.lower() != "noisy":
        return reference
    return next((s for s in systems if s.lower() != "noisy"), reference)


def selection_metric(columns: list[str], chosen: str | None = None) -> str | None:
    """``chosen``, else the first of WB-PESQ, SI-SDR, ESTOI, STOI, DNSMOS OVRL, NISQA scored, else the first column."""
    if chosen is not None:
        if chosen not in columns:
            raise ValueError(f"--listen-metric {chosen!r} was not scored; scored: {', '.join(columns)}")
        return chosen
    if not columns:
        return None  # nothing scored: only files named with --listen are shown
    return next((m for m in SELECTION_METRICS if m in columns), columns[0])


def file_gains(rows: list[dict], system: str, metric: str | None, noisy: str | None) -> dict[str, float]:
    """``{file: gain}`` of ``system`` over ``noisy`` on ``metric`` (positive = better); finite values only."""
    if metric is None:
        return {}
    sign = 1.0 if METRIC_INFO[metric].higher_is_better else -1.0
    mine = {r["file"]: r.get(metric, math.nan) for r in rows if r["system"] == system}
    base = {r["file"]: r.get(metric, math.nan) for r in rows if r["system"] == noisy} if noisy and noisy != system else {}
    gains = {}
    for name, value in mine.items():
        diff = value - base.get(name, math.nan) if base else value
        if diff is not None and math.isfinite(diff):
            gains[name] = sign * float(diff)
    return gains


def select_files(gains: dict[str, float], universe: list[str], named: list[str], everything: bool,
                 system: str = "", metric: str | None = None) -> Selection:
    """The listening selection: named files, then worst, best, median gain (then all others, worst first)."""
    unknown = [n for n in named if n not in universe]
    if unknown:
        raise ValueError(f"--listen: no file named {', '.join(unknown)} (files: {', '.join(universe[:8])}"
                         + (" ..." if len(universe) > 8 else "") + ")")
    ranked = sorted(gains, key=lambda f: (gains[f], f))
    reasons: dict[str, list[str]] = {}

    def add(name: str, why: str) -> None:
        reasons.setdefault(name, []).append(why)

    for name in named:
        add(name, "--listen")
    if ranked:
        add(ranked[0], "worst gain")
        add(ranked[-1], "best gain")
        add(ranked[(len(ranked) - 1) // 2], "median gain")
    else:
        for name in universe[:3]:
            add(name, "nothing to rank by")
    if everything:
        for name in [*ranked, *sorted(set(universe) - set(ranked))]:
            reasons.setdefault(name, ["all files"])
    return Selection(list(reasons), reasons, gains, system, metric)


def _file_media(stage: Path, file_id: str, sources: list[tuple[str, Path | None, str]], bars: dict[str, str],
                noisy: str | None) -> tuple[str, list[html.SignalView], str]:
    """Write one file's audio and images into ``stage/<id>/``; return (meta html, signal views, folder name)."""
    folder_name = media.safe_name(file_id)
    folder = stage / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    loaded: list[tuple[str, np.ndarray | None, int, str]] = []
    for name, path, note in sources:
        if path is None:
            loaded.append((name, None, 0, note))
            continue
        try:
            samples, rate = read_audio(path)
            loaded.append((name, samples, rate, ""))
        except AudioError as err:
            loaded.append((name, None, 0, f"cannot read: {err}"))
    readable = {n: (s, r) for n, s, r, _ in loaded if s is not None}
    if not readable:
        return "no signal of this file could be read", [html.SignalView(n, note=note) for n, _, _, note in loaded], folder_name
    ref_name = next((n for n in (noisy, "Clean") if n in readable), next(iter(readable)))
    rate = readable[ref_name][1]
    signals = [(n, None if s is None else media.to_rate(s, r, rate), note) for n, s, r, note in loaded]
    meta, views = media.render_signals(folder, f"{MEDIA_FOLDER}/{folder_name}", signals, rate, ref_name, "Clean", bars)
    return meta, views, folder_name


def write_compare_page(out_dir: str | os.PathLike, systems: dict[str, str], clean: str | None, rows: list[dict],
                       summary: dict, comparisons: dict, columns: list[str], reference: str, *,
                       listen: list[str] | None = None, listen_system: str | None = None, listen_metric: str | None = None,
                       max_bytes: int = DEFAULT_MAX_BYTES, title: str = "Speech enhancement evaluation",
                       alpha: float = 0.05) -> tuple[Path, Selection]:
    """Write ``out_dir/index.html`` and its media folder ``out_dir/listen/``; return (page, selection)."""
    out_dir = Path(out_dir)
    names = list(systems)
    listen = list(listen or [])
    everything = "all" in listen
    named = [n for n in listen if n != "all"]
    listings, clean_files, universe = file_universe(systems, clean)
    noisy = next((s for s in names if s.lower() == "noisy"), None)
    chosen_system = selection_system(names, reference, listen_system)
    metric = selection_metric(columns, listen_metric)
    selection = select_files(file_gains(rows, chosen_system, metric, noisy), universe, named, everything, chosen_system, metric)

    panels, kept = [], []
    with media.staged_folder(out_dir / MEDIA_FOLDER) as stage:
        bars = {k: f"{MEDIA_FOLDER}/{v}" for k, v in media.colour_bars(stage).items()}
        for file_id in selection.files:
            sources = _sources(file_id, systems, listings, clean, clean_files, noisy)
            meta, views, folder_name = _file_media(stage, file_id, sources, bars, noisy)
            if media.folder_size(stage) > max_bytes:
                shutil.rmtree(stage / folder_name)
                selection.left_out = [f for f in selection.files if f not in kept]
                break
            kept.append(file_id)
            why = ", ".join(selection.reasons[file_id])
            gain = selection.gains.get(file_id)
            gain_text = f"; gain {gain:+.3f}" if gain is not None else ""
            panels.append(html.panel(f"f-{media.safe_name(file_id)}", f"{file_id} ({why}{gain_text})", meta, views,
                                     "difference to clean (dB)" if clean else "(no clean reference)", "Clean"))
    selection.files = kept
    body = _body(summary, comparisons, columns, names, reference, rows, universe, listings, clean_files, selection,
                 panels, noisy, alpha, max_bytes)
    path = out_dir / PAGE_NAME
    write_text_atomic(path, html.page(title, body))
    return path, selection


def file_universe(systems: dict[str, str], clean: str | None) -> tuple[dict[str, dict[str, Path]], dict[str, Path], list[str]]:
    """(files per system, clean files, every file id): the clean files' ids, else all systems' ids."""
    listings = {s: _listing(folder) for s, folder in systems.items()}
    clean_files = _listing(clean) if clean else {}
    universe = sorted(clean_files) if clean else sorted(set().union(*[set(v) for v in listings.values()]))
    return listings, clean_files, universe


def _listing(folder: str | None) -> dict[str, Path]:
    try:
        return {p.stem: p for p in list_audio(folder)} if folder else {}
    except AudioError:
        return {}


def _sources(file_id: str, systems: dict[str, str], listings: dict[str, dict[str, Path]], clean: str | None,
             clean_files: dict[str, Path], noisy: str | None) -> list[tuple[str, Path | None, str]]:
    """(name, path or None, why missing) per signal: Noisy first, then Clean, then the systems."""
    out = []
    order = ([noisy] if noisy else []) + ["Clean"] + [s for s in systems if s != noisy]
    for name in order:
        if name == "Clean":
            if clean:
                out.append(("Clean", clean_files.get(file_id), f"no file {file_id} in {clean}"))
            continue
        out.append((name, listings[name].get(file_id), f"no file {file_id} in {systems[name]}"))
    return [(n, p, "" if p is not None else note) for n, p, note in out]


def _body(summary: dict, comparisons: dict, columns: list[str], names: list[str], reference: str, rows: list[dict],
          universe: list[str], listings: dict[str, dict[str, Path]], clean_files: dict[str, Path], selection: Selection,
          panels: list[str], noisy: str | None, alpha: float, max_bytes: int) -> list[str]:
    """The page's sections: summary, problems, charts, per-file tables, listening panels."""
    body = [f"<p class='legend'>Mean [{escape(summary['ci_method'])}]; Files = files scored; bold = best mean per column; "
            f"▲/▼ significantly better/worse than <b>{escape(reference)}</b> (adjusted p &lt; {alpha}; {escape(SIGNIFICANCE_METHOD)}). "
            "Click a column title to sort. Also here: <a href='report.md'>report.md</a>, <a href='per_file.csv'>per_file.csv</a>, "
            "<a href='summary.json'>summary.json</a>."
            + (f" {escape(clean_legend(summary['clean_reference']))}" if summary.get("clean_reference") else "") + "</p>",
            "<h2>Summary</h2>", html.summary_table(summary, comparisons, columns, with_clean_row(names, summary), alpha)]
    problems = _problems(summary, names, universe, listings, clean_files, selection)
    if problems:
        body += ["<h2>Problems: what is missing</h2><ul class='problems'>", *[f"<li>{escape(p)}</li>" for p in problems], "</ul>"]
    charts = sorted(c for c in _chart_names(columns))
    if charts:
        body += ["<h2>Charts</h2><div class='charts'>", *[f"<img src='{c}' alt='{c}'>" for c in charts], "</div>"]
    body += _per_file_tables(rows, columns, names, universe, selection, noisy, summary.get("clean_reference"))
    body += [f"<h2 id='listen'>Listening ({len(panels)} file{'s' if len(panels) != 1 else ''})</h2>",
             f"<p class='hint'>{escape(html.KEY_HINT)}</p>",
             f"<p class='legend'>Playback level: one gain per file, the same for every signal of that file: it brings "
             f"the {'Noisy' if noisy else 'Clean'} file's active speech level (ITU-T P.56) to {media.PLAYBACK_LEVEL_DB:.0f} dBov "
             f"unless a signal would then peak above {media.PEAK_LIMIT}; no system is normalised on its own, so level "
             f"differences between systems are heard as they are. Audio: 16-bit FLAC copies at the reference's rate, mono. "
             f"Spectrograms share time, frequency and colour scale within a file; difference = dB(signal) - dB(clean), "
             f"red = more energy than clean (residual noise, artefacts), blue = less (lost speech). "
             f"Files ranked by {escape(selection.describe(noisy))}; media bound {max_bytes / 1e6:.1f} MB "
             f"(mal compare --listen ID... / --listen all / --listen-max-mb).</p>", *panels]
    return body


def _chart_names(columns: list[str]) -> list[str]:
    return [f"fig_{c.lower().replace('-', '_')}.png" for c in columns]


def _problems(summary: dict, names: list[str], universe: list[str], listings: dict[str, dict[str, Path]],
              clean_files: dict[str, Path], selection: Selection) -> list[str]:
    """One line per missing or unreadable input, and files the size bound left out."""
    out = [f"could not be read: {message}" for message in summary.get("bad_files", [])]
    for s in names:
        missing = [f for f in universe if f not in listings[s]]
        if missing:
            out.append(missing_line(s, missing, len(universe)))  # the terminal's warning, word for word
        extra = sorted(set(listings[s]) - set(universe)) if clean_files else []
        if extra:
            out.append(f"{s}: {len(extra)} file(s) without a clean reference: {', '.join(extra[:10])}")
    if selection.left_out:
        out.append(f"left out of the listening section by the size bound: {', '.join(selection.left_out)}")
    out += [f"skipped metric {name}: {reason}" for name, reason in summary.get("skipped_metrics", {}).items()]
    return out


def _per_file_tables(rows: list[dict], columns: list[str], names: list[str], universe: list[str], selection: Selection,
                     noisy: str | None, clean: str | None = None) -> list[str]:
    """One sortable table per metric (a selector shows one), files sorted worst gain first; the
    ``clean`` reference rows' column after Noisy on the metrics it has values of."""
    values = {(r["system"], r["file"]): r for r in rows}
    order = sorted(universe, key=lambda f: (selection.gains.get(f, math.inf), f))
    options = "".join(f"<option value='{escape(c)}'{' selected' if c == selection.metric else ''}>{escape(METRIC_INFO[c].label)}</option>"
                      for c in columns)
    out = ["<h2>Per file</h2>",
           f"<p class='legend'>Gain = {escape(selection.describe(noisy))} (positive = better); worst first. "
           "A row with ▶ opens its listening panel.</p>",
           f"<label>Metric: <select id='metric-select'>{options}</select></label>"]
    for c in columns:
        scored_clean = clean is not None and any(r["system"] == clean and math.isfinite(r.get(c, math.nan)) for r in rows)
        shown = insert_after_noisy(names, clean) if scored_clean else names
        head = "".join(f"<th>{escape(h)}</th>" for h in ["File", "Listen", "Gain", *shown])
        body = []
        for f in order:
            listen = f in selection.files
            gain = selection.gains.get(f)
            cells = [f"<td>{escape(f)}</td>", f"<td data-v='{1 if listen else 0}'>{'▶' if listen else ''}</td>",
                     f"<td data-v='{html.data_value(gain)}'>{html.number(gain) if gain is not None else '-'}</td>"]
            for s in shown:
                row = values.get((s, f))
                if row is None:
                    cells.append("<td class='missing' data-v=''>missing</td>")
                else:
                    v = row.get(c, math.nan)
                    cells.append(f"<td data-v='{html.data_value(v)}' title='{escape(row.get('notes') or '')}'>{html.number(v)}</td>")
            href = f" data-href='#f-{media.safe_name(f)}'" if listen else ""
            body.append(f"<tr{href}>{''.join(cells)}</tr>")
        out.append(f"<div data-metric-table='{escape(c)}'><table class='sortable per-file'><thead><tr>{head}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table></div>")
    return out
