"""Numbered DuckDB schema migrations. Append only: never edit a released step.

The stored ``schema_version`` lets a node refuse a database written by a newer release
(a downgrade would silently misread it) and migrate an older one forward.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE machines (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            qr_code VARCHAR NOT NULL,
            site VARCHAR NOT NULL DEFAULT '',
            line VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        CREATE TABLE incidents (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            machine_id VARCHAR NOT NULL,
            occurred_at TIMESTAMPTZ NOT NULL,
            error_code VARCHAR,
            symptom VARCHAR NOT NULL,
            action VARCHAR,
            source VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        CREATE INDEX incidents_machine ON incidents (tenant_id, machine_id, occurred_at);
        CREATE TABLE corrections (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            machine_id VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            author VARCHAR NOT NULL,
            target_id VARCHAR,
            method VARCHAR NOT NULL,
            valid_from TIMESTAMPTZ NOT NULL,
            valid_to TIMESTAMPTZ,
            origin_node VARCHAR NOT NULL DEFAULT '',
            audio_sha256 VARCHAR,
            hlc VARCHAR NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        CREATE INDEX corrections_machine ON corrections (tenant_id, machine_id);
        CREATE INDEX corrections_target ON corrections (tenant_id, target_id);
        CREATE TABLE documents (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            title VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            chunks INTEGER NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY,
            tenant_id VARCHAR NOT NULL,
            "at" TIMESTAMPTZ NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            resource VARCHAR NOT NULL,
            memory_ids VARCHAR[] NOT NULL,
            prev_hash VARCHAR NOT NULL,
            hash VARCHAR NOT NULL
        );
        CREATE SEQUENCE outbox_seq START 1;
        CREATE TABLE outbox (
            seq BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'),
            tenant_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            payload JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE tokens (
            hash VARCHAR PRIMARY KEY,
            tenant_id VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            name VARCHAR NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            revoked_at TIMESTAMPTZ
        );
        """,
    ),
    (
        2,
        # drift alerts (rae_edge.drift): field corrections contradicting a manual's fix
        """
        CREATE TABLE drift_alerts (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            error_code VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            summary VARCHAR NOT NULL,
            machine_ids VARCHAR[] NOT NULL,
            correction_ids VARCHAR[] NOT NULL,
            manual_section_ids VARCHAR[] NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            acknowledged_at TIMESTAMPTZ,
            acknowledged_by VARCHAR,
            PRIMARY KEY (tenant_id, id)
        );
        """,
    ),
    (
        3,
        # voice notes (rae_edge.voice): an uploaded recording, its transcript and the
        # correction it became; one note per recording (tenant, audio_sha256)
        """
        CREATE TABLE voice_notes (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            machine_id VARCHAR NOT NULL,
            target_id VARCHAR,
            audio_sha256 VARCHAR NOT NULL,
            audio_ext VARCHAR NOT NULL,
            audio_bytes BIGINT NOT NULL,
            duration_s DOUBLE NOT NULL,
            author VARCHAR NOT NULL,
            author_token VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            transcript VARCHAR,
            prompt VARCHAR,
            correction_id VARCHAR,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id),
            UNIQUE (tenant_id, audio_sha256)
        );
        """,
    ),
    (
        4,
        # push bus (rae_edge.push): messages kept for reconnecting tablets (resume from a
        # cursor), trimmed by age/count; document ingest jobs (rae_edge.memory.jobs)
        """
        CREATE SEQUENCE push_seq START 1;
        CREATE TABLE push_messages (
            seq BIGINT PRIMARY KEY DEFAULT nextval('push_seq'),
            tenant_id VARCHAR NOT NULL,
            machine_id VARCHAR NOT NULL,
            type VARCHAR NOT NULL,
            payload JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX push_messages_machine ON push_messages (tenant_id, machine_id, seq);
        CREATE TABLE jobs (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            params JSON NOT NULL,
            progress JSON,
            result JSON,
            error VARCHAR,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        """,
    ),
    (
        5,
        # sync agent (rae_edge.sync_agent): its own stream position and clock, the sealed
        # envelopes kept until central acks them (and a while after, for replays), outbox
        # rows that cannot be sent (kept with the reason), and down messages applied
        """
        CREATE TABLE sync_state (
            key VARCHAR PRIMARY KEY,
            value VARCHAR NOT NULL
        );
        CREATE TABLE sync_sent (
            seq BIGINT PRIMARY KEY,
            message_id VARCHAR NOT NULL UNIQUE,
            outbox_seq BIGINT,
            type VARCHAR NOT NULL,
            envelope VARCHAR NOT NULL,
            sealed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            acked_at TIMESTAMPTZ
        );
        CREATE INDEX sync_sent_unacked ON sync_sent (acked_at, seq);
        CREATE TABLE sync_unsendable (
            outbox_seq BIGINT PRIMARY KEY,
            tenant_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            payload VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE sync_applied (
            message_id VARCHAR PRIMARY KEY,
            type VARCHAR NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        6,
        """
        -- Idempotency-Key answers (rae_edge.store.idempotency): one row per tenant and key;
        -- status 0 while the first request runs.
        CREATE TABLE idempotency_keys (
            tenant_id VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            route VARCHAR NOT NULL,
            fingerprint VARCHAR NOT NULL,
            status INTEGER NOT NULL DEFAULT 0,
            content_type VARCHAR,
            body BLOB,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, key)
        );
        """,
    ),
    (
        7,
        # structure found at ingest (rae_edge.ingest.structure via the indexer): a memory's
        # error codes, part/serial numbers and components, for exact matching and grouping;
        # "this fixed it" / "not relevant" verdicts (rae_edge.memory.feedback), local and
        # from other plants, with the query they answered and its embedding
        """
        CREATE TABLE memory_fields (
            tenant_id VARCHAR NOT NULL,
            memory_id VARCHAR NOT NULL,
            machine_id VARCHAR,
            field VARCHAR NOT NULL,
            value VARCHAR NOT NULL
        );
        CREATE INDEX memory_fields_value ON memory_fields (tenant_id, field, value);
        CREATE INDEX memory_fields_memory ON memory_fields (tenant_id, memory_id);
        CREATE TABLE feedback (
            tenant_id VARCHAR NOT NULL,
            id VARCHAR NOT NULL,
            memory_id VARCHAR NOT NULL,
            verdict VARCHAR NOT NULL,
            query VARCHAR,
            query_vector FLOAT[],
            machine_id VARCHAR,
            author VARCHAR NOT NULL,
            origin_node VARCHAR NOT NULL DEFAULT '',
            created_at TIMESTAMPTZ NOT NULL,
            stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, id)
        );
        CREATE INDEX feedback_memory ON feedback (tenant_id, memory_id);
        """,
    ),
    (
        8,
        # the audit log's memory ids as one JSON array text: DuckDB's write-ahead log wrote
        # ~1.2 KiB per element of a VARCHAR[] (60 KiB for a 50-incident briefing's entry),
        # so 50 scans/s wrote 4 MB/s of log and checkpointed every few seconds
        """
        CREATE TABLE audit_log_v8 (
            seq BIGINT PRIMARY KEY,
            tenant_id VARCHAR NOT NULL,
            "at" TIMESTAMPTZ NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            resource VARCHAR NOT NULL,
            memory_ids VARCHAR NOT NULL,
            prev_hash VARCHAR NOT NULL,
            hash VARCHAR NOT NULL
        );
        INSERT INTO audit_log_v8 SELECT seq, tenant_id, "at", actor, action, resource,
            to_json(memory_ids)::VARCHAR, prev_hash, hash FROM audit_log ORDER BY seq;
        DROP TABLE audit_log;
        ALTER TABLE audit_log_v8 RENAME TO audit_log;
        """,
    ),
    (
        9,
        # pushes a write owes its tablets: stored in the write's own transaction under one
        # token, which the messages that pay them carry (``owed``), so a crash between the
        # two leaves them to be sent when the node starts (rae_edge.push.PushBus.hold)
        """
        CREATE TABLE push_pending (
            id VARCHAR NOT NULL,
            tenant_id VARCHAR NOT NULL,
            machine_id VARCHAR NOT NULL,
            type VARCHAR NOT NULL,
            payload JSON NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        ALTER TABLE push_messages ADD COLUMN owed VARCHAR;
        """,
    ),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]

# Steps are numbered 1, 2, 3, ... with no repeat: a repeated number would be skipped on a
# store already at that version.
if [v for v, _ in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):
    raise RuntimeError("DuckDB migrations must be numbered 1..N without gaps or repeats")

