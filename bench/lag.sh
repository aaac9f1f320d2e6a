#!/usr/bin/env bash
# How far behind is the subscriber under a steady write load? Replication lag of skyrep's
# replay against Londiste 3 and built-in logical replication, side by side.
#
# Starts two throwaway PostgreSQL clusters on this machine, a provider cluster (wal_level =
# logical) and a subscriber cluster (fsync off, in a temporary directory that is removed on
# exit), and gives every variant its own provider database and its own subscriber database:
#
#   skyrep     `skyrep replay` with default settings (its own ticker thread, no pgqd); the
#              tables added with `provider add` and `subscriber add --expect-sync`
#   londiste   Londiste 3 (Debian's python3-londiste, PgQ 3 and pgq_node extensions): root
#              node on the provider, leaf node on the subscriber, add-table on the root and
#              add-table --expect-sync on the leaf; the leaf's worker and pgqd, both with
#              default settings
#   logical    built-in logical replication: a publication of the four tables and a
#              subscription with copy_data = false
#
# Schema and load: the login service of the Londiste 3 field test (tests/fixtures/seed.sql:
# user_info, user_session, user_login_rec, user_logout_rec), USERS users in user_info and one
# user_session row per user, the same rows on both sides (so no variant copies anything).
# The load is the field test's pgbench scripts (tests/fixtures/login.sql and logout.sql, with
# user ids drawn from 1..USERS): each transaction inserts a login or logout record stamped
# with now() and updates the user's session; pgbench -M prepared, 2 clients, at a fixed
# total rate of RATE transactions/s (pgbench -R) for DURATION seconds. The rate is fixed,
# and the same for every variant, because an unthrottled pgbench on this 2-core machine
# saturates it: the consumer would then compete with the load for CPU, and the lag would
# measure CPU starvation rather than how quickly the replication follows its provider.
#
# The lag, the same for all three and independent of their own bookkeeping: once a second
# while the load runs, on the subscriber, the age of the newest replicated change, i.e. the
# subscriber's clock (clock_timestamp()) minus the newest login_time / logout_time present in
# user_login_rec / user_logout_rec there. Both servers run on this machine, so they share the
# clock; all sessions use time zone UTC (PGTZ), and both sides of the subtraction are
# `timestamp` values in that zone. The same query on the provider, right after, gives the
# floor of the measure (the provider is always up to date): the time since the last commit
# there (at RATE = 300 a new row comes every ~3 ms on average) plus the query's own time.
# So every sample overstates the true lag by about that floor, a few ms; and one sample a
# second catches the lag at a random point of its rise and fall, so the max of the samples
# can be below the true peak. The samples of the first WARMUP seconds are discarded.
# The sampler is one python3 process with one psql session on each side. It takes one sample
# in every second from the start of the load, at a random point of that second: the lag rises
# and falls with every batch (a sawtooth whose period is the tick interval), and pgqd ticks
# once a second, so samples exactly a second apart would all hit the same point of Londiste's
# sawtooth. Each second it also reads the resident memory (VmRSS) of the consumer processes:
# the skyrep daemon, and Londiste's worker and pgqd.
#
# Each round runs the variants one after another (the order alternates between rounds), with
# only that variant's consumer running. Before each run the consumer is started and shown to
# be caught up (the provider stamps user_info row 1's mod_time and the subscriber must show
# that value), then wait_quiet. After each run (pgbench stops by itself), the same stamp shows
# when the subscriber has caught up ("catch-up s": from the stamp to seeing it); the
# consumer is stopped and the four tables are checked to be equal on both sides (count and
# md5 of the rows ordered by key).
#
# Needs the PostgreSQL server binaries, pgbench, python3, cargo (or SKYREP=path to a built
# binary), gnuplot (Debian's gnuplot-nox; installed with apt-get when running as root), and for
# londiste python3-londiste, postgresql-NN-pgq3, postgresql-NN-pgq-node,
# postgresql-NN-londiste-sql and pgqd. A missing one stops the script with a message naming
# the package.
#
# Prints every run (achieved transactions/s; "late ms": how late pgbench started its
# transactions on average against the schedule of the fixed rate, a sign of a busy machine;
# lag median, 90th percentile and max; the floor; "tick s": the median seconds between the
# queue's ticks; RSS; catch-up s), a summary per variant over all rounds, and writes the same to
# bench/results/lag-latest.txt; figures to bench/results/lag.json; the chart of the lag over
# time in the last round, one line per variant, to bench/results/lag.svg.
#
# Environment: USERS (users, 200000), RATE (transactions/s of the load, 300), DURATION
# (seconds of load per run, 50: the six runs and their set-up take about 6 minutes), WARMUP
# (seconds of samples discarded per run, 5), ROUNDS (2), VARIANTS (space-separated subset of
# the names above, default all), CATCHUP_TIMEOUT (seconds a consumer may take to catch up,
# 120), SKYREP (binary to use instead of building with cargo build --release), QUIET_WAIT /
# QUIET_PERCENT (see bench/lib.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
USERS=${USERS:-200000}
RATE=${RATE:-300}
DURATION=${DURATION:-50}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-2}
VARIANTS=${VARIANTS:-skyrep londiste logical}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-120}

