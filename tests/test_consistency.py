"""Iterative self-enhancement: identity is flat, a destructive 'model' is not; CLI outputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from mal.cli import main
from mal.evaluation.consistency import harmonics_to_noise_ratio, run_consistency
from mal.reports.pages.consistency import write_consistency_report

pytest.importorskip("parselmouth", reason="HNR needs praat-parselmouth")


def _vowel(seconds: float = 1.0, rate: int = 16000, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def test_hnr_separates_harmonic_from_noisy_speech():
    rng = np.random.default_rng(0)
    vowel = _vowel()
    noisy = vowel + 0.05 * rng.standard_normal(len(vowel)).astype(np.float32)
    assert harmonics_to_noise_ratio(vowel, 16000) > harmonics_to_noise_ratio(noisy, 16000) + 5.0
    assert np.isnan(harmonics_to_noise_ratio(np.zeros(16000, dtype=np.float32), 16000))


def test_identity_is_flat_and_smearing_is_not(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(2):
        sf.write(tmp_path / f"in{i}.wav", _vowel(f0=120 + 30 * i), 16000)
    inputs = sorted(tmp_path.glob("*.wav"))
    sos = butter(4, 0.5, output="sos")

    def smear(x, rate):  # a "model" that adds noise and low-passes: harmonics degrade per pass
        return (sosfilt(sos, x) + 0.02 * rng.standard_normal(len(x))).astype(np.float32)

    out = tmp_path / "out"
    result = run_consistency({"identity": lambda x, sr: x, "smear": smear}, inputs, iterations=4, out_dir=out,
                             metrics=("hnr",), spectrogram_passes=(1, 3), progress=False)
    write_consistency_report(result, out)
    flat = result.curves["identity"]["HNR"]
    assert len(flat) == 5 and np.allclose(flat, flat[0])
    smeared = result.curves["smear"]["HNR"]
    assert smeared[0] == pytest.approx(flat[0]) and smeared[-1] < smeared[0] - 3.0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [r["iteration"] for r in rows if r["model"] == "identity"] == ["0", "1", "2", "3", "4"]
    assert [float(r["HNR_mean"]) for r in rows if r["model"] == "identity"] == pytest.approx([flat[0]] * 5, abs=1e-4)
    for name in ("curves.png", "spectrograms.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_consistency_cli_identity(tmp_path, shared_data):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "p232_005.wav").symlink_to(shared_data / "vbd-test" / "noisy" / "p232_005.wav")
    out = tmp_path / "out"
    code = main(["consistency", "--identity", "--input", str(inputs), "--iterations", "2", "-o", str(out),
                 "--metrics", "hnr", "--quiet"])
    assert code == 0
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 3 and len({r["HNR_mean"] for r in rows}) == 1
    assert (out / "consistency.json").exists()


def test_a_diverging_model_is_reported_per_file_and_pass_not_as_a_bad_file(tmp_path):
    for i in range(2):
        sf.write(tmp_path / f"in{i}.wav", _vowel(f0=120 + 30 * i), 16000)
    inputs = sorted(tmp_path.glob("*.wav"))

    def explode(x, rate):  # x1e10 per pass: float32 overflows to inf on pass 4
        return (x.astype(np.float64) * 1e10).astype(np.float32)

    result = run_consistency({"identity": lambda x, sr: x, "explode": explode}, inputs, iterations=6,
                             out_dir=tmp_path / "out", metrics=("hnr",), spectrogram_passes=(1,), progress=False)
    assert result.errors == []  # every file was readable
    assert result.diverged == {"explode": {str(p): 4 for p in inputs}}
    hnr = result.curves["explode"]["HNR"]
    assert all(np.isfinite(hnr[:4])) and all(np.isnan(hnr[4:]))
    assert all(np.isfinite(result.curves["identity"]["HNR"]))


def test_page_shows_the_last_pass_links_the_spectrograms_and_names_clips_by_file(tmp_path, capsys):
    for name, f0 in (("alpha", 120), ("beta", 150)):
        sf.write(tmp_path / f"{name}.wav", _vowel(seconds=0.5, f0=f0), 16000)
    inputs = sorted(tmp_path.glob("*.wav"))
    out = tmp_path / "out"
    result = run_consistency({"identity": lambda x, sr: x}, inputs, iterations=5, out_dir=out, metrics=("hnr",))
    err = capsys.readouterr().err
    assert "consistency: 12/12 passes" in err and "passs" not in err  # the plain progress line off a terminal
    assert result.passes == (1, 5)  # of 1, 10, 100: those run, and the last
    _, page = write_consistency_report(result, out)
    text = page.read_text()
    assert "identity: 1 pass" in text and "identity: 5 passes" in text
    assert "href='spectrograms.png'" in text and "src='spectrograms.png'" in text
    clips = sorted(p.name for p in (out / "listen").iterdir() if p.is_dir())
    assert clips == ["alpha", "beta"]
    assert len(list((out / "listen" / "alpha").glob("*.flac"))) == 3  # input, 1 and 5 passes
