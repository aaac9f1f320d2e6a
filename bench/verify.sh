#!/usr/bin/env bash
# How fast do skyrep's `compare` and `repair` check a subscriber, and how much memory does
# repair need? skyrep against Londiste 3's `compare` and `repair`, side by side.
#
# Starts a provider and a subscriber cluster on this machine (fsync off, in a temporary
# directory removed on exit). Each tool gets its own provider database and its own subscriber
# database for each of the two parts below, with the tables filled identically on both sides
# (the same SQL run on each side) and registered without a copy (skyrep: `subscriber add
# --expect-sync`; Londiste 3: root and leaf node, `add-table --expect-sync`). Both tools'
# compare and repair first bring the two sides to one point of the stream (lock the provider
# table, force a tick, wait until the consumer has applied it), so each tool's consumer runs
# and is idle throughout its part: `skyrep CONF replay`, and Londiste's leaf worker with pgqd
# ticking the provider.
#
#   compare  the four tables of the login service (tests/fixtures/seed.sql): user_info and
#            user_session with USERS rows, user_login_rec and user_logout_rec with RECORDS
#            rows each. Timed: `skyrep CONF compare` against `londiste LEAF.ini compare`, both
#            over all their tables (each table in turn: sync to one tick, then a row count and
#            a checksum of every row on each side). Both must report all four tables equal:
#            exit code 0 and a "srcdb: N rows, checksum=X" line equal to its "dstdb: ..." line
#            for each table, N the table's row count.
#   repair   table big: BIG_ROWS rows of about 100 bytes (bigint key, int, text, timestamptz,
#            numeric), of which DIFFS rows differ on the subscriber, made behind the consumer's
#            back (skyrep: `set local skyrep.replay = on`, which its guard lets pass; Londiste:
#            `session_replication_role = replica`, which its leaf's deny trigger lets pass):
#            a third of DIFFS rows deleted, a third updated (the int and the text), the rest
#            inserted with new keys. Timed: `skyrep CONF repair big` against `londiste LEAF.ini
#            repair big`, each run in an empty directory of its own. Like for like: neither
#            applies anything; both find the differences and write the fix as SQL statements
#            to a file (skyrep: fix.bench_skyrep_rep.public.big.sql, Londiste: fix.public.big.sql). Londiste 3
#            dumps both sides with COPY to files, sorts each file with the external `sort`
#            command (a child process, LC_ALL=C, -S 30% of memory), merges the two sorted
#            files in Python and appends each statement to the fix file; skyrep streams both
#            sides' COPY sorted by the server (order by the key's text) and merges the streams.
#            Each must find exactly the differences made: its fix file must hold as many
#            INSERT, UPDATE and DELETE statements as rows were deleted, updated and inserted
#            (skyrep must exit 1, "tables differ"; Londiste exits 0). Then, untimed, the fix
#            file is run on the subscriber with psql, the table is checked equal to the
#            provider's (row count and checksum), and the same differences are made again for
#            the next round.
#
# Every round runs both tools once, the order alternating (skyrep then Londiste, then the
# other way round); all compare rounds first, then all repair rounds. wait_quiet runs before
# each timed command. Seconds: wall time from starting the command to its exit. Peak memory:
# the ru_maxrss of the command's process tree as a waited-for child (getrusage
# RUSAGE_CHILDREN of a wrapper that only runs it), i.e. the peak resident memory of the
# largest single process in that tree: skyrep's one process; for Londiste the larger of its
# Python process and each `sort` child it ran (not their sum). The servers' memory is not in
# it (skyrep's repair has the servers sort; Londiste's sorts in its `sort` children).
#
# Prints every run and the medians with ratios (skyrep over Londiste), and writes the same to
# bench/results/verify-latest.txt; records the figures in bench/results/verify.json.
#
# Needs the PostgreSQL server binaries, python3, cargo (or SKYREP=path to a built binary),
# and Londiste 3 (Debian's python3-londiste, pgqd, postgresql-NN-pgq3, -pgq-node,
# -londiste-sql); a missing one stops the script with a message naming the package.
# Environment: USERS (rows of user_info and user_session, 200000), RECORDS (rows of each of
# user_login_rec and user_logout_rec, 1000000), BIG_ROWS (rows of big, 1000000), DIFFS (rows
# of big that differ, 100), ROUNDS (3), SKYREP, QUIET_WAIT and QUIET_PERCENT (bench/lib.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
name=verify
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
USERS=${USERS:-200000}
RECORDS=${RECORDS:-1000000}
BIG_ROWS=${BIG_ROWS:-1000000}
DIFFS=${DIFFS:-100}
ROUNDS=${ROUNDS:-3}
for n in USERS RECORDS BIG_ROWS DIFFS ROUNDS; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer, not '${!n}'"
done
((DIFFS >= 3)) || die "DIFFS must be at least 3 (deleted, updated and inserted rows)"
((BIG_ROWS >= 10 * DIFFS)) || die "BIG_ROWS must be at least 10 times DIFFS"
find_skyrep
need_londiste

