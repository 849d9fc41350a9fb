"""The faster scoring paths give the numbers of the plain per-file path (issue 14).

Shared DNSMOS convolutions against speechmos' own window loop, reused reference sides and
WB-PESQ against the metric functions called alone, several systems scored together against
each alone, --jobs 2 (reference-grouped chunks) against --jobs 1. Real VoiceBank-DEMAND
files; skipped without ../shared/data.

Tolerance: exact equality (==) everywhere but
- STOI/ESTOI, compared to 1e-12 relative: pystoi's own result moves in the last bit with
  the memory alignment of its input (the same array copied to another address gave
  0.726041905049394 and 0.7260419050493939);
- DNSMOS against speechmos.dnsmos.run with ORT's default threads, 1e-6 relative: ORT's
  float32 results move in the last bits with its thread count (~1e-7 on p232_016), so mal
  runs it on one thread, where the comparison is exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mal.audio import peak_normalize, read_audio
from mal.evaluation.metrics import intrusive, runner
from mal.evaluation.metrics.runner import Job, ScoreOptions, run_jobs

INTRUSIVE = ("pesq", "stoi", "estoi", "sisdr", "lsd", "mcd", "composite")
PYSTOI_ULP = {"STOI", "ESTOI"}


def _same(name: str, a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) if name in PYSTOI_ULP else a == b


@pytest.fixture(scope="module")
def vbd(shared_data):
    return shared_data / "vbd-test"


def _speechmos_one_thread():
    """speechmos' own DNSMOS (its window loop, its __call__) on one-thread ORT sessions."""
    import onnxruntime as ort
    from speechmos import dnsmos as speechmos_dnsmos

    folder = Path(speechmos_dnsmos.__file__).parent / "dnsmos_models"
    primary, p808 = str(folder / "sig_bak_ovr.onnx"), str(folder / "model_v8.onnx")
    model = speechmos_dnsmos.DNSMOS(primary, p808)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model.onnx_sess, model.p808_onnx_sess = ort.InferenceSession(primary, options), ort.InferenceSession(p808, options)
    return model


def _named(scores: dict) -> dict:
    return {"DNSMOS-SIG": scores["sig_mos"], "DNSMOS-BAK": scores["bak_mos"], "DNSMOS-OVRL": scores["ovrl_mos"],
            "DNSMOS-P808": scores["p808_mos"]}


def test_dnsmos_shared_windows_equal_speechmos(vbd):
    pytest.importorskip("speechmos.dnsmos")
    from speechmos import dnsmos as speechmos_dnsmos

    from mal.evaluation.metrics.dnsmos import DnsmosScorer

    scorer = DnsmosScorer()
    assert scorer._parts is not None  # the shared-convolution path is the one under test
    reference = _speechmos_one_thread()
    rate = 16000
    # p232_016: 5.6 s, repeated to 11.1 s: 2 windows; one where ORT's thread count moves the last bits
    two = read_audio(vbd / "noisy" / "p232_016.wav")[0]
    parts = [read_audio(vbd / "noisy" / f"p232_0{i}.wav")[0] for i in (11, 12, 13, 14, 15, 16, 21)]
    # 34 s: windows 0..24, of which speechmos skips 7..23 (their end rounds one sample short):
    # a run of 7 windows sharing their frames, then a single one
    long = np.concatenate(parts)[: 34 * rate]
    assert len(long) == 34 * rate
    for signal in (two, long):
        x = np.clip(peak_normalize(signal, -10.0), -1.0, 1.0)
        ours = scorer.score(signal, rate)
        assert ours == _named(reference(x, rate, False))  # bitwise
    # speechmos.dnsmos.run as such (ORT's default threads): the same to float32 rounding
    default = _named(speechmos_dnsmos.run(np.clip(peak_normalize(two, -10.0), -1.0, 1.0), rate))
    assert scorer.score(two, rate) == pytest.approx(default, rel=1e-6, abs=0)


def _old_nearest_peaks(slope, energy):
    """The per-frame loop this replaced (Loizou's search), kept here to compare with."""
    n = slope.shape[0]
    peaks = np.empty_like(slope)
    for f in range(slope.shape[1]):
        s, e = slope[:, f], energy[:, f]
        for i in range(n):
            j = i
            if s[i] > 0:
                while j < n and s[j] > 0:
                    j += 1
                peaks[i, f] = e[j - 1]
            else:
                while j >= 0 and s[j] <= 0:
                    j -= 1
                peaks[i, f] = e[j + 1]
    return peaks


