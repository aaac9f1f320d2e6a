#!/usr/bin/env bash
# How fast does a consumer drain a backlog, and what does it cost in CPU and memory? skyrep's
# replay against Londiste 3, built-in logical replication and plain SQL, side by side.
#
# Starts two throwaway PostgreSQL clusters on this machine, a provider cluster and a
# subscriber cluster (fsync off, track_commit_timestamp on, the provider with wal_level =
# logical, in a temporary directory that is removed on exit), and gives every variant its own
# provider database and its own subscriber database:
#
#   skyrep      skyrep replay; the provider has skyrep's own PgQ in SQL (src/queue/sql/pgq_core.sql,
#               installed by `skyrep provider install`, no C extension), skyrep's generated
#               capture triggers
#   skyrep-pgq  skyrep replay; the provider has PgQ 3's C extension (create extension pgq
#               before `skyrep provider install`, which then uses it)
#   londiste    Londiste 3 (Debian's python3-londiste, PgQ 3 and pgq_node extensions): root
#               node on the provider, leaf node on the subscriber, `londiste leaf.ini worker`,
#               with pgqd ticking the provider while it drains (as skyrep's ticker thread does)
#   logical     built-in logical replication: a publication of the three tables on the
#               provider, a subscription with copy_data = false on the subscriber; the
#               provider's walsender decodes the WAL (pgoutput), the subscriber's apply worker
#               applies it, every provider transaction as one transaction
#   plain-sql   the floor: the same row changes as plain SQL statements (captured with PgQ's
#               pgq.sqltriga), run inside the subscriber by one PL/pgSQL loop that commits
#               every BATCH statements: no client, no queue, no decoding
#
# Every round sets all variants up afresh, with three tables with int primary keys (account,
# item, history; ROWS rows each, the same on both sides, so tables are added without a copy:
# skyrep `subscriber add --expect-sync`, londiste `add-table --expect-sync`, logical
# copy_data = false). Then, with no consumer and no ticker running, one pgbench client per
# variant (the queue variants side by side, each with one client and --random-seed
# SEED+round, so every variant gets the same backlog) runs EVENTS/5 transactions of 5
# statements, 60% updates of non-key columns, 30% inserts and 10% deletes, over the three
# tables. After every transaction the client calls pgq.ticker(queue), with the queue's
# ticker_max_count set to BATCH and its lag and idle ticks set an hour away, so the queue ticks
# every BATCH events, the way pgqd ticks a busy queue at ticker_max_count; a last tick closes
# the tail. So all queue consumers face the same events cut into the same batches.
#
# logical has no queue, so its client runs the same two scripts without the pgq.ticker call
# (and there is no pgq in its databases): pgbench picks the script and draws the random values
# the same way whatever the statements are, so its row changes are the same as the others'.
# Its subscription is made and at once disabled (`alter subscription ... disable`; the apply
# worker and the walsender stop, the replication slot on the provider keeps the WAL from its
# creation on), and only then, after the other variants' backlogs, its backlog is made, alone:
# all databases of a cluster write one WAL and a walsender reads all of it, so a backlog made
# alongside the others would have it read (and skip) theirs too. Its "queued" is the row
# changes the slot holds (counted with pg_logical_slot_peek_binary_changes, which does not
# move the slot).
#
# Then each variant in turn (the order alternates between rounds) starts its consumer and
# waits until it is done: skyrep and londiste when the consumer's last tick on the provider
# (pgq.get_consumer_info) reaches the last tick of the backlog; logical, started with `alter
# subscription ... enable`, when the slot's confirmed_flush_lsn on the provider reaches the
# end of the provider's WAL taken right after its backlog (pg_current_wal_insert_lsn(), then
# waiting until the WAL is flushed that far, as a walsender sends only flushed WAL). The
# apply worker reports as flushed only positions up to which every transaction it has
# received is applied and committed on the subscriber (with none pending, the last position
# it received, and the walsender sends in WAL order), so reaching that position means every
# backlog transaction is committed there. (pg_stat_subscription.latest_end_lsn would not do:
# it is the walsender's position as told in keepalives, not what is applied.) Then the
# consumer is stopped (logical: the subscription is dropped, with its slot) and the subscriber
# tables are checked to equal the provider's. The time is from starting the consumer to the
# commit of its last change on the subscriber, so process start-up counts and polling does
# not; "apply s" is from the first commit to the last one. The commit times are the rows'
# commit timestamps (track_commit_timestamp); but a transaction applied by logical
# replication keeps its provider's commit timestamp, so for logical they are read from the
# apply worker's commit records in the subscriber's WAL written during the drain (pg_waldump;
# a commit record carries the local time as well as the origin's).
#
# CPU, as CPU seconds (user + system, /proc/PID/stat) per 100,000 events, read when the drain
# is seen done and before the consumer is stopped, less what a process had used at the start
# if it already existed then (the consumers' processes and connections all start after):
#   process   the consumer process: skyrep replay (all its threads); the Londiste worker
#             (python); for logical the provider's walsender (it decodes; from
#             pg_stat_replication)
#   pgqd      Londiste's pgqd, separately
#   sub       the subscriber side: every client backend connected to the variant's subscriber
#             database; for logical the apply worker (pg_stat_subscription); for plain-sql the
#             backend running the loop (read by that backend itself from /proc at its end)
#   prov      the provider side: every client backend connected to the variant's provider
#             database (skyrep's ticker and consumer connections; Londiste's worker and pgqd
#             connections); none for logical, where the walsender is the process
# A backend that ends before the drain is seen done is not counted.
# Memory: the peak resident memory (VmHWM) of the skyrep process and of the Londiste worker.
#
# Needs the PostgreSQL server binaries, pgbench, python3, cargo (or SKYREP=path to a built
# binary), Debian's postgresql-NN-pgq3 (skyrep-pgq, londiste, plain-sql), and for londiste
# python3-londiste, postgresql-NN-pgq-node, postgresql-NN-londiste-sql and pgqd. A missing
# one stops the script with a message naming the package.
#
# Prints every run (with "queued", the rows in the queue's event tables: the backlog plus the
# few events Londiste's own setup queues), then per variant the mean seconds, events/s
# (EVENTS / seconds), its ratio to londiste's and to logical's events/s, the mean CPU figures
# and the peak memory, and how skyrep stands against its targets (at least 3x londiste's
# events/s and at least logical's; process CPU at most 1/8 of the Londiste worker's;
# subscriber CPU at most half Londiste's). Writes the same to bench/results/drain-latest.txt
# and the figures to bench/results/drain.json (bench/record.py): drain.eps.VARIANT,
# drain.seconds.VARIANT, drain.cpu_process.VARIANT, drain.cpu_pgqd.londiste,
# drain.cpu_backend.VARIANT, drain.cpu_provider.VARIANT, drain.rss_kb.VARIANT. A drain whose
# log (the consumer's; for logical the servers' lines written during it) shows an error or a
# warning keeps that log as bench/results/drain-VARIANT-roundN.log.
#
# SCENARIO picks the backlog: mixed (the above, the default), wide (one provider transaction
# inserting WIDE_ROWS, default 600, rows of 1 MB each into history; ROWS defaults to 1000) or
# bulk (one provider transaction updating every row of account; ROWS defaults to 1000000).
# Those two default to VARIANTS="skyrep logical", EVENTS is the rows changed, and their
# figures go to bench/results/drain-wide.json and drain-bulk.json (drain-wide.eps.VARIANT,
# ...). NAME sets that name (bench/drain_sizes.sh runs the mixed backlog as drain-bN).
#
# Environment: EVENTS (backlog size, 300000), ROUNDS (2), ROWS (rows per table, 100000),
# BATCH (events per tick, 1000), BATCH_EVENTS (skyrep's batch_events key, its default if unset),
# SEED (pgbench random seed, 1),
# VARIANTS (space-separated subset of the names above, default all but skyrep-pgq), SKYREP
# (binary to use instead of building with cargo build --release), DRAIN_TIMEOUT (seconds per
# drain, 900), DRAIN_LOGS (a directory to copy every consumer log and the server logs into),
# QUIET_WAIT and QUIET_PERCENT (bench/lib.sh wait_quiet, before every drain).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
SCENARIO=${SCENARIO:-mixed}
case $SCENARIO in
mixed)
    EVENTS=${EVENTS:-300000}
    ROWS=${ROWS:-100000}
    name=${NAME:-drain}
    ;;
