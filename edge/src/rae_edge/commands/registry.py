"""The command registry: :func:`command` registers a ``rae-edge`` command family's handler
with its argparse set-up in :data:`COMMANDS`; :func:`settings_from_args` loads the
settings a command was given. Here, not in :mod:`rae_edge.cli`, so the command modules
do not import the module that imports them (``lint-imports`` forbids the circle)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rae_edge import config

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
