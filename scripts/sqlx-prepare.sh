#!/usr/bin/env bash
# Writes the offline query data (.sqlx/) that lets a fresh clone build the compile-checked
# queries (sqlx::query!) without a database. Run it after changing a query or a migration:
#
#   scripts/sqlx-prepare.sh           # rewrite .sqlx/ from the migrations
#   scripts/sqlx-prepare.sh --check   # fail if .sqlx/ is not what the code and migrations give
#
# It needs PostgreSQL on 127.0.0.1:5432 (trust auth, as the tests do); it creates and drops a
# scratch database of its own. No sqlx-cli: the macros write the data themselves when
# SQLX_OFFLINE_DIR is set.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
[ "${1:-}" = "--check" ] && check=true

db=leadlink_sqlx_$$
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -qAt "$@"; }
psql_admin -c "CREATE DATABASE $db"
trap 'psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
for migration in migrations/*.sql; do
  psql -h 127.0.0.1 -U postgres -d "$db" -q -v ON_ERROR_STOP=1 -f "$migration"
done

out=$(mktemp -d)
# Every crate file is recompiled so that every macro writes its query again.
touch src/lib.rs src/store/*.rs src/store/jobs/*.rs
DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db SQLX_OFFLINE_DIR=$out \
  cargo check --lib --quiet
if $check; then
  if ! diff -r -q "$out" .sqlx >/dev/null; then
    diff -r -q "$out" .sqlx || true
    echo "sqlx-prepare: .sqlx/ is out of date; run scripts/sqlx-prepare.sh and commit it" >&2
    exit 1
  fi
  echo "sqlx-prepare: .sqlx/ is up to date"
else
  rm -rf .sqlx
  mv "$out" .sqlx
  echo "sqlx-prepare: wrote $(ls .sqlx | wc -l) queries to .sqlx/"
fi
