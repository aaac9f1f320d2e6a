#!/usr/bin/env bash
# What does capturing changes cost? A small benchmark of the capture triggers.
#
# Starts a throwaway PostgreSQL cluster (fsync off, in a temporary directory that is removed
# on exit), creates the four login-service tables of the Londiste 3 pgbench case
# (user_info, user_session, user_login_rec, user_logout_rec; 200000 users) in one database
# per variant, and runs the case's pgbench login/logout workload against each variant in
# interleaved rounds (A B C D E A B C D E ...), so that drift of the machine hits all alike:
#
#   none         no capture triggers
#   skyrep       skyrep's generated per-table triggers (src/queue/sql/skyrep_capture.sql) on PgQ 3
#   pgq-c        PgQ 3's C trigger pgq.logutriga (create extension pgq)
#   pgq-pl       PgQ 3's own PL/pgSQL-only install (pgq_pl_only.sql), if the package ships it
#   generic-pl   skyrep's generic PL/pgSQL pgq.logutriga (src/queue/sql/pgq_triggers.sql) on PgQ 3
#   skyrep-core  skyrep's generated triggers on skyrep's own queue (src/queue/sql/pgq_core.sql),
#                if that file exists and loads
#
# Triggers are on user_session, user_login_rec and user_logout_rec (the tables the workload
# writes), AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW, plus a TRUNCATE trigger.
# Needs the PostgreSQL server binaries, pgbench and Debian's postgresql-NN-pgq3.
#
# Prints the tps of every run, the mean per variant and its ratio to "none", and writes the
# same to bench/results/capture-latest.txt; the figures (capture.tps.VARIANT, every run) go
# to bench/results/capture.json for bench/run.sh's report.
#
# Environment: DURATION (seconds per run, 10), CLIENTS (2), ROUNDS (3), USERS (200000),
# VARIANTS (space-separated subset of the names above, default all available).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-2}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-200000}

name=capture
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pgmajor")
pgbench=$bindir/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found"

mkdir -p "$here/results"
record start "Capture cost: the provider's write throughput with each kind of capture trigger" \
    DURATION="$DURATION" CLIENTS="$CLIENTS" ROUNDS="$ROUNDS" USERS="$USERS"

# --- throwaway cluster (bench/lib.sh) ----------------------------------------------------
start_cluster data
data_port=${port[data]}
psql() { "$psql_bin" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$data_port" -U postgres "$@"; }

# --- variants --------------------------------------------------------------------------
pl_only=$sharedir/contrib/pgq_pl_only.sql
have_pgq_ext=false
[[ -f $sharedir/extension/pgq.control ]] && have_pgq_ext=true

all_variants="none"
if $have_pgq_ext; then
    all_variants+=" skyrep pgq-c"
    [[ -f $pl_only ]] && all_variants+=" pgq-pl"
    all_variants+=" generic-pl"
else
    echo "note: PgQ 3 (postgresql-$pgmajor-pgq3) is not installed; only variants without it run" >&2
fi
[[ -f $repo/src/queue/sql/pgq_core.sql ]] && all_variants+=" skyrep-core"
variants=${VARIANTS:-$all_variants}

schema_sql="
create table user_info (userid int primary key, engname text, cnname text, occupation text,
    birthday date, signname text, email text, qq numeric, crt_time timestamp, mod_time timestamp);
create table user_session (userid int primary key, logintime timestamp(0),
    login_count bigint default 0, logouttime timestamp(0), online_interval interval default interval '0');
create table user_login_rec (userid int, login_time timestamp, ip inet, id bigserial primary key);
create table user_logout_rec (userid int, logout_time timestamp, ip inet, id bigserial primary key);
insert into user_info select g, 'user' || g, '用户' || g, 'engineer', date '1980-01-01' + g % 10000,
    'hello world', 'user' || g || '@example.com', 10000000 + g, now(), now()
  from generate_series(1, $USERS) g;
insert into user_session (userid) select g from generate_series(1, $USERS) g;
"
captured_tables="user_session user_login_rec user_logout_rec"

c_triggers() { # $1 = trigger function
    for t in $captured_tables; do
        echo "create trigger _londiste_bench after insert or update or delete on $t
                for each row execute procedure $1('bench');
              create trigger _londiste_bench_truncate after truncate on $t
                for each statement execute procedure $1('bench');"
    done
}
generated_triggers() {
    for t in $captured_tables; do
        echo "select pgq.skyrep_capture_create('$t', 'bench', '_londiste_bench');"
    done
}

setup_variant() { # $1 = variant; creates and fills its database; returns 1 if unavailable
    local v=$1 db="bench_${1//-/_}"
    psql -d postgres -c "create database $db" >/dev/null
    psql -d "$db" -c "$schema_sql" >/dev/null
    case $v in
    none) ;;
    skyrep)
        psql -d "$db" -c "create extension pgq" -c "select pgq.create_queue('bench')" >/dev/null
        psql -d "$db" -f "$repo/src/queue/sql/skyrep_capture.sql" >/dev/null
        psql -d "$db" -c "$(generated_triggers)" >/dev/null
        ;;
    pgq-c)
        psql -d "$db" -c "create extension pgq" -c "select pgq.create_queue('bench')" >/dev/null
        psql -d "$db" -c "$(c_triggers pgq.logutriga)" >/dev/null
        ;;
    pgq-pl)
        psql -d "$db" -f "$pl_only" >/dev/null
        psql -d "$db" -c "select pgq.create_queue('bench')" >/dev/null
        psql -d "$db" -c "$(c_triggers pgq.logutriga)" >/dev/null
        ;;
    generic-pl)
        # the extension's queue, with pgq.logutriga replaced by skyrep's PL/pgSQL version
        psql -d "$db" -c "create extension pgq" -c "select pgq.create_queue('bench')" >/dev/null
        psql -d "$db" -f "$repo/src/queue/sql/pgq_triggers.sql" >/dev/null
        psql -d "$db" -c "$(c_triggers pgq.logutriga)" >/dev/null
        ;;
    skyrep-core)
        psql -1 -d "$db" -f "$repo/src/queue/sql/pgq_core.sql" >/dev/null 2>&1 || return 1
        psql -d "$db" -c "select pgq.create_queue('bench')" >/dev/null || return 1
        psql -d "$db" -f "$repo/src/queue/sql/skyrep_capture.sql" >/dev/null
        psql -d "$db" -c "$(generated_triggers)" >/dev/null
        ;;
    *) die "unknown variant $v" ;;
    esac
    psql -d "$db" -c "vacuum analyze" >/dev/null
}

