# shellcheck shell=bash
#
# Throwaway PostgreSQL cluster for the test suite.
#
# Usage (developer machine or CI):
#
#     source tests/pg_cluster.sh
#     pg_cluster_start            # exports TEST_POSTGRES_URL
#     make test
#     pg_cluster_stop             # kills the server, deletes its files
#
# (or `trap pg_cluster_stop EXIT` right after sourcing, as .ci/run does).
#
# pg_cluster_start creates a fresh cluster in a temporary directory, owned by a
# non-root user (PostgreSQL refuses to run as root: as root the `postgres`
# system user is used, created if missing), listening on 127.0.0.1 only, on
# port 54329 if free and otherwise on a free port chosen by the kernel. The
# superuser is authority/authority (scram-sha-256 over TCP) and the database
# authority_test is created. Durability is switched off (fsync=off): the data
# is thrown away anyway.
#
# If TEST_POSTGRES_URL is already set (an existing server, or a
# cluster already started by this shell) pg_cluster_start does nothing.
# Both functions are safe to call more than once. The server log is
# $_PG_CLUSTER_DIR/postgres.log while the cluster runs.
#
# Optional settings (environment):
#   PG_CLUSTER_BINDIR  directory holding initdb/pg_ctl (default: highest
#                      /usr/lib/postgresql/*/bin, else pg_config --bindir,
#                      else initdb on PATH)
#   PG_CLUSTER_PORT    port to use (default: 54329 if free, else a free one)
#   PG_CLUSTER_USER    OS user to run the server as when root (default: postgres)
#
# The file only defines functions and never sets shell options, so it is safe
# to source from an interactive shell as well as from `set -euo pipefail`
# scripts.

_PG_CLUSTER_DB_USER=authority
_PG_CLUSTER_DB_PASSWORD=authority
_PG_CLUSTER_DB_NAME=authority_test
_PG_CLUSTER_DEFAULT_PORT=54329

# State of the cluster started by this shell (empty when none); kept when the
# file is sourced again, so pg_cluster_stop still finds the running cluster.
_PG_CLUSTER_DIR=${_PG_CLUSTER_DIR:-}
_PG_CLUSTER_RUN_BINDIR=${_PG_CLUSTER_RUN_BINDIR:-}
_PG_CLUSTER_RUN_AS=${_PG_CLUSTER_RUN_AS:-}
_PG_CLUSTER_URL=${_PG_CLUSTER_URL:-}

_pg_cluster_log() {
    printf '==> %s\n' "$*" >&2
}

