"""Central is the store of record for what goes down: a fan-out row stays until THAT
node acks applying it (not when the broker takes it), each row keeps the message id and
position (``id``, also the envelope's ``seq``) it was sealed with, and when it was last
sent; ``nodes`` gets the node's own down position (``down_cursor``, from its resume
message), when it last resumed, how many down messages it acked, and a flag (e.g. a clock
far ahead) for the console. ``rae_fleet_downstream()`` is the operator's view of it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

APP_ROLE = "rae_app"
_DEFINER = "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp"
FLEET_DOWNSTREAM = f"""
    CREATE FUNCTION rae_fleet_downstream() RETURNS TABLE (
      tenant_id text, site_id text, node_id text, down_pending bigint,
      down_oldest timestamptz, down_cursor bigint, down_acked bigint,
      resumed_at timestamptz, flag text, flagged_at timestamptz) {_DEFINER} AS $$
      SELECT n.tenant_id, n.site_id, n.node_id,
             (SELECT count(*) FROM public.fanout f WHERE f.tenant_id = n.tenant_id
              AND f.site_id = n.site_id AND f.node_id = n.node_id),
             (SELECT min(f.created_at) FROM public.fanout f WHERE f.tenant_id = n.tenant_id
              AND f.site_id = n.site_id AND f.node_id = n.node_id),
             n.down_cursor, n.down_acked, n.resumed_at, n.flag, n.flagged_at
      FROM public.nodes n ORDER BY 1, 2, 3
    $$"""


def upgrade() -> None:
    op.add_column('fanout', sa.Column('message_id', sa.String(length=128), nullable=False,
                                      server_default=''))
    op.add_column('fanout', sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('fanout', sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
    op.create_index('ix_fanout_node', 'fanout', ['tenant_id', 'site_id', 'node_id', 'id'])
    op.add_column('nodes', sa.Column('down_cursor', sa.BigInteger(), nullable=False,
                                     server_default='0'))
    op.add_column('nodes', sa.Column('down_acked', sa.BigInteger(), nullable=False,
                                     server_default='0'))
    op.add_column('nodes', sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('nodes', sa.Column('flag', sa.Text(), nullable=True))
    op.add_column('nodes', sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=True))
    # as 0003 did for the tables its definer functions read
    op.execute('CREATE POLICY definer_read ON "fanout" FOR SELECT TO CURRENT_USER USING (true)')
    op.execute(FLEET_DOWNSTREAM)
    op.execute("REVOKE ALL ON FUNCTION rae_fleet_downstream() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION rae_fleet_downstream() TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS rae_fleet_downstream()")
    op.execute('DROP POLICY IF EXISTS definer_read ON "fanout"')
    for col in ('flagged_at', 'flag', 'resumed_at', 'down_acked', 'down_cursor'):
        op.drop_column('nodes', col)
    op.drop_index('ix_fanout_node', table_name='fanout')
    for col in ('attempts', 'sent_at', 'message_id'):
        op.drop_column('fanout', col)