def test_reference_sides_and_pesq_reuse_equal_alone(vbd):
    pytest.importorskip("librosa")
    clean, rate = read_audio(vbd / "clean" / "p232_005.wav")
    noisy, _ = read_audio(vbd / "noisy" / "p232_005.wav")
    enhanced, _ = read_audio(vbd / "CMGAN" / "p232_005.wav")
    n = min(len(clean), len(enhanced))
    clean, noisy, enhanced = clean[:n], noisy[:n], enhanced[:n]
    side = intrusive.composite_reference(clean, rate)
    cepstrum = intrusive.mcd_reference(clean, rate)
    for deg in (noisy, enhanced):  # one reference side, two systems
        alone = intrusive.composite(clean, deg, rate)
        assert intrusive.composite(clean, deg, rate, intrusive.wb_pesq(clean, deg, rate), side) == alone
        assert intrusive.mcd(clean, deg, rate, cepstrum) == intrusive.mcd(clean, deg, rate)
    assert intrusive.composite(clean, noisy, rate) != intrusive.composite(clean, enhanced, rate)
    # the vectorised nearest-peak search picks the bands the loop picked, on real band energies
    db = intrusive._wss_band_db(intrusive._frames(noisy.astype(np.float64), rate), rate)
    slope = np.diff(db, axis=0)
    assert np.array_equal(intrusive._nearest_peaks(slope, db), _old_nearest_peaks(slope, db))
    slope[3, :5] = np.nan  # and where a slope is neither > 0 nor <= 0
    assert np.array_equal(intrusive._nearest_peaks(slope, db), _old_nearest_peaks(slope, db))


def _alone(job: Job, groups: tuple[str, ...], nisqa, dnsmos_model) -> dict[str, float]:
    """The plain per-file path: each metric function called on its own, speechmos' window loop."""
    processed, _ = read_audio(job.path)
    reference, rate = read_audio(job.reference)
    n = min(len(processed), len(reference))
    processed, reference = processed[:n], reference[:n]
    out = {"WB-PESQ": intrusive.wb_pesq(reference, processed, rate),
           "STOI": intrusive.stoi(reference, processed, rate),
           "ESTOI": intrusive.stoi(reference, processed, rate, extended=True),
           "SI-SDR": intrusive.si_sdr(reference, processed), "LSD": intrusive.lsd(reference, processed, rate),
           "MCD": intrusive.mcd(reference, processed, rate), **intrusive.composite(reference, processed, rate)}
    if "dnsmos" in groups:
        out.update(_named(dnsmos_model(np.clip(peak_normalize(processed, -10.0), -1.0, 1.0), rate, False)))
    if "nisqa" in groups:
        out.update(nisqa.score(processed, rate))
    return out


def _jobs(vbd, systems, stems):
    return [Job(name, str(vbd / folder / f"{stem}.wav"), str(vbd / "clean" / f"{stem}.wav"))
            for name, folder in systems for stem in stems]


def test_several_systems_together_equal_each_scored_alone(vbd, nisqa_weights, monkeypatch):
    pytest.importorskip("speechmos.dnsmos")
    pytest.importorskip("nisqa.NISQA_model")
    groups = (*INTRUSIVE, "dnsmos", "nisqa")
    options = ScoreOptions(groups, str(nisqa_weights))
    jobs = _jobs(vbd, [("Noisy", "noisy"), ("CMGAN", "CMGAN")], ["p232_006", "p232_014"])
    reference_sides = []
    real_side = runner._reference_side
    monkeypatch.setattr(runner, "_reference_side", lambda *a: reference_sides.append(real_side(*a)) or reference_sides[-1])
    runner._REFERENCE_SIDES.clear()
    together = run_jobs(jobs, options, progress=False)
    assert not together.errors and len(together.rows) == 4
    # the second system reused the first one's reference sides (one per clean file)
    assert len({id(s) for s in reference_sides}) == 2 and len(reference_sides) == 4
    nisqa = runner._nisqa(str(nisqa_weights))  # NISQA's path is unchanged: its loaded model is reused
    dnsmos_model = _speechmos_one_thread()
    from threadpoolctl import threadpool_limits

    for job, row in zip(jobs, together.rows):
        with threadpool_limits(limits=1, user_api="blas"):  # as run_jobs scores (see test_metrics_runner)
            alone = _alone(job, groups, nisqa, dnsmos_model)
        for name, value in alone.items():
            assert _same(name, row[name], value), (job.path, name, row[name], value)


def test_family_units_split_each_chunk_by_library_family():
    chunks = [[(0, ("pesq", "dnsmos")), (1, ("dnsmos",))], [(2, ())], [(3, ("nisqa", "stoi"))]]
    assert runner._family_units(chunks) == [
        # job 0's info comes with its "other" unit; job 1 has only DNSMOS, so its DNSMOS unit computes it
        ("dnsmos", [(0, ("dnsmos",), False), (1, ("dnsmos",), True)]), ("other", [(0, ("pesq",), True)]),
        ("other", [(2, (), True)]),  # only the file's info to compute
        ("other", [(3, ("nisqa", "stoi"), True)])]


