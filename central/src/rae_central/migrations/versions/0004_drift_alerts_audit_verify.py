"""Drift alerts from the edges (``drift_alerts``) and the audit chain verification state
per node (``audit_verified``); both under the tenant policy of migration 0002.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

APP_ROLE = "rae_app"
SETTING = "rae.tenant_id"
POLICY = "tenant_isolation"
TABLES = ("drift_alerts", "audit_verified")


def upgrade() -> None:
    op.create_table('drift_alerts',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('machine_ids', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('correction_ids', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('manual_section_ids', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('manual_sections', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('origin_site', sa.String(length=128), nullable=False),
    sa.Column('origin_node', sa.String(length=128), nullable=False),
    sa.Column('hlc', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'id')
    )
    op.create_table('audit_verified',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.String(length=128), nullable=False),
    sa.Column('node_id', sa.String(length=128), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.Column('entries', sa.BigInteger(), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'site_id', 'node_id')
    )
    for table in TABLES:
        # 0002's default privileges already granted rae_app the table; the policy is ours.
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO {APP_ROLE}')
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
        # as 0003 left the others: an empty setting is "no tenant"
        op.execute(
            f'CREATE POLICY {POLICY} ON "{table}" '
            f"USING (tenant_id = nullif(current_setting('{SETTING}', true), '')) "
            f"WITH CHECK (tenant_id = nullif(current_setting('{SETTING}', true), ''))")


def downgrade() -> None:
    op.drop_table('audit_verified')
    op.drop_table('drift_alerts')
