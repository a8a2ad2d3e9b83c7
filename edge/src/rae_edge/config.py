"""The edge node's one settings tree: defaults < YAML/TOML file < ``RAE_*`` environment.

Unknown keys are an error that names the key (``extra="forbid"`` everywhere).
Nested keys come from the environment with ``__``: ``RAE_API__PORT=8080``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rae_edge.alarm_settings import AlarmsSettings
from rae_sync.layered_settings import LayeredSources, load_layered


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiSettings(_Section):
    host: str = Field(default="127.0.0.1", description="address the tablet API binds to")
    port: int = Field(default=8470, ge=0, le=65535, description="TCP port of the tablet API")
    max_upload_mb: int = Field(default=50, ge=1, description="largest accepted upload")


class EmbeddingSettings(_Section):
    batch_size: int = Field(default=32, ge=1, le=1024, description="sentences per ONNX call")
    max_tokens: int = Field(default=256, ge=16, le=512, description="truncation length")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0 = auto)")


class QrSettings(_Section):
    label_pattern: str | None = Field(
        default=None,
        description="regex with a named group 'id' for a plant's own QR label format",
    )


class VoiceSettings(_Section):
    model: Literal["tiny.en", "base"] = Field(default="tiny.en", description="Whisper model")
    auto_confirm: bool = Field(default=False, description="confirm transcripts without review")
    max_seconds: float = Field(default=120.0, gt=0, description="longest accepted note")
    max_mb: int = Field(default=20, ge=1, description="largest accepted audio upload")
    queue_size: int = Field(default=32, ge=1, description="bounded transcription queue")


class SyncSettings(_Section):
    mqtt_url: str | None = Field(default=None, description="mqtt[s]://host:port; None = off")
    enroll_file: Path | None = Field(default=None, description="identity issued by central")
    outbox_limit: int = Field(default=1_000_000, ge=1, description="alert above this depth")
    batch_size: int = Field(default=200, ge=1, description="messages per publish batch")

    @property
    def enabled(self) -> bool:
        """The one rule for "sync is on": an identity (``enroll_file``, whose broker URL may
        be inside it) or a broker URL is set. Then every fact meant for central (incidents,
        corrections, audit entries, drift alerts) is queued in the outbox; with a URL but
        no identity yet the agent does not run and the outbox keeps the rows for it."""
        return self.mqtt_url is not None or self.enroll_file is not None


class LlmSettings(_Section):
    """An OpenAI-compatible chat-completions endpoint for ``POST /api/v1/ask`` (off by
    default: the node answers 503 there until one is configured)."""

    enabled: bool = Field(default=False, description="answer /ask with this endpoint")
    base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:11434/v1 "
                                 "(Ollama), http://gpu-host:8000/v1 (vLLM)")
    model: str = Field(default="", description="model name as the endpoint knows it")
    api_key_env: str | None = Field(default=None, description="environment variable holding "
                                    "the API key (never the key itself in a file)")
    api_key_file: Path | None = Field(default=None, description="file holding the API key")
    remote: bool = Field(default=False, description="the endpoint is outside the plant: "
                         "personal data is scrubbed from every request (placeholders, "
                         "restored in the answer)")
    structured_output: Literal["json_schema", "json_object", "off"] = Field(
        default="json_schema", description="how the answer's JSON schema (citations limited "
        "to the pack's ids) is sent: 'json_schema' (OpenAI, vLLM, Ollama, llama.cpp's own "
        "llama-server), 'json_object' (llama-cpp-python's server: type json_object with a "
        "schema), 'off' (plain text; unknown citations are still removed)")
    timeout_s: float = Field(default=60.0, gt=0, description="whole-answer timeout (504)")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="connect timeout")
    retries: int = Field(default=1, ge=0, le=5,
                         description="resends of a request that never reached the LLM "
                                     "(a connection error; a timeout is never resent)")
    max_answer_tokens: int = Field(default=400, ge=16, le=8192, description="answer cap")
    budget_tokens: int = Field(default=2000, ge=100, le=200_000,
                               description="default context budget of /ask")
    temperature: float = Field(default=0.0, ge=0, le=2, description="sampling temperature")


class NodeSettings(_Section):
    tenant_id: str = Field(default="demo", description="tenant of this node")
    site_id: str = Field(default="plant-1", description="site (plant) of this node")
    node_id: str = Field(default="node-1", description="this node's id within the site")


class EdgeSettings(LayeredSources, BaseSettings):
    """Everything an edge node can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="RAE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default=Path("data/edge"), description="node's data folder")
    backup_root: Path | None = Field(
        default=None,
        description="the only folder the API may write backups into (default: "
        "'<data_dir>-backups', where the backup timer writes)",
    )
    abbreviations: list[Path] = Field(
        default_factory=list, description="extra abbreviation CSVs (abbr,expansion)"
    )
    node: NodeSettings = Field(default_factory=NodeSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    qr: QrSettings = Field(default_factory=QrSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    alarms: AlarmsSettings = Field(
        default_factory=AlarmsSettings,
        description="machine alarm sources (OPC UA, Sparkplug B): see the README")
    llm: LlmSettings = Field(default_factory=LlmSettings)

    @property
    def sync_on(self) -> bool:
        """Whether facts are queued for central: :attr:`SyncSettings.enabled`."""
        return self.sync.enabled

    def backups_dir(self) -> Path:
        """Where API-requested backups may go (``backup_root`` or ``<data_dir>-backups``)."""
        return self.backup_root or self.data_dir.with_name(self.data_dir.name + "-backups")


def load(config_file: Path | None = None, **overrides: Any) -> EdgeSettings:
    """Builds the settings: file, then environment, then explicit ``overrides``.

    ``overrides`` take nested dicts (``api={"port": 0}``); ``None`` values are ignored so
    CLI flags that were not given do not mask the file or the environment.
    """
    flags = {k: v for k, v in overrides.items() if v is not None}
    return load_layered(EdgeSettings, config_file, flags)
