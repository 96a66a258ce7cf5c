#!/usr/bin/env bash
# The servers the test suite needs, from the binaries installed on this machine:
# PostgreSQL, NATS with JetStream and Redis, each on 127.0.0.1.
#
#   scripts/services.sh up      start whatever is not already listening, wait until it answers
#   scripts/services.sh status  say which ones answer (non-zero exit if one does not)
#
# A service already listening on its port is left alone. Whatever this script starts keeps its
# data and logs under ./var/ (PostgreSQL prefers the distro cluster when one exists).
# Ports can be moved with PG_PORT, NATS_PORT, REDIS_PORT; SERVICES_WAIT bounds each wait (s).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VAR="$PWD/var"
HOST=127.0.0.1
PG_PORT="${PG_PORT:-5432}"
NATS_PORT="${NATS_PORT:-4222}"
REDIS_PORT="${REDIS_PORT:-6379}"
WAIT="${SERVICES_WAIT:-30}"

say() { printf '%-11s %s\n' "$1:" "$2"; }
die() {
    say "$1" "$2" >&2
    exit 1
}

# True when something accepts TCP connections on HOST:port.
listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Wait (bounded) until the port answers.
wait_for() {
    local name=$1 port=$2 log=$3 i
    for ((i = 0; i < WAIT * 4; i++)); do
        listening "$port" && return 0
        sleep 0.25
    done
    die "$name" "started but not answering on $HOST:$port after ${WAIT}s (see $log)"
}

# An installed program, also from the sbin and PostgreSQL directories a user's PATH may lack.
find_bin() {
    local dir
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return
    fi
    for dir in /usr/local/sbin /usr/sbin /sbin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [[ -x "$dir/$1" ]]; then
            echo "$dir/$1"
            return
        fi
    done
    return 1
}

# --- PostgreSQL --------------------------------------------------------------------------------

# Run a PostgreSQL tool as a user it accepts: root may not run initdb or the server.
as_pg_user() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# The distro cluster (Debian/Ubuntu postgresql-common) on PG_PORT, as "version name".
distro_cluster() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }' | grep .
}

start_private_postgres() {
    local initdb pg_ctl data="$VAR/pg" log="$VAR/pg.log"
    initdb=$(find_bin initdb) || die postgresql "not listening on $HOST:$PG_PORT and initdb is not installed"
    pg_ctl=$(find_bin pg_ctl) || die postgresql "not listening on $HOST:$PG_PORT and pg_ctl is not installed"
    mkdir -p "$data"
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die postgresql "running as root and there is no postgres user to run the server"
        chown postgres "$data" && chmod 700 "$data"
        touch "$log" && chown postgres "$log"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        as_pg_user "$initdb" -D "$data" -U postgres -A trust -E UTF8 --no-instructions >"$VAR/pg-initdb.log" 2>&1 ||
            die postgresql "initdb failed (see $VAR/pg-initdb.log)"
    fi
    as_pg_user "$pg_ctl" -D "$data" -l "$log" -w -t "$WAIT" \
        -o "-c listen_addresses=$HOST -p $PG_PORT -k $data" start >/dev/null ||
        die postgresql "pg_ctl could not start the cluster in $data (see $log)"
    echo "private cluster in ./var/pg"
}

# Create the database the tests use when it is missing.
ensure_test_database() {
    local psql
    psql=$(find_bin psql) || return 0
    if [[ -z $("$psql" -w -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atc \
        "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null) ]]; then
        "$psql" -w -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE test" >/dev/null 2>&1 ||
            say postgresql "warning: could not create database test"
    fi
}

up_postgres() {
    local how cluster
    if listening "$PG_PORT"; then
        say postgresql "already listening on $HOST:$PG_PORT"
        return
    fi
    if cluster=$(distro_cluster) &&
        pg_ctlcluster --skip-systemctl-redirect $cluster start >"$VAR/pg_ctlcluster.log" 2>&1; then
        how="distro cluster ${cluster/ //}"
    else
        how=$(start_private_postgres)
    fi
    wait_for postgresql "$PG_PORT" "the PostgreSQL log"
    ensure_test_database
    say postgresql "started ($how) on $HOST:$PG_PORT"
}

# --- NATS with JetStream -----------------------------------------------------------------------

up_nats() {
    local nats log="$VAR/nats.log"
    if listening "$NATS_PORT"; then
        say nats "already listening on $HOST:$NATS_PORT"
        return
    fi
    nats=$(find_bin nats-server) || die nats "not listening on $HOST:$NATS_PORT and nats-server is not installed"
    mkdir -p "$VAR/nats"
    nohup "$nats" -js -sd "$VAR/nats" -a "$HOST" -p "$NATS_PORT" >>"$log" 2>&1 </dev/null &
    echo $! >"$VAR/nats.pid"
    wait_for nats "$NATS_PORT" "$log"
    say nats "started (JetStream, data in ./var/nats) on $HOST:$NATS_PORT"
}

# --- Redis -------------------------------------------------------------------------------------

up_redis() {
    local redis log="$VAR/redis.log"
    if listening "$REDIS_PORT"; then
        say redis "already listening on $HOST:$REDIS_PORT"
        return
    fi
    redis=$(find_bin redis-server) || die redis "not listening on $HOST:$REDIS_PORT and redis-server is not installed"
    "$redis" --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$VAR" --logfile "$log" --pidfile "$VAR/redis.pid" >/dev/null ||
        die redis "redis-server failed to start (see $log)"
    wait_for redis "$REDIS_PORT" "$log"
    say redis "started on $HOST:$REDIS_PORT"
}

# --- main --------------------------------------------------------------------------------------

status() {
    local name port down=0
    for name in postgresql:$PG_PORT nats:$NATS_PORT redis:$REDIS_PORT; do
        port=${name#*:}
        if listening "$port"; then
            say "${name%:*}" "listening on $HOST:$port"
        else
            say "${name%:*}" "NOT listening on $HOST:$port"
            down=1
        fi
    done
    return $down
}

case "${1:-}" in
up)
    mkdir -p "$VAR"
    up_postgres
    up_nats
    up_redis
    ;;
status) status ;;
*)
    echo "usage: $0 up|status" >&2
    exit 2
    ;;
esac
