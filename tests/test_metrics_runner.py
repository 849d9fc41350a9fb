"""The scoring runner and `mal evaluate`: pairing, lengths, cache, bad files, skips, jobs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from mal.cli import main
from mal.evaluation.metrics import runner
from mal.evaluation.metrics.runner import Job, ScoreOptions, run_jobs
from mal.evaluation.metrics.stats import adjust_pvalues, paired_test, summarize


def _speechlike(seed: int, n: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    voiced = np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 300 * t)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.3 * voiced * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture()
def folders(tmp_path):
    clean, enhanced = tmp_path / "clean", tmp_path / "enhanced"
    clean.mkdir()
    enhanced.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        x = _speechlike(i)
        sf.write(clean / f"u{i}.wav", x, 16000)
        sf.write(enhanced / f"u{i}.wav", x + 0.05 * rng.standard_normal(len(x)).astype(np.float32), 16000)
    return clean, enhanced


def test_lengths_trimmed_warned_only_beyond_tolerance(tmp_path):
    x = _speechlike(0)
    sf.write(tmp_path / "ref.wav", x, 16000)
    sf.write(tmp_path / "short.wav", x[:-50], 16000)
    sf.write(tmp_path / "shorter.wav", x[:-150], 16000)
    result = run_jobs([Job("S", str(tmp_path / "short.wav"), str(tmp_path / "ref.wav")),
                       Job("S", str(tmp_path / "shorter.wav"), str(tmp_path / "ref.wav"))],
                      ScoreOptions(("sisdr",)), progress=False)
    short, shorter = result.rows
    assert short["length_diff"] == -50 and short["notes"] == "" and short["SI-SDR"] > 40
    assert shorter["length_diff"] == -150 and "length differs" in shorter["notes"]
    assert any("shorter.wav" in w for w in result.warnings)


def test_cache_rescoring_only_changed_files(folders, tmp_path, monkeypatch):
    clean, enhanced = folders
    calls = []
    real = runner.compute_group
    monkeypatch.setattr(runner, "compute_group", lambda g, *a: calls.append(g) or real(g, *a))
    jobs, _ = runner.pair_jobs("E", enhanced, clean)
    cache = tmp_path / "cache.sqlite"
    first = run_jobs(jobs, ScoreOptions(("sisdr",)), cache_path=cache, progress=False)
    assert len(calls) == 3
    calls.clear()
    second = run_jobs(jobs, ScoreOptions(("sisdr",)), cache_path=cache, progress=False)
    assert calls == [] and [r["SI-SDR"] for r in second.rows] == [r["SI-SDR"] for r in first.rows]
    os.utime(enhanced / "u1.wav", ns=(1, 1))  # a changed file (mtime) is scored again
    run_jobs(jobs, ScoreOptions(("sisdr", "lsd")), cache_path=cache, progress=False)
    assert sorted(calls) == sorted(["sisdr", "lsd", "lsd", "lsd"])  # plus a new metric group everywhere


def test_parallel_jobs_give_the_same_scores(folders, monkeypatch):
    clean, enhanced = folders
    jobs, _ = runner.pair_jobs("E", enhanced, clean)
    serial = run_jobs(jobs, ScoreOptions(("sisdr", "lsd")), n_jobs=1, progress=False)
    entered, one_thread_children = [], runner._one_thread_children
    monkeypatch.setattr(runner, "_one_thread_children", lambda: entered.append(1) or one_thread_children())
    parallel = run_jobs(jobs, ScoreOptions(("sisdr", "lsd")), n_jobs=2, progress=False)
    assert [(r["file"], r["SI-SDR"], r["LSD"]) for r in serial.rows] == [(r["file"], r["SI-SDR"], r["LSD"]) for r in parallel.rows]
    assert entered == [1]  # the workers were started with one BLAS / OpenMP thread each


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="reads a process's initial environment in /proc (Linux)")
def test_workers_see_one_thread_from_their_first_import(monkeypatch):
    """numpy's OpenBLAS reads OPENBLAS_NUM_THREADS when it loads, which in a spawned worker is
    before its initializer runs: the variables must be in the environment it starts with."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from pathlib import Path

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with runner._one_thread_children():
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            initial = pool.submit(Path("/proc/self/environ").read_bytes).result()  # as exec'd, before any import
    started_with = dict(item.split(b"=", 1) for item in initial.split(b"\0") if b"=" in item)
    assert all(started_with[name.encode()] == b"1" for name in runner._THREAD_VARIABLES)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7" and "OMP_NUM_THREADS" not in os.environ  # the caller's, restored