def test_two_workers_chunked_by_reference_equal_one_and_report_a_bad_file(vbd, tmp_path):
    broken = tmp_path / "p232_006.wav"
    broken.write_bytes(b"RIFF not a wav at all")
    jobs = _jobs(vbd, [("Noisy", "noisy"), ("CMGAN", "CMGAN")], ["p232_006", "p232_014"])
    jobs.insert(1, Job("Broken", str(broken), str(vbd / "clean" / "p232_006.wav")))  # shares a chunk with two good jobs
    # composite: reference side and WB-PESQ reused in a chunk; dnsmos: a second family of work,
    # so each job is split between the two workers' units and merged back
    options = ScoreOptions(("pesq", "sisdr", "composite", "dnsmos"))
    serial = run_jobs(jobs, options, n_jobs=1, progress=False)
    parallel = run_jobs(jobs, options, n_jobs=2, progress=False)
    assert len(parallel.errors) == 1 and "p232_006.wav" in parallel.errors[0] and str(tmp_path) in parallel.errors[0]
    assert parallel.errors == serial.errors
    assert [r["path"] for r in parallel.rows] == [j.path for j in jobs if j.system != "Broken"]
    for a, b in zip(serial.rows, parallel.rows):
        for name, value in a.items():
            assert value == b[name] or _same(name, value, b[name]), (a["path"], name)


def test_direct_levinson_and_toeplitz_forms_equal_scipy_calls(vbd):
    """The composite's per-frame LPC solve and quadratic form, made without scipy's per-call
    checks, give bitwise the numbers of scipy.linalg.solve_toeplitz / toeplitz."""
    import scipy.linalg

    noisy, rate = read_audio(vbd / "noisy" / "p232_005.wav")
    frames = intrusive._frames(noisy.astype(np.float64), rate)
    lags, poly = intrusive._lpc(frames, 16)
    assert intrusive._levinson is not None  # the direct path is the one under test
    checked = 0
    for r, a in zip(lags, poly):
        if r[0] > 0:
            assert np.array_equal(a[1:], -scipy.linalg.solve_toeplitz(r[:-1], r[1:], check_finite=False))
            checked += 1
    assert checked > 100
    forms = intrusive._quadratic_forms(lags, poly)
    assert np.array_equal(forms, [a @ scipy.linalg.toeplitz(r) @ a for r, a in zip(lags, poly)])


def test_shared_stoi_envelopes_give_pystois_numbers_bitwise(vbd):
    """STOI and ESTOI from one set of envelopes, with the same dithering draws, are pystoi's
    numbers bit for bit; a pair too short after silence removal gives pystoi's 1e-5."""
    from pystoi import stoi as pystoi_stoi

    clean, rate = read_audio(vbd / "clean" / "p232_005.wav")
    noisy, _ = read_audio(vbd / "noisy" / "p232_005.wav")
    n = min(len(clean), len(noisy))
    clean, noisy = clean[:n], noisy[:n]
    np.random.seed(7)
    expected = (pystoi_stoi(clean, noisy, rate), pystoi_stoi(clean, noisy, rate, extended=True))
    np.random.seed(7)
    segments = intrusive.stoi_segments(clean, noisy, rate)
    ours = (intrusive.stoi(clean, noisy, rate, segments=segments),
            intrusive.stoi(clean, noisy, rate, extended=True, segments=segments))
    assert ours == expected
    short = clean[: int(0.3 * rate)]
    with pytest.warns(RuntimeWarning, match="Not enough STFT frames"):
        ours = intrusive.stoi(short, short[::-1].copy(), rate)
    with pytest.warns(RuntimeWarning, match="Not enough STFT frames"):
        assert ours == pystoi_stoi(short, short[::-1].copy(), rate) == 1e-5


def test_split_dnsmos_graphs_are_cached_and_give_the_same_scores(vbd, tmp_path, monkeypatch):
    """The first scorer splits the P.835 graph and keeps the parts; the next reads them back
    (no onnx import, no split) and scores bitwise the same; a damaged entry is remade."""
    pytest.importorskip("speechmos.dnsmos")
    from mal.evaluation.metrics import dnsmos

    monkeypatch.setenv("MAL_CACHE_DIR", str(tmp_path))
    x = read_audio(vbd / "noisy" / "p232_016.wav")[0]
    first = dnsmos.DnsmosScorer()
    files = sorted((tmp_path / "dnsmos").glob("*.onnx"))
    assert len(files) == 3 and first._parts is not None
    splits = []
    real_split = dnsmos._split_primary
    monkeypatch.setattr(dnsmos, "_split_primary", lambda path: splits.append(path) or real_split(path))
    second = dnsmos.DnsmosScorer()
    assert splits == [] and second.score(x, 16000) == first.score(x, 16000)
    files[0].write_bytes(b"not an onnx graph")
    third = dnsmos.DnsmosScorer()
    assert len(splits) == 1 and third.score(x, 16000) == first.score(x, 16000)
    assert files[0].read_bytes() != b"not an onnx graph"
