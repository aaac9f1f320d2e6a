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
#   skyrep       `subscriber add big` under a running `skyrep replay`; "COPY only" is the
#                copy itself (from the log's "copying from the provider" to "in-copy ->
#                catching-up"), "until ok" from the add until the log's last "-> ok" (the
#                state is polled only twice a second, so the polling costs next to nothing)
#   raw pipes    one raw pipe per small table, all at once
#   1 thread     `subscriber add` of the TABLES tables with parallel_copies = 1
#   N threads    the same with parallel_copies = TABLES
#
# Each round runs every variant once, in that order (A B A B ...), into empty databases.
# Prints the median, min and max seconds of the rounds, rows/s and ratios (skyrep's copy over
# the raw pipe; the small tables over the raw pipes side by side; one thread over N), and
# writes the same to bench/results/copy-latest.txt; the figures (copy.seconds.KIND, every
# round) go to bench/results/copy.json for bench/run.sh's report. Each phase waits for the
# machine to be quiet first.
#
# Needs the PostgreSQL server binaries, python3, cargo (or SKYREP=path to a built binary).
# Environment: ROWS (2000000), TABLES (4), ROUNDS (3), SKYREP.
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
ROUNDS=${ROUNDS:-3}
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -gt 0 ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
mkdir -p "$here/results"
record start "Initial copy: skyrep against a raw COPY pipe between the same servers" \
    ROWS="$ROWS" TABLES="$TABLES" ROUNDS="$ROUNDS"

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
for r in $(seq 1 "$ROUNDS"); do
    for db in raw one rawpar serial parallel; do
        psql_on sub postgres -c "create database $db$r"
        schema | psql_on sub "$db$r"
    done
done

now() { python3 -c 'import time; print(time.time())'; }
since() { python3 -c "import sys, time; print('%.2f' % (time.time() - float(sys.argv[1])))" "$1"; }

# A skyrep job from the provider's src into database $1 on the subscriber with queue $1.
job() { # $1 = subscriber database, $2 = parallel_copies
    local conf=$tmp/$1.ini
    skyrep_ini "$conf" "bench_$1" src "$1" "q_$1" "parallel_copies = $2"
    echo "$conf"
}
run_job() { # $1 = database, $2 = parallel_copies, then the tables; prints seconds to all ok
    local db=$1 copies=$2 conf log t0 pid
    wait_quiet "skyrep's copy into $db"
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
        sleep 0.5
    done
    kill -INT "$pid"
    wait "$pid" || true
    ok_seconds "$log" "$t0"
}
# Seconds from epoch $2 to the last "-> ok" in log $1 (its times are local time).
ok_seconds() {
    python3 - "$1" "$2" <<'PY'
import sys
from datetime import datetime
last = max(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
           for line in open(sys.argv[1]) if line.rstrip().endswith(" -> ok"))
print("%.2f" % (last.timestamp() - float(sys.argv[2])))
PY
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

# The raw pipe of table $1 into database $2 on the subscriber.
raw_pipe() {
    psql_on prov src -c "copy $1 to stdout" | psql_on sub "$2" -c "copy $1 from stdin" >/dev/null
}
parts=$(for i in $(seq 1 "$TABLES"); do printf 'public.part%s ' "$i"; done)
results=$tmp/results
for r in $(seq 1 "$ROUNDS"); do
    note "round $r of $ROUNDS: raw pipe ..."
    wait_quiet "the raw pipe"
    t0=$(now)
    raw_pipe big "raw$r"
    echo "raw $(since "$t0")" >>"$results"
    note "round $r of $ROUNDS: skyrep, one table ..."
    echo "ok $(run_job "one$r" 1 public.big)" >>"$results"
    echo "copy $(copy_seconds "$tmp/one$r.log" public.big)" >>"$results"
    note "round $r of $ROUNDS: $TABLES raw pipes side by side ..."
    wait_quiet "the raw pipes"
    t0=$(now)
    for i in $(seq 1 "$TABLES"); do raw_pipe "part$i" "rawpar$r" & done
    wait
    echo "rawpar $(since "$t0")" >>"$results"
    note "round $r of $ROUNDS: skyrep, $TABLES tables, one copy thread ..."
    # shellcheck disable=SC2086 # the table list is meant to split
    echo "serial $(run_job "serial$r" 1 $parts)" >>"$results"
    note "round $r of $ROUNDS: skyrep, $TABLES tables, $TABLES copy threads ..."
    # shellcheck disable=SC2086
    echo "parallel $(run_job "parallel$r" "$TABLES" $parts)" >>"$results"
done

label_of() {
    case $1 in
    raw) echo "raw pipe, one table of $ROWS rows" ;;
    copy) echo "skyrep's COPY of that table" ;;
    ok) echo "skyrep, subscriber add of that table until ok" ;;
    rawpar) echo "$TABLES raw pipes side by side, $TABLES tables of $((ROWS / TABLES)) rows" ;;
    serial) echo "skyrep, those $TABLES tables, 1 copy thread" ;;
    parallel) echo "skyrep, those $TABLES tables, $TABLES copy threads" ;;
    esac
}
for kind in raw copy ok rawpar serial parallel; do
    # shellcheck disable=SC2046 # the runs are meant to split
    record figure "copy.seconds.$kind" s "$(label_of "$kind")" $(awk -v k="$kind" '$1 == k {print $2}' "$results")
done
{
    echo "skyrep copy benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(commit_id)"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    echo "big: $ROWS rows; $TABLES tables of $((ROWS / TABLES)) rows each; primary keys only; $ROUNDS rounds, interleaved"
    echo
    python3 - "$ROWS" "$TABLES" "$results" <<'PY'
import statistics, sys
rows, tables, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    kind, seconds = line.split()
    runs.setdefault(kind, []).append(float(seconds))
med = {k: statistics.median(v) for k, v in runs.items()}
def line(label, kind, base):
    v = runs[kind]
    ratio = f"{med[kind] / med[base]:7.2f}" if base else " " * 7
    print(f"{label:<36} {med[kind]:8.2f} {min(v):8.2f} {max(v):8.2f} {rows / med[kind]:10.0f} {ratio}")
print(f"{'variant':<36} {'median s':>8} {'min':>8} {'max':>8} {'rows/s':>10} {'ratio':>7}")
line("raw pipe, big", "raw", None)
line("skyrep copy of big (COPY only)", "copy", "raw")
line("skyrep add big until ok", "ok", "raw")
line(f"{tables} raw pipes side by side", "rawpar", None)
line(f"{tables} tables, 1 copy thread", "serial", "rawpar")
line(f"{tables} tables, {tables} copy threads", "parallel", "rawpar")
print()
print("ratio: median seconds over the median of the raw pipe(s) above it")
print(f"speed-up of {tables} copy threads over one: {med['serial'] / med['parallel']:.2f}")
PY
} | tee "$here/results/copy-latest.txt"
