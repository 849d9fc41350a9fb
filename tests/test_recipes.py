"""The recipes hand the commands paths relative to the repository, so committed reports name
no machine's folders."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _recipe_tools():
    spec = importlib.util.spec_from_file_location("recipe_tools_test", REPO / "recipes" / "recipe_tools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paths_under_the_repo_and_its_neighbours_become_relative():
    relative = _recipe_tools().relative
    shared = REPO.parent / "shared" / "data" / "vbd-test"
    assert relative(str(REPO / "runs" / "x" / "best.ckpt")) == "runs/x/best.ckpt"
    assert relative(f"Noisy={shared / 'noisy'}") == "Noisy=../shared/data/vbd-test/noisy"
    assert relative(f"data.split_file={REPO / 'runs' / 'split.json'}") == "data.split_file=runs/split.json"
    # everything else is left alone
    assert relative("/nonexistent-root-folder/a.wav") == "/nonexistent-root-folder/a.wav"
    assert relative("model={preset: deepfilternet_16k, conv_ch: 24}") == "model={preset: deepfilternet_16k, conv_ch: 24}"
    assert relative("--jobs") == "--jobs" and relative("2") == "2"


def test_relative_paths_keep_a_symlinked_shared_folder(tmp_path, monkeypatch):
    """A user who links ../shared to a data disk: paths through the link still become ../shared/..."""
    module = _recipe_tools()
    repo, disk = tmp_path / "work" / "repo", tmp_path / "disk" / "shared"
    repo.mkdir(parents=True)
    (disk / "data").mkdir(parents=True)
    (tmp_path / "work" / "shared").symlink_to(disk)
    monkeypatch.setattr(module, "REPO", repo)
    linked = tmp_path / "work" / "shared" / "data" / "vbd-test"
    assert module.relative(f"Noisy={linked}") == "Noisy=../shared/data/vbd-test"
    assert module.relative(str(repo / "runs" / "x.ckpt")) == "runs/x.ckpt"
    assert module.relative(str(disk / "data")) == str(disk / "data")  # outside the neighbourhood as written: kept


def test_paper_report_links_the_listening_pages_that_exist(tmp_path):
    import json
    import shutil
    import sys

    sys.path.insert(0, str(REPO / "recipes" / "paper_cpu"))
    try:
        from recipe_report import write_report
    finally:
        sys.path.remove(str(REPO / "recipes" / "paper_cpu"))
    out = tmp_path / "paper_cpu"
    shutil.copytree(REPO / "results" / "paper_cpu", out, ignore=shutil.ignore_patterns("index.html", "listen", "cache"))  # pages a local run wrote
    settings = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("Run settings:"))
    meta = json.loads(settings.split("`")[1])
    meta.setdefault("command", "make paper")
    meta.setdefault("minutes", 64)
    sets = ["in-domain", "vbd-test", "dns-test-noreverb"]
    for folder in ("vbd-test", "consistency"):
        (out / folder / "index.html").write_text("<!DOCTYPE html>")
    report = write_report(out, sets, ["Baseline"], [], meta).read_text()
    assert "[vbd-test](vbd-test/index.html)" in report and "[consistency](consistency/index.html)" in report
    assert "in-domain/index.html" not in report  # no page there: no dead link


def _pretrained_ship():
    spec = importlib.util.spec_from_file_location("pretrained_ship_test", REPO / "recipes" / "paper_pretrained" / "ship.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_model_choice_excludes_a_model_that_loses_the_band_above_8k():
    ship = _pretrained_ship()
    models = {"DFN3-public": "deepfilternet3", "DFN3-mal-frozen": "a.ckpt", "DFN3-mal-dynamic": "b.ckpt"}
    band = {"speech-48k": -25.8, "DFN3-public": -25.8, "DFN3-mal-frozen": -27.0, "DFN3-mal-dynamic": -40.0}
    excluded = ship.eligible(models, band)
    assert list(excluded) == ["DFN3-mal-dynamic"] and "-40.0 dB" in excluded["DFN3-mal-dynamic"]


def test_default_model_choice_excludes_a_model_below_the_public_dfn3_in_domain():
    ship = _pretrained_ship()

    def system(nisqa, ovrl, pesq, estoi):
        values = {"NISQA-MOS": nisqa, "DNSMOS-OVRL": ovrl, "WB-PESQ": pesq, "ESTOI": estoi}
        return {"metrics": {m: {"mean": v} for m, v in values.items()}}

    summary = {"systems": {"DFN3-public": system(3.66, 2.99, 2.17, 0.775), "DFN2-baseline-continued": system(3.54, 2.95, 2.61, 0.807),
                           "DFN3-mal-frozen": system(3.65, 2.98, 2.20, 0.780)}}
    models = {name: f"{name}.ckpt" for name in summary["systems"]}
    excluded = ship.below_floor(summary, models)
    assert list(excluded) == ["DFN2-baseline-continued"]  # 0.12 below on NISQA, 0.04 on OVRL; a 0.01 gap is allowed
    assert "NISQA-MOS 3.540 vs 3.660" in excluded["DFN2-baseline-continued"] and "WB-PESQ" not in excluded["DFN2-baseline-continued"]
    assert ship.below_floor({"systems": {k: v for k, v in summary["systems"].items() if k != "DFN3-public"}}, models) == {}


def test_a_default_pointer_loads_the_named_public_model(tmp_path, monkeypatch):
    import pytest

    from mal.models import store

    monkeypatch.setattr(store, "DEFAULT_MODEL", tmp_path / "default.ckpt")  # no weights shipped
    monkeypatch.setattr(store, "DEFAULT_POINTER", tmp_path / "default.yaml")
    (tmp_path / "default.yaml").write_text("public: deepfilternet3\n")
    model = store.load_model(None)
    assert model.sample_rate == 48000 and "Apache-2.0" in model.metadata["licence"]
    (tmp_path / "default.yaml").write_text("public: deepfilternet9\n")
    with pytest.raises(ValueError, match="default.yaml: 'public' must be one of"):
        store.load_model(None)


def _summary_with_clean(systems: list[str], metrics: list[str], intrusive: set[str]) -> dict:
    """A summary.json as ``mal compare`` writes it, with the clean references' row (nulls where not scored)."""
    def stats(value):
        return {"mean": value, "std": 0.1, "ci95": [value - 0.1, value + 0.1], "n": 3}

    none = {"mean": None, "std": None, "ci95": [None, None], "n": 0}
    table = {s: {"n_files": 3, "metrics": {m: (none if s == "Clean" and m in intrusive else stats(2.0 + k))
                                           for m in metrics}} for k, s in enumerate(systems)}
    return {"ci_method": "t", "clean_reference": "Clean", "systems": table, "comparisons": {}}


