"""The node's OPC UA client certificate: generated once (RSA 2048, self-signed, client
auth, the application URI in its subject alternative names), kept in the data folder
(key mode 0600) and reused, so a plant's server can trust it once."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID


async def ensure_client_certificate(folder: Path, application_uri: str) -> tuple[Path, Path]:
    """(certificate DER, private key PEM) in ``folder``, made on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "client-cert.der", folder / "client-key.pem"
    await setup_self_signed_certificate(
        key, cert, application_uri, socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "RAE Edge", "commonName": "rae-edge alarms"})
    os.chmod(key, 0o600)
    return cert, key
