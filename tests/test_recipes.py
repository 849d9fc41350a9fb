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
    assert relative("model={preset: dfnet_16k, conv_ch: 24}") == "model={preset: dfnet_16k, conv_ch: 24}"
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
    shutil.copytree(REPO / "results" / "paper_cpu", out)
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
