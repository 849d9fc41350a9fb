"""DistillMOS: mal's network gives the numbers of the distillmos package's own network and file inference.

The package cannot be imported as installed here: its only module, distillmos/sqa.py, imports
torchaudio at its top, and torchaudio does not work with mal's torch build (it is not
installed). Torchaudio serves only its file inference (``torchaudio.load``; resampling only
for files not at 16 kHz). So these tests import the package with a stand-in ``torchaudio``
whose ``load`` reads a file as torchaudio does (float32, int16 / 32768, channels first) and
compare, on the same input: the package's ``ConvTransformerSQAModel`` with mal's
:class:`~mal.evaluation.metrics.distillmos_net.DistillMosNet`, and the package's
``_infer_file_list`` on a 16-kHz file with :func:`~mal.evaluation.metrics.distillmos.distillmos`.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from mal.evaluation.metrics.distillmos import distillmos_unavailable

RATE = 16000


def _speechlike(seconds: float, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """A gated harmonic tone with some noise: enough for the network to give a mid-range score."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 10)) * (np.sin(2 * np.pi * 3 * t) > -0.2)
    return (0.1 * voiced + noise * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="session")
def ours():
    from mal.evaluation.metrics.distillmos import scorer

    if reason := distillmos_unavailable():
        pytest.skip(f"DistillMOS: {reason}")
    return scorer()  # the process's scorer, also the one `mal compare` uses in-process below


@pytest.fixture(scope="module")
def package(ours):
    """The distillmos package's own module, imported with a stand-in torchaudio (removed afterwards)."""
    import torch

    def load(path):  # torchaudio.load's result for a WAV file: float32 in [-1, 1), (channels, frames)
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    def no_resample(*_args, **_kwargs):
        raise AssertionError("the comparison uses 16-kHz files: the package does not resample them")

    stub = types.ModuleType("torchaudio")
    stub.load = load
    stub.transforms = types.SimpleNamespace(Resample=no_resample)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torchaudio", stub)
        for name in ("distillmos", "distillmos.sqa"):
            patch.delitem(sys.modules, name, raising=False)
        import distillmos.sqa

        yield distillmos.sqa
        for name in ("distillmos", "distillmos.sqa"):
            sys.modules.pop(name, None)


def test_the_network_equals_the_packages_own(package, ours):
    """Bitwise, on a short signal (padded to one 7.68-s window) and a long one (3 windows, batched by 2)."""
    import torch

    from mal.evaluation.metrics.distillmos import network_mos

    theirs = package.ConvTransformerSQAModel().eval()
    for seconds in (1.0, 9.0):
        x = torch.from_numpy(_speechlike(seconds))[None]
        with torch.no_grad():
            expected = theirs(x)
            assert network_mos(ours.net, x).item() == expected.item()
            assert network_mos(ours.net, x, window_batch=2).item() == expected.item()


def test_the_metric_equals_the_packages_file_inference(package, ours, tmp_path):
    from mal.audio import read_audio

    path = tmp_path / "u.wav"
    sf.write(path, _speechlike(2.0), RATE, subtype="PCM_16")
    [(_, expected)] = list(package._infer_file_list([str(path)]))
    samples, rate = read_audio(path)
    assert ours.score(samples, rate)["DistillMOS"] == expected
    assert 1.0 <= expected <= 5.0


def test_any_rate_any_level_any_length(ours):
    from mal.audio import resample

    x = _speechlike(2.0, noise=0.0)  # band-limited (white noise up to 8 kHz would lose soxr's transition band)
    base = ours.score(x, RATE)["DistillMOS"]
    for rate in (48000, 44100):  # resampled to 16 kHz with soxr
        assert ours.score(resample(x, RATE, rate), rate)["DistillMOS"] == pytest.approx(base, abs=0.01)
    assert ours.score(0.1 * x, RATE)["DistillMOS"] == pytest.approx(base, abs=1e-4)  # windows are peak-normalised
    assert 1.0 <= ours.score(x[:50], RATE)["DistillMOS"] <= 5.0  # shorter than the STFT's padding: zero-padded first


