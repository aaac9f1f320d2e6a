#!/usr/bin/env bash
# How fast does a consumer drain a backlog? skyrep's replay against Londiste 3, side by side.
#
# Starts two throwaway PostgreSQL clusters on this machine, a provider cluster and a
# subscriber cluster (fsync off, in a temporary directory that is removed on exit), and
# gives every variant its own provider database and its own subscriber database:
#
#   skyrep      skyrep replay; the provider has skyrep's own PgQ in SQL (src/sql/pgq_core.sql,
#               installed by `skyrep provider install`, no C extension), skyrep's generated
#               capture triggers
#   skyrep-pgq  skyrep replay; the provider has PgQ 3's C extension (create extension pgq
#               before `skyrep provider install`, which then uses it)
#   londiste    Londiste 3 (Debian's python3-londiste, PgQ 3 and pgq_node extensions): root
#               node on the provider, leaf node on the subscriber, `londiste leaf.ini worker`,
#               with pgqd ticking the provider while it drains (as skyrep's ticker thread does)
#   plain-sql   the floor: the same row changes as plain SQL statements (captured with PgQ's
#               pgq.sqltriga), run inside the subscriber by one PL/pgSQL loop that commits
#               every BATCH statements: no client, no queue, no decoding
#
# Every round sets all variants up afresh, with three tables with int primary keys (account,
# item, history; ROWS rows each, the same on both sides, so tables are added without a copy:
# skyrep `subscriber add --expect-sync`, londiste `add-table --expect-sync`). Then, with no
# consumer and no ticker running, one pgbench client per variant (the variants side by side,
# each with one client and --random-seed SEED+round, so every variant gets the same backlog)
# runs EVENTS/5 transactions of 5 statements, 60% updates of non-key columns, 30% inserts and
# 10% deletes, over the three tables. After every transaction the client calls
# pgq.ticker(queue), with the queue's ticker_max_count set to BATCH and its lag and idle ticks
# set an hour away, so the queue ticks every BATCH events, the way pgqd ticks a busy queue at
# ticker_max_count; a last tick closes the tail. So all consumers face the same events cut
# into the same batches.
#
# Then each variant in turn (the order alternates between rounds) starts its consumer and
# waits until the consumer's last tick on the provider (pgq.get_consumer_info) reaches the
# last tick of the backlog; the consumer is stopped and the subscriber tables are checked to
# equal the provider's. The time is from starting the consumer to the commit of its last
# batch on the subscriber (track_commit_timestamp), so process start-up counts and polling
# does not; "apply s" is from the first batch's commit to the last one's.
#
# Needs the PostgreSQL server binaries, pgbench, python3, cargo (or SKYREP=path to a built
# binary), Debian's postgresql-NN-pgq3 (skyrep-pgq, londiste, plain-sql), and for londiste
# python3-londiste, postgresql-NN-pgq-node, postgresql-NN-londiste-sql and pgqd. A missing
# one stops the script with a message naming the package.
#
# Prints every run (with "queued", the rows in the queue's event tables: the backlog plus the
# few events Londiste's own setup queues), the mean seconds and events/s (EVENTS / seconds)
# per variant and the ratio of its events/s to londiste's, and writes the same to bench/results/drain-latest.txt. A drain whose log shows an
# error or a warning keeps that log as bench/results/drain-VARIANT-roundN.log.
#
# Environment: EVENTS (backlog size, 200000), ROUNDS (2), ROWS (rows per table, 100000),
# BATCH (events per tick, 1000), SEED (pgbench random seed, 1),
# VARIANTS (space-separated subset of the names above, default all), SKYREP (binary to use
# instead of building with cargo build --release), DRAIN_TIMEOUT (seconds per drain, 900),
# DRAIN_LOGS (a directory to copy every consumer log and the server logs into).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
EVENTS=${EVENTS:-200000}
ROUNDS=${ROUNDS:-2}
ROWS=${ROWS:-100000}
BATCH=${BATCH:-1000}
SEED=${SEED:-1}
VARIANTS=${VARIANTS:-skyrep skyrep-pgq londiste plain-sql}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}

