"""``rae-edge info``: what the data folder holds."""

from __future__ import annotations

import argparse
import json

from rae_edge.commands.registry import command, settings_from_args
from rae_edge.node import EdgeNode


@command("info", "print the node's schema version and record counts")
def info(args: argparse.Namespace) -> int:
    node = EdgeNode(settings_from_args(args))
    duck = node.duck
    out = {
        "data_dir": str(node.data_dir),
        "schema_version": duck.schema_version(),
        "machines": duck.query("SELECT count(*) FROM machines")[0][0],
        "incidents": duck.query("SELECT count(*) FROM incidents")[0][0],
        "corrections": duck.query("SELECT count(*) FROM corrections")[0][0],
        "memories": node.lance.count(),
        "outbox": duck.outbox_depth(),
    }
    print(json.dumps(out, indent=2))
    node.close()
    return 0
