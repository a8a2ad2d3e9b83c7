"""``rae-edge`` commands that need no HTTP server (``serve`` lives in ``rae_tablet_api``).

Each command is a function registered in :data:`COMMANDS` with its argparse set-up, so
the tablet API's entry point can add ``serve`` and reuse the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rae_edge import config
from rae_edge.errors import RaeError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(
    name: str, help_text: str, setup: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help_text, setup or (lambda p: None), fn)
        return fn

    return deco


def settings_from_args(args: argparse.Namespace) -> config.EdgeSettings:
    return config.load(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))


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
