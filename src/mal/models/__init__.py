"""Enhancement models and a registry to build them from config dicts.

``build_model({"name": "dfnet", "sample_rate": 16000, ...})``; the name picks the class, the
other keys are its config fields. ``preset: dfnet_48k`` starts from a named preset.
"""

from __future__ import annotations

from dataclasses import fields

from mal.models.base import EnhancementModel, Encoding, count_macs, count_parameters
from mal.models.deepfilternet import DeepFilterNet, DeepFilterNetConfig, deepfilternet2, deepfilternet3
from mal.models.demucs import Demucs, DemucsConfig
from mal.models.dfnet import DFNet, DFNetConfig, dfnet_48k

MODELS: dict[str, tuple[type, type]] = {
    "dfnet": (DFNet, DFNetConfig), "demucs": (Demucs, DemucsConfig), "deepfilternet": (DeepFilterNet, DeepFilterNetConfig),
}
PRESETS = {
    "dfnet_16k": ("dfnet", DFNetConfig),
    "dfnet_48k": ("dfnet", dfnet_48k),
    "demucs_16k": ("demucs", DemucsConfig),
    # The public models' architectures (random weights; `--model deepfilternet3` loads the released ones).
    "deepfilternet2_arch": ("deepfilternet", deepfilternet2),
    "deepfilternet3_arch": ("deepfilternet", deepfilternet3),
}


def register_model(name: str, model_cls: type, config_cls: type) -> None:
    """Make ``name`` buildable by :func:`build_model`."""
    MODELS[name] = (model_cls, config_cls)


def build_model(spec: dict) -> EnhancementModel:
    """Build a model from ``{"name": ..., **config_fields}`` (or ``{"preset": ...}``)."""
    spec = dict(spec)
    preset = spec.pop("preset", None)
    name = spec.pop("name", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"model.preset: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        name, make = PRESETS[preset]
        base = make()
    else:
        name = name or "dfnet"
        base = None
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; choose from {sorted(MODELS)}")
    model_cls, config_cls = MODELS[name]
    valid = {f.name for f in fields(config_cls)}
    unknown = sorted(set(spec) - valid)
    if unknown:
        raise ValueError(f"model.{unknown[0]}: unknown key for model {name!r}; valid keys: {sorted(valid)}")
    if base is not None:
        values = {f.name: getattr(base, f.name) for f in fields(config_cls)}
        values.update(spec)
        return model_cls(config_cls(**values))
    return model_cls(config_cls(**spec))


def model_spec(model: EnhancementModel) -> dict:
    """The dict that :func:`build_model` turns back into ``model``'s architecture."""
    return model.config_dict()


__all__ = [
    "DFNet", "DFNetConfig", "DeepFilterNet", "DeepFilterNetConfig", "Demucs", "DemucsConfig", "EnhancementModel", "PRESETS", "Encoding", "build_model", "count_macs",
    "count_parameters", "dfnet_48k", "model_spec", "register_model",
]
