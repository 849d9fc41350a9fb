"""``mal models``: the pretrained models and presets available offline (also ``mal info --list``)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the pretrained models and presets available offline")
    p.set_defaults(run=run)


def print_catalog() -> None:
    """A table of :func:`mal.models.catalog.entries`: name, kind, rate, parameters, licence, weights."""
    from mal.models.catalog import entries

    rows = [(e.name, e.kind, f"{e.sample_rate // 1000} kHz" if e.sample_rate % 1000 == 0 else f"{e.sample_rate} Hz",
             f"{e.parameters / 1e6:.2f} M", e.licence, e.weights) for e in entries()]
    header = ("name", "kind", "rate", "params", "licence", "weights")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[-1])
    print("pretrained: pass the name to --model (default: the shipped model); presets: model.preset in a config")


def run(args) -> int:
    print_catalog()
    return 0
