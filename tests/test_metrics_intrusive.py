"""Intrusive metrics agree with their reference packages and with Loizou's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from mal.audio import read_audio
from mal.evaluation.metrics import intrusive

FILES = ["p232_005", "p257_008"]


@pytest.fixture(scope="module")
def pairs(shared_data):
    root = shared_data / "vbd-test"
    out = []
    for name in FILES:
        clean, rate = read_audio(root / "clean" / f"{name}.wav")
        noisy, _ = read_audio(root / "noisy" / f"{name}.wav")
        enhanced, _ = read_audio(root / "CMGAN" / f"{name}.wav")
        n = min(len(clean), len(enhanced))
        out.append((clean[:n], noisy[:n], enhanced[:n], rate))
    return out


def test_pesq_equals_reference_package(pairs):
    from pesq import pesq

    for clean, noisy, enhanced, rate in pairs:
        for deg in (noisy, enhanced):
            assert intrusive.wb_pesq(clean, deg, rate) == pytest.approx(pesq(rate, clean, deg, "wb"), abs=1e-9)


def test_pesq_resamples_other_rates(pairs):
    from mal.audio import resample

    clean, noisy, _, rate = pairs[0]
    at_48k = intrusive.wb_pesq(resample(clean, rate, 48000), resample(noisy, rate, 48000), 48000)
    assert at_48k == pytest.approx(intrusive.wb_pesq(clean, noisy, rate), abs=0.05)


def test_stoi_and_estoi_equal_pystoi(pairs):
    from pystoi import stoi

    for clean, noisy, _, rate in pairs:
        assert intrusive.stoi(clean, noisy, rate) == pytest.approx(stoi(clean, noisy, rate), abs=1e-12)
        assert intrusive.stoi(clean, noisy, rate, extended=True) == pytest.approx(
            stoi(clean, noisy, rate, extended=True), abs=1e-12)


def test_si_sdr_equals_torchmetrics(pairs):
    import torch
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio as tm_si_sdr

    for clean, noisy, enhanced, _ in pairs:
        for deg in (noisy, enhanced):
            expected = float(tm_si_sdr(torch.from_numpy(deg.astype(np.float64)), torch.from_numpy(clean.astype(np.float64)), zero_mean=True))
            assert intrusive.si_sdr(clean, deg) == pytest.approx(expected, abs=1e-6)


def test_si_sdr_known_value_and_scale_invariance():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    ref -= ref.mean()
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.sqrt(ref @ ref / (noise @ noise)) / 10 ** (12.0 / 20)  # 12 dB below
    assert intrusive.si_sdr(ref, ref + noise) == pytest.approx(12.0, abs=1e-6)
    assert intrusive.si_sdr(ref, 0.1 * (ref + noise)) == pytest.approx(12.0, abs=1e-6)


def test_lsd_equals_urgent_formula_and_ignores_gain(pairs):
    librosa = pytest.importorskip("librosa")

    clean, noisy, _, rate = pairs[0]
    eps = 1e-8
    ref, inf = clean.astype(np.float64), noisy.astype(np.float64)
    inf = inf * (np.sum(ref * inf) / (np.sum(inf**2) + eps))
    ref_spec = np.abs(librosa.stft(ref, hop_length=256, n_fft=512)).T
    inf_spec = np.abs(librosa.stft(inf, hop_length=256, n_fft=512)).T
    expected = np.mean(np.mean(np.log(ref_spec**2 / (inf_spec + eps) ** 2 + eps) ** 2, axis=1) ** 0.5)
    assert intrusive.lsd(clean, noisy, rate) == pytest.approx(expected, rel=1e-9)
    assert intrusive.lsd(clean, 3.0 * noisy, rate) == pytest.approx(expected, rel=1e-6)
    assert intrusive.lsd(clean, clean, rate) < 1e-3


def test_mcd_zero_for_identity_and_orders_systems(pairs):
    pytest.importorskip("librosa")
    for clean, noisy, enhanced, rate in pairs:
        assert intrusive.mcd(clean, clean, rate) == pytest.approx(0.0, abs=1e-9)
        assert intrusive.mcd(clean, enhanced, rate) < intrusive.mcd(clean, noisy, rate)


def test_composite_clean_scores_maximum_and_enhancement_beats_noisy(pairs):
    for clean, noisy, enhanced, rate in pairs:
        assert intrusive.composite(clean, clean, rate) == {"CSIG": 5.0, "CBAK": 5.0, "COVL": 5.0}
        noisy_scores = intrusive.composite(clean, noisy, rate)
        enhanced_scores = intrusive.composite(clean, enhanced, rate)
        for name in ("CSIG", "CBAK", "COVL"):
            assert 1.0 <= noisy_scores[name] < enhanced_scores[name] <= 5.0


def test_composite_published_ordering_for_noisy_speech(pairs):
    # VoiceBank-DEMAND "Noisy" row (Pascual et al., SEGAN, 2017, Table 1; repeated by MetricGAN,
    # CMGAN, MP-SENet): PESQ 1.97, CSIG 3.35, CBAK 2.44, COVL 2.63. Per file the same
    # structure holds: CSIG above COVL above WB-PESQ, and CBAK above WB-PESQ.
    for clean, noisy, _, rate in pairs:
        scores = intrusive.composite(clean, noisy, rate)
        pesq_value = intrusive.wb_pesq(clean, noisy, rate)
        assert scores["CSIG"] > scores["COVL"] > pesq_value
        assert scores["CBAK"] > pesq_value


# A plain frame-by-frame transcription of Loizou's composite.m parts (llr.m, wss.m, snr.m),
# with its own Levinson-Durbin recursion, to check the vectorised module against.
def _loizou_frames(x, rate):
    length = round(0.03 * rate)
    hop = int(np.floor(length / 4))
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, length + 1) / (length + 1)))
    count = int(np.floor(len(x) / hop - length / hop))
    return [x[k * hop : k * hop + length] * window for k in range(count)]


def _levinson(r, order):
    a, err = np.zeros(order), r[0]
    for i in range(order):
        k = (r[i + 1] - np.dot(a[:i], r[i:0:-1])) / err
        a_prev = a.copy()
        a[i] = k
        a[:i] = a_prev[:i] - k * a_prev[:i][::-1]
        err *= 1 - k * k
    return np.concatenate([[1.0], -a])


def _loizou_llr(clean, processed, rate):
    values = []
    for c, p in zip(_loizou_frames(clean, rate), _loizou_frames(processed, rate)):
        r_c = np.array([np.sum(c[: len(c) - k] * c[k:]) for k in range(17)])
        r_p = np.array([np.sum(p[: len(p) - k] * p[k:]) for k in range(17)])
        a_c, a_p = _levinson(r_c, 16), _levinson(r_p, 16)
        t = scipy.linalg.toeplitz(r_c)
        values.append(np.log((a_p @ t @ a_p) / (a_c @ t @ a_c)))
    values = np.sort(values)
    return np.mean(values[: int(round(len(values) * 0.95))])


def _loizou_segsnr(clean, processed, rate):
    values = []
    for c, p in zip(_loizou_frames(clean, rate), _loizou_frames(processed, rate)):
        snr = 10 * np.log10(np.sum(c**2) / (np.sum((c - p) ** 2) + np.finfo(float).eps) + np.finfo(float).eps)
        values.append(min(max(snr, -10), 35))
    return np.mean(values)


def test_llr_and_segsnr_match_plain_transcription(pairs):
    clean, noisy, _, rate = pairs[1]
    clean, noisy = clean.astype(np.float64)[:24000], noisy.astype(np.float64)[:24000]
    assert intrusive.llr(clean, noisy, rate) == pytest.approx(_loizou_llr(clean, noisy, rate), rel=1e-6)
    assert intrusive.segmental_snr(clean, noisy, rate) == pytest.approx(_loizou_segsnr(clean, noisy, rate), rel=1e-9)


def test_wss_properties(pairs):
    clean, noisy, enhanced, rate = pairs[0]
    assert intrusive.wss(clean, clean, rate) == pytest.approx(0.0, abs=1e-9)
    # slopes of log band energies: (almost) independent of gain
    assert intrusive.wss(clean, 2.0 * noisy, rate) == pytest.approx(intrusive.wss(clean, noisy, rate), rel=1e-3)
    assert intrusive.wss(clean, enhanced, rate) < intrusive.wss(clean, noisy, rate)
