"""Shared fixtures. Real audio comes from ../shared/data; tests that need it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; tests stay deterministic and light.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
