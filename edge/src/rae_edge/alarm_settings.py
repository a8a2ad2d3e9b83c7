"""The ``alarms`` section of the edge settings: one entry per source, keyed by ``type``.

A discriminated union (``type: opcua`` or ``type: sparkplug``), so a wrong key or value
fails at load with its full path, e.g. ``alarms.sources.0.opcua.tags.1.node_id``. What
needs the node's data (does the machine exist?) is checked when the sources start
(:func:`rae_edge.alarms.service.AlarmService.check`), with the same kind of path.

A module of its own beside :mod:`rae_edge.config` (which includes it in the settings
tree), not inside :mod:`rae_edge.alarms`: the settings tree imports no feature package, so
features may read the settings without an import circle. ``rae_edge.alarms.config``
re-exports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Scalar = bool | int | float | str


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlarmMapping(_Section):
    """How one tag, metric or event source becomes an alarm of one machine."""

    machine_id: str = Field(min_length=1, description="the machine this alarm belongs to")
    code: str | None = Field(default=None, max_length=64, description=(
        "fixed error code (for an alarm bit); unset: the code is read from the value "
        "through code_format, or from the event's text through code_pattern"))
    code_format: str = Field(default="{value}", description=(
        "how a value becomes the error code, e.g. 'E{value}' turns 404 into E404"))
    text: str | None = Field(default=None, max_length=500, description=(
        "alarm text; may use {code}, {value}, {machine_id}; unset: the event's message "
        "or '{code} on {machine_id}'"))
    severity: int = Field(default=500, ge=1, le=1000, description="OPC UA scale 1-1000")
    cleared_values: list[Scalar] = Field(
        default_factory=lambda: list[Scalar]([False, 0, ""]),
        description="values that mean 'no alarm' (the alarm clears when one is read)")

    @field_validator("code_format")
    @classmethod
    def _format_has_value(cls, v: str) -> str:
        try:
            v.format(value="1")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"code_format may use only {{value}}: {exc}") from None
        return v

    @field_validator("text")
    @classmethod
    def _text_placeholders(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                v.format(code="E1", value="1", machine_id="m")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"text may use {{code}}, {{value}}, {{machine_id}}: "
                                 f"{exc}") from None
        return v


class OpcUaTag(AlarmMapping):
    """A variable whose data changes are alarms (an alarm bit or an error-code register)."""

    node_id: str = Field(description="OPC UA node id, e.g. 'ns=2;s=Press1.ErrorCode'")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        from asyncua import ua

        try:
            ua.NodeId.from_string(v)
        except Exception as exc:  # asyncua raises bare Exceptions for bad strings
            raise ValueError(f"not an OPC UA node id ({exc})") from None
        return v


class OpcUaEvents(AlarmMapping):
    """Alarm & condition events whose ``SourceName`` is ``source_name``."""

    source_name: str = Field(min_length=1, description="the events' SourceName")
    code_pattern: str = Field(default=r"\b[A-Z]{1,3}\d{2,5}\b", description=(
        "regex finding the error code in ConditionName or Message when code is unset"))

    @field_validator("code_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v


class _SourceBase(_Section):
    name: str = Field(pattern=_NAME, description="the source's name (in incidents and /health)")
    username: str | None = Field(default=None, description="optional user name")
    password: SecretStr | None = Field(default=None, description="password of username")
    password_file: Path | None = Field(default=None, description="or read it from this file")

    @model_validator(mode="after")
    def _credentials(self) -> _SourceBase:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("password without username")
        return self

    def secret(self) -> str | None:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password is not None else None


class OpcUaSourceSettings(_SourceBase):
    """An OPC UA server (read-only: the node only subscribes and reads)."""

    type: Literal["opcua"]
    url: str = Field(description="opc.tcp://host:port/path")
    security: Literal["basic256sha256", "none"] = Field(
        default="basic256sha256",
        description="Basic256Sha256 Sign&Encrypt with the node's certificate, or none "
                    "(lab only: needs allow_insecure)")
    allow_insecure: bool = Field(default=False, description="permit security none")
    certificate_dir: Path | None = Field(default=None, description=(
        "where the node's client certificate and key live (generated on first start); "
        "default <data_dir>/alarms/pki/<name>"))
    server_certificate: Path | None = Field(
        default=None, description="pin the server's certificate (DER or PEM)")
    application_uri: str = Field(default="urn:rae-edge:alarms",
                                 description="the client's application URI (in its cert)")
    publishing_interval_ms: int = Field(default=100, ge=10, le=60_000)
    queue_per_tag: int = Field(default=100, ge=1, le=10_000, description=(
        "changes the server keeps per tag between two publishes (fast chattering)"))
    tags: list[OpcUaTag] = Field(default_factory=list)
    events: list[OpcUaEvents] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError("must be opc.tcp://host:port[/path]")
        return v

    @model_validator(mode="after")
    def _checks(self) -> OpcUaSourceSettings:
        if not self.tags and not self.events:
            raise ValueError("map at least one of tags or events")
        if self.security == "none" and not self.allow_insecure:
            raise ValueError("security 'none' is for a lab only: set allow_insecure: true")
        return self


class SparkplugMetric(AlarmMapping):
    """A Sparkplug B metric of an edge node (or one of its devices)."""

    edge_node: str = Field(min_length=1, description="Sparkplug edge node id")
    device: str | None = Field(default=None, description="device id; unset: a node metric")
    metric: str = Field(min_length=1, description="metric name as in the birth")


class SparkplugSourceSettings(_SourceBase):
    """A plant's MQTT broker carrying Sparkplug B (not the sync broker)."""

    type: Literal["sparkplug"]
    broker_url: str = Field(description="mqtt://host:port or mqtts://host:port")
    group_id: str = Field(min_length=1, description="Sparkplug group id")
    client_id: str | None = Field(default=None, description="default rae-edge-<name>")
    ca_file: Path | None = Field(default=None, description="CA for mqtts://")
    allow_insecure: bool = Field(default=False, description="permit mqtt:// off loopback")
    rebirth: bool = Field(default=True, description=(
        "send NCMD 'Node Control/Rebirth' on a seq gap or unknown alias (the only message "
        "the node publishes there)"))
    metrics: list[SparkplugMetric] = Field(min_length=1)

    @field_validator("broker_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://host:port or mqtts://host:port")
        return v

    @model_validator(mode="after")
    def _checks(self) -> SparkplugSourceSettings:
        host = urlsplit(self.broker_url).hostname or ""
        loopback = host in ("127.0.0.1", "::1", "localhost")
        if self.broker_url.startswith("mqtt://") and not loopback and not self.allow_insecure:
            raise ValueError("plain mqtt:// off loopback: use mqtts:// or set allow_insecure")
        keys = [(m.edge_node, m.device, m.metric) for m in self.metrics]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise ValueError(f"metric {'/'.join(p for p in dup if p)} is mapped twice")
        return self


