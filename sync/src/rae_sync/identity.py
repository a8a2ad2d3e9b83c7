"""A node's identity, as issued by ``rae-central enroll --out FILE`` and read by
``rae-edge serve --enroll FILE``.

The file is JSON, mode 0600::

    {
      "format": "rae-node-identity/1",
      "tenant_id": "acme", "site_id": "plant-1", "node_id": "node-1",
      "private_key_pem": "-----BEGIN PRIVATE KEY-----...",     # the node's Ed25519 key
      "central_public_key_pem": "-----BEGIN PUBLIC KEY-----...", # verifies what central sends
      "mqtt_url": "mqtts://central.example:8883" | null,         # optional default broker
      "tls": {"ca_pem": "...", "cert_pem": "...", "key_pem": "..."} | null,
      "mqtt_password": "..." | null,                             # at the broker (dynsec)
      "issued_at": "2026-11-24T13:50:00+00:00"
    }

Central keeps only the node's public key (``public_key_pem``), registered at enrollment.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rae_sync.domain import Ident, UtcDatetime, utcnow
from rae_sync.signing import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    generate_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    write_private_file,
)

IDENTITY_FORMAT: Literal["rae-node-identity/1"] = "rae-node-identity/1"


class TlsMaterial(BaseModel):
    """The node's MQTT client certificate, its key and the CA that signed the broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_pem: str
    cert_pem: str
    key_pem: str = Field(repr=False)


class NodeIdentity(BaseModel):
    """Who a node is, the key it signs with, and central's key it trusts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["rae-node-identity/1"] = IDENTITY_FORMAT
    tenant_id: Ident
    site_id: Ident
    node_id: Ident
    private_key_pem: str = Field(repr=False)
    central_public_key_pem: str
    mqtt_url: str | None = None
    tls: TlsMaterial | None = None
    #: the node's password at the broker (username: ``tenant/site/node``), whose
    #: dynamic-security client binds it to its own client id (None: a broker without it)
    mqtt_password: str | None = Field(default=None, repr=False)
    issued_at: UtcDatetime = Field(default_factory=utcnow)

    @field_validator("private_key_pem")
    @classmethod
    def _private(cls, v: str) -> str:
        load_private_key(v)
        return v

    @field_validator("central_public_key_pem")
    @classmethod
    def _public(cls, v: str) -> str:
        load_public_key(v)
        return v

    @classmethod
    def issue(cls, tenant_id: str, site_id: str, node_id: str,
              central_public_key: Ed25519PublicKey | str, *, mqtt_url: str | None = None,
              tls: TlsMaterial | None = None, mqtt_password: str | None = None,
              ) -> NodeIdentity:
        """A new identity with a freshly generated node key."""
        central = (central_public_key if isinstance(central_public_key, str)
                   else public_key_pem(central_public_key))
        return cls(tenant_id=tenant_id, site_id=site_id, node_id=node_id,
                   private_key_pem=private_key_pem(generate_key()),
                   central_public_key_pem=central, mqtt_url=mqtt_url, tls=tls,
                   mqtt_password=mqtt_password)

    @cached_property
    def private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.private_key_pem)

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_pem(self) -> str:
        """What central registers for this node."""
        return public_key_pem(self.public_key)

    @cached_property
    def central_public_key(self) -> Ed25519PublicKey:
        return load_public_key(self.central_public_key_pem)

    @property
    def mqtt_client_id(self) -> str:
        """The one client id the broker lets this node use (dynamic security binds it)."""
        return f"rae-edge-{self.tenant_id}-{self.site_id}-{self.node_id}"

    @property
    def mqtt_username(self) -> str:
        """The node's username at the broker: ``tenant/site/node``."""
        return f"{self.tenant_id}/{self.site_id}/{self.node_id}"

    @property
    def node(self) -> tuple[str, str, str]:
        return (self.tenant_id, self.site_id, self.node_id)

    def save(self, path: Path) -> None:
        """Writes the identity file, readable by its owner only (0600)."""
        write_private_file(path, (self.model_dump_json(indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> NodeIdentity:
        """Reads an identity file; ``ValueError`` naming the file and what is wrong."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the node identity: {e}") from e
        if not isinstance(data, dict) or data.get("format") != IDENTITY_FORMAT:
            raise ValueError(f"{path}: not a node identity file (format must be "
                             f"{IDENTITY_FORMAT!r})")
        try:
            return cls.model_validate(data)
        except ValueError as e:
            raise ValueError(f"{path}: invalid node identity: {e}") from e
