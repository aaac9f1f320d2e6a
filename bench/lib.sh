# shellcheck shell=bash disable=SC2034,SC2154 # sourced: callers set name and repo, use the rest
# Shared by the benchmarks: finding PostgreSQL and skyrep, and throwaway clusters.
# Source it after setting `name` (used in messages and the temporary directory's name) and
# `repo` (the repository, for building skyrep).
# Provides: die, note, bindir, pgversion, pgmajor, psql_bin, find_skyrep, tmp, as_server,
# daemons (pids to stop on exit), start_cluster NAME [extra postgresql.conf lines],
# port[NAME], psql_on NAME DB ARGS..., value_on NAME DB SQL, connstr NAME DB.

die() {
    echo "$name: $*" >&2
    exit 1
}
note() { echo "$*" >&2; }

bindir=""
if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/pg_ctl ]]; then
    bindir=$(pg_config --bindir)
fi
if [[ -z $bindir ]]; then
    bindir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
[[ -n $bindir && -x $bindir/pg_ctl ]] || die "PostgreSQL server binaries not found (apt-get install postgresql)"
pgversion=$("$bindir/postgres" --version | awk '{print $3}')
pgmajor=${pgversion%%.*}
psql_bin=$bindir/psql
[[ -x $psql_bin ]] || psql_bin=$(command -v psql) || die "psql not found (apt-get install postgresql-client)"
command -v python3 >/dev/null || die "python3 not found"

# Sets `skyrep`: $SKYREP, or a release build of this repository.
find_skyrep() {
    if [[ -n ${SKYREP:-} ]]; then
        skyrep=$SKYREP
    else
        command -v cargo >/dev/null || die "cargo not found; install Rust or set SKYREP to a built skyrep binary"
        note "building skyrep (cargo build --release) ..."
        (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
        skyrep=$repo/target/release/skyrep
    fi
    [[ -x $skyrep ]] || die "skyrep binary $skyrep not found"
    [[ $skyrep == /* ]] || skyrep=$PWD/$skyrep
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyrep-$name.XXXXXX")
chmod 755 "$tmp"
as_server() { "$@"; }
if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || die "running as root but user postgres does not exist"
    chown postgres: "$tmp"
    as_server() { runuser -u postgres -- "$@"; }
fi
daemons=()
clusters=()
cleanup() {
    local pid c
    for pid in "${daemons[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${daemons[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for c in "${clusters[@]}"; do
        if [[ -f $tmp/$c/postmaster.pid ]]; then
            as_server "$bindir/pg_ctl" -D "$tmp/$c" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
declare -A port
start_cluster() { # $1 = name, then extra postgresql.conf lines
    local c=$1 line
    shift
    port[$c]=$(free_port)
    clusters+=("$c")
    as_server "$bindir/initdb" -D "$tmp/$c" -A trust -U postgres --no-locale -E UTF8 --no-sync >/dev/null
    {
        cat <<CONF
port = ${port[$c]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
max_connections = 50
timezone = 'UTC'
CONF
        for line in "$@"; do echo "$line"; done
    } >>"$tmp/$c/postgresql.conf"
    as_server "$bindir/pg_ctl" -D "$tmp/$c" -l "$tmp/$c.log" -w start >/dev/null ||
        die "the $c cluster did not start (see $tmp/$c.log)"
}

psql_on() { # $1 = cluster, $2 = database, then psql arguments
    local c=$1 db=$2
    shift 2
    "$psql_bin" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${port[$c]}" -U postgres -d "$db" "$@"
}
value_on() { psql_on "$1" "$2" -At -c "$3"; }
connstr() { echo "host=127.0.0.1 port=${port[$1]} dbname=$2 user=postgres"; }
