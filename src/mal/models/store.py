"""Model files: load a model from a Lightning checkpoint, a slim model file or a public name; save one.

The one loader every layer above uses (training's ``--from``, external feature losses,
enhancement, evaluation).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
import yaml

from mal.audio import error_reason
from mal.models import EnhancementModel, build_model
from mal.models.public import PUBLIC_MODELS, load_public

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"
DEFAULT_MODEL = PRETRAINED_DIR / "default.ckpt"
# When the default is an unchanged public model its weights are not shipped twice: this file
# names it instead (``public: deepfilternet3``); the recipe that ships writes one or the other.
DEFAULT_POINTER = PRETRAINED_DIR / "default.yaml"


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> EnhancementModel:
    """Load a model from a Lightning checkpoint or a slim model file (``save_model``).

    ``None`` loads the default model shipped inside the package; ``deepfilternet2`` /
    ``deepfilternet3`` (in any case) load the public DeepFilterNet weights (:mod:`mal.models.public`).
    """
    if path is not None and str(path).lower() in PUBLIC_MODELS and not Path(path).exists():
        return load_public(str(path).lower()).to(check_device(device)).eval()
    if path is None:
        if not DEFAULT_MODEL.is_file() and DEFAULT_POINTER.is_file():
            return load_model(default_public_name(), device)
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError("no default model is shipped in this build: pass --model CKPT")
        path = DEFAULT_MODEL
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_not_found(path))
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path}: an ONNX model, not a checkpoint: run it with `mal enhance --onnx {path}` "
                         "(--model, --from and mal info take a checkpoint, a model file or a name from `mal models`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    spec, state = _spec_and_state(ckpt, path)
    try:
        model = build_model(spec)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    model.load_state_dict(state)
    if isinstance(ckpt, dict) and ckpt.get("metadata"):  # licence / provenance written by save_model
        model.metadata = ckpt["metadata"]
    return model.to(check_device(device)).eval()


def _not_found(path: str | os.PathLike) -> str:
    """The one-line error for a ``--model`` / ``--from`` that is neither a file nor a public name."""
    close = difflib.get_close_matches(str(path).lower(), PUBLIC_MODELS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return (f"{path}: no model file there, nor a public model name; {hint}"
            f"(public: {', '.join(PUBLIC_MODELS)}; `mal models` lists every model)")


def default_public_name() -> str:
    """The public model that :data:`DEFAULT_POINTER` names."""
    name = (yaml.safe_load(DEFAULT_POINTER.read_text()) or {}).get("public")
    if name not in PUBLIC_MODELS:
        raise ValueError(f"{DEFAULT_POINTER}: 'public' must be one of {', '.join(PUBLIC_MODELS)}, got {name!r}")
    return name


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device; a one-line error when it is malformed or not on this machine."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device}: not a torch device ({error_reason(err)}); use e.g. cpu or cuda:0") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use --device cpu")
    return parsed


def _spec_and_state(ckpt: object, path: Path) -> tuple[dict, dict]:
    if isinstance(ckpt, dict) and "model_spec" in ckpt:  # slim model file
        return ckpt["model_spec"], ckpt["state_dict"]
    if isinstance(ckpt, dict) and "hyper_parameters" in ckpt:  # Lightning checkpoint
        spec = ckpt["hyper_parameters"]["model_spec"]
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        return spec, state
    raise ValueError(f"{path}: not a mal checkpoint (no model_spec)")


def save_model(model: EnhancementModel, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write a slim, portable model file (architecture + weights + ``metadata``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    torch.save({"model_spec": model.config_dict(), "state_dict": model.state_dict(), "metadata": metadata or {}}, tmp)
    os.replace(tmp, path)