# The workload of the pgbench case (\setrandom spelled the way current pgbench wants it).
cat >"$tmp/login.sql" <<EOF
\set userid random(1, $USERS)
select userid,engname,cnname,occupation,birthday,signname,email,qq from user_info where userid=:userid;
insert into user_login_rec (userid,login_time,ip) values (:userid,now(),inet_client_addr());
update user_session set logintime=now(),login_count=login_count+1 where userid=:userid;
EOF
cat >"$tmp/logout.sql" <<EOF
\set userid random(1, $USERS)
insert into user_logout_rec (userid,logout_time,ip) values (:userid,now(),inet_client_addr());
update user_session set logouttime=now(),online_interval=online_interval+(now()-logintime) where userid=:userid;
EOF

reset_db() { # empties the event tables and the log tables, so every run starts alike
    local db=$1
    psql -d "$db" -At -c "
        select 'truncate ' || string_agg(format('%I.%I', schemaname, tablename), ', ')
          from pg_tables
         where (schemaname = 'pgq' and tablename ~ '^event_[0-9]+_[0-9]+\$')
            or (schemaname = 'public' and tablename in ('user_login_rec', 'user_logout_rec'))" \
        | psql -d "$db" >/dev/null
    psql -d "$db" -c "vacuum analyze user_session" -c "checkpoint" >/dev/null
}

run_one() { # $1 = database; prints tps
    "$pgbench" -M prepared -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" \
        -f "$tmp/login.sql" -f "$tmp/logout.sql" -h 127.0.0.1 -p "$data_port" -U postgres "$1" 2>&1 |
        awk '/^tps = / {printf "%.0f\n", $3; exit}'
}

# --- run -------------------------------------------------------------------------------
ready=()
for v in $variants; do
    echo "setting up $v ..." >&2
    if setup_variant "$v"; then
        ready+=("$v")
    else
        echo "note: variant $v is not available, skipped" >&2
        record note "variant $v was not available and did not run"
    fi
done

declare -A runs
for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${ready[@]}"; do
        db="bench_${v//-/_}"
        reset_db "$db"
        wait_quiet "the $v run"
        tps=$(run_one "$db")
        [[ -n $tps ]] || die "pgbench failed for $v (see $tmp/data.log)"
        runs[$v]+="$tps "
        echo "round $r  $(printf '%-12s' "$v") $tps tps" >&2
    done
done

label_of() {
    case $1 in
    none) echo "no capture triggers" ;;
    skyrep) echo "skyrep's generated triggers, on PgQ 3's C extension" ;;
    pgq-c) echo "PgQ 3's C trigger (Londiste 3)" ;;
    pgq-pl) echo "PgQ 3's PL/pgSQL-only trigger" ;;
    generic-pl) echo "skyrep's generic PL/pgSQL pgq.logutriga" ;;
    skyrep-core) echo "skyrep's generated triggers, on skyrep's PgQ in SQL (no C)" ;;
    esac
}
for v in "${ready[@]}"; do
    # shellcheck disable=SC2086 # the runs are meant to split
    record figure "capture.tps.$v" tps "$(label_of "$v")" ${runs[$v]}
done

mean() { awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF}' <<<"$1"; }
base=$(mean "${runs[none]:-0}")
{
    echo "skyrep capture benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, fsync off; pgbench -M prepared -c $CLIENTS -j $CLIENTS -T $DURATION,"
    echo "login.sql + logout.sql of the Londiste 3 pgbench case, $USERS users, $ROUNDS interleaved rounds"
    echo
    printf '%-12s %10s %8s   %s\n' variant "mean tps" "vs none" "runs"
    for v in "${ready[@]}"; do
        m=$(mean "${runs[$v]}")
        if [[ $base -gt 0 ]]; then
            ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}')
        else
            ratio="-"
        fi
        printf '%-12s %10s %8s   %s\n' "$v" "$m" "$ratio" "${runs[$v]}"
    done
} | tee "$here/results/capture-latest.txt.new"
mv "$here/results/capture-latest.txt.new" "$here/results/capture-latest.txt"