name=drain
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

for v in $VARIANTS; do
    case $v in
    skyrep | skyrep-pgq | londiste | plain-sql) ;;
    *) die "unknown variant $v (known: skyrep skyrep-pgq londiste plain-sql)" ;;
    esac
done
has_variant() { [[ " $VARIANTS " == *" $1 "* ]]; }
for n in EVENTS ROUNDS ROWS BATCH SEED DRAIN_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer, not '${!n}'"
done
((EVENTS % 10 == 0)) || die "EVENTS must be a multiple of 10 (transactions of 5 events, two kinds)"
((BATCH % 5 == 0)) || die "BATCH must be a multiple of 5 (5 events per transaction)"
((ROWS >= EVENTS / 10)) || die "ROWS must be at least EVENTS/10 (deletes remove pre-filled history rows)"
transactions=$((EVENTS / 5))

# --- what is needed ----------------------------------------------------------------------
sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pgmajor")
pgbench=$bindir/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found (apt-get install postgresql-contrib)"

need_ext() { # $1 = extension, $2 = Debian package
    [[ -f $sharedir/extension/$1.control ]] ||
        die "the $1 extension is not installed (apt-get install $2)"
}
if has_variant skyrep-pgq || has_variant plain-sql || has_variant londiste; then
    need_ext pgq "postgresql-$pgmajor-pgq3"
fi
londiste_bin="" pgqd_bin=""
if has_variant londiste; then
    need_ext pgq_node "postgresql-$pgmajor-pgq-node"
    need_ext londiste "postgresql-$pgmajor-londiste-sql"
    londiste_bin=$(command -v londiste || command -v londiste3) ||
        die "londiste not found (apt-get install python3-londiste)"
    pgqd_bin=$(command -v pgqd) || die "pgqd not found (apt-get install pgqd)"
fi
skyrep=""
if has_variant skyrep || has_variant skyrep-pgq; then
    find_skyrep
fi

# --- throwaway clusters (bench/lib.sh) ---------------------------------------------------
start_cluster prov "track_commit_timestamp = on"
start_cluster sub "track_commit_timestamp = on"

# --- schema and workload -----------------------------------------------------------------
tables="account item history"
schema_sql="
create table account (id int primary key, balance bigint not null, name text, note text,
    updated timestamptz);
create table item (id int primary key, account_id int not null, qty int not null,
    price numeric(12,2), note text, updated timestamptz);
create table history (id int primary key, account_id int, delta int, created timestamptz,
    note text);
create sequence item_id_seq start $((ROWS + 1));
create sequence history_id_seq start $((ROWS + 1));
create sequence history_del_seq;
insert into account select g, 1000 + g % 997, 'account ' || g, null,
    timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, $ROWS) g;
insert into item select g, 1 + g % $ROWS, g % 50, (g % 10000) / 100.0, 'item ' || g,
    timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, $ROWS) g;
insert into history select g, 1 + g % $ROWS, g % 100 - 50,
    timestamptz '2024-01-01' + g * interval '1 second', 'initial' from generate_series(1, $ROWS) g;
"
# Two kinds of transaction, picked at random with equal weight: 3 updates + 2 inserts, and
# 3 updates + 1 insert + 1 delete; so 60% updates, 30% inserts, 10% deletes. Each statement
# changes exactly one row. After each transaction the client asks for a tick (see above).
cat >"$tmp/tx_a.sql" <<EOF
\set a random(1, $ROWS)
\set b random(1, $ROWS)
\set c random(1, $ROWS)
begin;
update account set balance = balance + 10, updated = now() where id = :a;
update item set qty = qty + 1, updated = now() where id = :b;
update account set balance = balance - 10, updated = now() where id = :c;
insert into history (id, account_id, delta, created, note) values (nextval('history_id_seq'), :a, 10, now(), 'transfer from ' || :c);
insert into item (id, account_id, qty, price, note, updated) values (nextval('item_id_seq'), :a, 1, :b / 100.0, 'new item', now());
end;
select pgq.ticker(:queue);
EOF
cat >"$tmp/tx_b.sql" <<EOF
\set a random(1, $ROWS)
\set b random(1, $ROWS)
\set c random(1, $ROWS)
begin;
update item set qty = qty - 1, price = price + 0.01, updated = now() where id = :b;
update account set note = 'seen by ' || :c, updated = now() where id = :a;
update item set note = 'touched by ' || :a, updated = now() where id = :c;
insert into history (id, account_id, delta, created, note) values (nextval('history_id_seq'), :a, -1, now(), 'adjust');
delete from history where id = (select nextval('history_del_seq'));
end;
select pgq.ticker(:queue);
EOF

