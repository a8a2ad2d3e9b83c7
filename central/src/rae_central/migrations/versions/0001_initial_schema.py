"""Initial schema: nodes, seq tracking, messages, incidents, corrections, audit entries,
dead letters, fan-out queue, admin audit.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 13:36:52.099516
"""

# ruff: noqa: E501
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence('down_seq')))
    op.create_table('admin_audit',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('resource', sa.Text(), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_entries',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('entry', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'site_id', 'node_id', 'seq')
    )
    op.create_table('corrections',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('machine_id', sa.String(length=128), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('target_id', sa.String(length=128), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('audio_sha256', sa.String(length=64), nullable=True),
    sa.Column('hlc', sa.String(length=64), nullable=False),
    sa.Column('origin_site', sa.String(length=128), nullable=False),
    sa.Column('origin_node', sa.String(length=128), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('embedded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'id')
    )
    op.create_index('ix_corrections_hlc', 'corrections', ['tenant_id', 'hlc'], unique=False)
    op.create_index('ix_corrections_target', 'corrections', ['tenant_id', 'target_id', 'hlc'], unique=False)
    op.create_index('ix_corrections_unembedded', 'corrections', ['received_at'], unique=False, postgresql_where='embedded_at IS NULL')
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_dead_letters_at', 'dead_letters', ['tenant_id', 'at'], unique=False)
    op.create_table('fanout',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_fanout_created', 'fanout', ['created_at'], unique=False)
    op.create_table('incidents',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('machine_id', sa.String(length=128), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('symptom', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('origin_site', sa.String(length=128), nullable=False),
    sa.Column('origin_node', sa.String(length=128), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('embedded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'id')
    )
    op.create_index('ix_incidents_machine', 'incidents', ['tenant_id', 'machine_id', 'occurred_at'], unique=False)
    op.create_index('ix_incidents_unembedded', 'incidents', ['received_at'], unique=False, postgresql_where='embedded_at IS NULL')
    op.create_table('messages',
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('hlc', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_index('ix_messages_node_seq', 'messages', ['tenant_id', 'site_id', 'node_id', 'seq'], unique=False)
    op.create_table('nodes',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('max_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('messages', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('outbox_depth', sa.BigInteger(), nullable=True),
    sa.Column('outbox_lag_s', sa.Float(), nullable=True),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replay_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replay_requests', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'site_id', 'node_id')
    )
    op.create_table('seq_pending',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'site_id', 'node_id'], ['nodes.tenant_id', 'nodes.site_id', 'nodes.node_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'site_id', 'node_id', 'seq')
    )


def downgrade() -> None:
    op.drop_table('seq_pending')
    op.drop_table('nodes')
    op.drop_index('ix_messages_node_seq', table_name='messages')
    op.drop_table('messages')
    op.drop_index('ix_incidents_unembedded', table_name='incidents', postgresql_where='embedded_at IS NULL')
    op.drop_index('ix_incidents_machine', table_name='incidents')
    op.drop_table('incidents')
    op.drop_index('ix_fanout_created', table_name='fanout')
    op.drop_table('fanout')
    op.drop_index('ix_dead_letters_at', table_name='dead_letters')
    op.drop_table('dead_letters')
    op.drop_index('ix_corrections_unembedded', table_name='corrections', postgresql_where='embedded_at IS NULL')
    op.drop_index('ix_corrections_target', table_name='corrections')
    op.drop_index('ix_corrections_hlc', table_name='corrections')
    op.drop_table('corrections')
    op.drop_table('audit_entries')
    op.drop_table('admin_audit')
    op.execute(sa.schema.DropSequence(sa.Sequence('down_seq')))
