"""Where the external networks' weights are found: one lookup for every layer that needs them.

NISQA v2's ``nisqa.tar`` (CC BY-NC-SA 4.0) is never bundled. :func:`find_nisqa_weights` is
the one lookup the NISQA metric (``mal evaluate``, ``mal compare``, ``mal consistency``) and
the NISQA feature loss use: an argument (``--nisqa-weights``, ``loss.ext.path``), else
``$MAL_NISQA_WEIGHTS``, else the first of the known places that holds the file:
``shared/models/nisqa/nisqa.tar`` and ``../shared/models/nisqa/nisqa.tar`` beside the working
folder, then beside the checkout. So NISQA is on by default wherever the weights are.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_WEIGHTS = "MAL_NISQA_WEIGHTS"
NISQA_FILE = Path("shared/models/nisqa/nisqa.tar")


def nisqa_places() -> list[Path]:
    """The known places of ``nisqa.tar``, in the order they are searched."""
    checkout = Path(__file__).resolve().parents[3]  # src/mal/util/assets.py -> the checkout
    places = []
    for base in (Path.cwd(), checkout):
        for candidate in (base / NISQA_FILE, base.parent / NISQA_FILE):
            if candidate not in places:
                places.append(candidate)
    return places


def find_nisqa_weights(path: str | os.PathLike | None = None) -> Path | None:
    """The NISQA weights: ``path``, else ``$MAL_NISQA_WEIGHTS``, else the first known place holding them.

    A path given (argument or variable) is returned whether or not a file is there, so the
    caller can say which path is wrong; None when nothing is given and no known place has it.
    """
    chosen = path or os.environ.get(ENV_WEIGHTS)
    if chosen:
        return Path(chosen).expanduser()
    return next((p.resolve() for p in nisqa_places() if p.is_file()), None)


def nisqa_missing_reason() -> str:
    """What to say when :func:`find_nisqa_weights` found nothing."""
    looked = ", ".join(str(p) for p in nisqa_places())
    return f"no NISQA weights (nisqa.tar) found in {looked}: pass --nisqa-weights PATH or set ${ENV_WEIGHTS}"
