"""``rae-edge reindex``: re-embeds the searchable rows whose model id is not the current
model's (after a model upgrade), and redoes their abbreviation expansion."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from rae_edge.commands.ingest import open_node
from rae_edge.commands.registry import command


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true",
                   help="only print how many rows carry another model id (exit 1 if any)")


@command("reindex", "re-embed rows made by another embedding model", _setup)
def reindex(args: argparse.Namespace) -> int:
    node = open_node(args, "run rae-edge reindex")
    try:
        stale = node.indexer.stale_count()
        model = node.embedder.model_id
        if args.check:
            print(f"{stale} of {node.lance.count()} rows carry another model id than {model}")
            return 1 if stale else 0
        with tqdm(total=stale, unit="row", file=sys.stderr,
                  disable=not sys.stderr.isatty()) as bar:
            done = node.indexer.reindex(progress=bar.update)
    finally:
        node.close()
    print(f"re-embedded {done} row(s) with {model}")
    return 0
