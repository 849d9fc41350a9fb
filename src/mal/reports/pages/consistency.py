"""The listening page of ``mal consistency``: curves per model, the spectrogram figure, and per
clip (a folder named by its file id) the audio and spectrograms of the input and of each
model's output after 1, 10, 100 and the last pass (the paper's Fig. 1). One playback gain per clip (from the input, see ``media``), the same for
every model and pass; spectrograms share the clip's scale; difference = dB(output) - dB(input).
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from mal.evaluation.consistency import ConsistencyResult
from mal.evaluation.metrics import METRIC_INFO
from mal.reports.pages import html, media
from mal.util.files import atomic_path, write_text_atomic

MEDIA_FOLDER = "listen"
PAGE_NAME = "index.html"
TABLE_PASSES = (0, 1, 10, 100)


def write_consistency_report(result: ConsistencyResult, out_dir: Path) -> tuple[list[Path], Path | None]:
    """curves.png, spectrograms.png (the first clip) and, with listening clips, index.html linking both."""
    out_dir = Path(out_dir)
    name, rate, first = result.clips[0]
    figures = [_plot_curves(out_dir / "curves.png", result.curves),
               _plot_spectrograms(out_dir / "spectrograms.png", first, rate, Path(name).name)]
    page = None
    if result.listen_clips:
        page = write_consistency_page(out_dir, result.curves, result.clips[: result.listen_clips], result.passes,
                                      result.iterations, result.diverged, result.errors,
                                      spectrograms=(figures[1].name, Path(name).name))
    return figures, page


def _passes_label(it: int) -> str:
    return "input" if it == 0 else f"{it} pass" + ("es" if it > 1 else "")


def write_consistency_page(out_dir: Path, curves: dict[str, dict[str, list[float]]],
                           clips: list[tuple[str, int, dict[str, dict[int, np.ndarray]]]], passes: tuple[int, ...],
                           iterations: int, diverged: dict[str, dict[str, int]], errors: list[str],
                           spectrograms: tuple[str, str] | None = None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/listen/<file id>/``; ``clips`` = (path, rate, {model: {pass: samples}}).

    ``spectrograms``: (figure file in ``out_dir``, the clip it shows), shown and linked.
    """
    panels = []
    with media.staged_folder(out_dir / MEDIA_FOLDER) as stage:
        bars = {k: f"{MEDIA_FOLDER}/{v}" for k, v in media.colour_bars(stage).items()}
        for path, rate, outputs in clips:
            folder_name = base = media.safe_name(Path(path).stem)
            k = 2
            while (stage / folder_name).exists():  # two inputs with one id (in subfolders)
                folder_name, k = f"{base}-{k}", k + 1
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
            panels.append(html.panel(f"clip-{folder_name}", Path(path).name, meta, views, "difference to input (dB)", "input"))
    figure_links = f", <a href='{escape(spectrograms[0])}'>{escape(spectrograms[0])}</a>" if spectrograms else ""
    body = ["<p class='legend'>Each clip is enhanced, the output fed back in, again and again, per model "
            f"({iterations} passes). Also here: <a href='curves.csv'>curves.csv</a>, "
            f"<a href='consistency.json'>consistency.json</a>, <a href='curves.png'>curves.png</a>{figure_links}.</p>",
            "<h2>Mean per pass</h2>", _curve_table(curves, iterations),
            "<div class='charts'><img src='curves.png' alt='curves'></div>"]
    if spectrograms:
        body += [f"<h2>Spectrograms of {escape(spectrograms[1])}</h2>",
                 f"<div class='charts'><a href='{escape(spectrograms[0])}'><img src='{escape(spectrograms[0])}' "
                 "alt='spectrograms'></a></div>"]
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


def _plot_curves(path: Path, curves: dict[str, dict[str, list[float]]]) -> Path:
    import matplotlib  # start-up: matplotlib takes about 0.4 s to import, only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): as matplotlib above

    metric_names = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(metric_names), figsize=(4.2 * len(metric_names), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metric_names):
        for name, values in curves.items():
            its = [i for i, v in enumerate(values[metric]) if math.isfinite(v)]
            ax.plot(its, [values[metric][i] for i in its], label=name, marker="." if len(its) < 30 else None)
        ax.set_xlabel("enhancement passes")
        ax.set_ylabel(METRIC_INFO[metric].label + (f" ({METRIC_INFO[metric].unit})" if METRIC_INFO[metric].unit else ""))
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle("Iterative self-enhancement: mean per pass (0 = input)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _plot_spectrograms(path: Path, snapshots: dict[str, dict[int, np.ndarray]], rate: int, title: str) -> Path:
    import matplotlib  # start-up: matplotlib takes about 0.4 s to import, only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): as matplotlib above
    from scipy.signal import spectrogram  # start-up: scipy.signal takes a while to import, only this plot needs it

    columns = sorted({it for snaps in snapshots.values() for it in snaps})
    fig, axes = plt.subplots(len(snapshots), len(columns), figsize=(3.2 * len(columns), 2.6 * len(snapshots)), squeeze=False)
    for r, (name, snaps) in enumerate(snapshots.items()):
        for c, it in enumerate(columns):
            ax = axes[r][c]
            if it in snaps:
                f, t, s = spectrogram(snaps[it], fs=rate, nperseg=512, noverlap=384)
                ax.pcolormesh(t, f / 1000, 10 * np.log10(s + 1e-12), shading="auto", vmin=-120, vmax=-20, cmap="magma")
            else:
                ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{name}: {'input' if it == 0 else f'{it} pass' + ('es' if it > 1 else '')}", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.set_ylabel("kHz", fontsize=8)
    fig.suptitle(f"Spectrograms of {title}")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".part.png") as tmp:
        fig.savefig(tmp, dpi=110)