wide)
    WIDE_ROWS=${WIDE_ROWS:-600}
    EVENTS=$WIDE_ROWS
    ROWS=${ROWS:-1000}
    VARIANTS=${VARIANTS:-skyrep logical}
    name=${NAME:-drain-wide}
    ;;
bulk)
    ROWS=${ROWS:-1000000}
    EVENTS=$ROWS
    VARIANTS=${VARIANTS:-skyrep logical}
    name=${NAME:-drain-bulk}
    ;;
*)
    echo "drain.sh: unknown SCENARIO $SCENARIO (known: mixed wide bulk)" >&2
    exit 1
    ;;
esac
ROUNDS=${ROUNDS:-2}
BATCH=${BATCH:-1000}
SEED=${SEED:-1}
VARIANTS=${VARIANTS:-skyrep londiste logical plain-sql}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-900}

# shellcheck source=bench/lib.sh
source "$here/lib.sh"

for v in $VARIANTS; do
    case $v in
    skyrep | skyrep-pgq | londiste | logical | plain-sql) ;;
    *) die "unknown variant $v (known: skyrep skyrep-pgq londiste logical plain-sql)" ;;
    esac
done
has_variant() { [[ " $VARIANTS " == *" $1 "* ]]; }
for n in EVENTS ROUNDS ROWS BATCH SEED DRAIN_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer, not '${!n}'"
done
if [[ $SCENARIO == mixed ]]; then
    ((EVENTS % 10 == 0)) || die "EVENTS must be a multiple of 10 (transactions of 5 events, two kinds)"
    ((BATCH % 5 == 0)) || die "BATCH must be a multiple of 5 (5 events per transaction)"
    ((ROWS >= EVENTS / 10)) || die "ROWS must be at least EVENTS/10 (deletes remove pre-filled history rows)"
