"""The application's narrow cross-tenant needs (see rae_central.rls): SECURITY DEFINER
functions for the node key lookup, the list of tenants and the operator's fleet health
view; an INSERT-only policy for dead letters of an unknown tenant; an empty tenant
setting matches nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 17:40:00
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

APP_ROLE = "rae_app"
SETTING = "rae.tenant_id"
POLICY = "tenant_isolation"
# Tables the definer functions read across tenants: their owner (who runs the
# migrations, and can switch RLS off anyway) gets a read policy so the functions also
# work when the owner is not a superuser.
DEFINER_READS = ("nodes", "seq_pending", "dead_letters")

_DEFINER = "LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp"

FUNCTIONS = {
    "rae_node_key(text, text, text)": f"""
        CREATE FUNCTION rae_node_key(p_tenant text, p_site text, p_node text)
        RETURNS TABLE (public_key text, revoked boolean) {_DEFINER} AS $$
          SELECT n.public_key, n.revoked_at IS NOT NULL FROM public.nodes n
          WHERE n.tenant_id = p_tenant AND n.site_id = p_site AND n.node_id = p_node
        $$""",
    "rae_tenants()": f"""
        CREATE FUNCTION rae_tenants() RETURNS SETOF text {_DEFINER} AS $$
          SELECT DISTINCT tenant_id FROM public.nodes ORDER BY 1
        $$""",
    "rae_fleet_nodes()": f"""
        CREATE FUNCTION rae_fleet_nodes() RETURNS TABLE (
          tenant_id text, site_id text, node_id text, enrolled_at timestamptz,
          revoked_at timestamptz, last_seen timestamptz, last_seq bigint, max_seq bigint,
          messages bigint, outbox_depth bigint, outbox_lag_s double precision,
          status_at timestamptz, replay_requests integer, pending bigint,
          dead_letters bigint) {_DEFINER} AS $$
          SELECT n.tenant_id, n.site_id, n.node_id, n.enrolled_at, n.revoked_at,
                 n.last_seen, n.last_seq, n.max_seq, n.messages, n.outbox_depth,
                 n.outbox_lag_s, n.status_at, n.replay_requests,
                 (SELECT count(*) FROM public.seq_pending p WHERE p.tenant_id = n.tenant_id
                  AND p.site_id = n.site_id AND p.node_id = n.node_id),
                 (SELECT count(*) FROM public.dead_letters d WHERE d.tenant_id = n.tenant_id
                  AND d.site_id = n.site_id AND d.node_id = n.node_id)
          FROM public.nodes n ORDER BY 1, 2, 3
        $$""",
    "rae_fleet_gaps(integer)": f"""
        CREATE FUNCTION rae_fleet_gaps(p_per_node integer) RETURNS TABLE (
          tenant_id text, site_id text, node_id text, from_seq bigint, to_seq bigint)
          {_DEFINER} AS $$
          SELECT tenant_id, site_id, node_id, from_seq, to_seq FROM (
            SELECT g.*, row_number() OVER (PARTITION BY g.tenant_id, g.site_id, g.node_id
                                           ORDER BY g.from_seq) AS k
            FROM (SELECT p.tenant_id, p.site_id, p.node_id,
                         coalesce(lag(p.seq) OVER w, n.last_seq) + 1 AS from_seq,
                         p.seq - 1 AS to_seq
                  FROM public.seq_pending p JOIN public.nodes n
                    ON n.tenant_id = p.tenant_id AND n.site_id = p.site_id
                   AND n.node_id = p.node_id
                  WINDOW w AS (PARTITION BY p.tenant_id, p.site_id, p.node_id
                               ORDER BY p.seq)) g
            WHERE g.to_seq >= g.from_seq) r
          WHERE k <= p_per_node ORDER BY 1, 2, 3, 4
        $$""",
    "rae_fleet_dead_letters(integer)": f"""
        CREATE FUNCTION rae_fleet_dead_letters(p_limit integer) RETURNS TABLE (
          id bigint, tenant_id text, site_id text, node_id text, topic text, reason text,
          at timestamptz, size integer) {_DEFINER} AS $$
          SELECT d.id, d.tenant_id, d.site_id, d.node_id, d.topic, d.reason, d.at,
                 length(d.payload) FROM public.dead_letters d
          ORDER BY d.id DESC LIMIT least(greatest(p_limit, 1), 1000)
        $$""",
}


def _tenant_tables() -> list[str]:
    rows = op.get_bind().execute(text(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
        "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
        "WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' "
        "ORDER BY c.table_name"))
    return [str(r[0]) for r in rows]


def upgrade() -> None:
    # An empty setting is "no tenant", never a tenant called ''.
    for table in _tenant_tables():
        op.execute(
            f'ALTER POLICY {POLICY} ON "{table}" '
            f"USING (tenant_id = nullif(current_setting('{SETTING}', true), '')) "
            f"WITH CHECK (tenant_id = nullif(current_setting('{SETTING}', true), ''))")
    op.execute(f"CREATE POLICY unknown_tenant_insert ON dead_letters FOR INSERT TO {APP_ROLE} "
               f"WITH CHECK (tenant_id = '')")
    for table in DEFINER_READS:
        op.execute(f'CREATE POLICY definer_read ON "{table}" FOR SELECT TO CURRENT_USER '
                   f"USING (true)")
    for signature, ddl in FUNCTIONS.items():
        op.execute(ddl)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    for table in DEFINER_READS:
        op.execute(f'DROP POLICY IF EXISTS definer_read ON "{table}"')
    op.execute("DROP POLICY IF EXISTS unknown_tenant_insert ON dead_letters")
    for table in _tenant_tables():
        op.execute(
            f'ALTER POLICY {POLICY} ON "{table}" '
            f"USING (tenant_id = current_setting('{SETTING}', true)) "
            f"WITH CHECK (tenant_id = current_setting('{SETTING}', true))")