def test_bad_input_is_one_clear_line(ours):
    x = _speechlike(0.5)
    for bad, rate, words in ((np.stack([x, x]), RATE, "mono signal"), (x[:0], RATE, "no samples"),
                             (np.where(np.arange(len(x)) == 3, np.nan, x), RATE, "NaN"),
                             (x, 0, "sample rate"), (x, 16000.5, "sample rate")):
        with pytest.raises(ValueError, match=words) as err:
            ours.score(bad, rate)
        assert "\n" not in str(err.value) and str(err.value).startswith("DistillMOS")


def test_missing_package_is_reported(monkeypatch):
    import importlib.util

    from mal.evaluation.metrics import distillmos as module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distillmos" else real(name, *a))
    reason = module.distillmos_unavailable()
    assert "not installed" in reason and "--no-deps distillmos" in reason
    with pytest.raises(FileNotFoundError, match="not installed"):
        module.DistillMosScorer()


def test_enhanced_speech_scores_higher(shared_data, ours):
    """Real speech (VoiceBank-DEMAND p232_005: noisy 3.30, CMGAN 4.75), and the same at 48 kHz."""
    from mal.audio import read_audio, resample

    noisy, rate = read_audio(shared_data / "vbd-test" / "noisy" / "p232_005.wav")
    enhanced, _ = read_audio(shared_data / "vbd-test" / "CMGAN" / "p232_005.wav")
    scores = [ours.score(x, rate)["DistillMOS"] for x in (noisy, enhanced)]
    assert scores[1] > scores[0] + 0.5
    for x, score in zip((noisy, enhanced), scores):
        assert ours.score(resample(x, rate, 48000), 48000)["DistillMOS"] == pytest.approx(score, abs=0.03)


def test_evaluate_help_lists_distillmos(capsys):
    from mal.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "distillmos" in capsys.readouterr().out


def test_compare_report_has_a_distillmos_column(ours, tmp_path):
    """Two 1-s files: a DistillMOS column for every row, the Clean row included."""
    from mal.audio import read_audio
    from mal.cli import main

    for folder in ("clean", "A"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        sf.write(tmp_path / "clean" / f"u{i}.wav", _speechlike(1.0, seed=i, noise=0.0), RATE)
        sf.write(tmp_path / "A" / f"u{i}.wav", _speechlike(1.0, seed=i, noise=0.05), RATE)
    out = tmp_path / "out"
    assert main(["compare", "--clean", str(tmp_path / "clean"), "--systems", f"A={tmp_path / 'A'}",
                 "--metrics", "sisdr,distillmos", "-o", str(out), "--quiet", "--no-listen"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_metrics"] == {}
    for system in ("Clean", "A"):
        assert summary["systems"][system]["metrics"]["DistillMOS"]["n"] == 2
    clean_mos = summary["systems"]["Clean"]["metrics"]["DistillMOS"]["mean"]
    assert clean_mos == pytest.approx(np.mean([ours.score(*read_audio(tmp_path / "clean" / f"u{i}.wav"))["DistillMOS"]
                                               for i in range(2)]), abs=1e-6)  # each file scored alone
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[-1].startswith("DistillMOS") and table[1].startswith("| Clean | 2 | - | ")
    assert "DistillMOS" in (out / "per_file.csv").read_text().splitlines()[0]


def test_the_same_scores_for_any_jobs(ours, tmp_path):
    """Two worker processes (one torch thread each) give the in-process numbers, bitwise."""
    from mal.audio import read_audio
    from mal.evaluation.metrics.runner import Job, ScoreOptions, run_jobs

    paths = [tmp_path / f"u{i}.wav" for i in range(2)]
    for i, path in enumerate(paths):
        sf.write(path, _speechlike(0.5 + i, seed=i), RATE, subtype="FLOAT")
    result = run_jobs([Job("A", str(p)) for p in paths], ScoreOptions(("distillmos",)), n_jobs=2, progress=False)
    assert not result.errors
    assert [row["DistillMOS"] for row in result.rows] == [ours.score(*read_audio(p))["DistillMOS"] for p in paths]