fi
transactions=$((EVENTS / 5))

# --- what is needed ----------------------------------------------------------------------
sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pgmajor")
pgbench=$bindir/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found (apt-get install postgresql-contrib)"
if has_variant skyrep-pgq || has_variant plain-sql; then
    [[ -f $sharedir/extension/pgq.control ]] ||
        die "the pgq extension is not installed (apt-get install postgresql-$pgmajor-pgq3)"
fi
if has_variant londiste; then
    need_londiste
fi
skyrep=""
if has_variant skyrep || has_variant skyrep-pgq; then
    find_skyrep
fi

case $SCENARIO in
mixed) title="Draining a backlog: skyrep against Londiste 3, logical replication and plain SQL" ;;
wide) title="Draining one transaction of $WIDE_ROWS rows of 1 MB" ;;
bulk) title="Draining one transaction that updates $ROWS rows" ;;
esac
[[ $name == drain-b* ]] && title="$title, ticked every $BATCH events"
record start "$title" SCENARIO="$SCENARIO" EVENTS="$EVENTS" ROUNDS="$ROUNDS" ROWS="$ROWS" BATCH="$BATCH" BATCH_EVENTS="${BATCH_EVENTS:-default}" \
    SEED="$SEED" \
    VARIANTS="$VARIANTS" postgresql="$pgversion" cpus="$(nproc)"

# --- throwaway clusters (bench/lib.sh) ---------------------------------------------------
start_cluster prov "track_commit_timestamp = on" "wal_level = logical"
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
# changes exactly one row. After each transaction the client asks for a tick (see above);
# logical's copies (tx_a_logical.sql, tx_b_logical.sql) leave that call out.
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
for f in tx_a tx_b; do
    grep -v '^select pgq\.ticker' "$tmp/$f.sql" >"$tmp/${f}_logical.sql"
done
# The other scenarios' backlog: one provider transaction.
case $SCENARIO in
wide) scenario_sql="insert into history (id, account_id, delta, created, note)
    select $ROWS + g, 1, 0, now(), repeat(md5(g::text), 32768) from generate_series(1, $WIDE_ROWS) g" ;;
bulk) scenario_sql="update account set balance = balance + 1, updated = now()" ;;
*) scenario_sql="" ;;
esac

queue=benchq
skyrep_job=bench_sub
londiste_tag=bench
londiste_job=${londiste_tag}_leaf # londiste_nodes names the leaf's job TAG_leaf
subscription=bench_logical
db_of() { echo "${2}_${1//-/_}"; } # $1 = variant, $2 = prov or sub

# --- per-variant setup -------------------------------------------------------------------

