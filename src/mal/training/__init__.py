"""Lightning training: the task (model + losses + MAL schedule), data module and runners.

The names below load on first use (PEP 562), so ``mal.training.config`` can check a config
before Lightning is imported (the CLI reports a bad config in a fraction of a second).
"""

import importlib

_EXPORTS = {"EnhancementTask": "mal.training.task", "VARIANTS": "mal.training.task",
            "finetune": "mal.training.run", "train": "mal.training.run"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mal.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
