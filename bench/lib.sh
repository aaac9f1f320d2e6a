# shellcheck shell=bash disable=SC2034,SC2154 # sourced: callers set name and repo, use the rest
# Shared by the benchmarks: finding PostgreSQL and skyrep, and throwaway clusters.
# Source it after setting `name` (used in messages and the temporary directory's name) and
# `repo` (the repository, for building skyrep).
# Provides: die, note, bindir, pgversion, pgmajor, psql_bin, find_skyrep, tmp, as_server,
# daemons (pids to stop on exit), start_cluster NAME [extra postgresql.conf lines],
# port[NAME], psql_on NAME DB ARGS..., value_on NAME DB SQL, connstr NAME DB;
# record (figures for bench/run.sh's report, see bench/record.py), commit_id, skyrep_ini,
# run_logged LOG CMD...,
# forget_daemon PID, wait_quiet PHASE,
# cpu_seconds PID, rss_kb PID, peak_rss_kb PID, backend_pids CLUSTER DB;
# Londiste 3: need_londiste, londiste_nodes, londiste_start, londiste_stop;
# built-in logical replication: logical_subscribe.

die() {
    echo "$name: $*" >&2
    if [[ -n ${recording:-} ]]; then
        record note "the run stopped: $*" || true
    fi
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
        skyrep=${CARGO_TARGET_DIR:-$repo/target}/release/skyrep
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

# --- figures for the report (bench/record.py) ------------------------------------------
# Every benchmark writes bench/results/$name.json; bench/run.sh merges them into
# bench/results/latest.json and bench/RESULTS.md.
fragment=$(dirname "${BASH_SOURCE[0]}")/results/$name.json
record() {
    [[ $1 == start ]] && recording=1
    python3 "$(dirname "${BASH_SOURCE[0]}")/record.py" "$fragment" "$@"
}

# The commit measured (as bench/record.py names it: -dirty only for changes outside the results).
commit_id() {
    python3 -B -c 'import sys; sys.path.insert(0, sys.argv[1]); import record; print(record.commit(sys.argv[2]))' \
        "$(dirname "${BASH_SOURCE[0]}")" "$repo"
}

# Writes a skyrep config to FILE for job JOB from PROV_DB (cluster prov) to SUB_DB (cluster
# sub) on queue QUEUE, with any further arguments as extra lines (e.g. "parallel_copies = 4").
skyrep_ini() { # $1 = file, $2 = job, $3 = provider db, $4 = subscriber db, $5 = queue
    local file=$1 job=$2 prov=$3 sub=$4 queue=$5 line
    shift 5
    {
        echo "[skyrep]"
        echo "job_name = $job"
        echo "provider_db = $(connstr prov "$prov")"
        echo "subscriber_db = $(connstr sub "$sub")"
        echo "pgq_queue_name = $queue"
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

# Runs a command with its output appended to a log; on failure shows the log's end and stops.
run_logged() { # $1 = log file, then the command
    local log=$1
    shift
    "$@" >>"$log" 2>&1 || {
        tail -n 20 "$log" >&2
        die "failed: $* (log: $log)"
    }
}

# Takes a pid off the list of daemons stopped on exit (after it was stopped otherwise).
forget_daemon() { # $1 = pid
    local keep=() p
    for p in "${daemons[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    daemons=("${keep[@]}")
}

# Waits until the machine is quiet (under QUIET_PERCENT % of all CPUs busy over a second,
# default 20) before a timed phase, at most QUIET_WAIT seconds (60); if it stays busy, says so
# and notes it in the results.
wait_quiet() { # $1 = the phase about to start
    local busy waited=0
    while :; do
        busy=$(python3 - <<'PY'
import time
def read():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f), f[3] + f[4]
t0, i0 = read(); time.sleep(1); t1, i1 = read()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))
PY
        )
        ((busy < ${QUIET_PERCENT:-20})) && return 0
        if ((waited >= ${QUIET_WAIT:-60})); then
            note "the machine is busy ($busy% CPU) before $1; measuring anyway"
            record note "the machine was busy ($busy% of CPU time) before $1"
            return 0
        fi
        ((waited == 0)) && note "waiting for the machine to be quiet before $1 ($busy% CPU busy) ..."
        waited=$((waited + 1))
    done
}

# CPU seconds (user + system, all threads) that process PID has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz}' "/proc/$1/stat"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }      # resident memory now
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; } # its peak so far
# The server processes serving clients connected to database DB of CLUSTER (not this query's).
backend_pids() {
    value_on "$1" postgres "select pid from pg_stat_activity
        where datname = '$2' and backend_type = 'client backend' and pid <> pg_backend_pid()"
}

