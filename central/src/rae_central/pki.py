"""The MQTT transport's PKI and broker configuration.

- :class:`CertificateAuthority`: central's CA (ECDSA P-256) that signs the broker's server
  certificate, one client certificate per edge node and the central workers' certificate;
- :func:`node_identity`: the MQTT identity of a node, ``{tenant}/{site}/{node}``; it is the
  client certificate's common name, and the broker (``use_identity_as_username``) takes it
  as the username, so a node cannot claim another node's name;
- :func:`acl_text` / :func:`mosquitto_conf`: the broker's ACL and configuration: TLS-only
  listener that requires a client certificate signed by the CA; each node may publish and
  subscribe only under ``rae/v1/{tenant}/{site}/{node}/#``; central's workers everything
  under ``rae/``.

- :func:`dynsec_config` / ``mosquitto_conf(dynsec_file=...)``: the same rules through
  mosquitto's dynamic-security plugin, which also binds each node's credentials to its
  one client id (``rae-edge-{tenant}-{site}-{node}``), so a node cannot take over another's
  session (nor central's); TLS still requires a CA-signed client certificate.
  :func:`mqtt_password` derives a node's broker password from central's secret, its
  identity and its current key (central re-derives it for the broker configuration; a
  re-enrolled node gets a new one).
- :class:`PkiLayout`: where ``rae-central pki init`` puts the CA, the broker's and
  central's certificates.

Ids are checked against the domain's id pattern, which has no ``/``, ``+``, ``#`` or
whitespace, so no id can widen a topic or an ACL line.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TOPIC_ROOT = "rae/v1"
CENTRAL_IDENTITY = "central"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CA_DAYS = 3650
LEAF_DAYS = 825


def _check(kind: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_', ':' "
                         "or '-' (no '/', '+', '#' or spaces)")
    return value


def node_identity(tenant: str, site: str, node: str) -> str:
    """The MQTT username (certificate CN) of one edge node."""
    return f"{_check('tenant', tenant)}/{_check('site', site)}/{_check('node', node)}"


def node_prefix(tenant: str, site: str, node: str) -> str:
    """The topic subtree a node owns: ``rae/v1/{tenant}/{site}/{node}``."""
    return f"{TOPIC_ROOT}/{node_identity(tenant, site, node)}"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its key on disk (key mode 0600), plus the CA to trust."""

    cert: Path
    key: Path
    ca: Path
    identity: str


class CertificateAuthority:
    """Central's CA, kept as ``ca.pem`` + ``ca.key`` in one folder."""

    def __init__(self, folder: Path, cert: x509.Certificate,
                 key: ec.EllipticCurvePrivateKey) -> None:
        self.folder = folder
        self.cert = cert
        self.key = key

    @property
    def cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @classmethod
    def load_or_create(cls, folder: Path, name: str = "RAE central CA") -> CertificateAuthority:
        cert_path, key_path = folder / "ca.pem", folder / "ca.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an EC private key")
            return cls(folder, cert, key)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RAE")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _pem_key(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(folder, cert, key)

    def _issue(self, out_dir: Path, stem: str, common_name: str, server: bool,
               hosts: Sequence[str] = ()) -> IssuedCert:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for h in dict.fromkeys(hosts):
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    names.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        out_dir.mkdir(parents=True, exist_ok=True)
        issued = IssuedCert(out_dir / f"{stem}.pem", out_dir / f"{stem}.key", out_dir / "ca.pem",
                            common_name)
        _write_private(issued.key, _pem_key(key))
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.ca.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return issued

    def issue_server(self, out_dir: Path, hosts: Sequence[str]) -> IssuedCert:
        """The broker's server certificate for the names and addresses edges dial."""
        return self._issue(out_dir, "server", hosts[0], server=True, hosts=hosts)

    def issue_node(self, out_dir: Path, tenant: str, site: str, node: str) -> IssuedCert:
        """An edge node's client certificate; its CN is :func:`node_identity`."""
        ident = node_identity(tenant, site, node)
        return self._issue(out_dir, "node", ident, server=False)

    def issue_central(self, out_dir: Path, name: str = CENTRAL_IDENTITY) -> IssuedCert:
        """The central workers' client certificate (full access under ``rae/``)."""
        _check("central name", name)
        return self._issue(out_dir, name, name, server=False)


def acl_text(nodes: Iterable[tuple[str, str, str]],
             central: Iterable[str] = (CENTRAL_IDENTITY,)) -> str:
    """The mosquitto ACL: each node reads and writes its own subtree only; central's
    identities everything under ``rae/``. Anything not granted is denied."""
    lines = ["# generated by rae_central.pki: one block per identity; the rest is denied", ""]
    for name in central:
        lines += [f"user {_check('central name', name)}", "topic readwrite rae/#", ""]
    for tenant, site, node in sorted(set(nodes)):
        ident = node_identity(tenant, site, node)
        lines += [f"user {ident}", f"topic readwrite {TOPIC_ROOT}/{ident}/#", ""]
    return "\n".join(lines)


def node_client_id(tenant: str, site: str, node: str) -> str:
    """The one MQTT client id a node may use (as ``NodeIdentity.mqtt_client_id``)."""
    node_identity(tenant, site, node)
    return f"rae-edge-{tenant}-{site}-{node}"


