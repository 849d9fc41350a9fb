"""Listening reports: selection rule, size bound, bad input, playback gain, consistency page."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import soundfile as sf

from mal.cli import main
from mal.reports.pages import media
from mal.reports.pages.browser import Browser, unavailable
from mal.reports.pages.consistency import write_consistency_report
from mal.reports.pages.compare import file_gains, select_files, selection_system, write_compare_page

RATE = 16000
IDS = [f"u{i}" for i in range(6)]


def _speech(seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 110 + 20 * seed
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 10))
    return (0.1 * voiced * (np.sin(2 * np.pi * 2 * t) > -0.2)).astype(np.float32)


@pytest.fixture(scope="session")
def listening_inputs(tmp_path_factory):
    """clean/, Noisy/, A/ (less noise, louder by 6 dB), B/ (missing u5, u4 unreadable); lengths 0.8-1.3 s."""
    root = tmp_path_factory.mktemp("listening_inputs")
    rng = np.random.default_rng(0)
    for folder in ("clean", "noisy", "A", "B"):
        (root / folder).mkdir()
    for i, name in enumerate(IDS):
        clean = _speech(0.8 + 0.1 * i, i)
        noise = rng.standard_normal(len(clean)).astype(np.float32) * (0.01 + 0.01 * i)
        sf.write(root / "clean" / f"{name}.wav", clean, RATE)
        sf.write(root / "noisy" / f"{name}.wav", clean + noise, RATE)
        sf.write(root / "A" / f"{name}.wav", 2.0 * (clean + 0.2 * (1 + i % 3) * noise), RATE)
        if name == "u4":
            (root / "B" / "u4.wav").write_bytes(b"RIFF\x00\x00not audio at all")
        elif name != "u5":
            sf.write(root / "B" / f"{name}.wav", clean + 0.5 * noise, RATE)
    return root


@pytest.fixture(scope="session")
def compare_report(listening_inputs, tmp_path_factory):
    """``mal compare`` with SI-SDR on the synthetic set, u4 (unreadable in B) asked for by name."""
    d = listening_inputs
    out = tmp_path_factory.mktemp("compare_report") / "report"
    code = main(["compare", "--clean", str(d / "clean"), "--systems", f"Noisy={d / 'noisy'}", f"A={d / 'A'}",
                 f"B={d / 'B'}", "--metrics", "sisdr", "--listen", "u4", "-o", str(out), "--quiet"])
    assert code == 1  # the unreadable file makes the run fail, but the report is still written
    return out


def test_selection_rule_named_then_worst_best_median():
    gains = {"a": 0.5, "b": -1.0, "c": 2.0, "d": 0.1, "e": 0.7}
    s = select_files(gains, ["a", "b", "c", "d", "e", "f"], ["e"], everything=False)
    assert s.files == ["e", "b", "c", "a"]  # ranked b, d, a, e, c: worst b, best c, median a
    assert s.reasons == {"e": ["--listen"], "b": ["worst gain"], "c": ["best gain"], "a": ["median gain"]}
    every = select_files(gains, ["a", "b", "c", "d", "e", "f"], [], everything=True)
    assert every.files == ["b", "c", "a", "d", "e", "f"]  # then the rest, worst first, unranked last
    one = select_files({"x": 1.0}, ["x"], [], everything=False)
    assert one.files == ["x"] and one.reasons["x"] == ["worst gain", "best gain", "median gain"]
    unranked = select_files({}, ["p", "q", "r", "s"], [], everything=False)
    assert unranked.files == ["p", "q", "r"] and unranked.reasons["p"] == ["nothing to rank by"]
    with pytest.raises(ValueError, match="no file named zz"):
        select_files(gains, list(gains), ["zz"], everything=False)


def test_gain_is_over_noisy_and_follows_the_metric_direction():
    rows = [{"system": "Noisy", "file": "a", "SI-SDR": 5.0, "LSD": 3.0}, {"system": "S", "file": "a", "SI-SDR": 9.0, "LSD": 1.0},
            {"system": "Noisy", "file": "b", "SI-SDR": 2.0, "LSD": 2.0}, {"system": "S", "file": "b", "SI-SDR": math.nan, "LSD": 2.5}]
    assert file_gains(rows, "S", "SI-SDR", "Noisy") == {"a": 4.0}  # NaN files are not ranked
    assert file_gains(rows, "S", "LSD", "Noisy") == {"a": 2.0, "b": -0.5}  # lower is better: sign flipped
    assert file_gains(rows, "S", "SI-SDR", None) == {"a": 9.0}
    assert selection_system(["Noisy", "A", "B"], "Noisy") == "A"
    assert selection_system(["Noisy", "A", "B"], "B") == "B"
    with pytest.raises(ValueError, match="not one of"):
        selection_system(["Noisy", "A"], "Noisy", "C")


def test_default_selection_is_bounded_and_media_are_copies(compare_report, listening_inputs):
    html = (compare_report / "index.html").read_text()
    folders = sorted(p.name for p in (compare_report / "listen").iterdir() if p.is_dir())
    assert "u4" in folders and 2 <= len(folders) <= 4 < len(IDS)  # named + worst/best/median, not all
    for src in re.findall(r"src='([^']+)'", html):
        assert not src.startswith(("/", "http", "file:")) and (compare_report / src).is_file(), src
    assert "../" not in html and str(listening_inputs) not in html.split("<h2>Problems")[0]


def test_bad_input_is_reported_in_the_page(compare_report, listening_inputs):
    html = (compare_report / "index.html").read_text()
    problems = html.split("Problems: what is missing")[1].split("</ul>")[0]
    assert "B: 1 of 6 file(s) missing: u5" in problems
    assert "could not be read" in problems and "u4.wav" in problems
    panel = html.split("id='f-u4'")[1].split("</section>")[0]
    assert "cannot read" in panel and "u4.wav" in panel
    assert panel.count("<audio") == 3  # Noisy, Clean, A; B's unreadable file has a note instead
    assert "u5" in html.split("<h2>Per file</h2>")[1] and "class='missing'" in html


def test_one_playback_gain_per_file_keeps_level_differences(compare_report, listening_inputs):
    folder = compare_report / "listen" / "u4"
    gains = {}
    for name, src in (("00_Noisy", "noisy"), ("01_Clean", "clean"), ("02_A", "A")):
        played, rate = sf.read(folder / f"{name}.flac", dtype="float32")
        original, _ = sf.read(listening_inputs / src / "u4.wav", dtype="float32")
        gains[name] = float(np.dot(played, original) / np.dot(original, original))
    assert gains["01_Clean"] == pytest.approx(gains["00_Noisy"], rel=1e-3)
    assert gains["02_A"] == pytest.approx(gains["00_Noisy"], rel=1e-3)  # A stays 6 dB louder than clean
    noisy, _ = sf.read(listening_inputs / "noisy" / "u4.wav", dtype="float32")
    assert gains["00_Noisy"] == pytest.approx(media.playback_gain(noisy, RATE, [noisy, 2 * noisy]), rel=1e-3)


def test_size_bound_drops_files_beyond_it(listening_inputs, tmp_path):
    d = listening_inputs
    systems = {"Noisy": str(d / "noisy"), "A": str(d / "A")}
    rows = [{"system": s, "file": f, "SI-SDR": float(i + (3 if s == "A" else 0))} for s in systems for i, f in enumerate(IDS)]
    summary = {"ci_method": "t", "systems": {s: {"n_files": 6, "metrics": {"SI-SDR": {"mean": 1.0, "ci95": [0, 2], "n": 6}}}
                                              for s in systems}}
    everything = write_compare_page(tmp_path / "all", systems, str(d / "clean"), rows, summary, {}, ["SI-SDR"], "Noisy",
                                    listen=["all"])[1]
    assert sorted(everything.files) == IDS and not everything.left_out
    one_file = media.folder_size(tmp_path / "all" / "listen" / "u0")
    bound = 3 * one_file
    page, bounded = write_compare_page(tmp_path / "bounded", systems, str(d / "clean"), rows, summary, {}, ["SI-SDR"],
                                       "Noisy", listen=["all"], max_bytes=bound)
    assert media.folder_size(tmp_path / "bounded" / "listen") <= bound
    assert 1 <= len(bounded.files) < len(IDS) and bounded.files + bounded.left_out == everything.files
    assert "left out of the listening section by the size bound" in page.read_text()


def test_consistency_page_has_passes_per_model(tmp_path):
    from mal.evaluation.consistency import run_consistency

    pytest.importorskip("parselmouth", reason="HNR needs praat-parselmouth")
    for i in range(2):
        sf.write(tmp_path / f"clip{i}.wav", _speech(0.6, i), RATE)
    inputs = sorted(tmp_path.glob("clip*.wav"))

    def explode(x, rate):  # overflows to inf on pass 4
        with np.errstate(over="ignore"):
            return (x.astype(np.float64) * 1e10).astype(np.float32)

    result = run_consistency({"identity": lambda x, sr: x, "explode": explode}, inputs, iterations=10,
                             out_dir=tmp_path / "out", metrics=("hnr",), spectrogram_passes=(1, 10, 100),
                             progress=False, listen_clips=1)
    _, page = write_consistency_report(result, tmp_path / "out")
    html = page.read_text()
    assert html.count("class='panel'") == 1  # listen_clips=1
    panel = html.split("class='panel'")[1]
    assert "identity: 1 pass" in panel and "identity: 10 passes" in panel and "100 passes" not in panel
    assert panel.count("<audio") == 4  # input, identity 1 and 10, explode 1
    assert "output not finite after 4 passes" in panel
    played, _ = sf.read(tmp_path / "out" / "listen" / "clip0" / "02_identity_10_passes.flac", dtype="float32")
    first, _ = sf.read(tmp_path / "out" / "listen" / "clip0" / "00_input.flac", dtype="float32")
    assert np.array_equal(played, first)  # identity: same gain for every pass


MEDIA_STATE = """(async () => {
  const audios = Array.from(document.querySelectorAll('audio'));
  await Promise.all(audios.map((a) => a.readyState >= 1 || a.error ? null : new Promise((done) => {
    a.addEventListener('loadedmetadata', done); a.addEventListener('error', done); setTimeout(done, 15000); })));
  const images = Array.from(document.images);
  await Promise.all(images.map((i) => i.complete ? null : new Promise((done) => {
    i.addEventListener('load', done); i.addEventListener('error', done); setTimeout(done, 15000); })));
  return {audio: audios.map((a) => [a.getAttribute('src'), a.readyState, a.duration]),
          images: images.map((i) => [i.getAttribute('src'), i.naturalWidth])};
})()"""
FIRST_COLUMN = "Array.from(document.querySelector('{table}').tBodies[0].rows).map((r) => r.cells[0].textContent)"
VISIBLE = "[data-metric-table]:not([hidden]) table"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for this module; skips (saying why) when it cannot run here."""
    reason = unavailable()
    if reason:
        pytest.skip(f"headless Chromium test skipped: {reason}")
    with Browser(width=1300, height=900) as b:
        yield b


