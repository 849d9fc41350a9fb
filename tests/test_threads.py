"""Default CPU threads on a shared machine (issue 29 item 1; measured in benchmarks/bench_load.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mal.training.config import load_config
from mal.training.run import _prepare
from mal.util import threads


def test_default_threads_count_the_cores_this_process_may_use_less_the_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)  # taskset / a cpuset: 3 of many
    assert threads.usable_cores() == 3
    assert [threads.default_threads(w) for w in (0, 1, 2, 3, 8)] == [3, 2, 1, 1, 1]


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_mal_command_calms_openmp_before_torch_loads_and_keeps_a_users_choice(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": preset} if preset else {})
    code = ("import os, sys\nfrom mal.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == [expected, "False"]


def test_training_threads_default_to_the_usable_cores_less_the_data_workers(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    try:
        _prepare(load_config(None, ["data.num_workers=2"]))
        assert torch.get_num_threads() == 4
        _prepare(load_config(None, ["data.num_workers=2", "trainer.threads=1"]))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_config_overrides_may_follow_options(capsys):
    """`mal finetune ... --quiet trainer.threads=2` (bench_load.py's own call) reads the override."""
    from mal.cli import main

    assert main(["train", "--quiet", "trainer.threads=two"]) == 2
    assert "trainer.threads" in capsys.readouterr().err  # the override reached the config check
    with pytest.raises(SystemExit):
        main(["models", "trainer.threads=2"])  # a command without overrides still refuses it
    assert "unrecognized arguments: trainer.threads=2" in capsys.readouterr().err
