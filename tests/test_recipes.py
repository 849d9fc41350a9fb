"""The recipes hand the commands paths relative to the repository, so committed reports name
no machine's folders."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _paper_cpu():
    import sys

    folder = str(REPO / "recipes" / "paper_cpu")
    if folder not in sys.path:
        sys.path.append(folder)  # run.py imports its neighbours, as when run as a script
    spec = importlib.util.spec_from_file_location("paper_cpu_run_test", REPO / "recipes" / "paper_cpu" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paths_under_the_repo_and_its_neighbours_become_relative():
    relative = _paper_cpu().relative
    shared = REPO.parent / "shared" / "data" / "vbd-test"
    assert relative(str(REPO / "runs" / "x" / "best.ckpt")) == "runs/x/best.ckpt"
    assert relative(f"Noisy={shared / 'noisy'}") == "Noisy=../shared/data/vbd-test/noisy"
    assert relative(f"data.split_file={REPO / 'runs' / 'split.json'}") == "data.split_file=runs/split.json"
    # everything else is left alone
    assert relative("/nonexistent-root-folder/a.wav") == "/nonexistent-root-folder/a.wav"
    assert relative("model={preset: dfnet_16k, conv_ch: 24}") == "model={preset: dfnet_16k, conv_ch: 24}"
    assert relative("--jobs") == "--jobs" and relative("2") == "2"