skyrep_conf() { # $1 = variant
    local f=$tmp/$1.ini extra=()
    [[ -n ${BATCH_EVENTS:-} ]] && extra+=("batch_events = $BATCH_EVENTS")
    skyrep_ini "$f" "$skyrep_job" "$(db_of "$1" prov)" "$(db_of "$1" sub)" "$queue" "${extra[@]}"
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
        londiste_nodes "$londiste_tag" "$prov" "$sub" "$queue"
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_${londiste_tag}_root.ini" add-table $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_${londiste_tag}_leaf.ini" add-table $tables --expect-sync
        ;;
    logical)
        return 0 # subscribed later, just before its backlog (logical_prepare)
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

slot_active() { # prints t while a walsender serves the subscription's slot
    value_on prov "$(db_of logical prov)" \
        "select active from pg_replication_slots where slot_name = '$subscription'"
}

apply_worker() { # prints the pid of the subscription's apply worker, if it runs
    value_on sub "$(db_of logical sub)" "select pid from pg_stat_subscription
        where subname = '$subscription' and relid is null and pid is not null"
}

# logical: subscribes (both sides are equal, so no copy), then disables the subscription and
# waits until its apply worker and walsender are gone; the slot keeps the WAL from here on.
logical_prepare() {
    local prov sub deadline
    prov=$(db_of logical prov) sub=$(db_of logical sub)
    # shellcheck disable=SC2086 # the table list is meant to split
    logical_subscribe "$subscription" "$prov" "$sub" false $tables
    psql_on sub "$sub" -c "alter subscription $subscription disable"
    deadline=$(($(date +%s) + 60))
    while [[ $(slot_active) != f || -n $(apply_worker) ]]; do
        (($(date +%s) < deadline)) || die "logical: the subscription did not stop after disable"
        sleep 0.1
    done
}

consumer_of() { # $1 = variant
    case $1 in
    skyrep | skyrep-pgq) echo "$skyrep_job" ;;
    londiste) echo "$londiste_job" ;;
    *) echo "" ;;
    esac
}

start_backlog() { # $1 = variant, $2 = round; runs pgbench (or the scenario's transaction) in the background
    local v=$1 kind=""
    if [[ $SCENARIO != mixed ]]; then
        psql_on prov "$(db_of "$v" prov)" -c "$scenario_sql" >"$tmp/pgbench_$v.log" 2>&1 &
        loaders[$v]=$!
        daemons+=("${loaders[$v]}")
        return 0
    fi
    [[ $v == logical ]] && kind=_logical
    "$pgbench" -n -M prepared -c 1 -j 1 -t "$transactions" --random-seed="$((SEED + $2))" \
        -D queue="$queue" -f "$tmp/tx_a$kind.sql" -f "$tmp/tx_b$kind.sql" \
        -h 127.0.0.1 -p "${port[prov]}" -U postgres "$(db_of "$v" prov)" >"$tmp/pgbench_$v.log" 2>&1 &
    loaders[$v]=$!
    daemons+=("${loaders[$v]}")
}

# The end of cluster $1's WAL now, once it is flushed to disk (which the WAL writer soon does):
# WAL is decoded, and read by pg_waldump, only as far as it is flushed.
flushed_wal_end() {
    local lsn
    lsn=$(value_on "$1" postgres "select pg_current_wal_insert_lsn()")
    until [[ $(value_on "$1" postgres "select pg_current_wal_flush_lsn() >= '$lsn'") == t ]]; do
        sleep 0.1
    done
    echo "$lsn"
}

