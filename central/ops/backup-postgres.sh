#!/usr/bin/env bash
# Dumps central's Postgres database into OUT_DIR as one custom-format archive + its sha256.
#   central/ops/backup-postgres.sh OUT_DIR            (DATABASE_URL from the environment)
#   central/ops/backup-postgres.sh OUT_DIR postgresql://user@host:5432/rae
# pg_dump takes one consistent MVCC snapshot: ingest workers keep writing meanwhile.
set -euo pipefail
OUT="${1:?usage: backup-postgres.sh OUT_DIR [DATABASE_URL]}"
URL="${2:-${DATABASE_URL:?set DATABASE_URL or pass it}}"
URL="${URL/postgresql+psycopg:/postgresql:}"   # an SQLAlchemy URL works too
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
PATH="${PG_BIN:+$PG_BIN:}$PATH"
mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
FILE="$OUT/central-$STAMP.dump"
pg_dump --format=custom --compress=6 --no-owner --no-privileges --file "$FILE.partial" "$URL"
mv "$FILE.partial" "$FILE"
( cd "$OUT" && sha256sum "$(basename "$FILE")" > "$(basename "$FILE").sha256" )
echo "$FILE"
