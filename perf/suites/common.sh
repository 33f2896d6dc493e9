#!/bin/sh
# Shared part of the perf/suites/*.sh scripts: each times whole cstore-bench commands with
# hyperfine (wall time of the process: open, phases, close) and exports markdown and JSON to
# perf/results/<timestamp>-<suite>.{md,json}. Sourced, not run. Environment: BUILD, BENCH_SCALE
# (multiplies key counts), BENCH_RUNS (hyperfine runs per command, default 3), BENCH_DB,
# BENCH_RESULTS. Wall time of a whole command is what hyperfine sees; cstore-bench's own per-phase
# figures (ops/s, percentiles) come from `make bench` or from running it directly.
BUILD=${BUILD:-build}
BIN="$BUILD/cstore-bench"
DB=${BENCH_DB:-./data/bench-suite}
RESULTS=${BENCH_RESULTS:-perf/results}
SCALE=${BENCH_SCALE:-1}
RUNS=${BENCH_RUNS:-3}

case "$SCALE" in
'' | *[!0-9.]* | *.*.* | .)
    echo "suite: BENCH_SCALE must be a positive number, not '$SCALE'" >&2
    exit 2
    ;;
esac
n() {
    awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s); if (k < 1) k = 1; print k }'
}
if ! command -v hyperfine >/dev/null 2>&1; then
    sh tools/install-deps.sh hyperfine || exit 1
fi
if [ ! -x "$BIN" ]; then
    echo "suite: $BIN is missing; run make (or make bench) first" >&2
    exit 1
fi
mkdir -p "$RESULTS" "$(dirname "$DB")"
STAMP=$(date -u '+%Y%m%dT%H%M%SZ')

# suite NAME HYPERFINE-ARGS...: run hyperfine with a fresh store before every run.
suite() {
    name=$1
    shift
    echo "== $name: $(nproc) CPUs, scale $SCALE, $(date -u '+%Y-%m-%d %H:%M UTC')," \
        "load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
    hyperfine --runs "$RUNS" --prepare "rm -rf '$DB'" --cleanup "rm -rf '$DB'" \
        --export-markdown "$RESULTS/$STAMP-$name.md" --export-json "$RESULTS/$STAMP-$name.json" \
        "$@"
    echo "results: $RESULTS/$STAMP-$name.md, $RESULTS/$STAMP-$name.json"
}

# The engines built into cstore-bench, space-separated.
built_engines() {
    "$BIN" --help | sed -n 's/^engines built in: //p'
}
