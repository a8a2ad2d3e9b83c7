"""``rae-central enroll``: issue an edge node's identity and register its key.

The node's Ed25519 key is generated here and written, with central's public key, into
one identity file (:class:`rae_sync.identity.NodeIdentity`, mode 0600) that the node
reads with ``rae-edge serve --enroll FILE``; central keeps only the public half. With
``mqtt_pki_dir`` set the file also holds the node's MQTT client certificate, its key, the
CA and its broker password (:mod:`rae_central.broker_setup`). Enrolling a node again
issues a new key and replaces the old one (and lifts a revocation); run
``rae-central broker-config`` after, so the broker knows the node's new password.
"""

from __future__ import annotations

from pathlib import Path

from rae_central.broker_setup import node_access
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
    # With central's PKI: the node's client certificate, the CA and its broker password
    # go into the same file (the password is derived from the node's new key).
    access = node_access(settings, identity.node, identity.public_key_pem)
    if access is not None:
        identity = identity.model_copy(update={"tls": access[0], "mqtt_password": access[1]})
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        check_current(engine)
        # Key first at central, file second: a file that exists is always a valid identity.
        CentralStore(engine).enroll(identity.node, identity.public_key_pem)
    finally:
        engine.dispose()
    identity.save(out)
    return out