# --- Londiste 3 from Debian's packages -------------------------------------------------
# Sets londiste_bin and pgqd_bin, or stops with the packages to install.
need_londiste() {
    local sharedir ext pkg
    sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pgmajor")
    for ext in pgq:pgq3 pgq_node:pgq-node londiste:londiste-sql; do
        pkg=postgresql-$pgmajor-${ext#*:}
        [[ -f $sharedir/extension/${ext%%:*}.control ]] ||
            die "the ${ext%%:*} extension is not installed (apt-get install $pkg)"
    done
    londiste_bin=$(command -v londiste || command -v londiste3) ||
        die "londiste not found (apt-get install python3-londiste)"
    pgqd_bin=$(command -v pgqd) || die "pgqd not found (apt-get install pgqd)"
}

# Makes a Londiste 3 root node in database PROV_DB of cluster prov and a leaf node in SUB_DB
# of cluster sub, on queue QUEUE; their configs are $tmp/londiste_TAG_root.ini and
# $tmp/londiste_TAG_leaf.ini (logs beside them). Add tables with
#   "$londiste_bin" "$tmp/londiste_TAG_root.ini" add-table ...   (and the same on the leaf).
londiste_nodes() { # $1 = tag, $2 = provider db, $3 = subscriber db, $4 = queue
    local tag=$1 node cluster db log=$tmp/londiste_$1_setup.log
    for node in root leaf; do
        if [[ $node == root ]]; then cluster=prov db=$2; else cluster=sub db=$3; fi
        cat >"$tmp/londiste_${tag}_$node.ini" <<EOF
[londiste]
job_name = ${tag}_$node
db = $(connstr "$cluster" "$db")
queue_name = $4
logfile = $tmp/londiste_${tag}_$node.log
pidfile = $tmp/londiste_${tag}_$node.pid
EOF
    done
    "$londiste_bin" "$tmp/londiste_${tag}_root.ini" create-root "${tag}_root" "$(connstr prov "$2")" \
        >>"$log" 2>&1 || die "londiste create-root failed (see $log)"
    "$londiste_bin" "$tmp/londiste_${tag}_leaf.ini" create-leaf "${tag}_leaf" "$(connstr sub "$3")" \
        --provider="$(connstr prov "$2")" >>"$log" 2>&1 || die "londiste create-leaf failed (see $log)"
}

# Starts the leaf's worker (its output to $tmp/londiste_TAG_worker.out) and pgqd ticking
# PROV_DB; sets londiste_pid and pgqd_pid (both in daemons).
londiste_start() { # $1 = tag, $2 = provider db
    "$londiste_bin" "$tmp/londiste_$1_leaf.ini" worker >>"$tmp/londiste_$1_worker.out" 2>&1 &
    londiste_pid=$!
    cat >"$tmp/pgqd_$1.ini" <<EOF
[pgqd]
base_connstr = host=127.0.0.1 port=${port[prov]} user=postgres
initial_database = $2
database_list = $2
logfile = $tmp/pgqd_$1.log
pidfile = $tmp/pgqd_$1.pid
EOF
    "$pgqd_bin" "$tmp/pgqd_$1.ini" >>"$tmp/pgqd_$1.out" 2>&1 &
    pgqd_pid=$!
    daemons+=("$londiste_pid" "$pgqd_pid")
}

# Stops what londiste_start started.
londiste_stop() {
    local pid
    kill -INT "$londiste_pid" 2>/dev/null || true
    kill -TERM "$pgqd_pid" 2>/dev/null || true
    for pid in "$londiste_pid" "$pgqd_pid"; do
        wait "$pid" 2>/dev/null || true
        forget_daemon "$pid"
    done
}

# --- built-in logical replication ------------------------------------------------------
# Publishes tables of PROV_DB (cluster prov, started with "wal_level = logical") and
# subscribes SUB_DB (cluster sub) to them as subscription NAME; COPY_DATA is true or false
# (false: the tables are equal already). Dropped with the clusters.
logical_subscribe() { # $1 = name, $2 = provider db, $3 = subscriber db, $4 = copy_data, then tables
    local name=$1 prov=$2 sub=$3 copy=$4 list
    shift 4
    list=$(printf '%s, ' "$@")
    psql_on prov "$prov" -c "create publication ${name}_pub for table ${list%, }" >/dev/null
    psql_on sub "$sub" -c "create subscription $name connection '$(connstr prov "$prov")'
        publication ${name}_pub with (copy_data = $copy)" >/dev/null
}