# Waits for pgbench; queue variants: ticks the tail, sets target_tick; logical: sets
# target_lsn. Sets queued.
finish_backlog() { # $1 = variant
    local v=$1 prov pfx status=0
    prov=$(db_of "$v" prov)
    wait "${loaders[$v]}" || status=$?
    forget_daemon "${loaders[$v]}"
    if ((status != 0)); then
        tail -n 20 "$tmp/pgbench_$v.log" >&2
        die "pgbench failed for $v"
    fi
    if [[ $v == logical ]]; then
        target_lsn=$(flushed_wal_end prov)
        queued[$v]=$(value_on prov "$prov" "select count(*)
            from pg_logical_slot_peek_binary_changes('$subscription', null, null,
                'proto_version', '1', 'publication_names', '${subscription}_pub')
            where get_byte(data, 0) in (ascii('I'), ascii('U'), ascii('D'))")
    else
        psql_on prov "$prov" -At \
            -c "select pgq.set_queue_config('$queue', 'ticker_max_lag', '0')" \
            -c "select pgq.ticker('$queue')" \
            -c "select pgq.set_queue_config('$queue', 'ticker_max_lag', '1 hour')" >/dev/null
        target_tick[$v]=$(value_on prov "$prov" "select last_tick_id from pgq.get_queue_info('$queue')")
        pfx=$(value_on prov "$prov" "select queue_data_pfx from pgq.queue where queue_name = '$queue'")
        queued[$v]=$(value_on prov "$prov" "select count(*) from $pfx")
    fi
    if [[ $SCENARIO == mixed ]]; then
        note "  $v: backlog of ${queued[$v]} events, made at $(awk '/^tps/ {printf "%.0f", $3; exit}' \
            "$tmp/pgbench_$v.log") transactions/s"
    else
        note "  $v: backlog of ${queued[$v]} events in one transaction"
    fi
}

# --- CPU and memory ----------------------------------------------------------------------
# "pid cpu-seconds" of every client backend connected to database $2 of cluster $1.
backend_cpu_list() {
    local pid s
    for pid in $(backend_pids "$1" "$2"); do
        if s=$(cpu_seconds "$pid" 2>/dev/null); then echo "$pid $s"; fi
    done
}
# CPU seconds the backends in list $2 (at the end) used since list $1 (at the start).
backend_cpu_used() {
    awk 'FILENAME == ARGV[1] {s[$1] = $2; next} {t += $2 - ($1 in s ? s[$1] : 0)} END {printf "%.2f", t}' "$1" "$2"
}
per_100k() { awk -v s="$1" -v n="$EVENTS" 'BEGIN {printf "%.3f", s * 100000 / n}'; }

# --- draining ----------------------------------------------------------------------------
consumer_tick() { # $1 = variant
    value_on prov "$(db_of "$1" prov)" \
        "select coalesce(last_tick, 0) from pgq.get_consumer_info('$queue', '$(consumer_of "$1")')"
}

logical_done() { # t once the subscriber has confirmed the WAL up to target_lsn
    value_on prov "$(db_of logical prov)" "select confirmed_flush_lsn >= '$target_lsn'
        from pg_replication_slots where slot_name = '$subscription'"
}


stop_daemon() { # $1 = pid, $2 = signal
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_daemon "$1"
}

# The apply worker's first and last commit between WAL positions $1 and $2 of the subscriber
# (as commit_times prints them), from the commit records in its WAL, which carry the local
# time; its commit timestamps are the provider's (see above).
logical_commit_times() {
    TZ=UTC "$bindir/pg_waldump" -p "$tmp/sub/pg_wal" -s "$1" -e "$2" -r Transaction | python3 -c '
import datetime, sys
times = []
for line in sys.stdin:
    if "desc: COMMIT " in line and "; origin: node " in line:
        t = datetime.datetime.strptime(line.split("desc: COMMIT ", 1)[1][:26], "%Y-%m-%d %H:%M:%S.%f")
        times.append(t.replace(tzinfo=datetime.timezone.utc).timestamp())
if times:
    print("%.6f %.6f" % (min(times), max(times)))
'
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

# Waits until variant $1 has drained; $2 = its consumer's pid (none for logical), $3 = log.
wait_drained() {
    local v=$1 pid=$2 log=$3 deadline
    deadline=$(($(date +%s) + DRAIN_TIMEOUT))
    while :; do
        if [[ $v == logical ]]; then
            [[ $(logical_done) == t ]] && return 0
            if [[ $(value_on sub "$(db_of logical sub)" "select apply_error_count
                    from pg_stat_subscription_stats where subname = '$subscription'") != 0 ]]; then
                tail -n 20 "$tmp/sub.log" >&2
                die "logical: the apply worker failed (see the subscriber's log above)"
            fi
        else
            (($(consumer_tick "$v") >= ${target_tick[$v]})) && return 0
            if ! kill -0 "$pid" 2>/dev/null; then
                tail -n 20 "$log" >&2
                die "$v: the consumer exited before the backlog was drained"
            fi
        fi
        if (($(date +%s) > deadline)); then
            [[ $v == logical ]] && log=$tmp/sub.log
            tail -n 20 "$log" >&2
            die "$v: not drained after $DRAIN_TIMEOUT s"
        fi
        sleep 0.2
    done
}

drain() { # $1 = variant, $2 = round; records the run
    local v=$1 r=$2 prov sub start pid="" log=$tmp/drain_$1_$2.log times batches
    local proc="-" pgqd="-" subcpu="-" provcpu="-" rss="-" walsender worker prov_at sub_at sub_lsn
    prov=$(db_of "$v" prov) sub=$(db_of "$v" sub)
    psql_on prov postgres -c checkpoint
    psql_on sub postgres -c checkpoint
    wait_quiet "the $v drain of round $r"
    : >"$log"
    backend_cpu_list sub "$sub" >"$tmp/cpu_sub_start"
    backend_cpu_list prov "$prov" >"$tmp/cpu_prov_start"
    prov_at=$(stat -c %s "$tmp/prov.log") sub_at=$(stat -c %s "$tmp/sub.log")
    sub_lsn=$(value_on sub postgres "select pg_current_wal_insert_lsn()")
    start=$(date +%s.%N)
    case $v in
    skyrep | skyrep-pgq)
        "$skyrep" "$tmp/$v.ini" replay >>"$log" 2>&1 &
        pid=$!
        daemons+=("$pid")
        ;;
    londiste)
        : >"$tmp/londiste_${londiste_tag}_worker.out"
        londiste_start "$londiste_tag" "$prov"
        pid=$londiste_pid
        ;;
    logical)
        psql_on sub "$sub" -c "alter subscription $subscription enable"
        ;;
    plain-sql)
        # The same backend reads its own CPU time at the end (fields 14 and 15 of its stat).
        psql_on sub "$sub" -At -c "
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
            \$\$" -c "select pg_read_file('/proc/' || pg_backend_pid() || '/stat')" \
            >"$tmp/plain_stat" 2>>"$log" || die "plain-sql: the SQL did not apply (see $log)"
        subcpu=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' \
            "$tmp/plain_stat")
        ;;
    esac
    if [[ $v != plain-sql ]]; then
        wait_drained "$v" "$pid" "$log"
        # CPU and memory now, with the consumer still running
        if [[ $v == logical ]]; then
            walsender=$(value_on prov "$prov" \
                "select pid from pg_stat_replication where application_name = '$subscription'")
            worker=$(apply_worker)
            [[ -n $walsender && -n $worker ]] || die "logical: walsender or apply worker not found"
            proc=$(cpu_seconds "$walsender")
            subcpu=$(cpu_seconds "$worker")
        else
            proc=$(cpu_seconds "$pid")
            rss=$(peak_rss_kb "$pid")
            [[ $v == londiste ]] && pgqd=$(cpu_seconds "$pgqd_pid")
            backend_cpu_list sub "$sub" >"$tmp/cpu_sub_end"
            backend_cpu_list prov "$prov" >"$tmp/cpu_prov_end"
            subcpu=$(backend_cpu_used "$tmp/cpu_sub_start" "$tmp/cpu_sub_end")
            provcpu=$(backend_cpu_used "$tmp/cpu_prov_start" "$tmp/cpu_prov_end")
        fi
        case $v in
        londiste)
            londiste_stop
            cat "$tmp/londiste_${londiste_tag}_worker.out" >>"$log"
            ;;
        logical)
            psql_on sub "$sub" -c "drop subscription $subscription"
            {
                echo "--- provider log"
                tail -c +"$((prov_at + 1))" "$tmp/prov.log"
                echo "--- subscriber log"
                tail -c +"$((sub_at + 1))" "$tmp/sub.log"
            } >>"$log"
            ;;
        *) stop_daemon "$pid" TERM ;;
        esac
    fi
    if [[ $v == logical ]]; then
        times=$(logical_commit_times "$sub_lsn" "$(flushed_wal_end sub)")
    else
        times=$(commit_times "$sub" "$start")
    fi
    check_equal "$v"
    case $v in
    skyrep | skyrep-pgq | londiste) batches=$(grep -c '{count: [1-9]' "$log" || true) ;;
    logical) batches="-" ;;
    *) batches=$(((EVENTS + BATCH - 1) / BATCH)) ;;
    esac
    read -r first last <<<"$times"
    [[ -n $last ]] || die "$v: no commit found on the subscriber"
    local secs apply rate f
    secs=$(awk -v a="$start" -v b="$last" 'BEGIN {printf "%.2f", b - a}')
    apply=$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.2f", b - a}')
    rate=$(awk -v n="$EVENTS" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
    runs[$v]+="$rate "
    secs_of[$v]+="$secs "
    for f in proc pgqd subcpu provcpu; do
        if [[ ${!f} != - ]]; then
            printf -v "$f" '%s' "$(per_100k "${!f}")"
            cpu_of[$f.$v]+="${!f} "
        fi
    done
    [[ $rss == - ]] || rss_of[$v]+="$rss "
    # shellcheck disable=SC2059 # the format is shared with the summary's heading
    run_lines+=("$(printf "$run_format" "$r" "$v" "${queued[$v]}" "$secs" "$apply" "$batches" \
        "$rate" "$proc" "$pgqd" "$subcpu" "$provcpu" "$(mb "$rss")")")
    note "  $v: $secs s, $rate events/s ($batches batches, apply $apply s); CPU s per 100k events:" \
        "process $proc, pgqd $pgqd, subscriber $subcpu, provider $provcpu; peak memory $(mb "$rss") MB"
    if [[ -n ${DRAIN_LOGS:-} ]]; then
        mkdir -p "$DRAIN_LOGS"
        cp "$log" "$DRAIN_LOGS/"
    fi
    if grep -qiE 'error|warning|traceback' "$log"; then
        cp "$log" "$here/results/drain-$v-round$r.log"
        note "  $v: its log has errors or warnings, kept as bench/results/drain-$v-round$r.log"
        record note "$v, round $r: the drain's log has errors or warnings (bench/results/drain-$v-round$r.log)"
    fi
}
mb() { if [[ $1 == - ]]; then echo -; else awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; fi; }
run_format='%5s  %-10s %9s %8s %8s %7s %9s %7s %6s %6s %6s %7s'

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
declare -A target_tick queued runs secs_of cpu_of rss_of loaders
target_lsn=""
run_lines=()
read -r -a order <<<"$VARIANTS"
for ((r = 1; r <= ROUNDS; r++)); do
    note "round $r: setting up ${order[*]} ..."
    for v in "${order[@]}"; do
        setup_variant "$v"
    done
    note "round $r: making the backlog of $EVENTS events ..."
    for v in "${order[@]}"; do
        [[ $v == logical ]] || start_backlog "$v" "$r"
    done
    for v in "${order[@]}"; do
        [[ $v == logical ]] || finish_backlog "$v"
    done
    if has_variant logical; then
        logical_prepare
        start_backlog logical "$r"
        finish_backlog logical
    fi
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

