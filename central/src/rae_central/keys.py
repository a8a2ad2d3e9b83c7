"""Central's own Ed25519 signing key: it signs every down message (acks, replay
requests, fanned-out corrections); nodes verify with the public half written into their
identity at enrollment."""

from __future__ import annotations

import fcntl
from pathlib import Path

from rae_sync.signing import (
    Ed25519PrivateKey,
    generate_key,
    load_private_key,
    save_private_key,
)


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; a new one (mode 0600) if the file does not exist yet. A lock
    file keeps two processes starting together from making two keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            save_private_key(generate_key(), path)
        try:
            return load_private_key(path.read_bytes())
        except ValueError as e:
            raise ValueError(f"{path}: not central's Ed25519 signing key: {e}") from e
