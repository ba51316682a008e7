#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL (.pgdata-test/, port 54330)
# with a freshly created database, a streaming replica of it (.pgdata-test-replica/, the
# next port) and PgBouncer in front of it (.pgbouncer-test/, port 64330). The real-time tests start chat-server processes (and
# nginx) themselves. Extra arguments go to `swift test`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages nginx   # the real-time tests run two instances behind nginx

start_local_postgres "$ROOT/.pgdata-test" "${TEST_PG_PORT:-54330}"
trap 'stop_pgbouncer "$ROOT/.pgbouncer-test"; stop_local_postgres "$ROOT/.pgdata-test-replica"; stop_local_postgres "$ROOT/.pgdata-test"' EXIT
recreate_database

log "checking that docs/scaling.md's capacity table is what Benchmarks/ gives"
python3 "$ROOT/scripts/capacity.py" --check
log "checking the Compose deployment (deploy/)"
bash "$ROOT/scripts/check-deploy.sh"
log "building"
swift build --build-tests
log "migrating with psql -1 -f (checks that the files apply by hand too), then with chat-server migrate"
for file in "$ROOT"/sql/[0-9]*.sql; do
    psql -q -X -v ON_ERROR_STOP=1 -1 -f "$file" "$DATABASE_URL" >/dev/null
done
recreate_database
"$(swift build --show-bin-path)/chat-server" migrate
primary_port="${DATABASE_URL##*:}"
primary_port="${primary_port%%/*}"
# The read-replica tests use a streaming replica of this cluster, and the PgBouncer tests a
# transaction-pooling PgBouncer in front of it.
start_replica "$primary_port" "$ROOT/.pgdata-test-replica" "$((primary_port + 1))"
start_pgbouncer "$ROOT/.pgbouncer-test" "${TEST_PGBOUNCER_PORT:-64330}" "$primary_port"
export TEST_REPLICA_URL="$REPLICA_URL" TEST_REPLICA_DATADIR="$ROOT/.pgdata-test-replica" TEST_PG_BIN="$(pg_bin)"
export TEST_PGBOUNCER_URL="$PGBOUNCER_URL"
log "running tests"
export CHAT_SERVER_BINARY="$(swift build --show-bin-path)/chat-server"
swift test --skip-build "$@"
if [ $# -eq 0 ]; then
    log "running the multi-instance tests again with the servers' pools behind PgBouncer (transaction pooling)"
    CHAT_TEST_DATABASE_PATH=pgbouncer swift test --skip-build \
        --filter 'ClusterTests|ChangeSequenceTests|everySendOfABatchGetsItsOwnAnswer|psqlInsertsInterleaveWithBatchedSendsInOrder'
fi
log "running the Postgres wrapper tests again in thread-pool I/O mode"
POSTGRES_IO_MODE=threadPool swift test --skip-build --filter PostgresTests