# --- figures and summary -----------------------------------------------------------------
figure() { # $1 = id, $2 = unit, $3 = label, $4 = the runs' values, space-separated (none: no figure)
    local values
    read -r -a values <<<"$4"
    ((${#values[@]} > 0)) || return 0
    record figure "$1" "$2" "$3" "${values[@]}"
}
per="CPU s/100k events"
for v in $VARIANTS; do
    figure "$name.eps.$v" events/s "$v: events drained per second" "${runs[$v]}"
    figure "$name.seconds.$v" s "$v: seconds to drain $EVENTS events" "${secs_of[$v]}"
    figure "$name.cpu_process.$v" "$per" "$v: CPU of the consumer process per 100k events" "${cpu_of[proc.$v]:-}"
    figure "$name.cpu_pgqd.$v" "$per" "$v: CPU of pgqd per 100k events" "${cpu_of[pgqd.$v]:-}"
    figure "$name.cpu_backend.$v" "$per" "$v: CPU of the subscriber's backends per 100k events" \
        "${cpu_of[subcpu.$v]:-}"
    figure "$name.cpu_provider.$v" "$per" \
        "$v: CPU of the provider's backends serving the consumer per 100k events" "${cpu_of[provcpu.$v]:-}"
    figure "$name.rss_kb.$v" kB "$v: peak resident memory of the consumer process" "${rss_of[$v]:-}"
done

mean() { # $1 = values (or empty: -), $2 = decimals
    if [[ -z ${1// /} ]]; then
        echo -
    else
        awk '{s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.*f", p, s / NF}' p="${2:-0}" <<<"$1"
    fi
}
ratio() { # $1 over $2, or - when either is missing
    if [[ $1 == - || $2 == - || -z $2 ]]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; fi
}
eps_of() { if has_variant "$1"; then mean "${runs[$1]}"; else echo -; fi; }
cpu_mean() { mean "${cpu_of[$1.$2]:-}" 3; } # $1 = proc, pgqd, subcpu or provcpu; $2 = variant
target() { # $1 = what, $2 = value, $3 = limit, $4 = ge or le
    local verdict
    if [[ $2 == - || $3 == - ]]; then return 0; fi
    verdict=$(awk -v a="$2" -v b="$3" -v op="$4" \
        'BEGIN {ok = (op == "ge") ? a >= b : a <= b; print ok ? "met" : "NOT met"}')
    printf '  %-52s %8s  limit %6s  %s\n' "$1" "$2" "$3" "$verdict"
}
sum_format='%-10s %8s %10s %7s %7s %7s %6s %6s %6s %7s'
{
    echo "skyrep drain benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(commit_id)"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    case $SCENARIO in
    mixed)
        echo "backlog: $EVENTS events in $transactions transactions of 5 (60% updates, 30% inserts, 10% deletes)"
        echo "on 3 tables of $ROWS rows, ticked every $BATCH events; $ROUNDS rounds, drain order alternating"
        ;;
    *) echo "backlog: $EVENTS events in one transaction: $scenario_sql; $ROUNDS rounds, drain order alternating" ;;
    esac
    echo "seconds: consumer start to the commit of its last change; apply s: first commit to last"
    echo "CPU columns: CPU seconds per 100,000 events (proc: the consumer process; sub: subscriber"
    echo "backends; prov: provider backends serving the consumer); peak MB: the consumer's peak RSS"
    echo
    # shellcheck disable=SC2059 # the format is a variable on purpose, shared with the run lines
    printf "$run_format\n" round tool queued seconds "apply s" batches events/s proc pgqd sub prov "peak MB"
    printf '%s\n' "${run_lines[@]}"
    echo
    # shellcheck disable=SC2059
    printf "$sum_format\n" tool seconds events/s "x lond" "x logic" proc pgqd sub prov "peak MB"
    lond=$(eps_of londiste) logi=$(eps_of logical)
    for v in $VARIANTS; do
        m=$(mean "${runs[$v]}")
        peak=-
        [[ -n ${rss_of[$v]:-} ]] && peak=$(mb "$(tr ' ' '\n' <<<"${rss_of[$v]}" | sort -n | tail -n 1)")
        # shellcheck disable=SC2059
        printf "$sum_format\n" "$v" "$(mean "${secs_of[$v]}" 2)" "$m" "$(ratio "$m" "$lond")" \
            "$(ratio "$m" "$logi")" "$(cpu_mean proc "$v")" "$(cpu_mean pgqd "$v")" \
            "$(cpu_mean subcpu "$v")" "$(cpu_mean provcpu "$v")" "$peak"
    done
    echo
    echo "x lond, x logic: events/s over londiste's, over logical's (means of the runs); CPU: means; peak MB: highest"
    has_variant skyrep && echo "skyrep: skyrep replay, skyrep's own PgQ in SQL on the provider"
    has_variant skyrep-pgq && echo "skyrep-pgq: skyrep replay, PgQ's C extension on the provider"
    has_variant londiste && echo "londiste: Londiste 3 leaf worker (proc), pgqd on the provider (pgqd; its backend is in prov)"
    has_variant logical && echo "logical: built-in logical replication; proc is the provider's walsender, sub the apply worker"
    has_variant plain-sql && echo "plain-sql: the same changes as SQL statements run inside the subscriber (floor); sub is its backend"
    python3 -c 'import json, sys; [print("note:", n) for n in json.load(open(sys.argv[1]))["notes"]]' "$fragment"
    if has_variant skyrep; then
        sky=$(eps_of skyrep)
        echo
        echo "skyrep against its targets:"
        target "events/s over londiste's (at least 3)" "$(ratio "$sky" "$lond")" 3 ge
        target "events/s over logical's (at least 1)" "$(ratio "$sky" "$logi")" 1 ge
        if has_variant londiste; then
            target "process CPU over the Londiste worker's (at most 1/8)" \
                "$(ratio "$(cpu_mean proc skyrep)" "$(cpu_mean proc londiste)")" 0.125 le
            target "subscriber CPU over Londiste's (at most 1/2)" \
                "$(ratio "$(cpu_mean subcpu skyrep)" "$(cpu_mean subcpu londiste)")" 0.5 le
        fi
    fi
    true
} | tee "$here/results/$name-latest.txt.new"
mv "$here/results/$name-latest.txt.new" "$here/results/$name-latest.txt"
if [[ -n ${DRAIN_LOGS:-} ]]; then
    cp "$tmp"/prov.log "$tmp"/sub.log "$tmp"/setup_*.log "$DRAIN_LOGS/"
    if [[ -f $tmp/pgqd_$londiste_tag.log ]]; then cp "$tmp/pgqd_$londiste_tag.log" "$DRAIN_LOGS/"; fi
fi
