"""DNSMOS and NISQA: same numbers as their official code paths, level-normalised input."""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import soundfile as sf

from mal.audio import normalize_active_level, peak_normalize, read_audio


@pytest.fixture(scope="module")
def noisy(shared_data):
    path = shared_data / "vbd-test" / "noisy" / "p232_005.wav"
    samples, rate = read_audio(path)
    return path, samples, rate


def _official_nisqa(weights, wav_path) -> dict[str, float]:
    """The nisqa package's own predict path, as its run_predict.py -mode predict_file runs it."""
    from nisqa.NISQA_model import nisqaModel

    args = {"mode": "predict_file", "pretrained_model": str(weights), "deg": str(wav_path), "output_dir": None,
            "ms_channel": None, "tr_bs_val": 1, "tr_num_workers": 0, "tr_parallel": False, "tr_device": "cpu"}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = nisqaModel(args).predict()
    row = frame.iloc[0]
    return {"NISQA-MOS": row["mos_pred"], "NISQA-NOI": row["noi_pred"], "NISQA-DIS": row["dis_pred"],
            "NISQA-COL": row["col_pred"], "NISQA-LOUD": row["loud_pred"]}


def test_nisqa_equals_official_predictor(noisy, nisqa_weights, tmp_path):
    pytest.importorskip("nisqa.NISQA_model", reason="pip install --no-deps nisqa && pip install librosa pandas")
    from mal.evaluation.metrics.nisqa import NisqaScorer

    path, samples, rate = noisy
    raw = NisqaScorer(nisqa_weights, normalize=False)
    official_raw = _official_nisqa(nisqa_weights, path)  # the shared file itself, untouched
    for name, value in raw.score(samples, rate).items():
        assert value == pytest.approx(official_raw[name], abs=1e-3), name

    # With the paper's -26 dBov P.56 normalisation: equal to the official predictor on the
    # normalised file, and different from the raw-level scores.
    normalised_path = tmp_path / "normalised.wav"
    sf.write(normalised_path, normalize_active_level(samples, rate, -26.0), rate, subtype="FLOAT")
    official = _official_nisqa(nisqa_weights, normalised_path)
    scorer = NisqaScorer(nisqa_weights)
    ours = scorer.score(samples, rate)
    for name, value in ours.items():
        assert value == pytest.approx(official[name], abs=1e-3), name
    assert ours != pytest.approx(official_raw, abs=1e-3)
    # input level no longer matters
    quieter = scorer.score(0.1 * samples, rate)
    for name, value in ours.items():
        assert quieter[name] == pytest.approx(value, abs=1e-3), name


def test_nisqa_missing_weights_is_reported():
    from mal.evaluation.metrics.nisqa import nisqa_unavailable

    assert "no NISQA weights" in nisqa_unavailable(None)
    assert "not found" in nisqa_unavailable(__import__("pathlib").Path("/nonexistent/nisqa.tar"))


def test_one_nisqa_lookup_flag_then_variable_then_known_places(tmp_path, monkeypatch):
    from mal.util import assets

    work, found = tmp_path / "work", tmp_path / "shared" / "models" / "nisqa" / "nisqa.tar"
    work.mkdir()
    found.parent.mkdir(parents=True)
    found.write_bytes(b"weights")
    monkeypatch.chdir(work)  # ../shared/models/nisqa/nisqa.tar beside the working folder
    monkeypatch.delenv(assets.ENV_WEIGHTS, raising=False)
    assert assets.find_nisqa_weights() == found.resolve()
    monkeypatch.setenv(assets.ENV_WEIGHTS, str(tmp_path / "env.tar"))
    assert assets.find_nisqa_weights() == tmp_path / "env.tar"  # named, so returned even if absent
    assert assets.find_nisqa_weights(tmp_path / "flag.tar") == tmp_path / "flag.tar"
    monkeypatch.delenv(assets.ENV_WEIGHTS)
    monkeypatch.setattr(assets, "nisqa_places", lambda: [tmp_path / "nowhere" / "nisqa.tar"])
    assert assets.find_nisqa_weights() is None
    assert str(tmp_path / "nowhere" / "nisqa.tar") in assets.nisqa_missing_reason()


def test_the_nisqa_metric_and_loss_share_the_lookup(tmp_path, monkeypatch):
    from mal.evaluation.metrics.nisqa import NisqaScorer
    from mal.losses.nisqa_features import NisqaFeatureLoss

    monkeypatch.setenv("MAL_NISQA_WEIGHTS", str(tmp_path / "absent.tar"))
    for build in (NisqaScorer, NisqaFeatureLoss):
        with pytest.raises(FileNotFoundError, match="absent.tar"):
            build(None)


def test_compare_scores_nisqa_where_the_weights_are_without_a_flag(tmp_path, monkeypatch):
    """No --nisqa-weights, no $MAL_NISQA_WEIGHTS: NISQA runs when a known place has nisqa.tar."""
    import json

    import numpy as np

    from mal.cli import main
    from mal.util.assets import ENV_WEIGHTS, nisqa_places

    pytest.importorskip("nisqa.NISQA_model", reason="the nisqa package is not installed")
    if not any(p.is_file() for p in nisqa_places()):
        pytest.skip("no nisqa.tar in the known places (../shared/models/nisqa)")
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    system = tmp_path / "system"
    system.mkdir()
    t = np.arange(16000) / 16000
    sf.write(system / "a.wav", (0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 16000)
    out = tmp_path / "out"
    assert main(["compare", "--systems", f"S={system}", "--metrics", "nisqa", "-o", str(out), "--no-listen", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_metrics"] == {}
    assert np.isfinite(summary["systems"]["S"]["metrics"]["NISQA-MOS"]["mean"])


def test_dnsmos_equals_speechmos_on_peak_normalised_input(noisy):
    pytest.importorskip("speechmos.dnsmos")
    from speechmos import dnsmos as speechmos_dnsmos

    from mal.evaluation.metrics.dnsmos import dnsmos

    _, samples, rate = noisy
    expected = speechmos_dnsmos.run(peak_normalize(samples, -10.0), rate)
    ours = dnsmos(samples, rate)
    assert ours["DNSMOS-OVRL"] == pytest.approx(expected["ovrl_mos"], abs=1e-6)
    assert ours["DNSMOS-SIG"] == pytest.approx(expected["sig_mos"], abs=1e-6)
    assert ours["DNSMOS-BAK"] == pytest.approx(expected["bak_mos"], abs=1e-6)
    assert ours["DNSMOS-P808"] == pytest.approx(expected["p808_mos"], abs=1e-6)
    quieter = dnsmos(0.3 * samples, rate)
    assert quieter["DNSMOS-OVRL"] == pytest.approx(ours["DNSMOS-OVRL"], abs=1e-3)


def test_dnsmos_prefers_enhanced_speech(shared_data):
    pytest.importorskip("speechmos.dnsmos")
    from mal.evaluation.metrics.dnsmos import dnsmos

    noisy, rate = read_audio(shared_data / "vbd-test" / "noisy" / "p232_005.wav")
    enhanced, _ = read_audio(shared_data / "vbd-test" / "CMGAN" / "p232_005.wav")
    assert dnsmos(enhanced, rate)["DNSMOS-BAK"] > dnsmos(noisy, rate)["DNSMOS-BAK"] + 0.5