def _load_recipe_module(folder: str, name: str):
    import sys

    sys.path.insert(0, str(REPO / "recipes" / folder))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_test", REPO / "recipes" / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "recipes" / folder))
    return module


def test_recipe_reports_have_the_clean_row_after_noisy(tmp_path):
    import json

    intrusive = {"WB-PESQ", "ESTOI", "SI-SDR", "LSD", "MCD"}
    metrics = ["NISQA-MOS", "DNSMOS-OVRL", "DNSMOS-SIG", "DistillMOS", *intrusive]
    sets = ["in-domain", "vbd-test"]
    cpu = _load_recipe_module("paper_cpu", "recipe_report")
    pretrained = _load_recipe_module("paper_pretrained", "pretrained_report")
    meta = {"command": "test", "minutes": 1, "model": "m", "stage1_epochs": 1, "stage1_mixtures_per_epoch": 1,
            "finetune_epochs": 1, "finetune_mixtures_per_epoch": 1, "finetune_steps": 1, "batch": 1,
            "segment_seconds": 1, "lr": 1e-5, "lr_schedule": "s", "warmup_steps": 0, "mal_balance_batches": 1}
    gated = {**meta, "quality_gate": {"metric": "DistillMOS", "threshold": 3.5, "sources": {"speech-extra/clean (so762)": {
        "train": {"utterances": 10, "kept": 4, "hours": 0.5, "kept_hours": 0.25, "mean_score": 3.3}}}}}
    for module, systems, write in (
            (cpu, ["Noisy", "baseline-continued", "Clean"], lambda out: cpu.write_report(out, sets, ["baseline-continued"], [], meta)),
            (pretrained, ["Noisy", "DFN3-public", "DFN3-baseline-continued", "Clean"],
             lambda out: pretrained.write_report(out, sets, ["DFN3"], {"DFN3": ["baseline-continued"]}, gated, {}, None))):
        out = tmp_path / module.__name__
        for test_set in sets:
            (out / test_set).mkdir(parents=True)
            (out / test_set / "summary.json").write_text(json.dumps(_summary_with_clean(systems, metrics, intrusive)))
        lines = write(out).read_text().splitlines()
        header = next(line for line in lines if line.startswith("| system |")).split(" | ")
        noisy = next(i for i, line in enumerate(lines) if line.startswith("| Noisy |"))
        clean = lines[noisy + 1].split(" | ")
        assert clean[0] == "| Clean", module.__name__
        pesq = next(i for i, h in enumerate(header) if h.startswith("WB-PESQ"))
        nisqa = next(i for i, h in enumerate(header) if h.startswith("NISQA"))
        scored = f"{2.0 + systems.index('Clean'):.2f} ["
        assert clean[pesq] == "-" and clean[nisqa].startswith(scored)  # blank where intrusive, scored otherwise
        assert sum(line.startswith("| Clean |") for line in lines) == 1
        assert "Clean = the clean reference files themselves" in "\n".join(lines)
        distill = next(i for i, h in enumerate(header) if h.startswith("DistillMOS"))  # a column of both reports
        assert clean[distill].startswith(scored)
    # the gated configuration's report says what the gate kept, per source
    assert "| speech-extra/clean (so762) | train | 4 / 10 | 0.25 / 0.50 | 3.30 |" in lines
    assert "whose DistillMOS reaches 3.5" in "\n".join(lines)
