"""The ``rae-edge`` entry point (console script and ``python -m rae_tablet_api.cli``).

It caps the C allocator's arenas before anything else is imported: LanceDB and
onnxruntime start threads as they load, and each thread would get an arena of its own
(see :func:`rae_edge.allocator.limit_malloc_arenas`). The commands are in
:mod:`rae_tablet_api.serve`."""

from __future__ import annotations

import sys

from rae_edge.allocator import limit_malloc_arenas


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()
    from rae_tablet_api import serve  # after the cap: this import loads LanceDB

    return serve.main(argv)


if __name__ == "__main__":
    sys.exit(main())
