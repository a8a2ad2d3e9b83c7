#!/usr/bin/env python3
"""Back up and restore central's Qdrant collections through qdrant-client's API.

    python central/ops/qdrant_backup.py create OUT_DIR --url http://qdrant:6333 [--api-key K]
    python central/ops/qdrant_backup.py restore OUT_DIR --url http://qdrant:6333
    python central/ops/qdrant_backup.py create OUT_DIR --path /var/lib/rae-central/qdrant

With ``--url`` (a Qdrant server) each collection gets a server-side snapshot
(``create_snapshot``), downloaded and checked against the checksum Qdrant reports; restore
uploads it (``/collections/{c}/snapshots/upload``, priority ``snapshot``), which recreates
the collection exactly (config, indexes, points).

With ``--path`` (qdrant-client's local mode, which has no snapshot API) the collections are
exported as points (id, vectors, payload) in JSON lines plus each collection's vector
config, and restore recreates and upserts them. Stop ``rae-central`` first: local mode
locks its folder. Every file goes into ``manifest.json`` with its sha256; restore checks
them before it changes anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from qdrant_client import QdrantClient, models


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _client(args: argparse.Namespace) -> QdrantClient:
    if args.url:
        return QdrantClient(url=args.url, api_key=args.api_key, timeout=600)
    return QdrantClient(path=args.path)


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return {"api-key": args.api_key} if args.api_key else {}


def create(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.dir
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    client = _client(args)
    files: dict[str, str] = {}
    collections = [c.name for c in client.get_collections().collections]
    for name in collections:
        if args.url:
            snap = client.create_snapshot(name, wait=True)
            assert snap is not None
            dest = out / name / snap.name
            dest.parent.mkdir(parents=True)
            with httpx.stream("GET", f"{args.url}/collections/{name}/snapshots/{snap.name}",
                              headers=_headers(args), timeout=600) as r:
                r.raise_for_status()
                with dest.open("wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
            digest = _sha256(dest)
            if snap.checksum and snap.checksum != digest:
                raise SystemExit(f"error: snapshot of {name} arrived damaged")
            client.delete_snapshot(name, snap.name)  # the copy is here now
        else:
            dest = out / name / "points.jsonl"
            dest.parent.mkdir(parents=True)
            info = client.get_collection(name)
            (out / name / "config.json").write_text(
                info.config.params.model_dump_json(exclude_none=True))
            files[f"{name}/config.json"] = _sha256(out / name / "config.json")
            with dest.open("w") as f:
                offset = None
                while True:
                    points, offset = client.scroll(name, limit=1000, offset=offset,
                                                   with_vectors=True, with_payload=True)
                    for p in points:
                        f.write(json.dumps({"id": p.id, "vector": p.vector,
                                            "payload": p.payload}) + "\n")
                    if offset is None:
                        break
            digest = _sha256(dest)
        files[dest.relative_to(out).as_posix()] = digest
    manifest = {"format": "rae-central-qdrant/1", "created_at": datetime.now(UTC).isoformat(),
                "mode": "snapshot" if args.url else "points", "collections": collections,
                "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def restore(args: argparse.Namespace) -> dict[str, Any]:
    src: Path = args.dir
    manifest = json.loads((src / "manifest.json").read_text())
    bad = [rel for rel, digest in manifest["files"].items()
           if not (src / rel).is_file() or _sha256(src / rel) != digest]
    if bad:
        raise SystemExit(f"error: damaged or missing: {', '.join(bad)}; nothing restored")
    client = _client(args)
    existing = {c.name for c in client.get_collections().collections}
    clash = existing & set(manifest["collections"])
    if clash and not args.replace:
        raise SystemExit(f"error: collections already exist: {sorted(clash)} (--replace)")
    for name in manifest["collections"]:
        if manifest["mode"] == "snapshot":
            if not args.url:
                raise SystemExit("error: a server snapshot restores into a server: pass --url")
            [snap] = [rel for rel in manifest["files"] if rel.startswith(f"{name}/")]
            with (src / snap).open("rb") as f:
                r = httpx.post(f"{args.url}/collections/{name}/snapshots/upload",
                               params={"priority": "snapshot", "wait": "true",
                                       "checksum": manifest["files"][snap]},
                               files={"snapshot": (Path(snap).name, f)},
                               headers=_headers(args), timeout=3600)
            r.raise_for_status()
        else:
            params = json.loads((src / name / "config.json").read_text())
            if name in existing:
                client.delete_collection(name)
            client.create_collection(
                name, vectors_config=_vectors(params.get("vectors")),
                sparse_vectors_config=params.get("sparse_vectors"))
            batch: list[models.PointStruct] = []
            with (src / name / "points.jsonl").open() as f:
                for line in f:
                    d = json.loads(line)
                    batch.append(models.PointStruct(id=d["id"], vector=d["vector"],
                                                    payload=d["payload"]))
                    if len(batch) >= 1000:
                        client.upsert(name, batch, wait=True)
                        batch = []
            if batch:
                client.upsert(name, batch, wait=True)
    return manifest


def _vectors(cfg: Any) -> Any:
    if cfg is None:
        return {}
    if "size" in cfg:
        return models.VectorParams(**cfg)
    return {k: models.VectorParams(**v) for k, v in cfg.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["create", "restore"])
    p.add_argument("dir", type=Path)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="Qdrant server, e.g. http://127.0.0.1:6333")
    where.add_argument("--path", help="qdrant-client local-mode folder")
    p.add_argument("--api-key", default=None)
    p.add_argument("--replace", action="store_true", help="restore over existing collections")
    args = p.parse_args(argv)
    m = create(args) if args.action == "create" else restore(args)
    print(f"{args.action}: {len(m['collections'])} collections ({m['mode']}) in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
