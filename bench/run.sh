#!/usr/bin/env bash
# Runs every benchmark, side by side with skyrep's peers, and writes the report:
# bench/results/latest.json (every figure with median, min, max and the number of runs, the
# machine, the date, the commit) and bench/RESULTS.md (the targets, met or not, and the
# figures, with the lag chart).
#
#   capture  the provider's write throughput under the seed load with no capture, skyrep's
#            triggers, Londiste 3's C triggers and PgQ's PL/pgSQL-only triggers (capture.sh)
#   bulk     an UPDATE of 100,000 rows in one statement, and one-row statements: no capture,
#            Londiste 3's C trigger, skyrep's row trigger and its set-based capture (bulk.sh)
#   drain    draining a backlog of 300,000 events: skyrep, Londiste 3, built-in logical
#            replication and the same changes as plain SQL; events/s, CPU per 100k events,
#            memory (drain.sh)
#   lag      lag sampled every second under the seed load at a fixed rate: skyrep, Londiste 3
#            and logical replication, with a chart (lag.sh)
#   copy     a 2M-row table from `subscriber add` to `ok` against a raw COPY pipe, and four
#            500k-row tables with 1 and with 4 copy threads (copy.sh)
#   verify   `compare` of the four seed tables and `repair` of a 1M-row table with 100
#            differing rows, time and peak memory, against Londiste 3 (verify.sh)
#
# Each one starts its own throwaway PostgreSQL clusters on this machine, interleaves the
# variants it compares, and waits for the machine to be quiet before each timed phase. The
# whole run takes about half an hour on 2 cores.
#
# skyrep is measured as it ships: the static binary of packaging/build-static (stripped, its
# size is reported too), else a release build. As root with apt-get, the Debian packages the
# peers need are installed when missing (PgQ 3, pgq_node, Londiste 3's SQL and Python, pgqd,
# gnuplot for the chart); otherwise the missing ones are named.
#
# Environment: BENCHES (a subset of "capture bulk drain lag copy verify"), QUICK=1 (small sizes and
# one round, to try the scripts; its figures mean little), SKYREP (a built skyrep to measure
# instead), and each script's own settings (see the header of each).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
BENCHES=${BENCHES:-capture bulk drain lag copy verify}
for b in $BENCHES; do
    [[ -f $here/$b.sh ]] || {
        echo "run.sh: unknown benchmark $b (known: capture bulk drain lag copy verify)" >&2
        exit 1
    }
done

step() { printf '\n==> %s\n' "$*" >&2; }

# --- what the peers need -----------------------------------------------------------------
missing=()
major=$(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sed -nE 's#^/usr/lib/postgresql/([0-9]+)/bin/pg_ctl$#\1#p' | sort -n | tail -1)
if [[ -z $major || ! -x /usr/lib/postgresql/$major/bin/pg_ctl ]]; then
    missing+=(postgresql postgresql-contrib)
    major=15 # Debian 12's
fi
for pkg in pgq3:pgq pgq-node:pgq_node londiste-sql:londiste; do
    [[ -f /usr/share/postgresql/$major/extension/${pkg#*:}.control ]] || missing+=("postgresql-$major-${pkg%%:*}")
done
command -v pgqd >/dev/null || missing+=(pgqd)
command -v londiste >/dev/null || command -v londiste3 >/dev/null || missing+=(python3-londiste)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "Installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "run.sh: missing Debian packages: ${missing[*]} (apt-get install them as root)" >&2
        exit 1
    fi
fi

# --- skyrep as it ships --------------------------------------------------------------------
mkdir -p "$here/results"
name=footprint
if [[ -n ${SKYREP:-} ]]; then
    binary="the given binary $SKYREP"
elif step "Building the static binary (packaging/build-static)" &&
    (cd "$repo" && packaging/build-static >&2); then
    SKYREP=$repo/target/dist/skyrep binary="the static binary of packaging/build-static"
else
    step "No static build here; measuring a release build (cargo build --release)"
    (cd "$repo" && cargo build --release --quiet)
    SKYREP=$repo/target/release/skyrep binary="a release build (not static)"
fi
export SKYREP
record() { python3 "$here/record.py" "$here/results/$name.json" "$@"; }
stripped=$(mktemp)
strip -o "$stripped" "$SKYREP"
record start "Footprint: the skyrep binary" binary="$binary"
record figure footprint.binary_bytes bytes "size of the stripped skyrep binary" "$(wc -c <"$stripped")"
rm -f "$stripped"

# --- the benchmarks ------------------------------------------------------------------------
if [[ ${QUICK:-} == 1 ]]; then
    export DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} ROUNDS=${ROUNDS:-1} USERS=${USERS:-20000}
    export EVENTS=${EVENTS:-20000} ROWS=${ROWS:-10000} RECORDS=${RECORDS:-20000}
    export BIG_ROWS=${BIG_ROWS:-50000}
fi
names=footprint
for b in $BENCHES; do
    step "bench/$b.sh"
    if [[ ${QUICK:-} == 1 && $b == copy ]]; then
        ROWS=200000 bash "$here/$b.sh"
    else
        bash "$here/$b.sh"
    fi
    names+=" $b"
    if [[ $b == drain ]]; then
        # One wide transaction, one huge one, and the rate against batch size.
        step "bench/drain.sh, SCENARIO=wide"
        SCENARIO=wide bash "$here/drain.sh"
        step "bench/drain.sh, SCENARIO=bulk"
        SCENARIO=bulk bash "$here/drain.sh"
        step "bench/drain_sizes.sh"
        bash "$here/drain_sizes.sh"
        names+=" drain-wide drain-bulk drain-sizes"
    fi
done

# shellcheck disable=SC2086 # the list is meant to split
python3 "$here/report.py" $names
step "Report: bench/RESULTS.md, figures: bench/results/latest.json"