queue=benchq
skyrep_job=bench_sub
londiste_job=bench_leaf
db_of() { echo "${2}_${1//-/_}"; } # $1 = variant, $2 = prov or sub

# --- per-variant setup -------------------------------------------------------------------
run_logged() { # $1 = log file, then the command; on failure shows the log and stops
    local log=$1
    shift
    "$@" >>"$log" 2>&1 || {
        tail -n 20 "$log" >&2
        die "failed: $* (log: $log)"
    }
}

skyrep_conf() { # $1 = variant
    local f=$tmp/$1.ini
    cat >"$f" <<EOF
[skyrep]
job_name = $skyrep_job
provider_db = $(connstr prov "$(db_of "$1" prov)")
subscriber_db = $(connstr sub "$(db_of "$1" sub)")
pgq_queue_name = $queue
EOF
    echo "$f"
}

londiste_conf() { # $1 = root or leaf
    local f=$tmp/londiste_$1.ini db job
    if [[ $1 == root ]]; then
        db=$(connstr prov "$(db_of londiste prov)") job=bench_root
    else
        db=$(connstr sub "$(db_of londiste sub)") job=$londiste_job
    fi
    cat >"$f" <<EOF
[londiste]
job_name = $job
db = $db
queue_name = $queue
logfile = $tmp/londiste_$1.log
pidfile = $tmp/londiste_$1.pid
EOF
    echo "$f"
}

setup_variant() { # $1 = variant
    local v=$1 prov sub log=$tmp/setup_$1.log conf t
    prov=$(db_of "$v" prov) sub=$(db_of "$v" sub)
    psql_on prov postgres -c "set client_min_messages = warning" \
        -c "drop database if exists $prov" -c "create database $prov"
    psql_on sub postgres -c "set client_min_messages = warning" \
        -c "drop database if exists $sub" -c "create database $sub"
    psql_on prov "$prov" -c "$schema_sql" >/dev/null
    psql_on sub "$sub" -c "$schema_sql" >/dev/null
    case $v in
    skyrep | skyrep-pgq)
        conf=$(skyrep_conf "$v")
        if [[ $v == skyrep-pgq ]]; then
            psql_on prov "$prov" -c "create extension pgq"
        fi
        run_logged "$log" "$skyrep" -q "$conf" provider install
        run_logged "$log" "$skyrep" -q "$conf" subscriber install
        # shellcheck disable=SC2086 # the table list is meant to split
        run_logged "$log" "$skyrep" -q "$conf" provider add $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$skyrep" -q "$conf" subscriber add $tables --expect-sync
        ;;
    londiste)
        local root leaf
        root=$(londiste_conf root) leaf=$(londiste_conf leaf)
        run_logged "$log" "$londiste_bin" "$root" create-root bench_root "$(connstr prov "$prov")"
        run_logged "$log" "$londiste_bin" "$leaf" create-leaf bench_leaf "$(connstr sub "$sub")" \
            --provider="$(connstr prov "$prov")"
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$root" add-table $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$leaf" add-table $tables --expect-sync
        ;;
    plain-sql)
        psql_on prov "$prov" -c "create extension pgq" -c "select pgq.create_queue('$queue')" >/dev/null
        for t in $tables; do
            psql_on prov "$prov" -c "create trigger _bench_sql after insert or update or delete on $t
                for each row execute procedure pgq.sqltriga('$queue')"
        done
        psql_on sub "$sub" -c "create table floor_sql (n bigint primary key, stmt text not null)"
        ;;
    esac
    # Tick exactly every BATCH events while the backlog is made; no lag or idle ticks.
    psql_on prov "$prov" -At \
        -c "select pgq.set_queue_config('$queue', 'ticker_max_count', '$BATCH')" \
        -c "select pgq.set_queue_config('$queue', 'ticker_max_lag', '1 hour')" \
        -c "select pgq.set_queue_config('$queue', 'ticker_idle_period', '1 hour')" >/dev/null
}

