#!/usr/bin/env bash
# How fast does skyrep copy a table? Side by side in one run: a raw COPY pipe between the same
# two servers, skyrep's copy of the same table, and several tables copied by one copy thread
# against as many threads (parallel_copies).
#
# Starts a provider and a subscriber cluster on this machine (fsync off, in a temporary
# directory removed on exit). The provider has table big (ROWS rows: bigint key, int, text of
# about 80 bytes, timestamptz) and TABLES tables of ROWS/TABLES rows each. Each variant
# writes into a database of its own on the subscriber, with the same tables (primary keys
# only) and nothing in them:
#
#   raw pipe     psql -c 'copy big to stdout' | psql -c 'copy big from stdin'
#   skyrep       `subscriber add big` under a running `skyrep replay`; "copy s" is the COPY
#                itself (from the log's "copying from the provider" to "in-copy ->
#                catching-up"), "to ok s" from the add until the table is ok
#   1 thread     `subscriber add` of the TABLES tables with parallel_copies = 1
#   N threads    the same with parallel_copies = TABLES
#
# Prints seconds, rows/s and ratios (skyrep's copy over the raw pipe; one thread over N),
# and writes the same to bench/results/copy-latest.txt.
#
# Needs the PostgreSQL server binaries, python3, cargo (or SKYREP=path to a built binary).
# Environment: ROWS (2000000), TABLES (4), SKYREP.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
name=copy
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
ROWS=${ROWS:-2000000}
TABLES=${TABLES:-4}
for n in ROWS TABLES; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer, not '${!n}'"
done
find_skyrep

start_cluster prov
start_cluster sub

schema() { # $1 = rows of each small table
    echo "create table big (id bigint primary key, a int, t text, ts timestamptz);"
    for i in $(seq 1 "$TABLES"); do
        echo "create table part$i (id bigint primary key, a int, t text, ts timestamptz);"
    done
}
fill() { # $1 = table, $2 = rows
    echo "insert into $1 select g, g % 1000, repeat(md5(g::text), 2) || ' ' || g,
        timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, $2) g;"
}

note "making $ROWS rows on the provider ..."
psql_on prov postgres -c "create database src"
{
    schema
    fill big "$ROWS"
    for i in $(seq 1 "$TABLES"); do fill "part$i" $((ROWS / TABLES)); done
} | psql_on prov src
psql_on prov src -c "vacuum analyze"
for db in raw one serial parallel; do
    psql_on sub postgres -c "create database $db"
    schema | psql_on sub "$db"
done

now() { python3 -c 'import time; print(time.monotonic())'; }
since() { python3 -c "import sys, time; print('%.2f' % (time.monotonic() - float(sys.argv[1])))" "$1"; }

note "raw pipe ..."
t0=$(now)
psql_on prov src -c "copy big to stdout" | psql_on sub raw -c "copy big from stdin"
raw_s=$(since "$t0")

# A skyrep job from the provider's src into database $1 on the subscriber with queue $1.
job() { # $1 = subscriber database, $2 = parallel_copies
    local conf=$tmp/$1.ini
    cat >"$conf" <<INI
[skyrep]
job_name = bench_$1
provider_db = $(connstr prov src)
subscriber_db = $(connstr sub "$1")
pgq_queue_name = q_$1
parallel_copies = $2
INI
    echo "$conf"
}
run_job() { # $1 = database, $2 = parallel_copies, then the tables; prints seconds to all ok
    local db=$1 copies=$2 conf log t0 pid
    shift 2
    conf=$(job "$db" "$copies")
    log=$tmp/$db.log
    for cmd in "provider install" "subscriber install" "provider add $*"; do
        # shellcheck disable=SC2086 # the command and table list are meant to split
        "$skyrep" "$conf" $cmd >>"$log" 2>&1 || die "skyrep $cmd failed (see $log)"
    done
    "$skyrep" "$conf" replay >>"$log" 2>&1 &
    pid=$!
    daemons+=("$pid")
    t0=$(now)
    "$skyrep" "$conf" subscriber add "$@" >>"$log" 2>&1 || die "subscriber add failed (see $log)"
    until ! "$skyrep" -q "$conf" subscriber tables | tail -n +3 | grep -qv '  ok'; do
        sleep 0.05
    done
    since "$t0"
    kill -INT "$pid"
    wait "$pid" || true
}
# Seconds of the COPY of table $2 in log $1.
copy_seconds() {
    python3 - "$1" "$2" <<'PY'
import sys
from datetime import datetime
def at(line):
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
start = end = None
for line in open(sys.argv[1]):
    if f" {sys.argv[2]}: copying from the provider" in line:
        start = at(line)
    if f" {sys.argv[2]}: in-copy -> catching-up" in line:
        end = at(line)
print("%.2f" % (end - start).total_seconds())
PY
}

note "skyrep, one table ..."
one_ok=$(run_job one 1 public.big)
one_copy=$(copy_seconds "$tmp/one.log" public.big)
parts=$(for i in $(seq 1 "$TABLES"); do printf 'public.part%s ' "$i"; done)
note "skyrep, $TABLES tables, one copy thread ..."
# shellcheck disable=SC2086
serial_s=$(run_job serial 1 $parts)
note "skyrep, $TABLES tables, $TABLES copy threads ..."
# shellcheck disable=SC2086
parallel_s=$(run_job parallel "$TABLES" $parts)

{
    echo "skyrep copy benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    echo "big: $ROWS rows; $TABLES tables of $((ROWS / TABLES)) rows each; primary keys only"
    echo
    python3 - "$ROWS" "$raw_s" "$one_copy" "$one_ok" "$TABLES" "$serial_s" "$parallel_s" <<'PY'
import sys
rows, raw, copy, ok, tables, serial, parallel = sys.argv[1:]
rows, raw, copy, ok, serial, parallel = int(rows), float(raw), float(copy), float(ok), float(serial), float(parallel)
print(f"{'variant':<34} {'seconds':>8} {'rows/s':>10} {'ratio':>7}")
print(f"{'raw pipe, big':<34} {raw:8.2f} {rows / raw:10.0f} {1:7.2f}")
print(f"{'skyrep copy of big (COPY only)':<34} {copy:8.2f} {rows / copy:10.0f} {copy / raw:7.2f}")
print(f"{'skyrep add big until ok':<34} {ok:8.2f} {rows / ok:10.0f} {ok / raw:7.2f}")
print(f"{tables + ' tables, 1 copy thread':<34} {serial:8.2f} {rows / serial:10.0f} {1:7.2f}")
print(f"{tables + ' tables, ' + tables + ' copy threads':<34} {parallel:8.2f} {rows / parallel:10.0f} {serial / parallel:7.2f}")
print()
print("ratio: seconds over the raw pipe's (first three), speed-up over one thread (last)")
PY
} | tee "$here/results/copy-latest.txt"
