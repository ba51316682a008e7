#!/usr/bin/env bash
# Search benchmark: seeds ROWS messages (default 1,000,000) into a throwaway cluster
# (.pgdata-bench, fresh database), then measures, in one run:
#   - the cost of the Korean-friendly search column: index sizes, and insert time of the
#     same 100,000 rows with it, with a plain to_tsvector('simple') column, and without;
#   - p50/p99 latency of selective and common queries, in one room (1/10 of the rows) and
#     across all rooms, through HTTP (release chat-server) and as the bare SQL;
#   - EXPLAIN ANALYZE of each query (written to Benchmarks/search/plans.txt).
# Usage: scripts/bench-search.sh [rows]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages
ROWS="${1:-1000000}"
start_local_postgres "$ROOT/.pgdata-bench" 54331
trap 'kill "${SERVER_PID:-0}" 2>/dev/null; stop_local_postgres "$ROOT/.pgdata-bench"' EXIT
recreate_database
swift build -c release --product chat-server >&2
BIN="$(swift build -c release --show-bin-path)/chat-server"
"$BIN" migrate >&2

log "seeding $ROWS messages"
start=$(date +%s.%N)
psql -q -X -v rows="$ROWS" -f Benchmarks/search/generate.sql "$DATABASE_URL"
log "seeded in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"

log "measuring write cost"
psql -q -X "$DATABASE_URL" <<'SQL' >&2
CREATE TABLE cost_none (LIKE messages INCLUDING DEFAULTS);
ALTER TABLE cost_none DROP COLUMN search_document;
CREATE TABLE cost_simple (LIKE cost_none INCLUDING DEFAULTS);
ALTER TABLE cost_simple ADD COLUMN doc tsvector GENERATED ALWAYS AS (to_tsvector('simple', COALESCE(message_content, ''))) STORED;
CREATE INDEX ON cost_simple USING gin (doc);
CREATE TABLE cost_bigram (LIKE cost_none INCLUDING DEFAULTS);
ALTER TABLE cost_bigram ADD COLUMN doc tsvector GENERATED ALWAYS AS (chat_search_document(message_content)) STORED;
CREATE INDEX ON cost_bigram USING gin (doc);
CREATE TEMP TABLE sample AS SELECT * FROM messages ORDER BY message_id LIMIT 100000;
SQL
insert_ms() {
    psql -X -q "$DATABASE_URL" -c '\timing on' -c "INSERT INTO $1 SELECT message_id, room_id, sender_id, message_content, message_type, file_path, file_name, file_size, file_content_type, reply_to_message_id, client_message_id, is_edited, is_deleted, edited_at, deleted_at, created_at, updated_at FROM messages ORDER BY message_id LIMIT 100000" |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
none_ms=$(insert_ms cost_none); simple_ms=$(insert_ms cost_simple); bigram_ms=$(insert_ms cost_bigram)

echo "## Write cost (100,000 rows, one INSERT ... SELECT each)"
echo
echo "| search column | insert time (ms) | vs none |"
echo "|---|---:|---:|"
python3 -c "
n, s, b = $none_ms, $simple_ms, $bigram_ms
print(f'| none | {n:.0f} | 1.00 |')
print(f'| to_tsvector(\'simple\') + GIN | {s:.0f} | {s/n:.2f} |')
print(f'| chat_search_document (words + Hangul bigrams) + GIN | {b:.0f} | {b/n:.2f} |')"
echo
echo "## Sizes with $ROWS messages"
echo
psql -X -A -F ' | ' -t "$DATABASE_URL" <<'SQL' | sed 's/^/| /; s/$/ |/' | (echo "| relation | size |"; echo "|---|---:|"; cat)
SELECT 'messages (heap, incl. search_document)', pg_size_pretty(pg_relation_size('messages'))
UNION ALL SELECT 'messages_search_document_idx (GIN, words + bigrams)', pg_size_pretty(pg_relation_size('messages_search_document_idx'))
UNION ALL SELECT 'GIN on 100k rows, simple / bigram', pg_size_pretty(pg_relation_size((SELECT indexrelid FROM pg_index WHERE indrelid = 'cost_simple'::regclass))) || ' / ' || pg_size_pretty(pg_relation_size((SELECT indexrelid FROM pg_index WHERE indrelid = 'cost_bigram'::regclass)));
SQL
psql -q -X "$DATABASE_URL" -c "DROP TABLE cost_none, cost_simple, cost_bigram" >&2

log "starting chat-server"
JWT_SECRET="bench-secret-bench-secret-bench-secret-1234" PORT=18090 LOG_LEVEL=warning MIGRATE_ON_START=false \
    RETENTION_INTERVAL_SECONDS=0 "$BIN" serve >/dev/null 2>&1 &
SERVER_PID=$!
for i in $(seq 1 100); do curl -fs http://127.0.0.1:18090/health >/dev/null && break; sleep 0.2; done

ROOM=$(psql -X -A -t "$DATABASE_URL" -c "SELECT room_id FROM rooms WHERE room_name LIKE 'bench %' ORDER BY room_id LIMIT 1")
echo
echo "## Query latency (sequential requests; HTTP = release chat-server over loopback, SQL = the same statement through pgbench)"
echo
python3 Benchmarks/search/measure.py "$DATABASE_URL" "$ROOM" 18090 "Benchmarks/search/plans.txt"
