#!/bin/sh
# make bench: the default perf suite. Installs the peers' Debian packages when missing, rebuilds
# cstore-bench with them, runs the workloads of the performance targets (issue 5) for cstore,
# RocksDB, LMDB and SQLite in one sitting, prints ONE markdown table (each peer's figure,
# cstore's, and cstore's ratio to the peer the target names), and writes
# perf/results/<timestamp>.json (every run's JSON objects, with machine and load), the table as
# perf/results/<timestamp>.md and perf/results/<timestamp>.png (throughput and p99 per workload;
# needs gnuplot).
#
# The scale is small so that the suite ends within about 10 minutes on the 2-core reference
# machine: the bulk load (and so the memory figure) uses 1M records, as the targets do; the
# rest fewer (durable puts 20k, reads 200k keys, YCSB 50k keys), because a peer's durable writes
# run at a few thousand per second there and SQLite's loads of 1M keys take minutes.
# BENCH_SCALE multiplies every key and request count, decimals allowed, e.g. BENCH_SCALE=10 make
# bench or BENCH_SCALE=0.1 for a quick look. The whole suite runs BENCH_REPEAT times (default 3)
# and the table gives each figure's median over the passes: on a shared virtual machine a single
# pass moved some ratios by 2x. Figures are only comparable within one run: the machine may be
# shared, so the load average before and after is printed with them.
#
# Cases (ids used in the JSON):
#   put64     fillrandom, durable (sync), 64 threads, blocking calls          all engines
#   putsess   fillrandom, durable, 2 threads x 128 in flight (sessions)        cstore
#   put1      fillrandom, durable, 1 thread (p50 against the fdatasync floor) all engines
#   bulk      fillrandom, durability none, --batch keys: peers in one transaction (1 thread);
#             cstore 2 threads, each keeping one cs_batch per shard (cs_key_shard) and
#             writing it at 65536 operations (CS_BATCH_OPS_MAX)                all engines
#   bulksess  fillrandom, durability none, 2 threads x 64 in flight (sessions) cstore
#   read      readrandom, 2 threads, blocking                                 all engines
#   seek      seekrandom, 100 nexts, 2 threads, blocking                      all engines
#   readsess  readrandom, 2 threads x 64 in flight                            cstore
#   ycsb      ycsb-a .. ycsb-f, durable, 8 threads, zipfian 0.99              all engines
#   reopen    open after 200k durable puts (cstore: 1 shard, no checkpoint), records replayed per
#             second of open                                                  cstore, rocksdb
# Environment: BUILD (build folder), BENCH_SCALE, BENCH_ENGINES (default all that are built),
# BENCH_DB (store folder, default ./data/bench), BENCH_RESULTS (default perf/results).
BUILD=${BUILD:-build}
REPEAT=${BENCH_REPEAT:-3}
BIN="$BUILD/cstore-bench"
DB=${BENCH_DB:-./data/bench}
RESULTS=${BENCH_RESULTS:-perf/results}
SCALE=${BENCH_SCALE:-1}

case "$SCALE" in
'' | *[!0-9.]* | *.*.* | .)
    echo "bench.sh: BENCH_SCALE must be a positive number, not '$SCALE'" >&2
    exit 2
    ;;
esac
case "$REPEAT" in
'' | *[!0-9]* | 0)
    echo "bench.sh: BENCH_REPEAT must be a positive whole number, not '$REPEAT'" >&2
    exit 2
    ;;
esac
n() {
    awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s); if (k < 1) k = 1; print k }'
}

sh tools/install-deps.sh librocksdb-dev liblmdb-dev libsqlite3-dev gnuplot-nox hyperfine ||
    echo "bench.sh: could not install every peer package; running with what is there" >&2
make --no-print-directory -s BUILD="$BUILD" "$BIN" >/dev/null || exit 1

built=$("$BIN" --help | sed -n 's/^engines built in: //p')
ENGINES=${BENCH_ENGINES:-$built}
have() { case " $ENGINES " in *" $1 "*) return 0 ;; esac; return 1; }

stamp=$(date -u '+%Y%m%dT%H%M%SZ')
suite_t0=$(date +%s)
mkdir -p "$RESULTS" "$(dirname "$DB")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
runs="$tmp/runs.jsonl"
: >"$runs"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "cstore perf suite: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' \
    /proc/meminfo), $(uname -sr), $(df -PT "$(dirname "$DB")" | awk 'NR==2 {print $2}') at \
$(dirname "$DB"), scale $SCALE, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $load_before" >&2
status=0

