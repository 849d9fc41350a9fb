"""Enhancement models and a registry to build them from config dicts.

``build_model({"name": "deepfilternet", "sample_rate": 16000, ...})``; the name picks the
class, the other keys are its config fields. ``preset: deepfilternet_16k`` starts from a named
preset (a config of the one DeepFilterNet family, or of Demucs).
"""

from __future__ import annotations

from dataclasses import fields

from mal.models.base import EnhancementModel, Encoding, count_macs, count_parameters
from mal.models.deepfilternet import DeepFilterNet, DeepFilterNetConfig, deepfilternet2, deepfilternet3, deepfilternet_16k
from mal.models.demucs import Demucs, DemucsConfig

MODELS: dict[str, tuple[type, type]] = {"demucs": (Demucs, DemucsConfig), "deepfilternet": (DeepFilterNet, DeepFilterNetConfig)}
PRESETS = {
    "deepfilternet_16k": ("deepfilternet", deepfilternet_16k),
    "demucs_16k": ("demucs", DemucsConfig),
    # The public models' architectures (random weights; `--model deepfilternet3` loads the
    # released ones). deepfilternet2_arch is the paper's 48 kHz network (2.31 M parameters).
    "deepfilternet2_arch": ("deepfilternet", deepfilternet2),
    "deepfilternet3_arch": ("deepfilternet", deepfilternet3),
}
# mal < 0.2 had a second, hand-made DeepFilterNet ("dfnet"); its checkpoints cannot be loaded.
REMOVED = {"dfnet": "the DFNet network was replaced by DeepFilterNet presets: retrain with `mal train` "
                    "(model preset deepfilternet_16k) or fine-tune a public model (`mal finetune --from deepfilternet3`)"}
REMOVED_PRESETS = {"dfnet_16k": "deepfilternet_16k", "dfnet_48k": "deepfilternet2_arch"}


def register_model(name: str, model_cls: type, config_cls: type) -> None:
    """Make ``name`` buildable by :func:`build_model`."""
    MODELS[name] = (model_cls, config_cls)


def build_model(spec: dict) -> EnhancementModel:
    """Build a model from ``{"name": ..., **config_fields}`` (or ``{"preset": ...}``)."""
    spec = dict(spec)
    preset = spec.pop("preset", None)
    name = spec.pop("name", None)
    if preset in REMOVED_PRESETS:
        raise ValueError(f"model.preset: {preset!r} was removed with the DFNet network; use {REMOVED_PRESETS[preset]!r}")
    if name in REMOVED:
        raise ValueError(f"model {name!r}: {REMOVED[name]}")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"model.preset: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        name, make = PRESETS[preset]
        base = make()
    else:
        name = name or "deepfilternet"
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
    "DeepFilterNet", "DeepFilterNetConfig", "Demucs", "DemucsConfig", "EnhancementModel", "PRESETS", "Encoding", "build_model", "count_macs",
    "count_parameters", "deepfilternet_16k", "model_spec", "register_model",
]