AlarmSourceSettings = Annotated[OpcUaSourceSettings | SparkplugSourceSettings,
                                Field(discriminator="type")]


class SimulatedPlc(_Section):
    """Demo only: an OPC UA server in the node's process that raises an alarm now and
    then (the sample plant's press-1 E404). Never on a real floor."""

    port: int = Field(ge=1, le=65535, description="loopback port of the simulated PLC")
    every_s: float = Field(default=90.0, gt=0, description="seconds between two alarms")
    active_s: float = Field(default=20.0, gt=0, description="how long each alarm stays")


class AlarmsSettings(_Section):
    sources: list[AlarmSourceSettings] = Field(default_factory=list)
    queue_size: int = Field(default=1000, ge=1, description=(
        "distinct alarms waiting to be stored; repeats of a waiting one are coalesced"))
    chatter_window_s: float = Field(default=60.0, ge=0, description=(
        "an alarm raised again within this many seconds of its clear counts on the same "
        "incident"))
    retry_min_s: float = Field(default=0.5, gt=0, description="first reconnect delay")
    retry_max_s: float = Field(default=30.0, gt=0, description="longest reconnect delay")
    simulated_plc: SimulatedPlc | None = Field(default=None, description="demo only")

    @model_validator(mode="after")
    def _unique(self) -> AlarmsSettings:
        names = [s.name for s in self.sources]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"two sources are named {dup!r}")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s is below retry_min_s")
        return self
