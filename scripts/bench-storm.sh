#!/usr/bin/env bash
# Reconnect storm (issue 8): one room of USERS members with SOCKETS sockets spread over two
# release instances; messages are posted at RATE/s throughout; every connection drops at
# once and reconnects at once with `last_seq`. Prints the tool's JSON result: time until
# every socket had caught up, whether every socket ended with exactly the room's id
# sequence, and the instances' RSS. Uses a throwaway cluster under .pgdata-bench/ (port
# 54331). Extra arguments go to Benchmarks/storm/storm.go (-sockets, -rate, -users, ...).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_packages
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
    log "installing golang-go golang-github-gorilla-websocket-dev (the storm's client)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
start_local_postgres "$ROOT/.pgdata-bench" 54331
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; stop_local_postgres "$ROOT/.pgdata-bench"' EXIT
recreate_database
swift build -c release --product chat-server >&2
BIN="$(swift build -c release --show-bin-path)/chat-server"
"$BIN" migrate >&2
TOOL="$ROOT/.build/storm/storm"
mkdir -p "$(dirname "$TOOL")"
(cd Benchmarks/storm && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$ROOT/.build/storm/cache" go build -o "$TOOL" .)

BASES=()
for i in 1 2; do
    port=$((18400 + i))
    while port_in_use "$port"; do port=$((port + 10)); done
    JWT_SECRET=storm-secret-storm-secret-storm-secret BCRYPT_COST=4 PORT=$port HOST=127.0.0.1 INSTANCE_ID="storm-$i" \
        UPLOAD_DIR="$ROOT/.build/storm/uploads" WS_MAX_SOCKETS_PER_USER=1000 LOG_LEVEL=warning \
        "$BIN" serve >"$ROOT/.build/storm/instance-$i.log" 2>&1 &
    PIDS+=($!)
    BASES+=("http://127.0.0.1:$port")
done
for base in "${BASES[@]}"; do
    for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null && break; sleep 0.2; done
done
log "storm against ${BASES[*]} (pids ${PIDS[*]})"
"$TOOL" -bases "$(IFS=,; echo "${BASES[*]}")" -pids "$(IFS=,; echo "${PIDS[*]}")" "$@"
