"""Stage-1 training through the CLI: checkpoints, resume, DDP, config errors, real-data learning."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mal.cli import main

TINY = "{preset: deepfilternet_16k, conv_ch: 8, emb_hidden: 32, df_hidden: 32}"


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "-o", str(out), "--data", str(root), f"model={TINY}",
        "data.speech_dirs=[speech]", "data.noise_dirs=[noise]", "data.segment_seconds=0.5",
        "data.batch_size=4", "data.train_size=16", "data.val_size=8", "data.num_workers=0",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1", *extra,
    ]


def _metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_writes_checkpoints_and_resumes(toy_data, tmp_path):
    out = tmp_path / "run"
    assert main(_args(toy_data, out, "--max-epochs", "1")) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "split.json").is_file() and (out / "config.yaml").is_file()
    assert any(row["val/si_sdr"] for row in _metrics(out))
    split_before = (out / "split.json").read_bytes()
    assert main(_args(toy_data, out, "--max-epochs", "2", "--resume")) == 0
    epochs = {row["epoch"] for row in _metrics(out) if row["val/df"]}
    assert epochs == {"0", "1"}  # metrics.csv keeps the first epoch across --resume
    assert (out / "split.json").read_bytes() == split_before  # the split is reused, not redrawn
    import torch

    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    # two epochs of 4 steps ("epoch" in a checkpoint is the index of the last one run)
    assert ckpt["global_step"] == 8 and ckpt["hyper_parameters"]["model_spec"]["conv_ch"] == 8


@pytest.mark.parametrize("override,key", [
    ("trainer.max_epoch=1", "trainer.max_epoch"),
    ("data.speech_dirs=[nowhere]", "data.speech_dirs"),
    ("finetune.variant=mal-dynamik", "finetune.variant"),
])
def test_bad_config_fails_before_work_naming_the_key(toy_data, tmp_path, capsys, override, key):
    out = tmp_path / "bad"
    assert main(_args(toy_data, out, override)) == 2
    err = capsys.readouterr().err
    assert f"error: {key}" in err
    assert not (out / "checkpoints").exists()


def test_ddp_two_processes_on_cpu(toy_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "mal", *_args(toy_data, out, "--max-epochs", "1", "--devices", "2", "--strategy", "ddp")]
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world_size: 2" in proc.stdout + proc.stderr or "GLOBAL_RANK: 1" in proc.stdout + proc.stderr
    assert (out / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_learns_on_real_speech_and_noise(real_stage1):
    """A few hundred steps on LibriSpeech + real noise: val L_df falls, SI-SDR beats the input."""
    val = [row for row in _metrics(real_stage1.parent.parent) if row["val/df"]]
    assert len(val) == 3
    df = [float(r["val/df"]) for r in val]
    assert df[-1] < df[0]
    assert float(val[-1]["val/si_sdr"]) > float(val[-1]["val/si_sdr_noisy"])
