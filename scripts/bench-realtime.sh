#!/usr/bin/env bash
# Real-time benchmark: release builds of chat-server and RealtimeBench, two server
# instances on one database, and the sections of Benchmarks/RealtimeBench (throughput with
# and without NOTIFY, POST→frame latency across instances, fan-out to 1,000 sockets, memory
# per idle socket at 10,000 sockets). Prints Markdown. Uses DATABASE_URL, or a throwaway
# cluster under .pgdata-bench/ (port 54331). Extra arguments go to RealtimeBench.
# Needs about 2 × 10,000 file descriptors (ulimit -n; raised here when allowed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
export CHAT_SERVER_BENCHMARKS=1   # Package.swift declares the benchmark drivers only then
ensure_packages
if [ -z "${DATABASE_URL:-}" ]; then
    start_local_postgres "$ROOT/.pgdata-bench" 54331
    trap 'stop_local_postgres "$ROOT/.pgdata-bench"' EXIT
    ensure_database
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
swift build -c release --product chat-server >&2
swift build -c release --product RealtimeBench >&2
BIN="$(swift build -c release --show-bin-path)"
"$BIN/chat-server" migrate >&2
"$BIN/RealtimeBench" --server "$BIN/chat-server" "$@"
