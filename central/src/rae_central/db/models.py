"""Central's tables (SQLAlchemy 2 declarative). Alembic migrations in
``rae_central.migrations`` create them; these classes are the code's view.

Every table carries ``tenant_id`` and every query filters on it, so row-level security
(``tenant_id = current_setting('rae.tenant')``) can be switched on without a rewrite.
Nodes are keyed by ``(tenant_id, site_id, node_id)``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


#: seq of central's down messages: one stream position that grows across every worker
DOWN_SEQ = Sequence("down_seq", metadata=Base.metadata)


def _ts() -> DateTime:
    return DateTime(timezone=True)


class Node(Base):
    """An enrolled edge node: its public key, and what central knows of its stream."""

    __tablename__ = "nodes"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)  # as NodeIdentity writes it
    enrolled_at: Mapped[datetime] = mapped_column(_ts())
    revoked_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    last_seen: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    #: highest seq below which every seq has arrived (the contiguous watermark)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: highest seq seen at all; ``max_seq - last_seq - len(pending)`` seqs are missing
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    messages: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    outbox_depth: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    outbox_lag_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    status_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    replay_requested_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    replay_requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the node's own down position (its resume message): highest fan-out seq applied
    down_cursor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    down_acked: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    resumed_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    #: why the console should look at this node (e.g. its clock far ahead), and since when
    flag: Mapped[str | None] = mapped_column(Text, nullable=True)
    flagged_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)


class SeqPending(Base):
    """Seqs that arrived above a node's watermark (out of order, or after a gap)."""

    __tablename__ = "seq_pending"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(_ts())
    __table_args__ = (ForeignKeyConstraint(
        ["tenant_id", "site_id", "node_id"],
        ["nodes.tenant_id", "nodes.site_id", "nodes.node_id"], ondelete="CASCADE"),)


class Message(Base):
    """Every accepted message once: the primary key makes ingest idempotent."""

    __tablename__ = "messages"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    site_id: Mapped[str] = mapped_column(String(128))
    node_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    hlc: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())
    __table_args__ = (Index("ix_messages_node_seq", "tenant_id", "site_id", "node_id", "seq"),)


class IncidentRow(Base):
    __tablename__ = "incidents"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    machine_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(_ts())
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    symptom: Mapped[str] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    origin_site: Mapped[str] = mapped_column(String(128))
    origin_node: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())
    embedded_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    __table_args__ = (
        Index("ix_incidents_machine", "tenant_id", "machine_id", "occurred_at"),
        Index("ix_incidents_unembedded", "received_at", postgresql_where="embedded_at IS NULL"),
    )


class CorrectionRow(Base):
    """Append-only reflective memory; several corrections of one target all survive,
    ordered by their hybrid logical clock ``hlc``."""

    __tablename__ = "corrections"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    machine_id: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    target_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    method: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime] = mapped_column(_ts())
    valid_to: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    audio_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hlc: Mapped[str] = mapped_column(String(64))
    origin_site: Mapped[str] = mapped_column(String(128))
    origin_node: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())
    embedded_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    __table_args__ = (
        Index("ix_corrections_hlc", "tenant_id", "hlc"),
        Index("ix_corrections_target", "tenant_id", "target_id", "hlc"),
        Index("ix_corrections_unembedded", "received_at",
              postgresql_where="embedded_at IS NULL"),
    )


class FeedbackRow(Base):
    """A verdict on a memory ("this fixed it" / "not relevant") from an edge: an
    append-only fact, one row per id, with the plant that recorded it
    (:mod:`rae_central.feedback`)."""

    __tablename__ = "feedback"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    memory_id: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(16))
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    machine_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(_ts())
    origin_site: Mapped[str] = mapped_column(String(128))
    origin_node: Mapped[str] = mapped_column(String(128))
    hlc: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())
    __table_args__ = (Index("ix_feedback_memory", "tenant_id", "memory_id"),
                      Index("ix_feedback_received", "tenant_id", "received_at"))


class AuditRow(Base):
    """An edge node's audit entry, as synced (verified by :mod:`rae_central.audit_chain`)."""

    __tablename__ = "audit_entries"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry: Mapped[dict[str, object]] = mapped_column(JSONB)
    message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())


class DeadLetter(Base):
    """A message that could not be accepted, kept raw with the reason."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))  # from the topic; '' if unreadable
    site_id: Mapped[str] = mapped_column(String(128), default="")
    node_id: Mapped[str] = mapped_column(String(128), default="")
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_ts())
    __table_args__ = (Index("ix_dead_letters_at", "tenant_id", "at"),)


class Fanout(Base):
    """A down message owed to a node, written in the ingest transaction and kept until
    THAT node acks applying it (the broker is a transport, not a store): sent at once,
    again when the node resumes (every connect) or stays silent about it. ``id`` is also
    the sealed envelope's ``seq``: the node's position in what comes down to it."""

    __tablename__ = "fanout"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    site_id: Mapped[str] = mapped_column(String(128))
    node_id: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(_ts())
    message_id: Mapped[str] = mapped_column(String(128), default="", server_default="")
    sent_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (Index("ix_fanout_created", "created_at"),
                      Index("ix_fanout_node", "tenant_id", "site_id", "node_id", "id"))


class AdminAudit(Base):
    """What administrators did at central (enroll, revoke)."""

    __tablename__ = "admin_audit"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(_ts())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict, server_default="{}")



class DriftAlertRow(Base):
    """An edge's drift alert, its newest version by HLC (:mod:`rae_central.drift_alerts`)."""

    __tablename__ = "drift_alerts"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    error_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    machine_ids: Mapped[list[str]] = mapped_column(JSONB)
    correction_ids: Mapped[list[str]] = mapped_column(JSONB)
    manual_section_ids: Mapped[list[str]] = mapped_column(JSONB)
    manual_sections: Mapped[list[dict[str, object]]] = mapped_column(JSONB)
    created_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    origin_site: Mapped[str] = mapped_column(String(128))
    origin_node: Mapped[str] = mapped_column(String(128))
    hlc: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(_ts())
    updated_at: Mapped[datetime] = mapped_column(_ts())


class AuditVerified(Base):
    """Per node, the last audit entry central verified (:mod:`rae_central.audit_verify`)."""

    __tablename__ = "audit_verified"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    entries: Mapped[int] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = mapped_column(_ts())