start_cluster prov
start_cluster sub
mkdir -p "$here/results"
record start "compare and repair: skyrep against Londiste 3" USERS="$USERS" RECORDS="$RECORDS" \
    BIG_ROWS="$BIG_ROWS" DIFFS="$DIFFS" ROUNDS="$ROUNDS"

tools="skyrep londiste"
seed_tables="user_info user_session user_login_rec user_logout_rec"
# The differences in big: rows deleted, updated and inserted on the subscriber, spread over
# the table (keys stride apart); the inserted rows get keys past the last.
deleted=$((DIFFS / 3)) updated=$((DIFFS / 3))
inserted=$((DIFFS - deleted - updated))
stride=$((BIG_ROWS / DIFFS))

seed_sql() {
    cat "$repo/tests/fixtures/seed.sql"
    cat <<SQL
insert into user_info select g, 'user ' || g, 'name ' || g,
    (array['engineer', 'teacher', 'doctor', 'artist', 'farmer'])[1 + g % 5],
    date '1960-01-01' + g % 20000, md5(g::text), 'user' || g || '@example.com', 10000 + g,
    timestamp '2024-01-01' + g * interval '1 second',
    timestamp '2024-06-01' + g * interval '1 second'
from generate_series(1, $USERS) g;
insert into user_session select g, timestamp '2024-06-01' + g * interval '1 second', g % 1000,
    timestamp '2024-06-01 01:00' + g * interval '1 second', (g % 86400) * interval '1 second'
from generate_series(1, $USERS) g;
insert into user_login_rec (userid, login_time, ip, id) select 1 + g % $USERS,
    timestamp '2024-01-01' + g * interval '1 second', inet '10.0.0.0' + g, g
from generate_series(1, $RECORDS) g;
insert into user_logout_rec (userid, logout_time, ip, id) select 1 + g % $USERS,
    timestamp '2024-01-01 00:30' + g * interval '1 second', inet '10.0.0.0' + g, g
from generate_series(1, $RECORDS) g;
select setval('user_login_rec_id_seq', $RECORDS), setval('user_logout_rec_id_seq', $RECORDS);
SQL
}
big_sql() {
    cat <<SQL
create table big (id bigint primary key, a int, t text, ts timestamptz, n numeric);
insert into big select g, g % 1000, repeat(md5(g::text), 2) || ' row ' || g,
    timestamptz '2024-01-01' + g * interval '1 second', g / 7.0
from generate_series(1, $BIG_ROWS) g;
SQL
}


# Makes database $1 on both clusters with the tables of part $2 (cmp or rep).
make_dbs() {
    local db=$1 part=$2 c
    for c in prov sub; do
        psql_on "$c" postgres -c "create database $db"
        if [[ $part == cmp ]]; then seed_sql; else big_sql; fi | psql_on "$c" "$db" >/dev/null
        psql_on "$c" "$db" -c "vacuum (freeze, analyze)"
    done
}