# Print the directory holding initdb, pg_ctl, ... (highest version wins).
_pg_cluster_find_bindir() {
    local dir candidate
    if [[ -n ${PG_CLUSTER_BINDIR:-} ]]; then
        if [[ -x $PG_CLUSTER_BINDIR/initdb ]]; then
            printf '%s\n' "$PG_CLUSTER_BINDIR"
            return 0
        fi
        _pg_cluster_log "PG_CLUSTER_BINDIR=$PG_CLUSTER_BINDIR has no initdb"
        return 1
    fi
    candidate=$(
        for dir in /usr/lib/postgresql/*/bin; do
            if [[ -x $dir/initdb ]]; then printf '%s\n' "$dir"; fi
        done | sort -V | tail -n 1
    )
    if [[ -z $candidate ]] && command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null) || dir=
        if [[ -n $dir && -x $dir/initdb ]]; then candidate=$dir; fi
    fi
    if [[ -z $candidate ]] && command -v initdb >/dev/null 2>&1; then
        candidate=$(dirname "$(command -v initdb)")
    fi
    if [[ -z $candidate ]]; then
        _pg_cluster_log "no initdb found: install PostgreSQL (Debian: apt-get install postgresql)"
        return 1
    fi
    printf '%s\n' "$candidate"
}

# Run a command as the cluster owner, from a directory that user can read.
_pg_cluster_as_owner() {
    local user=$1
    shift
    if [[ -z $user ]]; then
        (cd "$_PG_CLUSTER_DIR" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$_PG_CLUSTER_DIR" && runuser -u "$user" -- "$@")
    else
        (cd "$_PG_CLUSTER_DIR" && su -s /bin/sh "$user" -c "$(printf '%q ' "$@")")
    fi
}

# Print the OS user to run the server as: empty when not root (current user).
_pg_cluster_owner() {
    local user=${PG_CLUSTER_USER:-postgres}
    if [[ $(id -u) -ne 0 ]]; then
        return 0
    fi
    if ! id -u "$user" >/dev/null 2>&1; then
        _pg_cluster_log "creating unprivileged system user $user"
        if command -v useradd >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$user" >&2 || return 1
        else
            adduser --system --no-create-home --group "$user" >&2 || return 1
        fi
    fi
    printf '%s\n' "$user"
}

# Print a free TCP port on 127.0.0.1: the preferred one if free, else any.
_pg_cluster_free_port() {
    python3 - "${1:-0}" <<'EOF'
import socket, sys

def bind(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # PostgreSQL sets SO_REUSEADDR too, so TIME_WAIT leftovers are fine.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]

preferred = int(sys.argv[1])
try:
    print(bind(preferred))
except OSError:
    print(bind(0))
EOF
}

pg_cluster_start() {
    if [[ -n ${TEST_POSTGRES_URL:-} ]]; then
        _pg_cluster_log "TEST_POSTGRES_URL already set, not starting postgresql"
        return 0
    fi

    # A cluster of ours whose URL was unset by hand: replace it, don't leak it.
    pg_cluster_stop

    local started=$SECONDS bindir owner tmp_parent port attempt pwfile version i
    bindir=$(_pg_cluster_find_bindir) || return 1
    owner=$(_pg_cluster_owner) || return 1
    version=$("$bindir/postgres" --version 2>/dev/null | awk '{print $3}')

    # As root, TMPDIR may point somewhere the cluster owner cannot reach.
    if [[ -n $owner ]]; then
        tmp_parent=/tmp
    else
        tmp_parent=${TMPDIR:-/tmp}
    fi
    _PG_CLUSTER_DIR=$(mktemp -d "${tmp_parent%/}/authority-pg.XXXXXX") || return 1
    _PG_CLUSTER_RUN_BINDIR=$bindir
    _PG_CLUSTER_RUN_AS=$owner
    if [[ -n $owner ]]; then
        chown "$owner" "$_PG_CLUSTER_DIR" || { pg_cluster_stop; return 1; }
    fi

    pwfile=$_PG_CLUSTER_DIR/pwfile
    (umask 077 && printf '%s\n' "$_PG_CLUSTER_DB_PASSWORD" >"$pwfile") || { pg_cluster_stop; return 1; }
    [[ -z $owner ]] || chown "$owner" "$pwfile" || { pg_cluster_stop; return 1; }

    if ! _pg_cluster_as_owner "$owner" env LC_ALL=C "$bindir/initdb" \
        --pgdata="$_PG_CLUSTER_DIR/data" --username="$_PG_CLUSTER_DB_USER" \
        --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync \
        >"$_PG_CLUSTER_DIR/initdb.log" 2>&1; then
        _pg_cluster_log "initdb failed:"
        cat "$_PG_CLUSTER_DIR/initdb.log" >&2
        pg_cluster_stop
        return 1
    fi
    rm -f "$pwfile"

    for attempt in 1 2 3; do
        if [[ -n ${PG_CLUSTER_PORT:-} ]]; then
            port=$PG_CLUSTER_PORT
        elif [[ $attempt -eq 1 ]]; then
            port=$(_pg_cluster_free_port "$_PG_CLUSTER_DEFAULT_PORT") || { pg_cluster_stop; return 1; }
        else
            port=$(_pg_cluster_free_port 0) || { pg_cluster_stop; return 1; }
        fi
        _pg_cluster_log "starting postgresql ${version:-} on 127.0.0.1:$port (data in $_PG_CLUSTER_DIR)"
        # postgresql.auto.conf is read last, so the latest port wins on retries.
        cat >"$_PG_CLUSTER_DIR/data/postgresql.auto.conf" <<EOF || { pg_cluster_stop; return 1; }
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$_PG_CLUSTER_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        [[ -z $owner ]] || chown "$owner" "$_PG_CLUSTER_DIR/data/postgresql.auto.conf"
        rm -f "$_PG_CLUSTER_DIR/postgres.log"  # one log per attempt, for the grep below
        if _pg_cluster_as_owner "$owner" env LC_ALL=C "$bindir/pg_ctl" \
            --pgdata="$_PG_CLUSTER_DIR/data" --log="$_PG_CLUSTER_DIR/postgres.log" \
            --wait --timeout=30 --silent start >/dev/null 2>&1; then
            break
        fi
        if [[ -z ${PG_CLUSTER_PORT:-} && $attempt -lt 3 ]] &&
            grep -q 'could not bind\|Address already in use' "$_PG_CLUSTER_DIR/postgres.log" 2>/dev/null; then
            _pg_cluster_log "port $port taken meanwhile, retrying on another port"
            continue
        fi
        _pg_cluster_log "postgresql failed to start, log follows:"
        cat "$_PG_CLUSTER_DIR/postgres.log" >&2 2>/dev/null
        pg_cluster_stop
        return 1
    done

    for ((i = 0; i < 100; i++)); do
        "$bindir/pg_isready" --quiet --host=127.0.0.1 --port="$port" --dbname=postgres \
            --username="$_PG_CLUSTER_DB_USER" && break
        sleep 0.1
    done
    if [[ $i -ge 100 ]]; then
        _pg_cluster_log "postgresql on 127.0.0.1:$port is not accepting connections, log follows:"
        cat "$_PG_CLUSTER_DIR/postgres.log" >&2 2>/dev/null
        pg_cluster_stop
        return 1
    fi

    # Over TCP with the password, as the test suite will connect.
    if ! PGPASSWORD=$_PG_CLUSTER_DB_PASSWORD "$bindir/psql" --no-psqlrc --quiet \
        --set=ON_ERROR_STOP=1 --host=127.0.0.1 --port="$port" \
        --username="$_PG_CLUSTER_DB_USER" --dbname=postgres \
        --command="CREATE DATABASE $_PG_CLUSTER_DB_NAME" >/dev/null; then
        _pg_cluster_log "could not create database $_PG_CLUSTER_DB_NAME"
        pg_cluster_stop
        return 1
    fi

    export TEST_POSTGRES_URL="postgresql+asyncpg://$_PG_CLUSTER_DB_USER:$_PG_CLUSTER_DB_PASSWORD@127.0.0.1:$port/$_PG_CLUSTER_DB_NAME"
    _PG_CLUSTER_URL=$TEST_POSTGRES_URL
    _pg_cluster_log "postgresql ready in $((SECONDS - started))s: $TEST_POSTGRES_URL"
}

pg_cluster_stop() {
    # Nothing started by this shell (never started, already stopped, or an
    # existing server given through TEST_POSTGRES_URL): nothing to do.
    # The name check guards the rm -rf below against a clobbered variable.
    if [[ -z ${_PG_CLUSTER_DIR:-} || ! -d $_PG_CLUSTER_DIR || $_PG_CLUSTER_DIR != */authority-pg.* ]]; then
        _PG_CLUSTER_DIR=
        return 0
    fi

    if [[ -n ${_PG_CLUSTER_RUN_BINDIR:-} && -f $_PG_CLUSTER_DIR/data/postmaster.pid ]]; then
        _pg_cluster_log "stopping postgresql"
        _pg_cluster_as_owner "${_PG_CLUSTER_RUN_AS:-}" "$_PG_CLUSTER_RUN_BINDIR/pg_ctl" \
            --pgdata="$_PG_CLUSTER_DIR/data" --mode=immediate --wait --silent stop \
            >/dev/null 2>&1 || true
    fi
    rm -rf -- "$_PG_CLUSTER_DIR"
    _PG_CLUSTER_DIR=
    _PG_CLUSTER_RUN_BINDIR=
    _PG_CLUSTER_RUN_AS=
    # Only forget the URL if it points at the cluster we started.
    if [[ -n ${_PG_CLUSTER_URL:-} && ${TEST_POSTGRES_URL:-} == "$_PG_CLUSTER_URL" ]]; then
        unset TEST_POSTGRES_URL
    fi
    _PG_CLUSTER_URL=
    return 0
}
