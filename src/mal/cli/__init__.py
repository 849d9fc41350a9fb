"""The ``mal`` command line: one module per sub-command, each thin over the library.

Each module in ``COMMANDS`` defines ``add_parser(subparsers)`` and ``run(args) -> int``.
Modules import heavy libraries inside ``run`` so ``mal --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["train", "finetune", "enhance", "info", "evaluate", "compare", "consistency", "export", "import-dfn", "models", "serve", "demo"]


def build_parser() -> argparse.ArgumentParser:
    from mal import __version__

    parser = argparse.ArgumentParser(prog="mal", description="Speech enhancement with Model-as-Loss training.")
    parser.add_argument("--version", action="version", version=f"mal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mal.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as err:
            if err.name == f"mal.cli.{name.replace('-', '_')}":
                continue  # command not built yet in this checkout
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mal.util.threads import calm_openmp

    calm_openmp()  # before any sub-command imports torch: libgomp reads OMP_WAIT_POLICY once
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # config overrides (key=value) may come after options too: `mal train --quiet trainer.max_epochs=3`
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("mal: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        # User-facing problems: one line, no traceback. Set MAL_DEBUG=1 to see it.
        import os

        if os.environ.get("MAL_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"mal: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