# Sets up tool $1 on part $2 (cmp: the seed tables, rep: big) and starts its consumer.
# Databases: TOOL_PART on both clusters.
setup() {
    local tool=$1 part=$2 db=${1}_$2 tables log=$tmp/setup_${1}_$2.log conf
    if [[ $part == cmp ]]; then tables=$seed_tables; else tables=big; fi
    make_dbs "$db" "$part"
    if [[ $tool == skyrep ]]; then
        conf=$tmp/$db.ini
        skyrep_ini "$conf" "bench_$db" "$db" "$db" "q_$db"
        run_logged "$log" "$skyrep" "$conf" provider install
        run_logged "$log" "$skyrep" "$conf" subscriber install
        "$skyrep" "$conf" replay >>"$tmp/replay_$db.log" 2>&1 &
        replay_pid[$part]=$!
        daemons+=("${replay_pid[$part]}")
        # shellcheck disable=SC2086 # the table list is meant to split
        run_logged "$log" "$skyrep" "$conf" provider add $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$skyrep" "$conf" subscriber add $tables --expect-sync
        consumer_of[$db]=bench_$db queue_of[$db]=q_$db
    else
        londiste_nodes "$db" "$db" "$db" "q_$db"
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_${db}_root.ini" add-table $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_${db}_leaf.ini" add-table $tables --expect-sync
        londiste_start "$db" "$db"
        consumer_of[$db]=${db}_leaf queue_of[$db]=q_$db
    fi
}

# Waits until the consumer of database $1 has applied the provider queue's last tick.
caught_up() {
    local db=$1 deadline=$(($(date +%s) + 120)) q c
    q=${queue_of[$db]} c=${consumer_of[$db]}
    local target
    target=$(value_on prov "$db" "select last_tick_id from pgq.get_queue_info('$q')")
    until (($(value_on prov "$db" "select coalesce(max(last_tick), 0)
            from pgq.get_consumer_info('$q') where consumer_name = '$c'") >= target)); do
        (($(date +%s) < deadline)) || die "$db: the consumer $c did not catch up in 120 s"
        sleep 0.2
    done
}

# Runs the command in directory $1 with its output to file $2; prints "exit-code peak-kB
# seconds": the command's ru_maxrss as a waited-for child (the largest process of its tree).
measure() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
cwd, out, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "w") as f:
    start = time.monotonic()
    code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    took = time.monotonic() - start
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "%.2f" % took)
PY
}

command_of() { # $1 = tool, $2 = part, then the command's arguments; sets cmd
    local tool=$1 db=${1}_$2
    shift 2
    if [[ $tool == skyrep ]]; then
        cmd=("$skyrep" "$tmp/$db.ini" "$@")
    else
        cmd=("$londiste_bin" "$tmp/londiste_${db}_leaf.ini" "$@")
    fi
}

# Row count and checksum of table $2 in database $1 of cluster $3.
checksum() {
    value_on "$3" "$1" "select count(*) || ' ' || coalesce(sum(hashtextextended(t::text, 0)), 0)
        from only $2 t"
}

declare -A replay_pid consumer_of queue_of secs kb
run_lines=()

# --- compare ---------------------------------------------------------------------------
note "compare: filling the seed tables ($USERS users, $RECORDS login and logout records) ..."
for tool in $tools; do setup "$tool" cmp; done
for tool in $tools; do caught_up "${tool}_cmp"; done
declare -A expected_rows=([user_info]=$USERS [user_session]=$USERS [user_login_rec]=$RECORDS
    [user_logout_rec]=$RECORDS)

