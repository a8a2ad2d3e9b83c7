"""``rae-image``: builds and checks the offline appliance bundle.

    rae-image build OUT_DIR [--version V] [--cache DIR] [--arch x86_64|aarch64]
    rae-image verify BUNDLE_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rae_image import bundle, installer, wheelhouse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rae-image", description="RAE Edge appliance bundle")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the versioned offline bundle into OUT_DIR")
    b.add_argument("out_dir", type=Path)
    b.add_argument("--version", default=None,
                   help="bundle version (default: rae-edge's version + git commit)")
    b.add_argument("--cache", type=Path, default=None,
                   help=f"download cache (default {bundle.default_cache()}; $RAE_IMAGE_CACHE)")
    b.add_argument("--arch", choices=sorted(wheelhouse.PLATFORM_TAGS), default="x86_64")
    b.add_argument("--no-aarch64-check", action="store_true",
                   help="skip asking which pins lack an aarch64 wheel")
    b.add_argument("--no-tar", action="store_true", help="leave the bundle as a folder only")
    b.add_argument("--workspace", type=Path, default=None, help="repo root (default: found)")
    v = sub.add_parser("verify", help="check every file of a bundle against its manifest")
    v.add_argument("bundle_dir", type=Path)
    args = p.parse_args(argv)
    try:
        if args.command == "build":
            t0 = time.perf_counter()
            root = bundle.build(args.out_dir, args.version, workspace=args.workspace,
                                cache=args.cache, arch=args.arch,
                                check_aarch64=not args.no_aarch64_check,
                                make_tar=not args.no_tar)
            m = json.loads((root / "manifest.json").read_text())
            size = sum(f["size"] for f in m["files"].values())
            missing = [x["name"] for x in m["aarch64"].get("missing", [])]
            print(f"built {root} in {time.perf_counter() - t0:.1f} s: {len(m['packages'])} "
                  f"locked wheels + {len(m['members'])} members, {len(m['models'])} model "
                  f"files, {size / 2**20:.0f} MiB")
            if m["aarch64"].get("checked"):
                print("aarch64: " + (f"no wheel for {', '.join(missing)}" if missing
                                     else "every pin has a wheel"))
            tar = root.with_name(root.name + ".tar.sha256")
            if tar.exists():
                print(tar.read_text().strip())
        else:
            m = installer.verify_bundle(args.bundle_dir)
            print(f"{args.bundle_dir}: bundle {m['version']}, {len(m['files'])} files OK")
    except (wheelhouse.BuildError, installer.InstallError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
