"""The listening page of ``mal consistency``: curves per model, and per clip the audio and
spectrograms of the input and of each model's output after 1, 10 and 100 passes (the
paper's Fig. 1). One playback gain per clip (from the input, see ``media``), the same for
every model and pass; spectrograms share the clip's scale; difference = dB(output) - dB(input).
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from mal.io import write_text_atomic
from mal.metrics import METRIC_INFO
from mal.pages import html, media

MEDIA_FOLDER = "listen"
PAGE_NAME = "index.html"
TABLE_PASSES = (0, 1, 10, 100)


def _passes_label(it: int) -> str:
    return "input" if it == 0 else f"{it} pass" + ("es" if it > 1 else "")


def write_consistency_page(out_dir: Path, curves: dict[str, dict[str, list[float]]],
                           clips: list[tuple[str, int, dict[str, dict[int, np.ndarray]]]], passes: tuple[int, ...],
                           iterations: int, diverged: dict[str, dict[str, int]], errors: list[str]) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/listen/``; ``clips`` = (path, rate, {model: {pass: samples}})."""
    panels = []
    with media.staged_folder(out_dir / MEDIA_FOLDER) as stage:
        bars = {k: f"{MEDIA_FOLDER}/{v}" for k, v in media.colour_bars(stage).items()}
        for k, (path, rate, outputs) in enumerate(clips):
            folder_name = f"clip{k:02d}"
            (stage / folder_name).mkdir()
            input_signal = next(iter(outputs.values()))[0]
            signals: list[tuple[str, np.ndarray | None, str]] = [("input", input_signal, "")]
            for model, snaps in outputs.items():
                stop = diverged.get(model, {}).get(path)
                for it in passes:
                    note = f"output not finite after {stop} passes" if stop is not None and it >= stop else "not run"
                    signals.append((f"{model}: {_passes_label(it)}", snaps.get(it), "" if it in snaps else note))
            meta, views = media.render_signals(stage / folder_name, f"{MEDIA_FOLDER}/{folder_name}", signals, rate,
                                               "input", "input", bars)
            panels.append(html.panel(f"clip-{k}", Path(path).name, meta, views, "difference to input (dB)", "input"))
    body = ["<p class='legend'>Each clip is enhanced, the output fed back in, again and again, per model "
            f"({iterations} passes). Also here: <a href='curves.csv'>curves.csv</a>, "
            "<a href='consistency.json'>consistency.json</a>.</p>",
            "<h2>Mean per pass</h2>", _curve_table(curves, iterations),
            "<div class='charts'><img src='curves.png' alt='curves'></div>"]
    problems = [f"could not be read: {e}" for e in errors]
    problems += [f"{model}: {Path(f).name} not finite after {p} passes" for model, files in diverged.items() for f, p in files.items()]
    if problems:
        body += ["<h2>Problems</h2><ul class='problems'>", *[f"<li>{escape(p)}</li>" for p in problems], "</ul>"]
    body += [f"<h2 id='listen'>Listening ({len(panels)} clip{'s' if len(panels) != 1 else ''})</h2>",
             f"<p class='hint'>{escape(html.KEY_HINT)}</p>",
             f"<p class='legend'>Playback level: one gain per clip for every model and pass, bringing the input's "
             f"active speech level (ITU-T P.56) to {media.PLAYBACK_LEVEL_DB:.0f} dBov unless a signal would then peak "
             f"above {media.PEAK_LIMIT}; a model that changes the level is heard doing so. Spectrograms share the clip's "
             "time, frequency and colour scale; difference = dB(output) - dB(input): blue = removed, red = added.</p>",
             *panels]
    path = out_dir / PAGE_NAME
    write_text_atomic(path, html.page("Iterative self-enhancement", body))
    return path


def _curve_table(curves: dict[str, dict[str, list[float]]], iterations: int) -> str:
    """Sortable table: per model and metric, the mean after 0, 1, 10, 100 and the last pass."""
    shown = sorted({p for p in (*TABLE_PASSES, iterations) if p <= iterations})
    metrics = list(next(iter(curves.values()))) if curves else []
    head = ["Model", *[f"{METRIC_INFO[m].label} {_passes_label(p)}" for m in metrics for p in shown]]
    rows = []
    for model, values in curves.items():
        cells = [f"<td>{escape(model)}</td>"]
        for m in metrics:
            for p in shown:
                v = values[m][p] if p < len(values[m]) else math.nan
                cells.append(f"<td data-v='{html.data_value(v)}'>{html.number(v)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table class='sortable' id='curves'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
