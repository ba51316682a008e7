# Shared helpers for scripts/serve.sh, scripts/test.sh and the benchmarks. Source it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '==> %s\n' "$*" >&2; }

# Installs libpq-dev and PostgreSQL (and, with `ensure_packages nginx`, nginx and
# chromium for the test suite) with apt-get when they are missing.
ensure_packages() {
    local missing=()
    if [ "${1:-}" = nginx ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        missing+=(nginx)
    fi
    # The test suite also loads /docs in a headless browser.
    if [ "${1:-}" = nginx ] && ! command -v chromium >/dev/null 2>&1; then
        missing+=(chromium)
    fi
    [ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
    pg_bin >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH" >&2; exit 1; }
}

# The directory holding initdb/pg_ctl (Debian keeps them out of PATH).
pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

# Runs a command as the owner of the throwaway cluster: initdb refuses to run as root.
as_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_local_postgres DIR PORT: starts (creating if needed) a throwaway cluster in DIR
# listening on 127.0.0.1 with trust auth, on PORT or the next free port above it, and
# exports DATABASE_URL for database "chat" (and PG_ADMIN_URL for database "postgres").
start_local_postgres() {
    local dir="$1" port="$2" bin
    bin="$(pg_bin)"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        # postgres must be able to reach the data directory.
        local parent="$dir"
        while parent="$(dirname "$parent")" && [ "$parent" != "/" ]; do chmod o+x "$parent" 2>/dev/null || true; done
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        log "creating a throwaway PostgreSQL cluster in $dir"
        as_pg_user "$bin/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if as_pg_user "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        port="$(sed -n 4p "$dir/postmaster.pid")"
    else
        # A second and third try use the next port and settings that ask less of the machine
        # (small shared memory, no huge pages, mmap'd dynamic shared memory), and every failed
        # try prints the server's log: a CI run once ended at "could not start server" alone.
        local attempt options
        for attempt in 1 2 3; do
            while port_in_use "$port"; do port=$((port + 1)); done
            options="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=300 -c fsync=${PG_FSYNC:-on}"
            [ "$attempt" -eq 1 ] || options="$options -c shared_buffers=32MB -c huge_pages=off -c dynamic_shared_memory_type=mmap"
            log "starting PostgreSQL on 127.0.0.1:$port"
            if as_pg_user "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o "$options" start >/dev/null; then
                break
            fi
            log "PostgreSQL did not start (try $attempt of 3); the end of $dir/server.log:"
            tail -n 20 "$dir/server.log" >&2 || true
            [ "$attempt" -lt 3 ] || return 1
            port=$((port + 1))
        done
    fi
    local i
    for i in $(seq 1 60); do
        "$bin/pg_isready" -h 127.0.0.1 -p "$port" -q && break
        sleep 0.5
    done
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/chat"
    export PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$port/postgres"
}

# recreate_database: drops and creates the "chat" database of the local cluster.
recreate_database() {
    psql -q -X "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS chat WITH (FORCE)" -c "CREATE DATABASE chat" >/dev/null
}

ensure_database() {
    psql -q -X -tA "$PG_ADMIN_URL" -c "SELECT 1 FROM pg_database WHERE datname = 'chat'" | grep -q 1 ||
        psql -q -X "$PG_ADMIN_URL" -c "CREATE DATABASE chat" >/dev/null
}

stop_local_postgres() {
    local dir="$1"
    as_pg_user "$(pg_bin)/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 || true
}