name=lag
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

for v in $VARIANTS; do
    case $v in
    skyrep | londiste | logical) ;;
    *) die "unknown variant $v (known: skyrep londiste logical)" ;;
    esac
done
has_variant() { [[ " $VARIANTS " == *" $1 "* ]]; }
for n in USERS RATE DURATION ROUNDS CATCHUP_TIMEOUT; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive integer, not '${!n}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, not '$WARMUP'"
((DURATION > WARMUP + 1)) || die "DURATION must be more than WARMUP + 1 seconds"

# --- what is needed ----------------------------------------------------------------------
pgbench=$bindir/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found (apt-get install postgresql-contrib)"
if ! command -v gnuplot >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "gnuplot not found (apt-get install gnuplot-nox)"
    note "installing gnuplot-nox for the chart ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >"$tmp/apt.log" 2>&1 ||
        die "apt-get install gnuplot-nox failed (see $tmp/apt.log)"
fi
has_variant londiste && need_londiste
has_variant skyrep && find_skyrep
# The writers' now() and the sampler's clock in the same zone, whatever the environment says.
export PGTZ=UTC

# --- throwaway clusters (bench/lib.sh) ---------------------------------------------------
start_cluster prov "wal_level = logical"
start_cluster sub

record start "Replication lag under a steady write load" USERS="$USERS" RATE="$RATE" \
    DURATION="$DURATION" WARMUP="$WARMUP" ROUNDS="$ROUNDS" VARIANTS="$VARIANTS"

# --- schema, rows and load ---------------------------------------------------------------
tables="user_info user_session user_login_rec user_logout_rec"
declare -A key_of=([user_info]=userid [user_session]=userid [user_login_rec]=id [user_logout_rec]=id)
# The same rows on both sides: nothing taken from the clock.
fill_sql="
insert into user_info select g, 'user' || g, '用户' || g, 'engineer', date '1980-01-01' + g % 10000,
    'hello world', 'user' || g || '@example.com', 10000000 + g, timestamp '2024-01-01',
    timestamp '2024-01-01'
  from generate_series(1, $USERS) g;
insert into user_session (userid) select g from generate_series(1, $USERS) g;
"
note "making the login service with $USERS users on both sides ..."
for c in prov sub; do
    psql_on "$c" postgres -c "create database seed"
    psql_on "$c" seed -f "$repo/tests/fixtures/seed.sql" -c "$fill_sql" -c "vacuum analyze" >/dev/null
    for v in $VARIANTS; do
        psql_on "$c" postgres -c "create database $v template seed"
    done
done
# The field test's scripts with user ids from 1..USERS.
for f in login logout; do
    sed -E "s/random\(1, *[0-9]+\)/random(1, $USERS)/" "$repo/tests/fixtures/$f.sql" >"$tmp/$f.sql"
    grep -q "random(1, $USERS)" "$tmp/$f.sql" || die "tests/fixtures/$f.sql has no random(1, N) to size"
done

