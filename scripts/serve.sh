#!/usr/bin/env bash
# Starts the chat server on port 8000 (PORT). Without DATABASE_URL it runs a throwaway
# PostgreSQL under .pgdata/ (git-ignored) on 127.0.0.1:54329 and a development JWT secret.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages

if [ -z "${DATABASE_URL:-}" ]; then
    start_local_postgres "$ROOT/.pgdata" "${LOCAL_PG_PORT:-54329}"
    ensure_database
    export CHAT_ENV="${CHAT_ENV:-development}"
fi

log "building chat-server (release)"
swift build -c release --product chat-server
log "serving on ${HOST:-0.0.0.0}:${PORT:-8000}"
exec "$(swift build -c release --show-bin-path)/chat-server" serve "$@"
