"""Inference: enhance arrays, files and folders (:mod:`~mal.inference.enhance`, :mod:`~mal.inference.batch`),
stream (:mod:`~mal.inference.stream`) and export to ONNX (:mod:`~mal.inference.export`).

    from mal.inference import load_model, enhance_file
    enhance_file(load_model("deepfilternet3"), "noisy.wav", "enhanced.wav")

The names below load on first use (PEP 562), so ``mal.inference.paths``' checks run
before torch is imported (the CLI reports a wrong folder in a fraction of a second).
"""

import importlib

_EXPORTS = {
    **dict.fromkeys(["BatchResult", "enhance_files"], "mal.inference.batch"),
    **dict.fromkeys(["check_output_dir", "expand_inputs", "output_path"], "mal.inference.paths"),
    **dict.fromkeys(["enhance_array", "enhance_blocks", "enhance_file"], "mal.inference.enhance"),
    **dict.fromkeys(["OnnxStream", "export_onnx", "open_stream"], "mal.inference.export"),
    **dict.fromkeys(["HopStream", "LiveStream", "TorchStream", "live_stream", "run_stream", "stream_for"],
                    "mal.inference.stream"),
    **dict.fromkeys(["load_model", "save_model"], "mal.models.store"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mal.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
