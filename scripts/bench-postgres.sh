#!/usr/bin/env bash
# Measures the Postgres wrapper, in both I/O modes, against pgbench -M prepared on the
# same statements at concurrency 1, 8 and 32, interleaved in one run, and prints a
# Markdown table of rates and ratios. The client's CPU time per statement comes from
# /usr/bin/time. Uses DATABASE_URL, or a throwaway cluster under .pgdata-bench/ (54331).
# Usage: scripts/bench-postgres.sh [seconds-per-measurement]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
export CHAT_SERVER_BENCHMARKS=1   # Package.swift declares the benchmark drivers only then
ensure_packages
SECONDS_EACH="${1:-5}"
if [ -z "${DATABASE_URL:-}" ]; then
    start_local_postgres "$ROOT/.pgdata-bench" 54331
    trap 'stop_local_postgres "$ROOT/.pgdata-bench"' EXIT
    ensure_database
fi
swift build -c release --product PostgresBench >&2
BENCH="$(swift build -c release --show-bin-path)/PostgresBench"
"$BENCH" --setup

work="$(mktemp -d)"
printf 'INSERT INTO bench_items (payload) VALUES (%s);\n' "'payload-text'" >"$work/insert.sql"
printf '\\set id random(1, 10000)\nSELECT id, payload FROM bench_items WHERE id = :id;\n' >"$work/select.sql"

pgbench_tps() { # statement concurrency
    local threads=$(( $2 < 2 ? 1 : 2 ))
    pgbench -n -M prepared -f "$work/$1.sql" -c "$2" -j "$threads" -T "$SECONDS_EACH" "$DATABASE_URL" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

ours() { # mode statement concurrency -> "rate cpu-microseconds-per-op"
    /usr/bin/time -f '%U %S' -o "$work/time" \
        "$BENCH" --io-mode "$1" --statement "$2" --concurrency "$3" --seconds "$SECONDS_EACH" >"$work/rate"
    python3 - "$work/rate" "$work/time" "$SECONDS_EACH" <<'PY'
import sys
rate = float(open(sys.argv[1]).read())
user, system = map(float, open(sys.argv[2]).read().split()[-2:])
print(f"{rate:.0f} {(user + system) / (rate * float(sys.argv[3])) * 1e6:.0f}")
PY
}

echo "| statement | conc. | non-blocking ops/s | thread-pool ops/s | pgbench tps | non-blocking / pgbench | thread-pool / pgbench | client CPU µs/op (nb / tp) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for statement in select insert; do
    for concurrency in 1 8 32; do
        read -r nb nbcpu <<<"$(ours nonBlocking "$statement" "$concurrency")"
        read -r tp tpcpu <<<"$(ours threadPool "$statement" "$concurrency")"
        pg="$(pgbench_tps "$statement" "$concurrency")"
        python3 -c "print(f'| $statement | $concurrency | $nb | $tp | {$pg:.0f} | {$nb/$pg:.2f} | {$tp/$pg:.2f} | $nbcpu / $tpcpu |')"
    done
done
rm -rf "$work"
