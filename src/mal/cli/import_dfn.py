"""``mal import-dfn SRC -o model.ckpt``: the official DeepFilterNet2/3 release as a mal model."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("import-dfn", help="import an official DeepFilterNet2/3 ONNX release (tarball or folder)")
    p.add_argument("source", help="DeepFilterNet2_onnx.tar.gz / DeepFilterNet3_onnx.tar.gz, a folder with the three "
                                  "graphs and config.ini, or deepfilternet2 / deepfilternet3 (the copies mal finds offline)")
    p.add_argument("-o", "--output", required=True, help="mal model file to write (.ckpt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from mal.models import count_parameters
    from mal.models.public import PUBLIC_MODELS, import_dfn, release_path
    from mal.models.store import save_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    source = args.source
    if source in PUBLIC_MODELS and not Path(source).exists():
        source = release_path(source)
    model = import_dfn(source)
    save_model(model, out, metadata=getattr(model, "metadata", None))
    print(f"wrote {out}: {model.metadata['model']}, {count_parameters(model):,} parameters, {model.sample_rate} Hz "
          f"(from {source}; {model.metadata['licence']})")
    return 0
