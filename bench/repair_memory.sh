#!/usr/bin/env bash
# Does `repair` keep its memory flat whatever the table size? Peak memory of skyrep's repair
# (and compare) on tables of growing size, side by side in one run.
#
# Starts a provider and a subscriber cluster on this machine (fsync off, in a temporary
# directory removed on exit). For each size in SIZES it makes a table of that many rows
# (bigint key, int, text of about 80 bytes, timestamptz, numeric) with the same rows on both
# sides, adds it with `subscriber add --expect-sync` under a running `skyrep replay`, and then
# changes 0.1% of the rows on the subscriber behind replay's back (a third deleted, a third
# updated, a third inserted). Then it runs `skyrep compare` and `skyrep repair --apply` on the
# table and records each one's peak resident memory (the child's ru_maxrss) and time, and
# checks that compare finds the tables equal afterwards.
#
# Prints one line per size and the ratio of each size's peak memory to the smallest size's,
# and writes the same to bench/results/repair-memory-latest.txt. Flat memory means ratios
# near 1 while the row counts grow tenfold.
#
# Needs the PostgreSQL server binaries, python3, and cargo (or SKYREP=path to a built binary).
# Environment: SIZES (row counts, "100000 1000000"), SKYREP.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
name=repair_memory
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
SIZES=${SIZES:-100000 1000000}
for n in $SIZES; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1000 ]] || die "SIZES must be row counts of at least 1000, not '$n'"
done
find_skyrep

start_cluster prov
start_cluster sub

# Runs skyrep with the arguments; prints "exit-code peak-kB seconds".
measure() {
    python3 - "$skyrep" "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
took = time.monotonic() - start
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "%.2f" % took)
PY
}

results=()
for rows in $SIZES; do
    db=t$rows
    note "$rows rows: setting up ..."
    for c in prov sub; do
        psql_on "$c" postgres -c "create database $db"
        psql_on "$c" "$db" -c "
            create table wide (id bigint primary key, a int, t text, ts timestamptz, n numeric);
            insert into wide select g, g % 1000, repeat(md5(g::text), 2) || ' row ' || g,
                timestamptz '2024-01-01' + g * interval '1 second', g / 7.0
            from generate_series(1, $rows) g" -c "vacuum analyze wide"
    done
    conf=$tmp/$db.ini
    skyrep_ini "$conf" "bench_$db" "$db" "$db" "q_$db"
    log=$tmp/$db.log
    for cmd in "provider install" "subscriber install" "provider add wide" \
        "subscriber add --expect-sync wide"; do
        # shellcheck disable=SC2086
        "$skyrep" "$conf" $cmd >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            die "skyrep $cmd failed"
        }
    done
    "$skyrep" "$conf" replay >>"$log" 2>&1 &
    replay_pid=$!
    daemons+=("$replay_pid")
    # Changes behind replay's back: skyrep's own session setting lets them past the guard.
    step=1000
    psql_on sub "$db" -c "
        begin;
        set local skyrep.replay = on;
        delete from wide where id % $step = 1;
        update wide set t = 'changed' where id % $step = 2;
        insert into wide select -g, 0, 'extra', now(), 0 from generate_series(1, $rows / $step) g;
        commit"
    read -r code_c kb_c s_c < <(measure "$conf" compare wide)
    [[ $code_c == 1 ]] || die "compare before repair exited $code_c, expected 1 (tables differ); log: $log"
    read -r code_r kb_r s_r < <(cd "$tmp" && measure "$conf" repair --apply wide)
    [[ $code_r == 1 ]] || die "repair exited $code_r, expected 1 (differences found and fixed)"
    read -r code_after _ _ < <(measure "$conf" compare wide)
    [[ $code_after == 0 ]] || die "compare after repair --apply exited $code_after, expected 0"
    kill -TERM "$replay_pid"
    wait "$replay_pid" || true
    results+=("$rows $((rows * 3 / step)) $kb_c $s_c $kb_r $s_r")
done

{
    echo "skyrep repair memory benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine"
    echo "rows differing: 0.1% deleted, 0.1% updated, 0.1% inserted on the subscriber"
    echo
    printf '%10s %8s %12s %10s %12s %10s %8s\n' rows differ "compare MB" "compare s" "repair MB" \
        "repair s" ratio
    printf '%s\n' "${results[@]}" | awk '
        NR == 1 { base = $5 }
        { printf "%10d %8d %12.1f %10s %12.1f %10s %8.2f\n", $1, $2, $3 / 1024, $4, $5 / 1024, $6, $5 / base }'
    echo
    echo "MB: peak resident memory of the skyrep process; ratio: repair's peak over the first size's"
} | tee "$here/results/repair-memory-latest.txt"
