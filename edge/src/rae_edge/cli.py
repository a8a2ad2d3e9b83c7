"""``rae-edge`` commands that need no HTTP server (``serve`` lives in ``rae_tablet_api``).

Each command is a function registered in :data:`COMMANDS` (see
:mod:`rae_edge.commands.registry`) with its argparse set-up, so the tablet API's entry
point can add ``serve`` and reuse the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rae_edge.commands.registry import COMMANDS, Handler, command, settings_from_args
from rae_edge.errors import RaeError

__all__ = ["COMMANDS", "Handler", "add_common", "build_parser", "command", "main",
           "settings_from_args"]

def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="node data folder")
    p.add_argument("--config", type=Path, default=None, help="YAML or TOML settings file")


def build_parser(extra: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]]
                 | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rae-edge", description="RAE Edge node")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, setup, fn) in {**COMMANDS, **(extra or {})}.items():
        p = sub.add_parser(name, help=help_text)
        add_common(p)
        setup(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None, extra: dict[str, tuple[
        str, Callable[[argparse.ArgumentParser], None], Handler]] | None = None) -> int:
    _load_commands()
    args = build_parser(extra).parse_args(argv)
    try:
        return int(args.handler(args))
    except RaeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _load_commands() -> None:
    # Command modules register themselves on import.
    import importlib
    import pkgutil

    import rae_edge.commands as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")


if __name__ == "__main__":
    sys.exit(main())
