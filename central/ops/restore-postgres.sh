#!/usr/bin/env bash
# Restores a dump made by backup-postgres.sh into an EMPTY database, after checking its sha256.
#   central/ops/restore-postgres.sh FILE.dump [DATABASE_URL]
# Runs in one transaction: the database ends up restored completely or not at all.
set -euo pipefail
FILE="${1:?usage: restore-postgres.sh FILE.dump [DATABASE_URL]}"
URL="${2:-${DATABASE_URL:?set DATABASE_URL or pass it}}"
URL="${URL/postgresql+psycopg:/postgresql:}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
PATH="${PG_BIN:+$PG_BIN:}$PATH"
if [ -f "$FILE.sha256" ]; then
    ( cd "$(dirname "$FILE")" && sha256sum --quiet -c "$(basename "$FILE").sha256" ) \
        || { echo "error: $FILE does not match its sha256: not restoring" >&2; exit 2; }
else
    echo "error: $FILE.sha256 is missing: not restoring an unchecked dump" >&2; exit 2
fi
TABLES="$(psql "$URL" -Atc "select count(*) from information_schema.tables where table_schema='public'")"
if [ "$TABLES" != "0" ]; then
    echo "error: the target database already has $TABLES tables: restore into an empty one" >&2
    exit 2
fi
pg_restore --no-owner --no-privileges --single-transaction --exit-on-error --dbname "$URL" "$FILE"
echo "restored $FILE"
