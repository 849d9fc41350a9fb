"""`mal compare` on a few VoiceBank-DEMAND files: report with Noisy first, CIs, significance."""

from __future__ import annotations

import json

import pytest

from mal.cli import main
from mal.cli.compare import parse_systems

FILES = ["p232_005", "p232_006", "p232_011", "p232_012"]  # CMGAN has no p232_012


@pytest.fixture(scope="module")
def vbd_subset(shared_data, tmp_path_factory):
    """Symlinked subset of clean, noisy and three published systems."""
    root = shared_data / "vbd-test"
    base = tmp_path_factory.mktemp("vbd")
    for folder in ("clean", "noisy", "CMGAN", "MP-SENet", "SE-VCAE"):
        (base / folder).mkdir()
        for name in FILES:
            src = root / folder / f"{name}.wav"
            if src.exists():
                (base / folder / src.name).symlink_to(src)
    return base


def test_compare_report(vbd_subset, tmp_path):
    out = tmp_path / "report"
    d = vbd_subset
    code = main(["compare", "--clean", str(d / "clean"), "--systems", f"CMGAN={d / 'CMGAN'}", f"Noisy={d / 'noisy'}",
                 f"MP-SENet={d / 'MP-SENet'}", f"SE-VCAE={d / 'SE-VCAE'}", "-o", str(out),
                 "--metrics", "pesq,sisdr", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["systems"]) == ["Noisy", "CMGAN", "MP-SENet", "SE-VCAE"]
    assert summary["reference"] == "Noisy"
    counts = {s: e["n_files"] for s, e in summary["systems"].items()}
    assert counts == {"Noisy": 4, "CMGAN": 3, "MP-SENet": 4, "SE-VCAE": 4}
    pesq = {s: e["metrics"]["WB-PESQ"]["mean"] for s, e in summary["systems"].items()}
    assert pesq["CMGAN"] > pesq["Noisy"] + 1.0 and pesq["MP-SENet"] > pesq["Noisy"] + 1.0
    test = summary["comparisons"]["CMGAN"]["WB-PESQ"]
    assert test["n"] == 3 and test["mean_diff"] > 1.0 and test["diff_ci95_lo"] > 0

    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| System | Files | WB-PESQ (MOS-LQO)")
    assert table[1].startswith("| Noisy | 4 |") and "±" in table[1]
    assert table[2].startswith("| CMGAN | 3 |")
    assert "Wilcoxon signed-rank" in report and "Paired comparison with Noisy" in report
    html = (out / "report.html").read_text()
    assert "<table>" in html and "fig_wb_pesq.png" in html
    assert (out / "fig_wb_pesq.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "per_file.csv").exists()

    page = (out / "index.html").read_text()  # the listening report, linked from report.md
    assert "(index.html)" in report and "CMGAN: 1 of 4 file(s) missing: p232_012" in page
    listened = sorted(p.name for p in (out / "listen").iterdir() if p.is_dir())
    assert listened == ["p232_005", "p232_006", "p232_011"]  # worst, median, best CMGAN gain (CMGAN lacks p232_012)
    assert len(list((out / "listen").rglob("*.flac"))) == 3 * 5  # Noisy, clean, 3 systems


def test_parse_systems_orders_noisy_first_and_checks(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "n").mkdir()
    assert list(parse_systems([f"A={tmp_path / 'a'}", f"noisy={tmp_path / 'n'}"])) == ["noisy", "A"]
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_systems(["just-a-dir"])
    with pytest.raises(ValueError, match="not a directory"):
        parse_systems([f"B={tmp_path / 'missing'}"])


def test_missing_files_are_counted_in_the_terminal(tmp_path, capsys):
    """A system folder lacking files says "1 of 3 file(s) missing" on stderr, not only in index.html."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for folder in ("clean", "A", "B"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        sf.write(tmp_path / "clean" / f"u{i}.wav", x, 16000)
        sf.write(tmp_path / "B" / f"u{i}.wav", x, 16000)
        if i != 2:
            sf.write(tmp_path / "A" / f"u{i}.wav", x, 16000)
    code = main(["compare", "--clean", str(tmp_path / "clean"), "--systems", f"A={tmp_path / 'A'}",
                 f"B={tmp_path / 'B'}", "--metrics", "sisdr", "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "A: 1 of 3 file(s) missing: u2" in err and "B:" not in err
    assert "A: 1 of 3 file(s) missing: u2" in (tmp_path / "out" / "index.html").read_text()  # the same words


def test_compare_report_has_a_clean_row(tmp_path, capsys):
    """The clean files scored by the non-intrusive metrics, after Noisy, blank on the intrusive ones."""
    import csv

    import numpy as np
    import soundfile as sf

    from mal.evaluation.metrics.dnsmos import dnsmos_unavailable

    if reason := dnsmos_unavailable():
        pytest.skip(f"DNSMOS: {reason}")
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for folder in ("clean", "noisy", "A"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        x = (0.2 * np.sin(2 * np.pi * (140 + 20 * i) * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
        sf.write(tmp_path / "clean" / f"u{i}.wav", x, 16000)
        sf.write(tmp_path / "noisy" / f"u{i}.wav", x + 0.05 * rng.standard_normal(len(x)).astype(np.float32), 16000)
        sf.write(tmp_path / "A" / f"u{i}.wav", x + 0.01 * rng.standard_normal(len(x)).astype(np.float32), 16000)
    out = tmp_path / "out"
    code = main(["compare", "--clean", str(tmp_path / "clean"), "--systems", f"A={tmp_path / 'A'}",
                 f"Noisy={tmp_path / 'noisy'}", "--metrics", "sisdr,dnsmos", "-o", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["systems"]) == ["Noisy", "Clean", "A"] and summary["clean_reference"] == "Clean"
    clean = summary["systems"]["Clean"]
    assert clean["n_files"] == 2 and clean["metrics"]["SI-SDR"]["n"] == 0 and clean["metrics"]["DNSMOS-OVRL"]["n"] == 2
    assert "Clean" not in summary["comparisons"]  # a reference, not a system under test
    assert sum(r["system"] == "Clean" for r in csv.DictReader((out / "per_file.csv").open())) == 2

    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert table[1].startswith("| Noisy |") and table[2].startswith("| Clean | 2 | - | ")
    assert "Clean = the clean reference files themselves" in (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    assert "<tr class='clean pinned'><td>Clean</td>" in page
    sisdr_table = page.split("data-metric-table='SI-SDR'")[1].split("</thead>")[0]
    ovrl_table = page.split("data-metric-table='DNSMOS-OVRL'")[1].split("</thead>")[0]
    assert "<th>Clean</th>" not in sisdr_table and "<th>Noisy</th><th>Clean</th><th>A</th>" in ovrl_table
    assert any(line.startswith("Clean ") and " - " in line for line in printed.splitlines())  # the terminal table

    # a system may not take the Clean row's name
    assert main(["compare", "--clean", str(tmp_path / "clean"), "--systems", f"clean={tmp_path / 'A'}",
                 "--metrics", "sisdr", "-o", str(tmp_path / "out2"), "--quiet"]) == 2


def test_clean_rows_get_every_non_intrusive_group():
    from mal.evaluation.metrics.runner import Job, job_groups

    groups = ("pesq", "sisdr", "dnsmos", "nisqa", "a_new_non_intrusive_metric")
    assert job_groups(Job("Clean", "c.wav"), groups) == ("dnsmos", "nisqa", "a_new_non_intrusive_metric")
    assert job_groups(Job("A", "a.wav", "c.wav"), groups) == groups
