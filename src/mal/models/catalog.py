"""The models ``mal models`` lists: the shipped default model, the presets, and extra sources.

``EXTRA_SOURCES`` holds functions returning more :class:`CatalogEntry` rows (imported public
models, say); each is called when the catalog is listed, so a source can look on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mal.models import PRESETS, build_model, count_parameters
from mal.models.public import PUBLIC_MODELS, import_dfn, release_path
from mal.models.store import DEFAULT_MODEL, DEFAULT_POINTER, default_public_name, load_model

MAL_LICENCE = "MIT (mal)"
DFN_LICENCE = "MIT OR Apache-2.0 (Hendrik Schroeter)"  # the public DeepFilterNet weights and models derived from them


@dataclass(frozen=True)
class CatalogEntry:
    """One model a user can pass to ``--model`` (pretrained) or ``model.preset`` (architecture)."""
    name: str
    kind: str  # "pretrained" (weights available offline) or "preset" (architecture, train it first)
    sample_rate: int
    parameters: int
    licence: str
    weights: str  # where the weights come from, or why there are none


EXTRA_SOURCES: list[Callable[[], list[CatalogEntry]]] = []


def default_model_entry() -> CatalogEntry | None:
    """The model shipped inside the package (what ``mal enhance`` uses without ``--model``)."""
    if DEFAULT_MODEL.is_file():
        model = load_model(DEFAULT_MODEL)
        licence = DFN_LICENCE if "DeepFilterNet" in getattr(model, "metadata", {}).get("licence", "") else MAL_LICENCE
        return CatalogEntry("default", "pretrained", model.sample_rate, count_parameters(model), licence,
                            f"shipped in the mal package ({DEFAULT_MODEL.name}, chosen by a recipe: MODEL_CARD.md)")
    if DEFAULT_POINTER.is_file():
        name = default_public_name()
        model = load_model(name)
        return CatalogEntry("default", "pretrained", model.sample_rate, count_parameters(model), DFN_LICENCE,
                            f"the public {name}, unchanged ({DEFAULT_POINTER.name}; chosen by a recipe: MODEL_CARD.md)")
    return None


def preset_entries() -> list[CatalogEntry]:
    """Every preset of :data:`mal.models.PRESETS`, built to count its parameters."""
    rows = []
    for name in PRESETS:
        model = build_model({"preset": name})
        rows.append(CatalogEntry(name, "preset", model.sample_rate, count_parameters(model), MAL_LICENCE,
                                 "none: an architecture, train it with `mal train`"))
    return rows


def pretrained_entries() -> list[CatalogEntry]:
    """The models with weights available offline: the shipped default, then the extra sources."""
    rows = [e for e in [default_model_entry()] if e is not None]
    for source in EXTRA_SOURCES:
        rows += [e for e in source() if e.kind == "pretrained"]
    return rows


def entries() -> list[CatalogEntry]:
    """The whole catalog: pretrained models first, then presets (and any extra architectures)."""
    rows = pretrained_entries()
    for source in EXTRA_SOURCES:
        rows += [e for e in source() if e.kind != "pretrained"]
    return rows + preset_entries()


def full_band_model(rate: int) -> CatalogEntry | None:
    """The lowest-rate pretrained model whose rate covers ``rate`` (None when the catalog has none)."""
    candidates = [e for e in pretrained_entries() if e.sample_rate >= rate]
    return min(candidates, key=lambda e: e.sample_rate, default=None)


def public_entries() -> list[CatalogEntry]:
    """DeepFilterNet2 / DeepFilterNet3 with their official weights, where they are found offline."""
    rows = []
    for name in reversed(PUBLIC_MODELS):  # DeepFilterNet3 first
        try:
            source = release_path(name)
        except FileNotFoundError as err:
            rows.append(CatalogEntry(name, "missing", 48000, 0, "MIT OR Apache-2.0", str(err)))
            continue
        model = import_dfn(source)
        rows.append(CatalogEntry(name, "pretrained", model.sample_rate, count_parameters(model),
                                 DFN_LICENCE, f"official release, imported from {source}"))
    return rows


EXTRA_SOURCES.append(public_entries)
