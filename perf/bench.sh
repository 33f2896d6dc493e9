#!/bin/sh
# make bench: a small cstore-bench run on ./data/bench (removed before each run), about a
# minute on the 2-core reference machine. BENCH_SCALE (default 1; decimals allowed) multiplies
# the key counts, e.g. BENCH_SCALE=10 make bench.
#
# Runs:
#  1. durable (durability=sync) puts from 8 threads with blocking calls, so the shards group
#     commit what the threads send; random gets from 2 threads; one full scan.
#  2. the same puts and gets from 2 threads keeping 64 requests each in flight (cs_session).
# Each prints ops, seconds, ops/s and p50/p99/p99.9/max latency (us) per phase.
BUILD=${BUILD:-build}
BIN="$BUILD/cstore-bench"
DB=./data/bench
SCALE=${BENCH_SCALE:-1}

case "$SCALE" in
'' | *[!0-9.]* | *.*.* | .)
    echo "bench.sh: BENCH_SCALE must be a positive number, not '$SCALE'" >&2
    exit 2
    ;;
esac
keys() {
    awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s); if (k < 1) k = 1; print k }'
}
if [ ! -x "$BIN" ]; then
    echo "bench.sh: $BIN is missing; run make first" >&2
    exit 1
fi

echo "cstore bench: $(nproc) CPUs, $(uname -sr), scale $SCALE, $(date -u '+%Y-%m-%d %H:%M UTC')"
mkdir -p ./data
status=0

run() {
    rm -rf "$DB"
    echo
    echo "== $1"
    shift
    "$BIN" --db "$DB" "$@" || status=1
}

n=$(keys 100000)
run "durable puts from 8 threads (blocking), gets from 2 threads, a scan" \
    --keys "$n" --durability sync --phases fillrandom:8,readrandom:2,scan
n=$(keys 200000)
run "durable puts and gets, 2 threads x 64 in flight (sessions)" \
    --keys "$n" --durability sync --inflight 64 --phases fillrandom:2,readrandom:2
rm -rf "$DB"
exit $status