# run CASE ENGINE ARGS...: one cstore-bench run on a fresh store; its JSON objects get the case.
run() {
    id=$1
    eng=$2
    shift 2
    have "$eng" || return 0
    rm -rf "$DB"
    t0=$(date +%s)
    if ! "$BIN" --engine "$eng" --db "$DB" --json "$@" >"$tmp/out" 2>"$tmp/err"; then
        status=1
        cat "$tmp/err" >&2
    fi
    echo "bench.sh: $id $eng $* ($(($(date +%s) - t0)) s)" >&2
    sed "s/^{/{\"case\": \"$id\", \"repeat\": $rep, /" "$tmp/out" >>"$runs"
}

# reopen CASE ENGINE KEYS ARGS...: durable puts of KEYS records, then a second run that only
# opens the same store (replaying its log) and reads a little; its open time is the replay.
reopen() {
    id=$1
    eng=$2
    keys=$3
    shift 3
    have "$eng" || return 0
    rm -rf "$DB"
    if ! "$BIN" --engine "$eng" --db "$DB" --json --floor-ops 0 --workload fillrandom \
        --keys "$keys" "$@" >/dev/null 2>"$tmp/err"; then
        status=1
        cat "$tmp/err" >&2
    fi
    t0=$(date +%s)
    if ! "$BIN" --engine "$eng" --db "$DB" --json --floor-ops 0 --phases readrandom:1 \
        --keys "$keys" --ops 1000 "$@" >"$tmp/out" 2>"$tmp/err"; then
        status=1
        cat "$tmp/err" >&2
    fi
    echo "bench.sh: $id $eng $keys keys $* ($(($(date +%s) - t0)) s)" >&2
    sed "s/^{/{\"case\": \"$id\", \"repeat\": $rep, /" "$tmp/out" >>"$runs"
}

PEERS="rocksdb lmdb sqlite"
k_put=$(n 20000)
k_put1=$(n 2000)
k_sess=$(n 100000)
k_bulk=$(n 1000000)
k_read=$(n 200000)
o_read=$(n 400000)
o_seek=$(n 10000)
k_ycsb=$(n 50000)
o_ycsb=$(n 20000)
k_reopen=$(n 200000)
rep=1
while [ "$rep" -le "$REPEAT" ]; do
    [ "$REPEAT" -gt 1 ] && echo "bench.sh: pass $rep of $REPEAT" >&2
    for e in $PEERS cstore; do
        run put64 "$e" --workload fillrandom --durability sync --threads 64 --keys "$k_put"
        run put1 "$e" --workload fillrandom --durability sync --threads 1 --keys "$k_put1"
    done
    run putsess cstore --workload fillrandom --durability sync --threads 2 --inflight 128 \
        --keys "$k_sess"
    for e in $PEERS; do
        run bulk "$e" --workload fillrandom --durability none --threads 1 --batch "$k_bulk" \
            --keys "$k_bulk"
    done
    run bulk cstore --workload fillrandom --durability none --threads 2 --batch "$k_bulk" \
        --keys "$k_bulk"
    run bulksess cstore --workload fillrandom --durability none --threads 2 --inflight 64 \
        --keys "$k_bulk"
    for e in $PEERS cstore; do
        run read "$e" --workload readrandom --threads 2 --keys "$k_read" --ops "$o_read"
        run seek "$e" --workload seekrandom --threads 2 --keys "$k_read" --ops "$o_seek" \
            --scan-length 100
    done
    run readsess cstore --workload readrandom --threads 2 --inflight 64 --keys "$k_read" \
        --ops "$o_read"
    for e in $PEERS cstore; do
        run ycsb "$e" --workload ycsb-a,ycsb-b,ycsb-c,ycsb-d,ycsb-e,ycsb-f --durability sync \
            --threads 8 --keys "$k_ycsb" --ops "$o_ycsb"
    done
    reopen reopen rocksdb "$k_reopen" --durability sync --threads 64
    reopen reopen cstore "$k_reopen" --durability sync --threads 2 --inflight 128 --shards 1 \
        --set checkpoint_wal_bytes=0
    rep=$((rep + 1))
done
rm -rf "$DB"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# The results file: machine, load and every run.
json="$RESULTS/$stamp.json"
{
    printf '{"date": "%s", "scale": "%s", "repeat": %s, "cpus": %s, "kernel": "%s",' \
        "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$SCALE" "$REPEAT" "$(nproc)" "$(uname -r)"
    printf ' "load_before": "%s", "load_after": "%s",' "$load_before" "$load_after"
    printf ' "note": "shared machine: other jobs may run", "runs": [\n'
    sed '$!s/$/,/' "$runs"
    printf ']}\n'
} >"$json"

