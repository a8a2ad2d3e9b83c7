"""Central's one settings tree: defaults < YAML/TOML file < ``RAE_CENTRAL_*`` environment <
command-line flags. Unknown keys are an error that names the key (``extra="forbid"``).

Nested keys come from the environment with ``__``: ``RAE_CENTRAL_ADMIN__TOKEN=...``,
``RAE_CENTRAL_DATABASE_URL=postgresql+psycopg://...``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rae_sync.layered_settings import LayeredSources, load_layered


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminSettings(_Section):
    token: SecretStr | None = Field(
        default=None,
        description="bearer token of the admin sync console and /api/v1/admin (None: the "
        "console refuses every request; set RAE_CENTRAL_ADMIN__TOKEN)",
    )
    host: str = Field(default="127.0.0.1", description="address the console binds to")
    tls_cert: Path | None = Field(
        default=None, description="HTTPS certificate of the console (PEM); required when "
        "admin.host is not loopback: plain HTTP is refused there")
    tls_key: Path | None = Field(default=None, description="private key of admin.tls_cert")
    port: int = Field(default=8480, ge=0, le=65535, description="TCP port of the console")
    tenant_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="tenant id -> bearer token of that tenant's console: it sees only its "
        "tenant's nodes, dead letters and corrections (RAE_CENTRAL_ADMIN__TENANT_TOKENS as "
        "JSON). admin.token is the operator's: fleet health of every tenant, no content")


class IngestSettings(_Section):
    workers: int = Field(default=1, ge=1, le=64, description="ingest worker processes")
    share_group: str = Field(default="rae-central", description="MQTT shared-subscription group")
    batch_size: int = Field(default=500, ge=1, le=10_000,
                            description="messages committed in one Postgres transaction")
    batch_wait_ms: int = Field(default=20, ge=0, le=5000,
                               description="longest wait to fill a batch")
    receive_maximum: int = Field(
        default=2000, ge=1, le=65_535,
        description="MQTT 5 Receive Maximum of each worker: unacknowledged messages the "
        "broker may have in flight to it. Acks wait for the batch's commit, so this bounds "
        "the batch (mosquitto's default without it is 20, i.e. batches of 20)")
    reconnect_max_s: int = Field(
        default=2, ge=1, le=300,
        description="longest wait between two attempts to reach the broker again: a worker "
        "that backs off for long after a broker restart holds up the whole backlog")
    session_expiry_s: int = Field(default=86_400, ge=60,
                                  description="MQTT 5 SessionExpiryInterval of each worker")
    gap_grace_s: float = Field(default=5.0, ge=0,
                               description="a seq gap older than this triggers a replay request")
    replay_every_s: float = Field(default=10.0, ge=0.1,
                                  description="least time between two replay requests to a node")
    fanout_sweep_s: float = Field(default=5.0, ge=0.1,
                                  description="how often a worker looks for due fan-out rows")
    fanout_resend_s: float = Field(
        default=30.0, ge=0.5,
        description="a fan-out row sent this long ago and not acked by a node heard from "
        "since is sent again (the broker lost it); a node's resume makes its rows due at once")
    fanout_window: int = Field(
        default=1000, ge=1, le=100_000,
        description="most fan-out rows out unacked to one node at a time: a long catch-up "
        "goes in windows, never into the broker's queue all at once")
    away_after_s: float = Field(
        default=7 * 86_400.0, gt=0,
        description="a node not heard from for this long shows as away in the console, "
        "with what it has not received (kept until it comes back: nothing is dropped)")
    max_clock_skew_s: float = Field(
        default=300.0, gt=0,
        description="a message whose clock stamp is further ahead of central's clock is "
        "dead-lettered (reason clock_skew) and its node flagged in the console")


class VectorSettings(_Section):
    qdrant: str = Field(default="data/central/qdrant",
                        description="Qdrant URL (http[s]://...) or a local path (':memory:')")
    collection: str = Field(default="rae_memory", description="Qdrant collection name")
    batch_size: int = Field(default=256, ge=1, le=10_000, description="points per upsert")
    enabled: bool = Field(default=True, description="embed corrections and incidents")


class CentralSettings(LayeredSources, BaseSettings):
    """Everything central can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="RAE_CENTRAL_", env_nested_delimiter="__", extra="forbid",
        validate_default=True,
    )

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/rae_central",
        description="SQLAlchemy URL of central's PostgreSQL database",
    )
    app_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL the running application (workers, console, indexer) "
        "connects with: a login role in rae_app that row-level security binds. None: "
        "database_url's server and database as user app_role with app_password",
    )
    app_role: str = Field(default="rae_central_app",
                          description="the application's login role; `rae-central migrate` "
                          "creates it (a member of rae_app, NOSUPERUSER NOBYPASSRLS)")
    app_password: SecretStr | None = Field(
        default=None, description="its password (set by `rae-central migrate`); None: "
        "left as it is (e.g. trust or peer authentication on loopback)")
    signing_key_file: Path = Field(
        default=Path("data/central/central-signing-key.pem"),
        description="central's Ed25519 key (PEM, created on first use): signs every down "
        "message; its public half goes into each node identity",
    )
    mqtt_url: str | None = Field(default=None,
                                 description="mqtt[s]://host:port of the broker; None: no ingest")
    mqtt_pki_dir: Path | None = Field(
        default=None,
        description="folder made by `rae-central pki init` (CA, broker and central "
        "certificates): workers connect with central's client certificate, `enroll` "
        "writes each node's certificate and broker password into its identity")
    allow_plain_mqtt: bool = Field(
        default=False,
        description="allow mqtt:// (no TLS) to a loopback broker, for tests and demos "
        "only; mqtt:// to any other host is refused whatever this says")
    admin: AdminSettings = Field(default_factory=AdminSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)

    @model_validator(mode="after")
    def _secure_console(self) -> CentralSettings:
        a = self.admin
        if (a.tls_cert is None) != (a.tls_key is None):
            raise ValueError("admin.tls_cert and admin.tls_key go together")
        if a.tls_cert is None and not is_loopback(a.host):
            raise ValueError(f"admin.host {a.host!r} is not loopback: the console serves "
                             "HTTPS there, set admin.tls_cert and admin.tls_key (plain HTTP "
                             "is refused off loopback)")
        return self

    @model_validator(mode="after")
    def _secure_mqtt(self) -> CentralSettings:
        if self.mqtt_url and self.mqtt_url.startswith("mqtt://"):
            host = urlparse(self.mqtt_url).hostname or ""
            if not is_loopback(host):
                raise ValueError(f"mqtt_url {self.mqtt_url!r}: plain MQTT to a host other "
                                 "than loopback is refused; use mqtts:// with mqtt_pki_dir")
            if not self.allow_plain_mqtt:
                raise ValueError(f"mqtt_url {self.mqtt_url!r} is plain MQTT: use mqtts:// "
                                 "(rae-central pki init), or set allow_plain_mqtt for a "
                                 "loopback test setup")
        return self

    def app_url(self) -> str:
        """The URL the application connects with (see ``app_database_url``)."""
        if self.app_database_url:
            return self.app_database_url
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url).set(
            username=self.app_role,
            password=self.app_password.get_secret_value() if self.app_password else None)
        return url.render_as_string(hide_password=False)

    def app_login(self) -> tuple[str, str | None]:
        """(role, password) of the application's login, as ``migrate`` sets it up."""
        if self.app_database_url:
            from sqlalchemy.engine import make_url

            url = make_url(self.app_database_url)
            return str(url.username or self.app_role), url.password
        return self.app_role, (self.app_password.get_secret_value()
                               if self.app_password else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


def load(config_file: Path | None = None, **overrides: Any) -> CentralSettings:
    """File, then environment, then ``overrides`` (nested dicts; ``None`` values ignored so
    flags that were not given do not mask the file or the environment); the layering is
    :func:`rae_sync.layered_settings.load_layered`, shared with the edge."""
    return load_layered(CentralSettings, config_file, _drop_none(overrides))
