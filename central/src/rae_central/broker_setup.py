"""What central needs to use the secure broker that :mod:`rae_central.pki` describes:

- :func:`central_access`: central's own client certificate, key and CA (``mqtt_pki_dir``,
  made by ``rae-central pki init``) and its password at the broker, for the workers;
- :func:`node_access`: a new node certificate and the node's broker password, written
  into its identity by ``rae-central enroll``;
- :func:`write_broker_config`: ``rae-central broker-config``: the mosquitto configuration
  (TLS listener, client certificate required) and the dynamic-security file with every
  active node (its own topics only, its credentials bound to its one client id) and
  central.

Passwords are derived (:func:`rae_central.pki.mqtt_password`) from central's signing key,
so the broker configuration can be written again at any time from the enrolled nodes.
"""

from __future__ import annotations

import getpass
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rae_central.config import CentralSettings
from rae_central.db.engine import make_engine
from rae_central.keys import load_or_create
from rae_central.pki import (
    CENTRAL_IDENTITY,
    CertificateAuthority,
    PkiLayout,
    central_secret,
    dynsec_config,
    mosquitto_conf,
    mqtt_password,
    node_identity,
    write_dynsec,
)
from rae_central.store import CentralStore, NodeKey
from rae_sync.identity import TlsMaterial


def _secret(settings: CentralSettings) -> bytes:
    return central_secret(load_or_create(settings.signing_key_file).private_bytes_raw())


def _layout(settings: CentralSettings) -> PkiLayout:
    if settings.mqtt_pki_dir is None:
        raise ValueError("mqtt_pki_dir is not set: run `rae-central pki init --dir DIR` and "
                         "set RAE_CENTRAL_MQTT_PKI_DIR=DIR")
    layout = PkiLayout(settings.mqtt_pki_dir)
    if not layout.central.cert.exists():
        raise ValueError(f"{layout.central.cert} is missing: run `rae-central pki init "
                         f"--dir {settings.mqtt_pki_dir}` first")
    return layout


@dataclass(frozen=True)
class BrokerAccess:
    tls: TlsMaterial
    username: str
    password: str


def central_access(settings: CentralSettings) -> BrokerAccess | None:
    """Central's credentials at the broker; ``None`` without ``mqtt_pki_dir``."""
    if settings.mqtt_pki_dir is None:
        return None
    c = _layout(settings).central
    tls = TlsMaterial(ca_pem=c.ca.read_text(), cert_pem=c.cert.read_text(),
                      key_pem=c.key.read_text())
    return BrokerAccess(tls, CENTRAL_IDENTITY,
                        mqtt_password(_secret(settings), CENTRAL_IDENTITY))


def node_access(settings: CentralSettings, node: NodeKey, public_key_pem: str,
                ) -> tuple[TlsMaterial, str] | None:
    """A client certificate for ``node`` (its key only ever in the identity file) and
    its broker password; ``None`` without ``mqtt_pki_dir``."""
    if settings.mqtt_pki_dir is None:
        return None
    layout = _layout(settings)
    with tempfile.TemporaryDirectory(prefix="rae-enroll-") as d:
        issued = CertificateAuthority.load_or_create(layout.ca_dir).issue_node(Path(d), *node)
        tls = TlsMaterial(ca_pem=issued.ca.read_text(), cert_pem=issued.cert.read_text(),
                          key_pem=issued.key.read_text())
    return tls, mqtt_password(_secret(settings), node_identity(*node), public_key_pem)


def write_broker_config(settings: CentralSettings, out: Path, *, port: int = 8883,
                        bind: str = "0.0.0.0", run_as: str | None = None,  # noqa: S104
                        persistence: bool = True) -> Path:
    """Writes ``out/mosquitto.conf`` and ``out/dynsec.json`` (every active node and
    central); returns the configuration's path. Run it again after enrolling or revoking
    a node, then restart (or reload) the broker."""
    layout = _layout(settings)
    secret = _secret(settings)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        keys = CentralStore(engine).active_keys()
    finally:
        engine.dispose()
    nodes = [(n, mqtt_password(secret, node_identity(*n), pem)) for n, pem in keys.items()]
    out.mkdir(parents=True, exist_ok=True)
    dynsec = write_dynsec(out / "dynsec.json", dynsec_config(
        nodes, [(CENTRAL_IDENTITY, mqtt_password(secret, CENTRAL_IDENTITY))]))
    data = out / "data"
    if persistence:
        data.mkdir(exist_ok=True)
    conf = out / "mosquitto.conf"
    conf.write_text(mosquitto_conf(
        port=port, ca=layout.broker.ca, server=layout.broker, bind=bind, dynsec_file=dynsec,
        persistence_dir=data if persistence else None,
        run_as=run_as or getpass.getuser(), log_file=out / "mosquitto.log"))
    return conf