# runs.tsv, a line per run: case engine workload ops_per_sec p50_us p99_us bytes_per_record
# floor_p50_us open_ms keys p50_over_floor. figures.tsv: the same columns, a line per case,
# engine and workload, each figure the median of its passes (the upper middle one of an even
# count): one slow or fast pass on a shared machine does not make the table.
field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"]*\)\"\{0,1\}[,}].*/\1/p"; }
while IFS= read -r line; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(echo "$line" | field case)" \
        "$(echo "$line" | field engine)" "$(echo "$line" | field workload)" \
        "$(echo "$line" | field ops_per_sec)" "$(echo "$line" | field p50_us)" \
        "$(echo "$line" | field p99_us)" "$(echo "$line" | field bytes_per_record)" \
        "$(echo "$line" | field floor_p50_us)" "$(echo "$line" | field open_ms)" \
        "$(echo "$line" | field keys)" "$(echo "$line" | field p50_over_floor)"
done <"$runs" >"$tmp/runs.tsv"
awk -F'\t' -v OFS='\t' '
    function median(k, c,    n, i, j, t, a) {
        n = cnt[k];
        for (i = 1; i <= n; i++) a[i] = v[k, c, i];
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return a[int(n / 2) + 1];
    }
    {
        k = $1 SUBSEP $2 SUBSEP $3;
        if (!(k in cnt)) { order[++nk] = k; id[k] = $1 OFS $2 OFS $3 }
        cnt[k]++;
        for (c = 4; c <= 11; c++) v[k, c, cnt[k]] = $c;
    }
    END {
        for (i = 1; i <= nk; i++) {
            k = order[i]; line = id[k];
            for (c = 4; c <= 11; c++) line = line OFS median(k, c);
            print line;
        }
    }' "$tmp/runs.tsv" >"$tmp/figures.tsv"

# The table: label, case, workload, metric, case of cstore's figure, peer of the ratio, goal.
cat >"$tmp/rows.tsv" <<'ROWS'
1. durable puts, 64 threads (ops/s)	put64	fillrandom	ops	put64	rocksdb	>= 4
2. durable puts: cstore 2x128 sessions, peers 64 threads (ops/s)	put64	fillrandom	ops	putsess	rocksdb	>= 10
3. one durable writer, p50 us (ratio: cstore / fdatasync floor)	put1	fillrandom	p50	put1	floor	<= 1.25
4. bulk load, durability none (ops/s; peers: one transaction; cstore: a cs_batch per shard, 2 threads)	bulk	fillrandom	ops	bulk	lmdb	>= 2
4b. bulk load: cstore 2x64 sessions (ops/s)	bulk	fillrandom	ops	bulksess	lmdb	-
5a. readrandom, 2 threads, blocking (ops/s)	read	readrandom	ops	read	rocksdb	>= 1
5b. readrandom: cstore 2x64 sessions, peers blocking (ops/s)	read	readrandom	ops	readsess	lmdb	>= 1
6. seekrandom, 100 nexts, 2 threads (ops/s)	seek	seekrandom	ops	seek	rocksdb	>= 1
7. ycsb-a, durable, 8 threads (ops/s)	ycsb	ycsb-a	ops	ycsb	rocksdb	>= 3
7. ycsb-b (ops/s)	ycsb	ycsb-b	ops	ycsb	rocksdb	>= 3
7. ycsb-c (ops/s)	ycsb	ycsb-c	ops	ycsb	rocksdb	-
7. ycsb-d (ops/s)	ycsb	ycsb-d	ops	ycsb	rocksdb	-
7. ycsb-e (ops/s)	ycsb	ycsb-e	ops	ycsb	rocksdb	-
7. ycsb-f (ops/s)	ycsb	ycsb-f	ops	ycsb	rocksdb	-
8. memory after the bulk load (RSS growth per record, page cache not counted; ratio: cstore / 116 raw bytes; cstore: the 2x64-session load)	bulk	fillrandom	bpr	bulksess	raw	<= 1.5
8b. memory after cstore's batched load (with the loader's cs_batch buffers)	bulk	fillrandom	bpr	bulk	raw	-
9. reopen after durable puts (200k at scale 1), no checkpoint (records/s of open; cstore 1 shard)	reopen	readrandom	replay	reopen	rocksdb	>= 1M/s
ROWS

