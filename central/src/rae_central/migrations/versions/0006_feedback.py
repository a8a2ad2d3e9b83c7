"""Verdicts from the edges ("this fixed it" / "not relevant", ``rae_sync.domain.Feedback``):
the ``feedback`` table, one row per verdict id (append-only facts; a repeat is a no-op),
under the tenant policy of migration 0002, with the plant (site, node) that recorded it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

APP_ROLE = "rae_app"
SETTING = "rae.tenant_id"
POLICY = "tenant_isolation"


def upgrade() -> None:
    op.create_table('feedback',
    sa.Column('tenant_id', sa.String(length=128), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('memory_id', sa.String(length=200), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('query', sa.Text(), nullable=True),
    sa.Column('machine_id', sa.String(length=128), nullable=True),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('origin_site', sa.String(length=128), nullable=False),
    sa.Column('origin_node', sa.String(length=128), nullable=False),
    sa.Column('hlc', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'id')
    )
    op.create_index('ix_feedback_memory', 'feedback', ['tenant_id', 'memory_id'])
    op.create_index('ix_feedback_received', 'feedback', ['tenant_id', 'received_at'])
    # 0002's default privileges already granted rae_app the table; the policy is ours
    # (as 0004 did for its tables).
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "feedback" TO {APP_ROLE}')
    op.execute('ALTER TABLE "feedback" ENABLE ROW LEVEL SECURITY')
    op.execute('ALTER TABLE "feedback" FORCE ROW LEVEL SECURITY')
    op.execute(
        f'CREATE POLICY {POLICY} ON "feedback" '
        f"USING (tenant_id = nullif(current_setting('{SETTING}', true), '')) "
        f"WITH CHECK (tenant_id = nullif(current_setting('{SETTING}', true), ''))")


def downgrade() -> None:
    op.drop_index('ix_feedback_received', table_name='feedback')
    op.drop_index('ix_feedback_memory', table_name='feedback')
    op.drop_table('feedback')