def _check_media(browser, folder) -> dict:
    state = browser.evaluate(MEDIA_STATE)
    assert state["audio"] and state["images"]
    for src, ready, duration in state["audio"]:
        assert ready >= 1, f"{src} did not load (readyState {ready})"
        assert abs(duration - sf.info(str(folder / src)).duration) < 0.010, src
    assert all(width > 0 for _, width in state["images"]), [s for s, w in state["images"] if not w]
    return state


def test_compare_report_in_headless_chromium(browser, compare_report, tmp_path):
    browser.errors.clear()
    browser.requests.clear()
    browser.open((compare_report / "index.html").as_uri())
    state = _check_media(browser, compare_report)
    assert len(state["audio"]) == len(list((compare_report / "listen").rglob("*.flac")))

    table = FIRST_COLUMN.format(table=VISIBLE)
    before = browser.evaluate(table)
    browser.evaluate(f"document.querySelector('{VISIBLE} th').click()")  # File, ascending
    assert browser.evaluate(table) == sorted(before) != before
    browser.evaluate(f"document.querySelector('{VISIBLE} th').click()")
    assert browser.evaluate(table) == sorted(before, reverse=True)
    column_a = "Array.from(document.querySelector('" + VISIBLE + "').tBodies[0].rows).map((r) => r.cells[4].getAttribute('data-v'))"
    browser.evaluate(f"document.querySelectorAll('{VISIBLE} th')[4].click()")  # system A, ascending
    values = [float(v) for v in browser.evaluate(column_a)]
    assert values == sorted(values)
    summary = FIRST_COLUMN.format(table="#summary")
    browser.evaluate("document.querySelectorAll('#summary th')[2].click()")
    browser.evaluate("document.querySelectorAll('#summary th')[2].click()")
    assert browser.evaluate(summary)[0] == "Noisy" and sorted(browser.evaluate(summary)) == ["A", "B", "Noisy"]

    current = "Array.from(document.querySelectorAll('.panel.active audio')).findIndex((a) => a.classList.contains('current'))"
    browser.press("2")
    assert browser.evaluate(current) == 1  # key 2 = second signal of the active file
    first_panel = browser.evaluate("document.querySelector('.panel.active').id")
    browser.press("n")
    assert browser.evaluate("document.querySelector('.panel.active').id") != first_panel
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000
    assert browser.errors == []
    assert all(url.startswith(("file://", "data:")) for url in browser.requests), browser.requests


def test_consistency_page_in_headless_chromium(browser, tmp_path):
    from mal.evaluation.consistency import run_consistency

    pytest.importorskip("parselmouth", reason="HNR needs praat-parselmouth")
    sf.write(tmp_path / "clip.wav", _speech(0.7, 1), RATE)
    result = run_consistency({"half": lambda x, sr: 0.5 * x}, [tmp_path / "clip.wav"], iterations=10,
                             out_dir=tmp_path / "out", metrics=("hnr",), progress=False)
    browser.errors.clear()
    _, page = write_consistency_report(result, tmp_path / "out")
    browser.open(page.as_uri())
    state = _check_media(browser, tmp_path / "out")
    assert len(state["audio"]) == 3  # input, 1 and 10 passes
    assert browser.errors == []
