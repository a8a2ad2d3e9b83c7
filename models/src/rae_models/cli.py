"""``rae-models``: ``verify`` checks every packaged model file offline (exit 1 on any
missing or mismatching file); ``paths`` prints where each file is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rae_models.locate import ENV_DIR, model_files
from rae_models.manifest import load_manifest
from rae_models.verify import Problem, verify_model


def _absent(problems: list[Problem], n_files: int) -> bool:
    """True when an optional model is simply not installed (nothing of it is there)."""
    return all(p.file == "*" or p.reason == "missing" for p in problems) and (
        any(p.file == "*" for p in problems) or len(problems) == n_files
    )


def cmd_verify(args: argparse.Namespace) -> int:
    failed = 0
    for name, spec in load_manifest().items():
        problems = verify_model(name, args.root, full=not args.quick)
        if not problems:
            print(f"ok       {name} ({spec.version}, {len(spec.files)} files)")
        elif spec.optional and not args.all and _absent(problems, len(spec.files)):
            print(f"skipped  {name}: optional and not installed ({spec.description})")
        else:
            failed += 1
            print(f"FAILED   {name} ({spec.version})")
            for p in problems:
                print(f"    {p}")
    if failed:
        print(
            f"\n{failed} model(s) failed verification: reinstall the packages from the "
            f"wheelhouse (models are never downloaded at run time)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    for name in load_manifest():
        try:
            files = model_files(name, args.root)
        except Exception as exc:  # report it and go on with the next model
            print(f"{name}: {exc}")
            continue
        for fname, path in files.items():
            print(f"{name}/{fname}\t{path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rae-models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_text in (
        ("verify", cmd_verify, "check every model file's presence, size and sha256"),
        ("paths", cmd_paths, "print where each model file is"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--root", type=Path, default=None,
            help=f"folder holding <model>/<file> instead of the installed packages "
                 f"(default: ${ENV_DIR} when set)",
        )
        p.set_defaults(handler=fn)
        if name == "verify":
            p.add_argument("--quick", action="store_true", help="check sizes only, no sha256")
            p.add_argument("--all", action="store_true",
                           help="also fail when an optional model is not installed")
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