consumer_of() { # $1 = variant
    case $1 in
    skyrep | skyrep-pgq) echo "$skyrep_job" ;;
    londiste) echo "$londiste_job" ;;
    *) echo "" ;;
    esac
}

start_backlog() { # $1 = variant, $2 = round; runs pgbench in the background
    local v=$1
    "$pgbench" -n -M prepared -c 1 -j 1 -t "$transactions" --random-seed="$((SEED + $2))" \
        -D queue="$queue" -f "$tmp/tx_a.sql" -f "$tmp/tx_b.sql" \
        -h 127.0.0.1 -p "${port[prov]}" -U postgres "$(db_of "$v" prov)" >"$tmp/pgbench_$v.log" 2>&1 &
    loaders[$v]=$!
    daemons+=("${loaders[$v]}")
}

finish_backlog() { # $1 = variant; waits for pgbench, ticks the tail; sets target_tick, queued
    local v=$1 prov pfx status=0
    prov=$(db_of "$v" prov)
    wait "${loaders[$v]}" || status=$?
    forget_daemon "${loaders[$v]}"
    if ((status != 0)); then
        tail -n 20 "$tmp/pgbench_$v.log" >&2
        die "pgbench failed for $v"
    fi
    psql_on prov "$prov" -At \
        -c "select pgq.set_queue_config('$queue', 'ticker_max_lag', '0')" \
        -c "select pgq.ticker('$queue')" \
        -c "select pgq.set_queue_config('$queue', 'ticker_max_lag', '1 hour')" >/dev/null
    target_tick[$v]=$(value_on prov "$prov" "select last_tick_id from pgq.get_queue_info('$queue')")
    pfx=$(value_on prov "$prov" "select queue_data_pfx from pgq.queue where queue_name = '$queue'")
    queued[$v]=$(value_on prov "$prov" "select count(*) from $pfx")
    note "  $v: backlog of ${queued[$v]} events, made at $(awk '/^tps/ {printf "%.0f", $3; exit}' \
        "$tmp/pgbench_$v.log") transactions/s"
}

# --- draining ----------------------------------------------------------------------------
consumer_tick() { # $1 = variant
    value_on prov "$(db_of "$1" prov)" \
        "select coalesce(last_tick, 0) from pgq.get_consumer_info('$queue', '$(consumer_of "$1")')"
}

forget_daemon() { # $1 = pid
    local keep=() p
    for p in "${daemons[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    daemons=("${keep[@]}")
}

stop_daemon() { # $1 = pid, $2 = signal
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_daemon "$1"
}

commit_times() { # $1 = subscriber db, $2 = start epoch; prints "first last" commit epochs
    psql_on sub "$1" -At -F ' ' -c "
        select extract(epoch from min(ts)), extract(epoch from max(ts))
          from (select pg_xact_commit_timestamp(xmin) as ts from account
                union all select pg_xact_commit_timestamp(xmin) from item
                union all select pg_xact_commit_timestamp(xmin) from history) c
         where ts >= to_timestamp($2)"
}

check_equal() { # $1 = variant
    local v=$1 t a b
    for t in $tables; do
        local q="select count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\n' order by id), '')) from only $t t"
        a=$(value_on prov "$(db_of "$v" prov)" "$q")
        b=$(value_on sub "$(db_of "$v" sub)" "$q")
        [[ $a == "$b" ]] || die "$v: table $t differs after the drain: provider $a, subscriber $b"
    done
}

