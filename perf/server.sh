#!/bin/sh
# perf/server.sh: cstored against redis-server with redis-benchmark, in one sitting (make bench
# runs it last; alone: sh perf/server.sh). The server issue's rows:
#   redis-benchmark -t ping,set,get,incr,mset -c 50 -P 16   and the same with -P 1
# against cstored (durability sync: every acknowledged write is on disk, as with Redis's
# appendfsync always), redis-server with appendonly yes + appendfsync always (its durable mode)
# and with appendfsync no (its fastest persisted mode: the OS writes the log when it likes), each
# on its own loopback port and temporary folder, started and stopped here.
#
# Like for like: both servers are release builds (Debian's redis-server, cstored from `make`);
# Redis runs its defaults otherwise (one thread for commands; io-threads off, its default and its
# recommendation below 4 cores), no RDB snapshots during the run (save ""), so that neither side
# pays for a background copy. cstored runs one shard per CPU (its default). The table gives
# requests per second and p50/p99 in ms from redis-benchmark's --csv output, and the ratio of
# cstored to each Redis mode. Targets (the issue): durable SET >= 2x Redis appendfsync always;
# GET >= 1.5x Redis. redis-benchmark itself runs on the same 2 CPUs (it is one thread).
#
# Environment: BUILD (build folder), BENCH_SCALE (multiplies the request counts; default 1:
# 200k requests per test with -P 16, 50k with -P 1), BENCH_RESULTS (default perf/results),
# SERVER_PORT_BASE (default 16380: cstored on it, Redis on +1 and +2).
set -u
BUILD=${BUILD:-build}
SCALE=${BENCH_SCALE:-1}
RESULTS=${BENCH_RESULTS:-perf/results}
BASE=${SERVER_PORT_BASE:-16380}
sh tools/install-deps.sh redis-server redis-tools >/dev/null ||
    echo "server.sh: could not install redis-server; running cstored alone" >&2
make --no-print-directory -s BUILD="$BUILD" "$BUILD/cstored" >/dev/null || exit 1
REDIS=$(command -v redis-server || true)
[ -x /usr/bin/redis-server ] && REDIS=/usr/bin/redis-server
n() { awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s); if (k < 1000) k = 1000; print k }'; }
T=$(mktemp -d /tmp/cs-bench-server.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM
wait_port() { # port: wait until the server answers PING (10 s)
    i=0
    until redis-cli -p "$1" PING >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "server.sh: nothing answers on port $1" >&2; exit 1; }
        sleep 0.1
    done
}

"$BUILD/cstored" --db "$T/cstored" --listen "127.0.0.1:$BASE" >"$T/cstored.log" 2>&1 &
PIDS="$PIDS $!"
wait_port "$BASE"
servers="cstored:$BASE"
if [ -n "$REDIS" ]; then
    for mode in always no; do
        port=$((BASE + 1))
        [ $mode = no ] && port=$((BASE + 2))
        mkdir -p "$T/redis-$mode"
        "$REDIS" --port "$port" --bind 127.0.0.1 --dir "$T/redis-$mode" --save "" \
            --appendonly yes --appendfsync "$mode" --daemonize no --logfile "$T/redis-$mode.log" &
        PIDS="$PIDS $!"
        wait_port "$port"
        servers="$servers redis-$mode:$port"
    done
fi

load1=$(cut -d' ' -f1 /proc/loadavg)
echo "server,pipeline,test,rps,p50_ms,p99_ms" >"$T/all.csv"
for P in 16 1; do
    if [ $P = 16 ]; then count=$(n 200000); else count=$(n 50000); fi
    for s in $servers; do
        name=${s%%:*}
        port=${s##*:}
        # -r: random keys over 100k, so SET and GET touch many keys (not one hot key)
        redis-benchmark -p "$port" -t ping,set,get,incr,mset -c 50 -P "$P" -n "$count" \
            -r 100000 --csv 2>/dev/null >"$T/$name-$P.csv" ||
            echo "server.sh: redis-benchmark against $name failed" >&2
        # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
        # "p99_latency_ms","max_latency_ms"
        awk -F'","' -v s="$name" -v p="$P" 'NR > 1 { gsub(/"/, "");
            split($0, f, ","); t = f[1]; sub(/ .*/, "", t);
            printf "%s,%s,%s,%s,%s,%s\n", s, p, t, f[2], f[5], f[7] }' "$T/$name-$P.csv" \
            >>"$T/all.csv"
    done
done
load2=$(cut -d' ' -f1 /proc/loadavg)

mkdir -p "$RESULTS"
stamp=$(date -u '+%Y%m%dT%H%M%SZ')
{
    echo
    echo "cstored vs redis-server ($("$REDIS" --version 2>/dev/null | cut -d' ' -f3 || echo absent)), redis-benchmark -c 50 -r 100000, $(nproc) CPUs, load average $load1 before, $load2 after"
    echo
    awk -F, 'NR > 1 { k = $2 SUBSEP $3; if (!(k in seen)) { seen[k] = 1; keys[++n] = k }
                      rps[$1, k] = $4; p50[$1, k] = $5; p99[$1, k] = $6 }
        END {
            print "| -P | test | cstored rps | p50 / p99 ms | Redis always rps | p50 / p99 ms | Redis no rps | p50 / p99 ms | vs always | vs no | goal |"
            print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
            for (i = 1; i <= n; i++) {
                split(keys[i], kp, SUBSEP); k = keys[i]
                c = rps["cstored", k]; a = rps["redis-always", k]; o = rps["redis-no", k]
                ra = (a > 0 ? sprintf("%.2fx", c / a) : "-"); ro = (o > 0 ? sprintf("%.2fx", c / o) : "-")
                goal = "";
                if (kp[2] == "SET") goal = (a > 0 ? (c >= 2 * a ? "met" : "missed") " (>= 2x always)" : "-")
                if (kp[2] == "GET") { best = (a > o ? a : o);
                    goal = (best > 0 ? (c >= 1.5 * best ? "met" : "missed") " (>= 1.5x Redis)" : "-") }
                printf "| %s | %s | %s | %s / %s | %s | %s / %s | %s | %s / %s | %s | %s | %s |\n",
                    kp[1], kp[2], c, p50["cstored", k], p99["cstored", k],
                    (a == "" ? "-" : a), p50["redis-always", k], p99["redis-always", k],
                    (o == "" ? "-" : o), p50["redis-no", k], p99["redis-no", k], ra, ro, goal
            }
        }' "$T/all.csv"
    echo
} | tee "$RESULTS/$stamp-server.md"
cp "$T/all.csv" "$RESULTS/$stamp-server.csv"
echo "results: $RESULTS/$stamp-server.md"
