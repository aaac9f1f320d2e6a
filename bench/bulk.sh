#!/usr/bin/env bash
# What does capturing one statement that changes many rows cost? Set-based capture
# (`provider add --bulk`) against row triggers.
#
# Starts a throwaway PostgreSQL cluster (fsync off, removed on exit) with one database per
# variant, each with a table of ROWS rows, and times `UPDATE big SET ...` of every row in
# one statement (rolled back, then vacuumed) in interleaved rounds (A B C D A B C D ...):
#
#   none         no capture triggers
#   pgq-c        PgQ 3's C trigger pgq.logutriga (create extension pgq)
#   skyrep-row   skyrep's generated row trigger, on skyrep's own queue (pgq_core.sql)
#   skyrep-bulk  skyrep's set-based capture (the 'bulk' argument), on skyrep's own queue
#
# The capture time of a variant is its statement's time less that of "none" in the same
# round. Then a short pgbench run of one-row statements (the seed's login/logout workload:
# one INSERT and one UPDATE of one row per script) per variant, interleaved the same way,
# shows what set-based capture costs where statements change one row.
# Needs the PostgreSQL server binaries, pgbench and Debian's postgresql-NN-pgq3 (without it
# the pgq-c variant is left out).
#
# Prints every run, the medians and the ratios, writes them to bench/results/bulk-latest.txt,
# and records bulk.update_ms.VARIANT, bulk.capture_ms.VARIANT and bulk.tps.VARIANT (every
# run) in bench/results/bulk.json for bench/run.sh's report.
#
# Environment: ROWS (100000), ROUNDS (3), DURATION (seconds per pgbench run, 5), CLIENTS (2),
# USERS (100000, the pgbench tables' size).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
ROWS=${ROWS:-100000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-2}
USERS=${USERS:-100000}

name=bulk
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pgmajor")
pgbench=$bindir/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found"

mkdir -p "$here/results"
record start "Bulk capture: one UPDATE of many rows, and one-row statements, with each kind of capture" \
    ROWS="$ROWS" ROUNDS="$ROUNDS" DURATION="$DURATION" CLIENTS="$CLIENTS" USERS="$USERS"

start_cluster data "shared_buffers = 256MB" "max_wal_size = 4GB"
data_port=${port[data]}
psql() { PGOPTIONS="-c client_min_messages=warning" "$psql_bin" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$data_port" -U postgres "$@"; }

variants="none skyrep-row skyrep-bulk"
if [[ -f $sharedir/extension/pgq.control ]]; then
    variants="none pgq-c skyrep-row skyrep-bulk"
else
    echo "note: PgQ 3 (postgresql-$pgmajor-pgq3) is not installed; pgq-c is left out" >&2
    record note "PgQ 3 was not installed: no pgq-c variant"
fi

schema_sql="
create table big (id int primary key, login_count bigint not null default 0,
    logintime timestamp(0), note text, amount numeric);
insert into big select g, g % 100, timestamp '2024-01-01' + g * interval '1 minute',
    'note ' || g, g * 0.01 from generate_series(1, $ROWS) g;
create table user_session (userid int primary key, logintime timestamp(0),
    login_count bigint default 0, logouttime timestamp(0), online_interval interval default interval '0');
create table user_login_rec (userid int, login_time timestamp, ip inet, id bigserial primary key);
insert into user_session (userid) select g from generate_series(1, $USERS) g;
"
tables="big user_session user_login_rec"

setup_variant() { # $1 = variant
    local v=$1 db="bulk_${1//-/_}" t
    psql -d postgres -c "create database $db" >/dev/null
    psql -d "$db" -c "$schema_sql" >/dev/null
    case $v in
    none) ;;
    pgq-c)
        psql -d "$db" -c "create extension pgq" -c "select pgq.create_queue('bench')" >/dev/null
        for t in $tables; do
            psql -d "$db" -c "create trigger _londiste_bench after insert or update or delete on $t
                for each row execute procedure pgq.logutriga('bench')" >/dev/null
        done
        ;;
    skyrep-row | skyrep-bulk)
        psql -1 -d "$db" -f "$repo/src/queue/sql/pgq_core.sql" >/dev/null
        psql -d "$db" -c "select pgq.create_queue('bench')" >/dev/null
        psql -d "$db" -f "$repo/src/queue/sql/skyrep_capture.sql" >/dev/null
        local args="array['keymove']"
        [[ $v == skyrep-bulk ]] && args="array['keymove', 'bulk']"
        for t in $tables; do
            psql -d "$db" -c "select pgq.skyrep_capture_create('$t', 'bench', '_londiste_bench', $args)" >/dev/null
        done
        ;;
    *) die "unknown variant $v" ;;
    esac
    psql -d "$db" -c "vacuum analyze" >/dev/null
}