# --- per-variant setup -------------------------------------------------------------------
queue=lagq
skyrep_conf=$tmp/skyrep.ini
setup_variant() { # $1 = variant
    local log=$tmp/setup_$1.log
    case $1 in
    skyrep)
        skyrep_ini "$skyrep_conf" lag_skyrep skyrep skyrep "$queue"
        run_logged "$log" "$skyrep" -q "$skyrep_conf" provider install
        run_logged "$log" "$skyrep" -q "$skyrep_conf" subscriber install
        # shellcheck disable=SC2086 # the table list is meant to split
        run_logged "$log" "$skyrep" -q "$skyrep_conf" provider add $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$skyrep" -q "$skyrep_conf" subscriber add $tables --expect-sync
        ;;
    londiste)
        londiste_nodes lag londiste londiste "$queue"
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_lag_root.ini" add-table $tables
        # shellcheck disable=SC2086
        run_logged "$log" "$londiste_bin" "$tmp/londiste_lag_leaf.ini" add-table $tables --expect-sync
        ;;
    logical)
        # shellcheck disable=SC2086
        logical_subscribe lag logical logical false $tables
        psql_on sub logical -c "alter subscription lag disable"
        ;;
    esac
}


# Starts the variant's consumer; sets consumer_pids (the processes whose RSS is sampled) and
# watch_pids (those that must stay alive).
start_consumer() { # $1 = variant
    case $1 in
    skyrep)
        "$skyrep" "$skyrep_conf" replay >>"$tmp/skyrep_replay.log" 2>&1 &
        daemons+=("$!")
        consumer_pids=("$!")
        ;;
    londiste)
        londiste_start lag londiste
        consumer_pids=("$londiste_pid" "$pgqd_pid")
        ;;
    logical)
        psql_on sub logical -c "alter subscription lag enable"
        consumer_pids=()
        ;;
    esac
}

stop_consumer() { # $1 = variant
    case $1 in
    skyrep)
        kill -INT "${consumer_pids[0]}" 2>/dev/null || true
        wait "${consumer_pids[0]}" 2>/dev/null || true
        forget_daemon "${consumer_pids[0]}"
        ;;
    londiste) londiste_stop ;;
    logical) psql_on sub logical -c "alter subscription lag disable" ;;
    esac
}

consumer_log() { # $1 = variant
    case $1 in
    skyrep) echo "$tmp/skyrep_replay.log" ;;
    londiste) echo "$tmp/londiste_lag_leaf.log" ;;
    logical) echo "$tmp/sub.log" ;;
    esac
}

consumer_alive() { # $1 = variant; stops the script if a consumer process has exited
    local pid
    for pid in "${consumer_pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$(consumer_log "$1")" >&2
            die "$1: a consumer process ($pid) has exited (log: $(consumer_log "$1"))"
        fi
    done
}