check_compare() { # $1 = tool, $2 = exit code, $3 = output file
    local tool=$1 code=$2 out=$3 t line src dst
    ((code == 0)) || die "$tool compare exited $code, expected 0 (all tables equal); output: $out"
    for t in $seed_tables; do
        # skyrep prints the table's name, then its srcdb and dstdb lines; Londiste logs
        # "Counting public.T", then "srcdb: ..." and "dstdb: ..." log lines.
        line=$(awk -v t="public.$t" '
            $0 ~ ("(^|Counting )" t "$") { on = 1; next }
            on && /srcdb: / { sub(/.*srcdb: /, ""); s = $0 }
            on && /dstdb: / { sub(/.*dstdb: /, ""); print s "|" $0; exit }' "$out")
        src=${line%%|*} dst=${line#*|}
        [[ -n $line && $src == "$dst" ]] || die "$tool compare: no equal srcdb and dstdb lines for $t in $out"
        [[ $src == "${expected_rows[$t]} rows, checksum="* ]] ||
            die "$tool compare: $t should have ${expected_rows[$t]} rows, got '$src' ($out)"
    done
}

order=(skyrep londiste)
for ((r = 1; r <= ROUNDS; r++)); do
    for tool in "${order[@]}"; do
        out=$tmp/compare_${tool}_$r.out
        command_of "$tool" cmp compare
        wait_quiet "compare ($tool, round $r)"
        read -r code k s < <(measure "$tmp" "$out" "${cmd[@]}")
        check_compare "$tool" "$code" "$out"
        secs[compare_$tool]+="$s " kb[compare_$tool]+="$k "
        run_lines+=("$(printf '%-8s %5s  %-9s %9s %10.1f' compare "$r" "$tool" "$s" "$(awk -v k="$k" 'BEGIN {print k / 1024}')")")
        note "  compare round $r, $tool: $s s, $k kB"
    done
    order=("${order[1]}" "${order[0]}")
done
kill -TERM "${replay_pid[cmp]}"
wait "${replay_pid[cmp]}" 2>/dev/null || true
londiste_stop

# --- repair ----------------------------------------------------------------------------
note "repair: filling big ($BIG_ROWS rows) ..."
for tool in $tools; do setup "$tool" rep; done
for tool in $tools; do caught_up "${tool}_rep"; done

make_differences() { # $1 = tool
    local pass
    if [[ $1 == skyrep ]]; then
        pass="set local skyrep.replay = on"
    else
        pass="set local session_replication_role = replica"
    fi
    psql_on sub "${1}_rep" -c "begin" -c "$pass" \
        -c "delete from big where id % $stride = 1 and id <= $((stride * deleted))" \
        -c "update big set a = -1, t = 'changed' where id % $stride = 2 and id <= $((stride * updated))" \
        -c "insert into big select $BIG_ROWS + g, 0, 'extra', timestamptz '2024-01-01', 0
            from generate_series(1, $inserted) g" -c "commit" >/dev/null
}

# Checks repair's exit code $2 and the statements of its fix file $3 for tool $1; prints
# "inserts updates deletes".
check_repair() {
    local tool=$1 code=$2 fix=$3 out=$4 want=1 counts
    [[ $tool == londiste ]] && want=0
    ((code == want)) || die "$tool repair exited $code, expected $want; output: $out"
    [[ -f $fix ]] || die "$tool repair wrote no $fix; output: $out"
    counts=$(awk '/^insert into /{i++} /^update /{u++} /^delete from /{d++}
        END {print i + 0, u + 0, d + 0}' "$fix")
    [[ $counts == "$deleted $updated $inserted" ]] ||
        die "$tool repair found $counts (inserts updates deletes), expected $deleted $updated $inserted; fix: $fix"
    echo "$counts"
}

# Runs fix file $2 on tool $1's subscriber and checks big equal on both sides.
apply_fix() {
    local tool=$1 fix=$2 db=${1}_rep a b
    if [[ $tool == skyrep ]]; then
        psql_on sub "$db" -f "$fix" >/dev/null
    else
        PGOPTIONS="-c session_replication_role=replica" psql_on sub "$db" -1 -f "$fix" >/dev/null
    fi
    a=$(checksum "$db" big prov) b=$(checksum "$db" big sub)
    [[ $a == "$b" ]] || die "$tool: big differs after running $fix: provider $a, subscriber $b"
}

order=(skyrep londiste)
for ((r = 1; r <= ROUNDS; r++)); do
    for tool in "${order[@]}"; do
        work=$tmp/repair_${tool}_$r
        mkdir -p "$work"
        out=$work/output
        command_of "$tool" rep repair big
        make_differences "$tool"
        wait_quiet "repair ($tool, round $r)"
        read -r code k s < <(measure "$work" "$out" "${cmd[@]}")
        fix=$work/fix.public.big.sql
        [[ $tool == skyrep ]] && fix=$work/fix.bench_skyrep_rep.public.big.sql
        found=$(check_repair "$tool" "$code" "$fix" "$out")
        apply_fix "$tool" "$fix"
        secs[repair_$tool]+="$s " kb[repair_$tool]+="$k "
        run_lines+=("$(printf '%-8s %5s  %-9s %9s %10.1f   %s' repair "$r" "$tool" "$s" "$(awk -v k="$k" 'BEGIN {print k / 1024}')" "$found")")
        note "  repair round $r, $tool: $s s, $k kB, fix: $found (inserts updates deletes)"
        rm -rf "$work"
    done
    order=("${order[1]}" "${order[0]}")
done

# --- results ---------------------------------------------------------------------------
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {
    print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
for op in compare repair; do
    for tool in $tools; do
        # shellcheck disable=SC2086 # one value per run
        record figure "verify.${op}_s.$tool" s "$op: seconds ($tool)" ${secs[${op}_$tool]}
        # shellcheck disable=SC2086
        record figure "verify.${op}_rss_kb.$tool" kB "$op: peak resident memory ($tool)" ${kb[${op}_$tool]}
    done
done
record note "peak memory: ru_maxrss of the command as a waited-for child, the largest single process of its tree (Londiste: its Python process or a sort child it ran, whichever is larger); the servers' memory is not included"
record note "repair: neither tool applies the fix; both write a fix file ($DIFFS rows differ: $deleted deleted, $updated updated, $inserted inserted on the subscriber)"

declare -A med
for k in compare_skyrep compare_londiste repair_skyrep repair_londiste; do
    med[s_$k]=$(median "${secs[$k]}") med[kb_$k]=$(median "${kb[$k]}")
done
verdict() { awk -v v="$1" -v limit="$2" 'BEGIN {print (v < limit ? "met" : "NOT met")}'; }
{
    echo "skyrep compare and repair against Londiste 3  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(commit_id)"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    echo "compare: user_info and user_session $USERS rows, user_login_rec and user_logout_rec $RECORDS rows each, all equal"
    echo "repair: big $BIG_ROWS rows, $DIFFS differ on the subscriber ($deleted deleted, $updated updated, $inserted inserted); fix written to a file, not applied"
    echo "$ROUNDS rounds, order alternating; consumers running and idle"
    echo
    printf '%-8s %5s  %-9s %9s %10s   %s\n' command round tool seconds "peak MB" "fix: inserts updates deletes"
    printf '%s\n' "${run_lines[@]}"
    echo
    printf '%-8s %-9s %9s %10s\n' command tool "median s" "peak MB"
    for op in compare repair; do
        for tool in $tools; do
            printf '%-8s %-9s %9s %10.1f\n' "$op" "$tool" "${med[s_${op}_$tool]}" \
                "$(awk -v k="${med[kb_${op}_$tool]}" 'BEGIN {print k / 1024}')"
        done
    done
    echo
    cs=$(ratio "${med[s_compare_skyrep]}" "${med[s_compare_londiste]}")
    ck=$(ratio "${med[kb_compare_skyrep]}" "${med[kb_compare_londiste]}")
    rs=$(ratio "${med[s_repair_skyrep]}" "${med[s_repair_londiste]}")
    rk=$(ratio "${med[kb_repair_skyrep]}" "${med[kb_repair_londiste]}")
    echo "ratios, skyrep over londiste (medians):"
    echo "  compare: time $cs, peak memory $ck"
    echo "  repair:  time $rs, peak memory $rk"
    echo
    echo "targets:"
    echo "  compare under a third of Londiste 3's time: $(verdict "$cs" 0.3334)"
    echo "  repair no slower than Londiste 3: $(verdict "$rs" 1.0001)"
    echo "  repair peak memory under 20 MB: $(verdict "${med[kb_repair_skyrep]}" 20480)"
    echo
    echo "peak MB: ru_maxrss of the command as a waited-for child, i.e. its largest single process:"
    echo "skyrep's one process; for Londiste the larger of its Python process and each sort child."
    echo "The servers' memory is not included (skyrep's repair has the servers sort the rows)."
} | tee "$here/results/verify-latest.txt.new"
mv "$here/results/verify-latest.txt.new" "$here/results/verify-latest.txt"