empty_queue() { # empties the event tables
    psql -d "$1" -At -c "
        select 'truncate ' || string_agg(format('%I.%I', schemaname, tablename), ', ')
          from pg_tables where schemaname = 'pgq' and tablename ~ '^event_[0-9]+_[0-9]+\$'" |
        { read -r sql && [[ -n $sql ]] && psql -d "$1" -c "$sql" >/dev/null || true; }
}

update_ms() { # $1 = database; prints the UPDATE's time in ms
    psql -d "$1" -c "vacuum big" -c "checkpoint" >/dev/null
    psql -d "$1" -c '\timing on' -c "begin" \
        -c "update big set login_count = login_count + 1, logintime = logintime + interval '1 second', amount = amount * 2" \
        -c "rollback" | awk '/^Time: / {n++; if (n == 2) {print $2; exit}}'
}

cat >"$tmp/one_row.sql" <<EOF
\set userid random(1, $USERS)
insert into user_login_rec (userid,login_time,ip) values (:userid,now(),inet_client_addr());
update user_session set logintime=now(),login_count=login_count+1 where userid=:userid;
EOF
tps_of() { # $1 = database; prints tps
    psql -d "$1" -c "truncate user_login_rec" -c "vacuum analyze user_session" -c "checkpoint" >/dev/null
    "$pgbench" -M prepared -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$tmp/one_row.sql" \
        -h 127.0.0.1 -p "$data_port" -U postgres "$1" 2>&1 | awk '/^tps = / {printf "%.0f\n", $3; exit}'
}

for v in $variants; do
    echo "setting up $v ..." >&2
    setup_variant "$v"
done

declare -A ms capture tps
for ((r = 1; r <= ROUNDS; r++)); do
    declare -A this
    for v in $variants; do
        db="bulk_${v//-/_}"
        empty_queue "$db"
        wait_quiet "the $v update"
        this[$v]=$(update_ms "$db")
        [[ -n ${this[$v]} ]] || die "the update failed for $v (see $tmp/data.log)"
        ms[$v]+="${this[$v]} "
        echo "round $r  $(printf '%-12s' "$v") update of $ROWS rows: ${this[$v]} ms" >&2
    done
    for v in $variants; do
        capture[$v]+="$(awk -v a="${this[$v]}" -v b="${this[none]}" 'BEGIN {printf "%.1f", a - b}') "
    done
done
for ((r = 1; r <= ROUNDS; r++)); do
    for v in $variants; do
        db="bulk_${v//-/_}"
        empty_queue "$db"
        wait_quiet "the $v pgbench run"
        t=$(tps_of "$db")
        [[ -n $t ]] || die "pgbench failed for $v (see $tmp/data.log)"
        tps[$v]+="$t "
        echo "round $r  $(printf '%-12s' "$v") one-row statements: $t tps" >&2
    done
done

label_of() {
    case $1 in
    none) echo "no capture triggers" ;;
    pgq-c) echo "PgQ 3's C trigger (Londiste 3)" ;;
    skyrep-row) echo "skyrep's generated row trigger, on skyrep's PgQ in SQL" ;;
    skyrep-bulk) echo "skyrep's set-based capture (--bulk), on skyrep's PgQ in SQL" ;;
    esac
}
for v in $variants; do
    # shellcheck disable=SC2086 # the runs are meant to split
    {
        record figure "bulk.update_ms.$v" ms "UPDATE of $ROWS rows in one statement: $(label_of "$v")" ${ms[$v]}
        [[ $v == none ]] || record figure "bulk.capture_ms.$v" ms "its capture (less no capture's time): $(label_of "$v")" ${capture[$v]}
        record figure "bulk.tps.$v" tps "one-row statements (pgbench): $(label_of "$v")" ${tps[$v]}
    }
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
c_capture=$(median "${capture[pgq-c]:-0}")
none_tps=$(median "${tps[none]}")
{
    echo "skyrep bulk capture benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, fsync off; UPDATE of $ROWS rows, $ROUNDS interleaved rounds;"
    echo "pgbench -M prepared -c $CLIENTS -j $CLIENTS -T $DURATION, one INSERT + one UPDATE of one row"
    echo
    printf '%-12s %12s %12s %14s %10s %8s\n' variant "update ms" "capture ms" "vs C capture" "tps" "vs none"
    for v in $variants; do
        m=$(median "${ms[$v]}")
        if [[ $v == none ]]; then c="-"; cr="-"; else c=$(median "${capture[$v]}"); cr=$(ratio "$c" "$c_capture"); fi
        t=$(median "${tps[$v]}")
        printf '%-12s %12s %12s %14s %10s %8s\n' "$v" "$m" "$c" "$cr" "$t" "$(ratio "$t" "$none_tps")"
    done
} | tee "$here/results/bulk-latest.txt.new"
mv "$here/results/bulk-latest.txt.new" "$here/results/bulk-latest.txt"