# Stamps user_info row 1 on the provider and waits until the subscriber shows the stamp;
# prints the seconds that took.
catch_up() { # $1 = variant
    local v=$1 stamp t0 deadline
    stamp=$(value_on prov "$v" "update user_info set mod_time = clock_timestamp() where userid = 1
        returning mod_time")
    t0=$(date +%s.%N)
    deadline=$(($(date +%s) + CATCHUP_TIMEOUT))
    until [[ $(value_on sub "$v" "select mod_time from user_info where userid = 1") == "$stamp" ]]; do
        consumer_alive "$v"
        if (($(date +%s) > deadline)); then
            tail -n 20 "$(consumer_log "$v")" >&2
            die "$v: the subscriber has not caught up after $CATCHUP_TIMEOUT s (log: $(consumer_log "$v"))"
        fi
        sleep 0.05
    done
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f\n", b - a}'
}

check_equal() { # $1 = variant
    local t q a b
    for t in $tables; do
        q="select count(*) || ' ' || coalesce(md5(string_agg(md5(t::text), '' order by ${key_of[$t]})), '')
             from $t t"
        a=$(value_on prov "$1" "$q") b=$(value_on sub "$1" "$q")
        [[ $a == "$b" ]] || die "$1: $t differs after the run (provider: $a, subscriber: $b)"
    done
}

# The median seconds between the queue's ticks in the last DURATION - WARMUP seconds (the
# period of the lag's rise and fall); "-" for logical replication, which has no ticks.
tick_interval() { # $1 = variant
    [[ $1 == logical ]] && {
        echo -
        return
    }
    value_on prov "$1" "
        select coalesce(round(percentile_cont(0.5) within group (order by d)::numeric, 3)::text, '-')
          from (select extract(epoch from tick_time - lag(tick_time) over (order by tick_id)) d
                  from pgq.tick
                 where tick_queue = (select queue_id from pgq.queue where queue_name = '$queue')
                   and tick_time > now() - interval '$((DURATION - WARMUP)) seconds') s"
}

# --- the sampler -------------------------------------------------------------------------
# Starts the load (the pgbench command after --) and, once in every second from its start
# until DURATION - 1 (at a random point of that second), writes one line to OUT: seconds
# since the start, the lag on the subscriber, the same measure on the provider (the floor),
# then the VmRSS in kB of each PID.
cat >"$tmp/sample.py" <<'PY'
import random, subprocess, sys, time

out, pgbench_log, duration, psql, host, sub_port, prov_port, db = sys.argv[1:9]
pids = [p for p in sys.argv[9].split(",") if p]
load = sys.argv[sys.argv.index("--") + 1:]
query = """select extract(epoch from clock_timestamp()::timestamp - greatest(
    (select max(login_time) from (select login_time from user_login_rec order by id desc limit 20) a),
    (select max(logout_time) from (select logout_time from user_logout_rec order by id desc limit 20) b)));
"""

def session(port):
    return subprocess.Popen(
        [psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "postgres", "-d", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

def ask(s):
    s.stdin.write(query)
    s.stdin.flush()
    line = s.stdout.readline()
    if not line:
        sys.exit("sample.py: a psql session ended")
    return line.strip()

def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return line.split()[1]
    return "nan"

sub, prov = session(sub_port), session(prov_port)
ask(sub), ask(prov)  # connected and ready before the clock starts
with open(pgbench_log, "w") as log, open(out, "w") as f:
    start = time.monotonic()
    bench = subprocess.Popen(load, stdout=log, stderr=subprocess.STDOUT)
    for k in range(1, int(duration)):
        time.sleep(max(0.0, start + k - 1 + random.random() - time.monotonic()))
        t = time.monotonic() - start
        lag = ask(sub)
        floor = ask(prov)
        f.write("\t".join([f"{t:.3f}", lag or "nan", floor or "nan"] + [rss(p) for p in pids]) + "\n")
        f.flush()
    code = bench.wait()
for s in (sub, prov):
    s.stdin.close()
    s.wait()
sys.exit(code)
PY

run_variant() { # $1 = variant, $2 = round
    local v=$1 r=$2 samples=$tmp/samples_$1_$2.tsv log=$tmp/pgbench_$1_$2.log pids catchup tps behind tick
    start_consumer "$v"
    catch_up "$v" >/dev/null
    wait_quiet "the $v run of round $r"
    note "round $r: $v, $DURATION s at $RATE transactions/s ..."
    pids=$(IFS=,; echo "${consumer_pids[*]}")
    python3 "$tmp/sample.py" "$samples" "$log" "$DURATION" "$psql_bin" 127.0.0.1 \
        "${port[sub]}" "${port[prov]}" "$v" "$pids" -- \
        "$pgbench" -n -M prepared -c 2 -j 2 -R "$RATE" -T "$DURATION" \
        -f "$tmp/login.sql" -f "$tmp/logout.sql" -h 127.0.0.1 -p "${port[prov]}" -U postgres "$v" || {
        tail -n 20 "$log" >&2
        die "$v: the load or the sampler failed (see above)"
    }
    consumer_alive "$v"
    tick=$(tick_interval "$v")
    catchup=$(catch_up "$v")
    stop_consumer "$v"
    check_equal "$v"
    tps=$(awk '/^tps = / {printf "%.1f", $3; exit}' "$log")
    [[ -n $tps ]] || die "$v: no tps in the pgbench output ($log)"
    behind=$(awk '/^rate limit schedule lag: avg/ {printf "%.1f", $6; exit}' "$log")
    [[ -n $behind ]] || die "$v: no schedule lag in the pgbench output ($log)"
    echo "$v $r $tps $behind $catchup $tick" >>"$tmp/runs"
    note "  $v: $tps transactions/s, caught up $catchup s after the load, tables equal"
}

# --- run ---------------------------------------------------------------------------------
for v in $VARIANTS; do
    setup_variant "$v"
done
mkdir -p "$here/results"
: >"$tmp/runs"
read -r -a order <<<"$VARIANTS"
for ((r = 1; r <= ROUNDS; r++)); do
    for v in "${order[@]}"; do
        run_variant "$v" "$r"
    done
    rev=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do
        rev+=("${order[i]}")
    done
    order=("${rev[@]}")
done

# --- figures, summary and chart ----------------------------------------------------------
# Writes $tmp/fig_ID (the values of figure ID, one per line), $tmp/chart_VARIANT.tsv (the
# last round's samples) and prints the summary.
summarize() {
    python3 - "$tmp" "$WARMUP" "$ROUNDS" "$VARIANTS" <<'PY'
import math, statistics, sys

tmp, warmup, rounds, variants = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
figs = {}
def add(ident, value):
    figs.setdefault(ident, []).append(value)
def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1)]
def desc(values, fmt="%.3f"):
    return " ".join(fmt % x for x in (statistics.median(values), pct(values, 90), max(values)))

rss_ids = {"skyrep": ["lag.rss_kb.skyrep"], "londiste": ["lag.rss_kb.londiste_worker", "lag.rss_kb.pgqd"]}
print(f"{'round':>5}  {'variant':<9} {'tps':>7} {'late ms':>7}  {'lag s: median':>13} {'p90':>6} {'max':>6}  "
      f"{'floor med':>9}  {'tick s':>6}  {'catch-up s':>10}  RSS kB (median)")
floors = {}
for line in open(f"{tmp}/runs"):
    v, r, tps, behind, catchup, tick = line.split()
    add(f"lag.tps.{v}", float(tps))
    rows = [l.split("\t") for l in open(f"{tmp}/samples_{v}_{r}.tsv")]
    if int(r) == rounds:
        with open(f"{tmp}/chart_{v}.tsv", "w") as c:
            c.writelines(f"{row[0]}\t{row[1]}\n" for row in rows)
    kept = [row for row in rows if float(row[0]) > warmup]
    lags = [float(row[1]) for row in kept]
    if not lags or any(math.isnan(x) for x in lags):
        sys.exit(f"{v}, round {r}: no replicated row on the subscriber in some samples after warm-up")
    floor = [float(row[2]) for row in kept]
    floors.setdefault(v, []).extend(floor)
    for x in lags:
        add(f"lag.seconds.{v}", x)
    mems = []
    for i, ident in enumerate(rss_ids.get(v, [])):
        values = [float(row[3 + i]) for row in kept]
        for x in values:
            add(ident, x)
        mems.append(f"{ident.split('.')[-1]} {statistics.median(values):.0f}")
    med, p90, mx = desc(lags).split()
    print(f"{r:>5}  {v:<9} {tps:>7} {behind:>7}  {med:>13} {p90:>6} {mx:>6}  "
          f"{statistics.median(floor):9.4f}  {tick:>6}  {catchup:>10}  {', '.join(mems) or '-'}")
print()
print(f"{'variant':<9} {'samples':>7}  {'lag s: median':>13} {'p90':>6} {'max':>6}  {'tps median':>10}  {'floor max':>9}")
for v in variants:
    lags = figs[f"lag.seconds.{v}"]
    med, p90, mx = desc(lags).split()
    print(f"{v:<9} {len(lags):>7}  {med:>13} {p90:>6} {mx:>6}  "
          f"{statistics.median(figs[f'lag.tps.{v}']):10.1f}  {max(floors[v]):9.4f}")
print()
for ident in sorted(figs):
    if ident.startswith("lag.rss_kb."):
        values = figs[ident]
        print(f"{ident[len('lag.rss_kb.'):]:<16} RSS kB: median {statistics.median(values):.0f}, "
              f"min {min(values):.0f}, max {max(values):.0f} ({len(values)} samples)")
all_floor = [x for v in variants for x in floors[v]]
with open(f"{tmp}/floor", "w") as f:
    f.write(f"{statistics.median(all_floor):.4f} {min(all_floor):.4f} {max(all_floor):.4f}\n")
for ident, values in figs.items():
    with open(f"{tmp}/fig_{ident}", "w") as f:
        f.writelines(f"{x:g}\n" for x in values)
PY
}

summary=$(summarize)
read -r floor_med floor_min floor_max <"$tmp/floor"
# The floor is the measure on an up-to-date copy: it must be a few ms, never negative.
awk -v m="$floor_med" -v lo="$floor_min" 'BEGIN {exit !(m < 0.05 && lo > -0.005)}' ||
    die "the lag measure is off: on the provider it gives median $floor_med s, min $floor_min s (expected ~0)"

label() {
    case $1 in
    lag.seconds.*) echo "lag of the subscriber, ${1#lag.seconds.}, per-second samples after warm-up" ;;
    lag.tps.*) echo "transactions/s pgbench achieved on the provider, ${1#lag.tps.}, per run" ;;
    lag.rss_kb.skyrep) echo "resident memory of the skyrep replay daemon under load, per-second samples" ;;
    lag.rss_kb.londiste_worker) echo "resident memory of the Londiste 3 leaf worker under load, per-second samples" ;;
    lag.rss_kb.pgqd) echo "resident memory of pgqd under load, per-second samples" ;;
    esac
}
unit() {
    case $1 in
    lag.seconds.*) echo s ;;
    lag.tps.*) echo "transactions/s" ;;
    lag.rss_kb.*) echo kB ;;
    esac
}
for f in "$tmp"/fig_*; do
    id=${f#"$tmp"/fig_}
    mapfile -t values <"$f"
    record figure "$id" "$(unit "$id")" "$(label "$id")" "${values[@]}"
done
record note "lag: subscriber clock minus the newest login_time/logout_time on the subscriber, sampled once a second; the same measure on the always up-to-date provider (its floor: time since the last commit plus the query) was median $floor_med s, max $floor_max s"

if has_variant skyrep; then
    targets=$(python3 - "$tmp" <<'PY'
import statistics, sys
def values(ident):
    return [float(x) for x in open(f"{sys.argv[1]}/fig_{ident}")]
lag, mem = values("lag.seconds.skyrep"), values("lag.rss_kb.skyrep")
def verdict(ok):
    return "met" if ok else "NOT met"
med, mx, rss = statistics.median(lag), max(lag), max(mem)
print(f"skyrep targets: median lag {med:.3f} s < 0.3 s {verdict(med < 0.3)}; "
      f"max lag {mx:.3f} s < 1 s {verdict(mx < 1)}; max RSS {rss / 1024:.1f} MB < 12 MB {verdict(rss < 12 * 1024)}")
PY
    )
    record note "$targets"
fi

# The chart: the last round's samples, one line per variant.
gp=$tmp/lag.gp
{
    echo "set terminal svg size 900,500 dynamic font 'sans,12' background rgb 'white'"
    echo "set output '$here/results/lag.svg'"
    echo "set title 'Replication lag at $RATE transactions/s, round $ROUNDS of $ROUNDS (left of the dashed line: warm-up, not counted)'"
    echo "set xlabel 'seconds since the load started'"
    echo "set ylabel 'lag (s)'"
    echo "set grid"
    echo "set key outside bottom center horizontal"
    # Scaled to the samples after the warm-up: a consumer's first batch can find rows from
    # before the load, minutes old, which would flatten every line into the axis.
    top=$(cat "$tmp"/chart_*.tsv | awk -v w="$WARMUP" '$1 >= w && $2 > m {m = $2} END {printf "%.2f", (m > 0 ? m : 1) * 1.25}')
    echo "set yrange [0:$top]"
    echo "set arrow from $WARMUP, graph 0 to $WARMUP, graph 1 nohead dashtype 2"
    sep="plot"
    for v in $VARIANTS; do
        printf "%s '%s' using 1:2 with linespoints pointtype 7 pointsize 0.5 title '%s'" \
            "$sep" "$tmp/chart_$v.tsv" "$v"
        sep=","
    done
    echo
} >"$gp"
gnuplot "$gp" || die "gnuplot failed ($gp)"
record file chart "$here/results/lag.svg"

{
    echo "skyrep lag benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(commit_id)"
    echo "PostgreSQL $pgversion, $(nproc) CPUs, $(uname -m); provider and subscriber clusters on this machine, fsync off"
    echo "load: login/logout of $USERS users, pgbench -M prepared, 2 clients, fixed rate $RATE transactions/s, $DURATION s per run"
    echo "$ROUNDS rounds, order alternating; lag sampled once a second on the subscriber, the first $WARMUP s discarded"
    echo "lag: subscriber clock minus the newest login_time/logout_time on the subscriber"
    echo "floor: the same measure on the provider (always up to date): median $floor_med s, max $floor_max s"
    echo
    echo "$summary"
    echo
    has_variant skyrep && echo "$targets"
    has_variant skyrep && echo "skyrep: skyrep replay, default settings (own ticker thread)"
    has_variant londiste && echo "londiste: Londiste 3 leaf worker and pgqd, default settings"
    has_variant logical && echo "logical: built-in logical replication (publication + subscription)"
    echo "chart: bench/results/lag.svg (round $ROUNDS)"
} | tee "$here/results/lag-latest.txt.new"
mv "$here/results/lag-latest.txt.new" "$here/results/lag-latest.txt"
