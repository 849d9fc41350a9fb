"""Where the external networks' weights are found: one lookup for every layer that needs them.

NISQA v2's ``nisqa.tar`` (CC BY-NC-SA 4.0) is never bundled: it comes from an argument,
``$MAL_NISQA_WEIGHTS``, or a known place beside the working folder or the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_WEIGHTS = "MAL_NISQA_WEIGHTS"


def resolve_weights(path: str | os.PathLike | None) -> Path | None:
    """The weights file from an argument, else ``$MAL_NISQA_WEIGHTS``, else None."""
    chosen = path or os.environ.get(ENV_WEIGHTS)
    return Path(chosen).expanduser() if chosen else None


def default_nisqa_weights() -> Path | None:
    """``$MAL_NISQA_WEIGHTS``, else shared/models/nisqa/nisqa.tar beside the cwd or the checkout."""
    chosen = resolve_weights(None)
    if chosen is not None:
        return chosen
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        for candidate in (base / "shared/models/nisqa/nisqa.tar", base / "../shared/models/nisqa/nisqa.tar"):
            if candidate.is_file():
                return candidate.resolve()
    return None