def mqtt_password(secret: bytes, identity: str, public_key_pem: str = "") -> str:
    """A broker password: HMAC-SHA256 of the identity and its current key under
    central's ``secret`` (see :func:`central_secret`)."""
    mac = hmac.new(secret, f"{identity}\n{public_key_pem}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def central_secret(signing_key_raw: bytes) -> bytes:
    """The key of :func:`mqtt_password`, derived from central's signing key."""
    return hashlib.sha256(b"rae-mqtt-password\n" + signing_key_raw).digest()


def _dynsec_password(password: str, iterations: int = 101) -> dict[str, object]:
    # the plugin's own format: PBKDF2-HMAC-SHA512 over a 12-byte salt, base64
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def _rw(topic: str) -> list[dict[str, object]]:
    return [{"acltype": t, "topic": topic, "priority": 0, "allow": True}
            for t in ("publishClientSend", "publishClientReceive", "subscribePattern",
                      "unsubscribePattern")]


def dynsec_config(nodes: Iterable[tuple[tuple[str, str, str], str]],
                  central: Iterable[tuple[str, str]]) -> dict[str, object]:
    """The dynamic-security plugin's JSON: ``nodes`` as ``((tenant, site, node),
    password)``, each bound to its client id and its own subtree; ``central`` as
    ``(name, password)``, any client id (its workers are several), everything under
    ``rae/`` (shared subscriptions included). Anything not granted is denied."""
    clients: list[dict[str, object]] = []
    roles: list[dict[str, object]] = []
    for name, password in central:
        _check("central name", name)
        clients.append({"username": name, **_dynsec_password(password),
                        "roles": [{"rolename": "rae-central"}]})
    if clients:
        roles.append({"rolename": "rae-central", "acls": _rw("rae/#") + _rw("$share/#")})
    for (tenant, site, node), password in sorted(nodes):
        ident = node_identity(tenant, site, node)
        clients.append({"username": ident, "clientid": node_client_id(tenant, site, node),
                        **_dynsec_password(password), "roles": [{"rolename": ident}]})
        roles.append({"rolename": ident, "acls": _rw(f"{TOPIC_ROOT}/{ident}/#")})
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": False},
            "clients": clients, "roles": roles, "groups": []}


def write_dynsec(path: Path, config: dict[str, object]) -> Path:
    """Writes the plugin's JSON (mode 0600: it holds password hashes)."""
    _write_private(path, json.dumps(config, indent=2).encode())
    return path


DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


@dataclass(frozen=True)
class PkiLayout:
    """The folder ``rae-central pki init`` fills: ``ca/`` (the CA; its key never leaves
    central), ``broker/`` (server certificate), ``central/`` (the workers' client
    certificate)."""

    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def broker(self) -> IssuedCert:
        d = self.root / "broker"
        return IssuedCert(d / "server.pem", d / "server.key", d / "ca.pem", "broker")

    @property
    def central(self) -> IssuedCert:
        d = self.root / "central"
        return IssuedCert(d / f"{CENTRAL_IDENTITY}.pem", d / f"{CENTRAL_IDENTITY}.key",
                          d / "ca.pem", CENTRAL_IDENTITY)

    def init(self, hosts: Sequence[str]) -> CertificateAuthority:
        """Creates the CA (kept if present), the broker's certificate for ``hosts`` and
        central's client certificate."""
        ca = CertificateAuthority.load_or_create(self.ca_dir)
        ca.issue_server(self.root / "broker", hosts)
        ca.issue_central(self.root / "central")
        return ca


def mosquitto_conf(*, port: int, ca: Path, server: IssuedCert, acl_file: Path | None = None,
                   bind: str = "0.0.0.0", persistence_dir: Path | None = None,  # noqa: S104
                   run_as: str | None = None, log_file: Path | None = None,
                   dynsec_file: Path | None = None, dynsec_plugin: str = DYNSEC_PLUGIN,
                   ) -> str:
    """A mosquitto 2 configuration with one TLS listener that requires a CA-signed client
    certificate, and either the ACL file (the certificate's CN is the username) or the
    dynamic-security plugin (username and password per identity, client id bound)."""
    if (acl_file is None) == (dynsec_file is None):
        raise ValueError("give one of acl_file or dynsec_file")
    auth = ([f"plugin {dynsec_plugin}", f"plugin_opt_config_file {dynsec_file}"]
            if dynsec_file is not None else [f"acl_file {acl_file}"])
    lines = [
        "# generated by rae_central.pki",
        "per_listener_settings false",
        "allow_anonymous false",
        *auth,
        f"listener {port} {bind}",
        "protocol mqtt",
        f"cafile {ca}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
        "require_certificate true",
        *(["use_identity_as_username true"] if dynsec_file is None else []),
        "tls_version tlsv1.2",
        # mosquitto's default keeps only 1000 QoS 1 messages per offline session and drops
        # the rest: a plant offline for a day must get every fan-out correction back.
        "max_queued_messages 10000000",
        # QoS 1 messages in flight per client, also the Receive Maximum the broker tells
        # MQTT 5 clients (default 20): an edge publishing its outbox over a 50 ms link
        # could send at most 20 / 0.05 s = 400 messages/s; the ingest workers set their
        # own Receive Maximum (ingest.receive_maximum).
        "max_inflight_messages 1000",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    if run_as is not None:
        lines.append(f"user {run_as}")
    if log_file is not None:
        lines += [f"log_dest file {log_file}", "log_type all"]
    return "\n".join(lines) + "\n"