drain() { # $1 = variant, $2 = round; records the run
    local v=$1 prov sub start pid="" ticker="" log=$tmp/drain_$1_$2.log deadline times batches
    prov=$(db_of "$v" prov) sub=$(db_of "$v" sub)
    psql_on prov postgres -c checkpoint
    psql_on sub postgres -c checkpoint
    : >"$log"
    start=$(date +%s.%N)
    case $v in
    skyrep | skyrep-pgq)
        "$skyrep" "$tmp/$v.ini" replay >>"$log" 2>&1 &
        pid=$!
        daemons+=("$pid")
        ;;
    londiste)
        "$londiste_bin" "$tmp/londiste_leaf.ini" worker >>"$log" 2>&1 &
        pid=$!
        daemons+=("$pid")
        cat >"$tmp/pgqd.ini" <<EOF
[pgqd]
base_connstr = host=127.0.0.1 port=${port[prov]} user=postgres
initial_database = $prov
database_list = $prov
logfile = $tmp/pgqd.log
pidfile = $tmp/pgqd.pid
EOF
        "$pgqd_bin" "$tmp/pgqd.ini" >>"$tmp/pgqd.out" 2>&1 &
        ticker=$!
        daemons+=("$ticker")
        ;;
    plain-sql)
        psql_on sub "$sub" -c "
            do \$\$
            declare
                r record;
                i bigint := 0;
            begin
                for r in select stmt from floor_sql order by n loop
                    execute r.stmt;
                    i := i + 1;
                    if i % $BATCH = 0 then
                        commit;
                    end if;
                end loop;
            end
            \$\$" >>"$log" 2>&1 || die "plain-sql: the SQL did not apply (see $log)"
        ;;
    esac
    if [[ -n $pid ]]; then
        deadline=$(($(date +%s) + DRAIN_TIMEOUT))
        while (($(consumer_tick "$v") < ${target_tick[$v]})); do
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 20 "$log" >&2
                die "$v: the consumer exited before the backlog was drained (log: $log)"
            fi
            if (($(date +%s) > deadline)); then
                tail -n 20 "$log" >&2
                die "$v: not drained after $DRAIN_TIMEOUT s (log: $log)"
            fi
            sleep 0.2
        done
        if [[ $v == londiste ]]; then
            stop_daemon "$pid" INT
            stop_daemon "$ticker" TERM
        else
            stop_daemon "$pid" TERM
        fi
    fi
    times=$(commit_times "$sub" "$start")
    check_equal "$v"
    case $v in
    skyrep | skyrep-pgq | londiste)
        batches=$(grep -c '{count: [1-9]' "$log" || true)
        ;;
    *) batches=$(((EVENTS + BATCH - 1) / BATCH)) ;;
    esac
    read -r first last <<<"$times"
    [[ -n $last ]] || die "$v: no commit found on the subscriber"
    local secs apply rate
    secs=$(awk -v a="$start" -v b="$last" 'BEGIN {printf "%.2f", b - a}')
    apply=$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.2f", b - a}')
    rate=$(awk -v n="$EVENTS" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
    runs[$v]+="$rate "
    secs_of[$v]+="$secs "
    run_lines+=("$(printf '%5s  %-10s %9s %9s %9s %8s %10s' "$2" "$v" "${queued[$v]}" \
        "$secs" "$apply" "$batches" "$rate")")
    note "  $v: $secs s, $rate events/s ($batches batches, apply $apply s)"
    if [[ -n ${DRAIN_LOGS:-} ]]; then
        mkdir -p "$DRAIN_LOGS"
        cp "$log" "$DRAIN_LOGS/"
    fi
    if grep -qiE 'error|warning|traceback' "$log"; then
        cp "$log" "$here/results/drain-$v-round$2.log"
        note "  $v: its log has errors or warnings, kept as bench/results/drain-$v-round$2.log"
    fi
}

