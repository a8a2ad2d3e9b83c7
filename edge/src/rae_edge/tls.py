"""HTTPS for the tablet API: a self-signed certificate the installer generates.

The tablet API serves plain HTTP on loopback only; bound to any other address it needs a
certificate. :func:`create_self_signed` writes ``cert.pem`` and ``key.pem`` (key mode 0600)
with the node's host names and addresses as subject alternative names, so a tablet that
trusts the certificate once (or the plant's CA that signs a replacement) can check it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rae_edge.errors import InvalidInputError

VALID_DAYS = 825  # the longest validity Apple devices accept for a server certificate


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def default_paths(data_dir: Path) -> TlsFiles:
    return TlsFiles(data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem")


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def create_self_signed(out: TlsFiles, hosts: list[str] | None = None,
                       days: int = VALID_DAYS, overwrite: bool = False) -> TlsFiles:
    """Writes a new ECDSA P-256 key and a self-signed server certificate for ``hosts``
    (default: this machine's name, ``localhost`` and ``127.0.0.1``)."""
    if not overwrite and (out.cert.exists() or out.key.exists()):
        raise InvalidInputError(f"{out.cert} or {out.key} already exists: pass overwrite")
    names = [h for h in (hosts or []) if h and h not in ("0.0.0.0", "::")]  # noqa: S104
    names += [socket.gethostname(), "localhost", "127.0.0.1"]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RAE Edge node")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    out.cert.parent.mkdir(parents=True, exist_ok=True)
    write_private(out.key, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def write_private(path: Path, data: bytes) -> None:
    """Writes a secret readable by its owner only (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def resolve_for_serving(host: str, data_dir: Path, cert: Path | None,
                        key: Path | None) -> TlsFiles | None:
    """The certificate to serve with, or None for plain HTTP (loopback only).

    Given files win; otherwise the data folder's ``tls/`` pair (written by the installer
    or ``rae-edge tls create``) is used when present. A non-loopback host without either is
    refused with an error that says how to make a certificate."""
    if (cert is None) != (key is None):
        raise InvalidInputError("--tls-cert and --tls-key go together: give both or neither")
    if cert is not None and key is not None:
        for p in (cert, key):
            if not p.is_file():
                raise InvalidInputError(f"TLS file {p} does not exist")
        return TlsFiles(cert, key)
    found = default_paths(data_dir)
    if found.cert.is_file() and found.key.is_file():
        return found
    if is_loopback(host):
        return None
    raise InvalidInputError(
        f"refusing to serve plain HTTP on {host}: only loopback may go without TLS. Run "
        f"'rae-edge tls create --data-dir {data_dir}' (or pass --tls-cert/--tls-key)")
