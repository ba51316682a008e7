#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL (.pgdata-test/, port 54330)
# with a freshly created database. The real-time tests start chat-server processes (and
# nginx) themselves. Extra arguments go to `swift test`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages nginx   # the real-time tests run two instances behind nginx

start_local_postgres "$ROOT/.pgdata-test" "${TEST_PG_PORT:-54330}"
trap 'stop_local_postgres "$ROOT/.pgdata-test"' EXIT
recreate_database

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
log "running tests"
export CHAT_SERVER_BINARY="$(swift build --show-bin-path)/chat-server"
swift test --skip-build "$@"
log "running the Postgres wrapper tests again in thread-pool I/O mode"
POSTGRES_IO_MODE=threadPool swift test --skip-build --filter PostgresTests