def test_evaluate_cli_bad_file_skips_and_outputs(folders, tmp_path, capsys, monkeypatch):
    clean, enhanced = folders
    (enhanced / "broken.wav").write_bytes(b"RIFF not really a wav")
    sf.write(clean / "broken.wav", _speechlike(9), 16000)
    monkeypatch.delenv("MAL_NISQA_WEIGHTS", raising=False)
    monkeypatch.setattr("mal.util.assets.nisqa_places", lambda: [])  # nor in any known place
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in enhanced.iterdir()}
    code = main(["evaluate", "--clean", str(clean), "--enhanced", str(enhanced), "-o", str(out),
                 "--metrics", "sisdr,stoi,nisqa", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.wav" in err and err.count("broken.wav") >= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["systems"]["Enhanced"]["n_files"] == 3
    assert any("broken.wav" in e for e in summary["bad_files"])
    assert "no NISQA weights" in summary["skipped_metrics"]["nisqa (NISQA-MOS, NISQA-NOI, NISQA-DIS, NISQA-COL, NISQA-LOUD)"]
    stats = summary["systems"]["Enhanced"]["metrics"]["SI-SDR"]
    assert stats["n"] == 3 and stats["ci95"][0] <= stats["mean"] <= stats["ci95"][1]
    header = (out / "per_file.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["system", "file", "SI-SDR", "STOI"] and "NISQA-MOS" not in header
    assert {p.name: p.read_bytes() for p in enhanced.iterdir()} == before  # inputs untouched
    # an output folder that is an input folder is refused
    assert main(["evaluate", "--clean", str(clean), "--enhanced", str(enhanced), "-o", str(enhanced), "--quiet"]) == 2


def test_statistics():
    from scipy import stats

    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    s = summarize(x)
    lo, hi = stats.t.interval(0.95, 3, loc=2.5, scale=np.std(x[:4], ddof=1) / 2)
    assert s["n"] == 4 and s["mean"] == 2.5 and s["ci95"] == pytest.approx([lo, hi])
    rng = np.random.default_rng(0)
    base = rng.standard_normal(30)
    shifted = paired_test(base + 0.5 + 0.1 * rng.standard_normal(30), base)
    assert shifted["p"] < 1e-4 and shifted["diff_ci95_lo"] > 0.3
    same = paired_test(base + 0.1 * rng.standard_normal(30), base)
    assert same["p"] > 0.01
    adjusted = adjust_pvalues([0.01, 0.04, np.nan])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[1] == pytest.approx(0.04) and np.isnan(adjusted[2])


def test_evaluate_with_model_enhances_then_scores(folders, tmp_path):
    import torch

    from mal.inference import save_model
    from mal.models import build_model

    clean, noisy = folders
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.ckpt"
    save_model(build_model({"preset": "deepfilternet_16k"}), checkpoint)
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(checkpoint), "--noisy", str(noisy), "--clean", str(clean),
                 "-o", str(out), "--metrics", "sisdr", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["systems"]) == ["Noisy", "tiny"]
    assert summary["systems"]["tiny"]["n_files"] == 3
    assert sorted(p.name for p in (out / "enhanced").iterdir()) == ["u0.wav", "u1.wav", "u2.wav"]


def test_light_check_agrees_and_imports_no_metric_library():
    """--jobs > 1 checks that the metrics' packages are installed without importing them in the
    main process (the workers do; importing NISQA's code alone takes seconds), with the same verdict."""
    import subprocess
    import sys

    code = ("import sys; from mal.evaluation.metrics.runner import check_groups; from mal.evaluation.metrics import parse_groups; "
            "light = check_groups(parse_groups('all'), sys.executable, True, light=True); "
            "heavy_loaded = [m for m in ('torch', 'onnxruntime', 'pandas', 'pystoi', 'pesq') if m in sys.modules]; "
            "full = check_groups(parse_groups('all'), sys.executable, True); print(light == full, heavy_loaded)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out == ["True", "[]\n"], out
