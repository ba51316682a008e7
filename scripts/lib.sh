# Shared helpers for scripts/serve.sh, scripts/test.sh and the benchmarks. Source it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '==> %s\n' "$*" >&2; }

# Installs libpq-dev and PostgreSQL (and, with `ensure_packages nginx`, nginx, chromium
# and pgbouncer for the test suite) with apt-get when they are missing.
ensure_packages() {
    local missing=()
    if [ "${1:-}" = nginx ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        missing+=(nginx)
    fi
    # The test suite also loads /docs in a headless browser.
    if [ "${1:-}" = nginx ] && ! command -v chromium >/dev/null 2>&1; then
        missing+=(chromium)
    fi
    # The test suite also runs the server through PgBouncer.
    if [ "${1:-}" = nginx ] && [ ! -x /usr/sbin/pgbouncer ]; then
        missing+=(pgbouncer)
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
            options="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=500 -c fsync=${PG_FSYNC:-on}"
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

# start_replica PRIMARY_PORT DIR PORT: a streaming replica of the local cluster on PRIMARY_PORT,
# made afresh in DIR with pg_basebackup -R and started on PORT (or the next free port);
# exports REPLICA_URL for its database "chat".
start_replica() {
    local primary_port="$1" dir="$2" port="$3" bin
    bin="$(pg_bin)"
    as_pg_user "$bin/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir"
    chmod 700 "$dir"
    log "making a streaming replica in $dir (pg_basebackup -R)"
    # A replication slot keeps the primary's WAL until the replica has it, so a replica the
    # tests stop while the primary writes catches up when it starts again.
    psql -q -X "postgresql://postgres@127.0.0.1:$primary_port/postgres" -c \
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'chat_test_replica'" >/dev/null
    as_pg_user "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir" -R -X stream -c fast \
        -C -S chat_test_replica 2>&1 |
        grep -v 'skipping special file' >&2 || true
    [ -f "$dir/standby.signal" ] || { log "pg_basebackup failed"; return 1; }
    while port_in_use "$port"; do port=$((port + 1)); done
    # Kept in the data directory, so that `pg_ctl start` alone brings it back (the tests
    # stop and start it). max_connections must be at least the primary's.
    as_pg_user tee -a "$dir/postgresql.auto.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 500
hot_standby_feedback = on
CONF
    log "starting the replica on 127.0.0.1:$port"
    as_pg_user "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { tail -n 20 "$dir/server.log" >&2; return 1; }
    export REPLICA_URL="postgresql://postgres@127.0.0.1:$port/chat"
}

# start_pgbouncer DIR PORT PRIMARY_PORT: PgBouncer (Debian's) in transaction pooling mode in
# front of the local cluster, configured in DIR, on PORT (or the next free port). Database
# "chat" sets the sessions' settings the server needs (connect_query, see the README's
# "PgBouncer"); "chat_bare" reaches the same database without them. Exports PGBOUNCER_URL.
start_pgbouncer() {
    local dir="$1" port="$2" primary_port="$3"
    local pgbouncer=/usr/sbin/pgbouncer
    stop_pgbouncer "$dir"
    mkdir -p "$dir"
    while port_in_use "$port"; do port=$((port + 1)); done
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
chat = host=127.0.0.1 port=$primary_port dbname=chat connect_query='SET TimeZone = UTC; SET DateStyle = ISO; SET lock_timeout = 2000; SET statement_timeout = 30000; SET idle_in_transaction_session_timeout = 5000; SET chat.announces_own_changes = on; SET random_page_cost = 1.1; SET jit = off'
chat_bare = host=127.0.0.1 port=$primary_port dbname=chat
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
admin_users = postgres
pool_mode = transaction
; Fewer server connections than the servers' pools hold: transactions of one client
; connection really do land on different server sessions.
default_pool_size = 4
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    echo '"postgres" ""' >"$dir/users.txt"
    [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$dir"
    log "starting PgBouncer (transaction pooling) on 127.0.0.1:$port"
    as_pg_user "$pgbouncer" -d "$dir/pgbouncer.ini"
    local i
    for i in $(seq 1 40); do port_in_use "$port" && break; sleep 0.25; done
    export PGBOUNCER_URL="postgresql://postgres@127.0.0.1:$port/chat"
}

stop_pgbouncer() {
    local dir="$1"
    if [ -f "$dir/pgbouncer.pid" ]; then
        kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
        rm -f "$dir/pgbouncer.pid"
    fi
}
