"""``rae-central enroll``: issue an edge node's identity and register its key.

The node's Ed25519 key is generated here and written, with central's public key, into
one identity file (:class:`rae_sync.identity.NodeIdentity`, mode 0600) that the node
reads with ``rae-edge serve --enroll FILE``; central keeps only the public half. Enrolling
a node again issues a new key and replaces the old one (and lifts a revocation).
"""

from __future__ import annotations

from pathlib import Path

from rae_central.config import CentralSettings
from rae_central.db.engine import make_engine
from rae_central.db.migrate import check_current
from rae_central.keys import load_or_create
from rae_central.store import CentralStore, NodeKey
from rae_sync.identity import NodeIdentity


def enroll(settings: CentralSettings, node: NodeKey, out: Path, *, force: bool = False,
           mqtt_url: str | None = None) -> Path:
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists: pass --force to issue a new identity over it")
    central_key = load_or_create(settings.signing_key_file)
    identity = NodeIdentity.issue(*node, central_key.public_key(),
                                  mqtt_url=mqtt_url or settings.mqtt_url)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        check_current(engine)
        # Key first at central, file second: a file that exists is always a valid identity.
        CentralStore(engine).enroll(identity.node, identity.public_key_pem)
    finally:
        engine.dispose()
    identity.save(out)
    return out
