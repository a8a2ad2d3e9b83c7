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

Ids are checked against the domain's id pattern, which has no ``/``, ``+``, ``#`` or
whitespace, so no id can widen a topic or an ACL line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
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


def mosquitto_conf(*, port: int, ca: Path, server: IssuedCert, acl_file: Path,
                   bind: str = "0.0.0.0", persistence_dir: Path | None = None,  # noqa: S104
                   run_as: str | None = None, log_file: Path | None = None) -> str:
    """A mosquitto 2 configuration with one TLS listener that requires a CA-signed client
    certificate and takes its CN as the username, and the ACL file."""
    lines = [
        "# generated by rae_central.pki",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {acl_file}",
        f"listener {port} {bind}",
        "protocol mqtt",
        f"cafile {ca}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
        "require_certificate true",
        "use_identity_as_username true",
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