fill_floor() { # plain-sql: the captured statements, in event order, into floor_sql
    local prov sub qid
    prov=$(db_of plain-sql prov) sub=$(db_of plain-sql sub)
    qid=$(value_on prov "$prov" "select queue_id from pgq.queue where queue_name = '$queue'")
    psql_on prov "$prov" -c "copy (
        select ev_id, case ev_type
                   when 'I' then 'insert into ' || ev_extra1 || ' ' || ev_data
                   when 'U' then 'update ' || ev_extra1 || ' set ' || ev_data
                   when 'D' then 'delete from ' || ev_extra1 || ' where ' || ev_data
               end
          from pgq.event_$qid where ev_type in ('I', 'U', 'D') order by ev_id) to stdout" |
        psql_on sub "$sub" -c "copy floor_sql from stdin"
    psql_on sub "$sub" -c "vacuum analyze floor_sql"
}

# --- run ---------------------------------------------------------------------------------
mkdir -p "$here/results"
rm -f "$here"/results/drain-*-round*.log
declare -A target_tick queued runs secs_of loaders
run_lines=()
read -r -a order <<<"$VARIANTS"
for ((r = 1; r <= ROUNDS; r++)); do
    note "round $r: setting up ${order[*]} ..."
    for v in "${order[@]}"; do
        setup_variant "$v"
    done
    note "round $r: making the backlog of $EVENTS events ..."
    for v in "${order[@]}"; do
        start_backlog "$v" "$r"
    done
    for v in "${order[@]}"; do
        finish_backlog "$v"
    done
    if has_variant plain-sql; then
        fill_floor
    fi
    for v in "${order[@]}"; do
        psql_on prov "$(db_of "$v" prov)" -c "vacuum analyze"
        psql_on sub "$(db_of "$v" sub)" -c "vacuum analyze"
    done
    note "round $r: draining in the order ${order[*]}"
    for v in "${order[@]}"; do
        drain "$v" "$r"
    done
    # the next round drains in the opposite order
    rev=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
        rev+=("${order[i]}")
    done
    order=("${rev[@]}")
done

mean() { awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.*f", p, s / NF}' p="${2:-0}" <<<"$1"; }
base=""
has_variant londiste && base=$(mean "${runs[londiste]}")
{
    echo "skyrep drain benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    echo "backlog: $EVENTS events in $transactions transactions of 5 (60% updates, 30% inserts, 10% deletes)"
    echo "on 3 tables of $ROWS rows, ticked every $BATCH events; $ROUNDS rounds, drain order alternating"
    echo "seconds: consumer start to the commit of its last batch; apply s: first batch commit to last"
    echo
    printf '%5s  %-10s %9s %9s %9s %8s %10s\n' round tool queued seconds "apply s" batches events/s
    printf '%s\n' "${run_lines[@]}"
    echo
    printf '%-10s %9s %9s %10s %8s   %s\n' tool events seconds events/s ratio "runs (events/s)"
    for v in $VARIANTS; do
        m=$(mean "${runs[$v]}")
        if [[ -n $base ]]; then
            ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2f", a / b}')
        else
            ratio="-"
        fi
        printf '%-10s %9s %9s %10s %8s   %s\n' "$v" "$EVENTS" "$(mean "${secs_of[$v]}" 2)" "$m" "$ratio" "${runs[$v]}"
    done
    echo
    [[ -n $base ]] && echo "ratio: events/s over londiste's"
    has_variant skyrep && echo "skyrep: skyrep replay, skyrep's own PgQ in SQL on the provider"
    has_variant skyrep-pgq && echo "skyrep-pgq: skyrep replay, PgQ's C extension on the provider"
    has_variant londiste && echo "londiste: Londiste 3 leaf worker, pgqd on the provider"
    has_variant plain-sql && echo "plain-sql: the same changes as SQL statements run inside the subscriber (floor)"
    true
} | tee "$here/results/drain-latest.txt.new"
mv "$here/results/drain-latest.txt.new" "$here/results/drain-latest.txt"
if [[ -n ${DRAIN_LOGS:-} ]]; then
    cp "$tmp"/prov.log "$tmp"/sub.log "$tmp"/setup_*.log "$DRAIN_LOGS/"
    [[ -f $tmp/pgqd.log ]] && cp "$tmp/pgqd.log" "$DRAIN_LOGS/"
fi
