"""``mal serve``: live enhancement over WebSocket for many streams at once, with a microphone page.

    mal serve                                   # the default model, http://127.0.0.1:8000/
    mal serve --model deepfilternet3 --model mine=runs/x/checkpoints/best.ckpt --max-streams 32
    mal serve --host 0.0.0.0 --token SECRET     # or MAL_SERVE_TOKEN=SECRET

Protocol and limits: docs/serve.md.
"""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="live enhancement server (WebSocket streams, batched; microphone page at /)")
    p.add_argument("--model", action="append", metavar="[NAME=]MODEL",
                   help="a model to serve (checkpoint, model file or public name; NAME= picks the name that clients "
                        "pass as &model=NAME); repeat for several; default: the default model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=os.environ.get("MAL_SERVE_TOKEN"),
                   help="refuse streams without ?token=T or 'Authorization: Bearer T' (default: $MAL_SERVE_TOKEN)")
    p.add_argument("--max-streams", type=int, default=64, help="streams at a time per model; more are refused")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the compute thread (the network's batched step)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.max_streams < 1:
        raise ValueError(f"--max-streams must be at least 1, got {args.max_streams}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1-65535, got {args.port}")
    import torch

    from mal.inference import load_model
    from mal.serve.server import Limits, serve

    torch.set_num_threads(args.threads)
    models = {}
    for spec in args.model or [None]:
        name, path = spec.split("=", 1) if spec and "=" in spec else (None, spec)
        name = name or (Path(path).stem if path else "default")
        if name in models:
            raise ValueError(f"--model {spec}: two models named {name!r}; name them with NAME=MODEL")
        models[name] = load_model(path, device=args.device).eval()
    serve(models, host=args.host, port=args.port, limits=Limits(max_streams=args.max_streams), token=args.token,
          threads=args.threads)
    return 0