awk -F'\t' -v raw=116 '
    function fmt(v) {
        if (v == "") return "-";
        if (v + 0 >= 100) return sprintf("%.0f", v);
        return sprintf("%.2f", v);
    }
    FNR == NR {
        ops[$1, $2, $3] = $4; p50[$1, $2, $3] = $5; bpr[$1, $2, $3] = $7;
        replay[$1, $2, $3] = $9 > 0 ? $10 / ($9 / 1000) : "";
        floor[$1, $2, $3] = $8; pof[$1, $2, $3] = $11; seen[$1, $2, $3] = 1; next
    }
    FNR == 1 {
        print "| target / workload | rocksdb | lmdb | sqlite | cstore | ratio (vs) | goal |";
        print "| --- | ---: | ---: | ---: | ---: | --- | --- |";
    }
    {
        label = $1; id = $2; wl = $3; m = $4; cid = $5; vs = $6; goal = $7;
        line = "| " label;
        split("rocksdb lmdb sqlite cstore", es, " ");
        for (i = 1; i <= 4; i++) {
            e = es[i]; c = (e == "cstore") ? cid : id; v = "";
            if ((c, e, wl) in seen)
                v = (m == "ops") ? ops[c, e, wl] : (m == "p50") ? p50[c, e, wl] : \
                    (m == "replay") ? replay[c, e, wl] : bpr[c, e, wl];
            val[e] = v; line = line " | " fmt(v);
        }
        r = "-";
        if (val["cstore"] != "") {
            if (vs == "floor" && pof[cid, "cstore", wl] > 0)
                r = sprintf("%.2fx floor (%.0f us)", pof[cid, "cstore", wl],
                            floor[cid, "cstore", wl]);
            else if (vs == "raw")
                r = sprintf("%.2fx raw", val["cstore"] / raw);
            else if (val[vs] > 0)
                r = sprintf("%.2fx %s", val["cstore"] / val[vs], vs);
        }
        print line " | " r " | " goal " |";
    }' "$tmp/figures.tsv" "$tmp/rows.tsv" >"$tmp/table.md"

{
    echo
    echo "cstore perf suite, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, scale $SCALE;" \
        "medians of $REPEAT passes; load average before $load_before, after $load_after" \
        "(shared machine: other jobs ran too)"
    echo
    cat "$tmp/table.md"
    echo
} | tee "$RESULTS/$stamp.md"
echo "results: $json (the suite took $(($(date +%s) - suite_t0)) s)"

# The plot: throughput and p99 per workload and engine, log scales.
if command -v gnuplot >/dev/null 2>&1; then
    png="$RESULTS/$stamp.png"
    awk -F'\t' '
        $1 == "reopen" { next }
        { k = $1 ":" $3; if (!(k in order)) { order[k] = ++n; name[n] = k }
          ops[k, $2] = $4; p99[k, $2] = $6 }
        END {
            split("rocksdb lmdb sqlite cstore", es, " ");
            for (i = 1; i <= n; i++) {
                k = name[i]; line = k;
                for (j = 1; j <= 4; j++) { v = ops[k, es[j]]; line = line " " (v == "" ? "-" : v) }
                for (j = 1; j <= 4; j++) { v = p99[k, es[j]]; line = line " " (v == "" ? "-" : v) }
                print line
            }
        }' "$tmp/figures.tsv" >"$tmp/plot.dat"
    gnuplot <<GP 2>"$tmp/gp.err" || { echo "bench.sh: gnuplot failed:" >&2; cat "$tmp/gp.err" >&2; }
set terminal pngcairo size 1400,900 noenhanced
set output "$png"
set datafile missing "-"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top
set logscale y
set grid ytics
set xtics rotate by -35 font ",9"
set multiplot layout 2,1 title "cstore perf suite $stamp (scale $SCALE, load $load_before)"
set ylabel "ops/s"
plot "$tmp/plot.dat" using 2:xtic(1) title "rocksdb", "" using 3 title "lmdb", \
     "" using 4 title "sqlite", "" using 5 title "cstore"
set ylabel "p99 latency (us)"
plot "$tmp/plot.dat" using 6:xtic(1) title "rocksdb", "" using 7 title "lmdb", \
     "" using 8 title "sqlite", "" using 9 title "cstore"
unset multiplot
GP
    [ -s "$png" ] && echo "plot: $png"
fi
exit $status
