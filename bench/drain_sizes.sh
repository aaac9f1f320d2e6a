#!/usr/bin/env bash
# Drain rate against batch size: bench/drain.sh's mixed backlog (EVENTS events in transactions
# of 5) drained by skyrep and by built-in logical replication, once for each batch size in
# BATCHES. The backlog is ticked every BATCH events and skyrep's batch_events is set to the
# same, so each skyrep batch is one tick of BATCH events; logical replication has no batches
# (it applies each provider transaction as one), so its rate is measured alongside each run
# as the reference.
#
# Each size is a drain.sh run of its own (NAME=drain-bBATCH: bench/results/drain-bBATCH.json
# and drain-bBATCH-latest.txt); this script then records every size's events/s in
# bench/results/drain-sizes.json as drain-sizes.eps.VARIANT.bBATCH, which bench/report.py
# draws as a chart.
#
# Environment: BATCHES (space-separated events per batch, "100 1000 10000"), EVENTS (100000),
# ROUNDS (1), VARIANTS ("skyrep logical"), and whatever else drain.sh takes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
BATCHES=${BATCHES:-100 1000 10000}
export EVENTS=${EVENTS:-100000} ROUNDS=${ROUNDS:-1} VARIANTS=${VARIANTS:-skyrep logical}
name=drain-sizes
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

for b in $BATCHES; do
    [[ $b =~ ^[0-9]+$ && $((b % 5)) -eq 0 && $b -gt 0 ]] || die "BATCHES: $b is not a positive multiple of 5"
done
if [[ -z ${SKYREP:-} ]] && [[ " $VARIANTS " == *" skyrep "* ]]; then
    find_skyrep
    export SKYREP=$skyrep
fi
for b in $BATCHES; do
    note "batch size $b ..."
    NAME=drain-b$b BATCH=$b BATCH_EVENTS=$b "$here/drain.sh"
done
record start "Drain rate against batch size: skyrep against logical replication" \
    BATCHES="$BATCHES" EVENTS="$EVENTS" ROUNDS="$ROUNDS" VARIANTS="$VARIANTS"
for b in $BATCHES; do
    for v in $VARIANTS; do
        python3 - "$here/results/drain-b$b.json" "drain-b$b.eps.$v" >"$tmp/runs" <<'PY'
import json, sys
fig = json.load(open(sys.argv[1]))["figures"].get(sys.argv[2])
print(" ".join(str(r) for r in fig["runs"]) if fig else "")
PY
        read -r -a runs <"$tmp/runs" || true
        ((${#runs[@]})) || die "no events/s of $v at batch size $b"
        record figure "drain-sizes.eps.$v.b$b" events/s "$v: events/s, batches of $b events" "${runs[@]}"
    done
done
record note "skyrep: one tick of BATCH events a batch (batch_events = BATCH); logical replication has no batches and applies the same transactions of 5 events at every size"
