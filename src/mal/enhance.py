"""Inference: load a model, enhance arrays of any length and rate, enhance files and folders.

Long inputs are enhanced in overlapping chunks so memory stays bounded: each chunk is run
with ``context_seconds`` of preceding audio (so recurrent state and feature normalisation
have settled) and enough following audio to cover the model's window and look-ahead; the
chunk outputs are joined with a short linear cross-fade.

Channels: every channel is enhanced independently, so a stereo file comes out stereo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch

from mal.audio import AUDIO_EXTENSIONS, AudioError, read_audio, resample, write_audio
from mal.models import EnhancementModel, build_model

if TYPE_CHECKING:
    from mal.streaming import FrameStream

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = PRETRAINED_DIR / "default.ckpt"


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> EnhancementModel:
    """Load a model from a Lightning checkpoint or a slim model file (``save_model``).

    ``None`` loads the default model shipped inside the package.
    """
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError("no default model is shipped in this build: pass --model CKPT")
        path = DEFAULT_MODEL
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    spec, state = _spec_and_state(ckpt, path)
    model = build_model(spec)
    model.load_state_dict(state)
    return model.to(device).eval()


def _spec_and_state(ckpt: object, path: Path) -> tuple[dict, dict]:
    if isinstance(ckpt, dict) and "model_spec" in ckpt:  # slim model file
        return ckpt["model_spec"], ckpt["state_dict"]
    if isinstance(ckpt, dict) and "hyper_parameters" in ckpt:  # Lightning checkpoint
        spec = ckpt["hyper_parameters"]["model_spec"]
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        return spec, state
    raise ValueError(f"{path}: not a mal checkpoint (no model_spec)")


def save_model(model: EnhancementModel, path: str | os.PathLike) -> None:
    """Write a slim, portable model file (architecture + weights), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    torch.save({"model_spec": model.config_dict(), "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def enhance_array(
    model: EnhancementModel | FrameStream,
    samples: np.ndarray,
    sample_rate: int,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
    crossfade_seconds: float = 0.05,
) -> np.ndarray:
    """Enhance ``samples`` ((n,) or (n, channels)) recorded at ``sample_rate``.

    ``model`` is a model (offline, chunked) or a frame stream (``DFNetStream``,
    ``OnnxStream``). Returns an array of the same shape at the same rate.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        return np.stack(
            [enhance_array(model, samples[:, c], sample_rate, chunk_seconds, context_seconds, crossfade_seconds)
             for c in range(samples.shape[1])], axis=1,
        )
    n_in = len(samples)
    x = resample(samples, sample_rate, model.sample_rate)
    if hasattr(model, "process"):  # a frame stream (mal.streaming / mal.export): one hop at a time
        from mal.streaming import run_stream

        y = run_stream(model, x)
    else:
        y = _enhance_chunked(model, x, chunk_seconds, context_seconds, crossfade_seconds)
    y = resample(y, model.sample_rate, sample_rate)
    if len(y) < n_in:
        y = np.pad(y, (0, n_in - len(y)))
    return y[:n_in].astype(np.float32, copy=False)


def _enhance_chunked(model: EnhancementModel, x: np.ndarray, chunk_s: float, context_s: float, fade_s: float) -> np.ndarray:
    device = next(model.parameters()).device
    rate = model.sample_rate
    chunk, context, fade = int(chunk_s * rate), int(context_s * rate), int(fade_s * rate)
    tail = model.window_samples + model.lookahead_samples + fade
    run = lambda seg: model(torch.from_numpy(seg).to(device)[None])[0].cpu().numpy()  # noqa: E731
    if len(x) <= chunk + context:
        return run(x)
    out = np.zeros(len(x), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for start in range(0, len(x), chunk):
        lo, hi = max(0, start - context), min(len(x), start + chunk + tail)
        y = run(x[lo:hi])
        seg_start = start if start == 0 else start - fade  # overlap the previous chunk by `fade`
        seg_end = min(len(x), start + chunk)
        piece = y[seg_start - lo : seg_end - lo]
        if start > 0 and fade > 0:
            out[seg_start:start] *= 1.0 - ramp
            piece = piece.copy()
            piece[:fade] *= ramp
        out[seg_start:seg_end] += piece
    return out


@dataclass
class BatchResult:
    """What a batch job did: written outputs, skipped (already done) and failed inputs."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def expand_inputs(inputs: list[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for files and folders (recursive)."""
    items: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise AudioError(f"{path}: directory contains no audio files ({', '.join(AUDIO_EXTENSIONS)})")
            items += [(p, p.relative_to(path)) for p in found]
        else:
            items.append((path, Path(path.name)))
    return items


def check_output_dir(out_dir: Path, inputs: list[str | os.PathLike], overwrite: bool) -> None:
    """Refuse an output folder equal to or inside an input folder (unless ``overwrite``)."""
    out = out_dir.resolve()
    for raw in inputs:
        src = Path(raw).resolve()
        folder = src if src.is_dir() else src.parent
        if (out == folder or folder in out.parents) and not overwrite and Path(raw).is_dir():
            raise FileExistsError(f"{out_dir}: output folder is inside input folder {raw}; pass --overwrite to allow")


def enhance_files(
    model: EnhancementModel | FrameStream,
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = True,
    **chunk_options,
) -> BatchResult:
    """Enhance files and folders into ``out_dir`` keeping names, rates, lengths and channels.

    Existing outputs are skipped (so an interrupted job resumes) unless ``overwrite``. Bad
    inputs are recorded in ``failed`` and the job goes on.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    check_output_dir(out_dir, inputs, overwrite)
    items = expand_inputs(inputs)
    result = BatchResult()
    for src, rel in tqdm(items, desc="enhance", unit="file", disable=not progress):
        dst = out_dir / rel
        if dst.resolve() == src.resolve():
            result.failed.append((src, "output would overwrite the input"))
            continue
        if dst.exists() and not overwrite:
            result.skipped.append(src)
            continue
        try:
            samples, rate = read_audio(src, mono=False)
            info = sf.info(str(src))
            enhanced = enhance_array(model, samples if samples.shape[1] > 1 else samples[:, 0], rate, **chunk_options)
            write_audio(dst, enhanced, rate, subtype=_output_subtype(info, dst))
            result.written.append(dst)
        except AudioError as err:
            result.failed.append((src, str(err)))
    return result


def _output_subtype(info, dst: Path) -> str | None:
    """Keep the input's sample format when the output container supports it."""
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(dst.suffix.lower(), "WAV")
    return info.subtype if sf.check_format(fmt, info.subtype) else None
