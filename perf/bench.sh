#!/bin/sh
# make bench: the default perf suite. Installs the peers' Debian packages when missing, builds a
# release RocksDB from Debian's source once (perf/rocksdb-release.sh; Debian's own library has
# its asserts on, and is used only when that build fails, which the table's header then says),
# rebuilds cstore-bench with them, runs the workloads of the performance targets (issue 12) for
# cstore, RocksDB, LMDB and SQLite in one sitting, prints ONE markdown table (each engine's
# figure, the fastest peer's, cstore's ratio to it, the goal and whether it is met, and the CPU
# microseconds per request of cstore and of that peer), and writes perf/results/<timestamp>.json
# (every run's JSON objects, each with the load average when it ran), the table as
# perf/results/<timestamp>.md, RocksDB's full OPTIONS files as <timestamp>-rocksdb-options.txt
# and perf/results/<timestamp>.png (throughput and p99 per workload; needs gnuplot).
#
# Each peer runs at its expert configuration, set in one place in its driver (rdb_tune in
# perf/bench_rocksdb.c, lmdb_open in perf/bench_lmdb.c, sqlb_tune in perf/bench_sqlite.c), and
# the rows compare like with like:
# - durable writes at equal requests in flight: 64 blocking threads each; at 256 in flight the
#   peers run 256 blocking threads (they have no asynchronous API), cstore 2 threads x 128
#   sessions, and cstore's own 256 blocking threads are shown beside them;
# - the bulk load persists in every engine: each loads in its fastest mode and the clock stops
#   after its persist call has put everything on disk (--persist: cstore async + cs_checkpoint,
#   RocksDB WAL off + memtable flush, LMDB MDB_WRITEMAP|MDB_NOSYNC + mdb_env_sync, SQLite
#   synchronous=OFF + checkpoint and fsync); engines that can write from several threads get
#   two (cstore, RocksDB), the single-writer ones one (a second thread only waits for the lock);
# - reads run after the load has settled (RocksDB: flush + compaction; see --workload);
# - the ratio is against the fastest peer of each row, and goals are judged against it.
# Values are incompressible (a PRNG seeded by the record index) except in the row that says
# compressible. Read and mixed phases get a warm-up (BENCH_WARMUP seconds, default 0.5) and are
# time-bounded: each stops after BENCH_PHASE_S seconds (default 2) or its request count,
# whichever comes first; the write phases are bounded by their key counts.
#
# The key counts are small so that the suite ends within about 15 minutes on the 2-core
# reference machine: the bulk load (and so the memory figure) uses 1M records, the durable puts
# 20k (a peer's durable writes run at a few thousand per second there), reads 200k keys, YCSB
# 50k keys. BENCH_SCALE multiplies every key and request count and the phase length, decimals
# allowed (BENCH_SCALE=0.05 BENCH_REPEAT=1 make bench is a quick smoke run). The whole suite runs
# BENCH_REPEAT times (default 3) and the table gives each figure's median over the passes: on a
# shared virtual machine a single pass moved some ratios by 2x. Figures are only comparable
# within one run: the machine may be shared, so the load average is recorded with every run.
#
# Cases (ids used in the JSON):
#   put64     fillrandom, durable (sync), 64 threads, blocking calls          all engines
#   put64ol   the same, open loop at 60% of the rate put64 measured just before all engines
#   put64ck   put64 while cstore checkpoints (checkpoint_wal_bytes=512K)      cstore
#   put256    fillrandom, durable, 256 threads, blocking calls                all engines
#   putsess   fillrandom, durable, 2 threads x 128 in flight (sessions)       cstore
#   put1      fillrandom, durable, 1 thread (p50 against both fdatasync floors) all engines
#   bulk      fillrandom that persists (see above), --batch writes per commit  all engines
#   bulkz     the same with compressible values                               all engines
#   bulksess  fillrandom, async, 2 threads x 64 in flight (sessions), persist cstore
#   read      readrandom, 2 threads, blocking                                 all engines
#   readol    the same, open loop at 60% of the rate read measured just before all engines
#   readplain readrandom with RocksDB's PlainTable and mmap reads             rocksdb
#   seek      seekrandom, 100 nexts, 2 threads, blocking                      all engines
#   readsess  readrandom, 2 threads x 64 in flight                            cstore
#   ycsb      ycsb-a .. ycsb-f, durable, 8 threads, zipfian 0.99              all engines
#   reopen    open after 200k durable puts (cstore: 1 shard, no checkpoint), records replayed per
#             second of open                                                  cstore, rocksdb
# Environment: BUILD (build folder), BENCH_SCALE, BENCH_REPEAT, BENCH_PHASE_S, BENCH_WARMUP,
# BENCH_ENGINES (default all that are built), BENCH_DB (store folder, default ./data/bench),
# BENCH_RESULTS (default perf/results).
BUILD=${BUILD:-build}
REPEAT=${BENCH_REPEAT:-3}
BIN="$BUILD/cstore-bench"
DB=${BENCH_DB:-./data/bench}
RESULTS=${BENCH_RESULTS:-perf/results}
SCALE=${BENCH_SCALE:-1}
PHASE_S=${BENCH_PHASE_S:-}
WARMUP=${BENCH_WARMUP:-0.5}

number() {
    case "$2" in
    '' | *[!0-9.]* | *.*.* | .)
        echo "bench.sh: $1 must be a positive number, not '$2'" >&2
        exit 2
        ;;
    esac
}
number BENCH_SCALE "$SCALE"
number BENCH_WARMUP "$WARMUP"
[ -n "$PHASE_S" ] && number BENCH_PHASE_S "$PHASE_S"
case "$REPEAT" in
'' | *[!0-9]* | 0)
    echo "bench.sh: BENCH_REPEAT must be a positive whole number, not '$REPEAT'" >&2
    exit 2
    ;;
esac
n() {
    awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s); if (k < 1) k = 1; print k }'
}
# Phase length: BENCH_PHASE_S, or 2 s times the scale (at least 0.05 s).
[ -z "$PHASE_S" ] && PHASE_S=$(awk -v s="$SCALE" 'BEGIN { d = 2 * s; if (d < 0.05) d = 0.05; print d }')

sh tools/install-deps.sh librocksdb-dev liblmdb-dev libsqlite3-dev gnuplot-nox hyperfine ||
    echo "bench.sh: could not install every peer package; running with what is there" >&2
sh perf/rocksdb-release.sh "$BUILD" || true
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
: >"$tmp/options.txt"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "cstore perf suite: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' \
    /proc/meminfo), $(uname -sr), $(df -PT "$(dirname "$DB")" | awk 'NR==2 {print $2}') at \
$(dirname "$DB"), scale $SCALE, phases ${PHASE_S} s + ${WARMUP} s warm-up, \
$(date -u '+%Y-%m-%d %H:%M UTC'), load average $load_before" >&2
status=0

# Read and mixed phases: time-bounded, after a warm-up. --ops is a cap far above what a phase
# can do in PHASE_S seconds, so the duration is what ends it.
TIMED="--duration $PHASE_S --warmup $WARMUP"

# run CASE ENGINE ARGS...: one cstore-bench run on a fresh store; its JSON objects get the case,
# the pass and the load average at its end. RocksDB's OPTIONS file of the first pass is kept.
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
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "bench.sh: $id $eng $* ($(($(date +%s) - t0)) s, load $load)" >&2
    sed "s/^{/{\"case\": \"$id\", \"repeat\": $rep, \"load\": \"$load\", /" "$tmp/out" >>"$runs"
    if [ "$eng" = rocksdb ] && [ "$rep" -eq 1 ]; then
        for f in "$DB"/OPTIONS-*; do
            [ -f "$f" ] || continue
            printf '### case %s: %s\n' "$id" "$*" >>"$tmp/options.txt"
            cat "$f" >>"$tmp/options.txt"
        done
    fi
}

field() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"]*\)\"\{0,1\}[,}].*/\1/p"; }

# open_loop CASE ENGINE ARGS...: right after a closed-loop run of the same ARGS, the same again
# open-loop (--rate) at OPEN_LOOP of the throughput that run measured, so that its p99 counts
# the queueing a real client would see (no coordinated omission).
OPEN_LOOP=0.6
open_loop() {
    id=$1
    eng=$2
    shift 2
    have "$eng" || return 0
    peak=$(field ops_per_sec <"$tmp/out" | tail -n 1)
    rate=$(awk -v p="$peak" -v f="$OPEN_LOOP" 'BEGIN { r = p * f; if (r < 1) r = 0; printf "%.0f", r }')
    [ "$rate" -gt 0 ] 2>/dev/null || return 0
    run "$id" "$eng" "$@" --rate "$rate"
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
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "bench.sh: $id $eng $keys keys $* ($(($(date +%s) - t0)) s, load $load)" >&2
    sed "s/^{/{\"case\": \"$id\", \"repeat\": $rep, \"load\": \"$load\", /" "$tmp/out" >>"$runs"
}

PEERS="rocksdb lmdb sqlite"
k_put=$(n 20000)
k_put1=$(n 2000)
k_sess=$(n 100000)
k_bulk=$(n 1000000)
k_read=$(n 200000)
k_ycsb=$(n 50000)
k_reopen=$(n 200000)
cap=100000000
# The bulk load, per engine: durability of the load, threads, writes per commit. The single
# writers commit once; RocksDB writes WriteBatches of 1000 from two threads (one huge batch is
# one memtable insert that no other thread can share); cstore keeps one cs_batch per shard.
bulk_args() {
    case "$1" in
    cstore) echo "--durability async --threads 2 --batch $k_bulk" ;;
    rocksdb) echo "--durability none --threads 2 --batch 1000" ;;
    *) echo "--durability none --threads 1 --batch $k_bulk" ;;
    esac
}
rep=1
while [ "$rep" -le "$REPEAT" ]; do
    [ "$REPEAT" -gt 1 ] && echo "bench.sh: pass $rep of $REPEAT" >&2
    for e in $PEERS cstore; do
        run put64 "$e" --workload fillrandom --durability sync --threads 64 --keys "$k_put"
        open_loop put64ol "$e" --workload fillrandom --durability sync --threads 64 \
            --keys "$k_put"
        run put256 "$e" --workload fillrandom --durability sync --threads 256 --keys "$k_put"
        run put1 "$e" --workload fillrandom --durability sync --threads 1 --keys "$k_put1"
    done
    run putsess cstore --workload fillrandom --durability sync --threads 2 --inflight 128 \
        --keys "$k_sess"
    # The same 64 writers while cstore checkpoints (every 512 KiB of WAL per shard: about four
    # checkpoints per shard at scale 1).
    run put64ck cstore --workload fillrandom --durability sync --threads 64 --keys "$k_put" \
        --set checkpoint_wal_bytes=512K
    for e in $PEERS cstore; do
        # shellcheck disable=SC2046 # bulk_args is a list of options
        run bulk "$e" --workload fillrandom --persist $(bulk_args "$e") --keys "$k_bulk"
        # shellcheck disable=SC2046
        run bulkz "$e" --workload fillrandom --persist $(bulk_args "$e") --keys "$k_bulk" \
            --values compressible
    done
    run bulksess cstore --workload fillrandom --durability async --persist --threads 2 \
        --inflight 64 --keys "$k_bulk"
    for e in $PEERS cstore; do
        run read "$e" --workload readrandom --threads 2 --keys "$k_read" --ops "$cap" $TIMED
        open_loop readol "$e" --workload readrandom --threads 2 --keys "$k_read" --ops "$cap" \
            $TIMED
        run seek "$e" --workload seekrandom --threads 2 --keys "$k_read" --ops "$cap" \
            --scan-length 100 $TIMED
    done
    run readplain rocksdb --workload readrandom --threads 2 --keys "$k_read" --ops "$cap" \
        $TIMED --set table=plain
    run readsess cstore --workload readrandom --threads 2 --inflight 64 --keys "$k_read" \
        --ops "$cap" $TIMED
    for e in $PEERS cstore; do
        run ycsb "$e" --workload ycsb-a,ycsb-b,ycsb-c,ycsb-d,ycsb-e,ycsb-f --durability sync \
            --threads 8 --keys "$k_ycsb" --ops "$cap" $TIMED
    done
    reopen reopen rocksdb "$k_reopen" --durability sync --threads 64
    reopen reopen cstore "$k_reopen" --durability sync --threads 2 --inflight 128 --shards 1 \
        --set checkpoint_wal_bytes=0
    rep=$((rep + 1))
done
rm -rf "$DB"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Which RocksDB ran, from the description its runs carry.
rocksdb_build=$(sed -n 's/.*"describe": "rocksdb \([^;]*\);.*/\1/p' "$runs" | head -n 1)
case "$rocksdb_build" in
*assertions*) rocksdb_head="RocksDB with assertions ($rocksdb_build)" ;;
'') rocksdb_head="RocksDB not run" ;;
*) rocksdb_head="RocksDB $rocksdb_build" ;;
esac

# The results file: machine, load and every run.
json="$RESULTS/$stamp.json"
{
    printf '{"date": "%s", "scale": "%s", "repeat": %s, "cpus": %s, "kernel": "%s",' \
        "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$SCALE" "$REPEAT" "$(nproc)" "$(uname -r)"
    printf ' "phase_seconds": %s, "warmup_seconds": %s, "rocksdb": "%s",' "$PHASE_S" "$WARMUP" \
        "$rocksdb_build"
    printf ' "load_before": "%s", "load_after": "%s",' "$load_before" "$load_after"
    printf ' "note": "shared machine: other jobs may run", "runs": [\n'
    sed '$!s/$/,/' "$runs"
    printf ']}\n'
} >"$json"
[ -s "$tmp/options.txt" ] && cp "$tmp/options.txt" "$RESULTS/$stamp-rocksdb-options.txt"

# runs.tsv, a line per run: case engine workload ops_per_sec p50_us p99_us bytes_per_record
# floor_p50_us open_ms keys p50_over_floor cpu_us_per_op floor_append_p50_us disk_bytes
# floor_after_p50_us floor_append_after_p50_us. figures.tsv: the same columns, a line per case,
# engine and workload, each figure the median of its passes (the upper middle one of an even
# count): one slow or fast pass on a shared machine does not make the table; then the lowest and
# the highest ops_per_sec and p50_us of the passes (the run-to-run noise).
COLS="ops_per_sec p50_us p99_us bytes_per_record floor_p50_us open_ms keys p50_over_floor \
cpu_us_per_op floor_append_p50_us disk_bytes floor_after_p50_us floor_append_after_p50_us"
NCOL=$((3 + $(echo "$COLS" | wc -w)))
while IFS= read -r line; do
    out="$(echo "$line" | field case)	$(echo "$line" | field engine)	$(echo "$line" | field workload)"
    for c in $COLS; do
        out="$out	$(echo "$line" | field "$c")"
    done
    printf '%s\n' "$out"
done <"$runs" >"$tmp/runs.tsv"
awk -F'\t' -v OFS='\t' -v ncol="$NCOL" '
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
        for (c = 4; c <= ncol; c++) v[k, c, cnt[k]] = $c;
    }
    function extreme(k, c, hi,    i, x) {
        x = v[k, c, 1];
        for (i = 2; i <= cnt[k]; i++)
            if (hi ? v[k, c, i] + 0 > x + 0 : v[k, c, i] + 0 < x + 0) x = v[k, c, i];
        return x;
    }
    END {
        for (i = 1; i <= nk; i++) {
            k = order[i]; line = id[k];
            for (c = 4; c <= ncol; c++) line = line OFS median(k, c);
            line = line OFS extreme(k, 4, 0) OFS extreme(k, 4, 1) OFS extreme(k, 5, 0) OFS extreme(k, 5, 1);
            print line;
        }
    }' "$tmp/runs.tsv" >"$tmp/figures.tsv"
# The floors over every run of the suite (before and after each run): median, min, max.
floors=$(awk -F'\t' '
    function stats(name, a, n,    i, j, t) {
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n ? sprintf("%s %.0f us (%.0f..%.0f)", name, a[int(n / 2) + 1], a[1], a[n]) : name " -";
    }
    { if ($8 > 0) o[++no] = $8 + 0; if ($15 > 0) o[++no] = $15 + 0;
      if ($13 > 0) p[++np] = $13 + 0; if ($16 > 0) p[++np] = $16 + 0 }
    END { print stats("overwrite", o, no) ", " stats("append", p, np) }' "$tmp/runs.tsv")

# The table: label, case of the peers figures, workload, metric, case of cstore figure, what
# the ratio is against (peer: the fastest peer of the row; floor: the overwrite fdatasync
# floor; raw: 116 raw bytes of key and value; abs: the figure itself; an engine's name: that
# engine's figure), goal.
cat >"$tmp/rows.tsv" <<'ROWS'
1. durable puts, 64 threads (ops/s)	put64	fillrandom	ops	put64	peer	>= 3
1b. durable puts, 64 threads, cstore checkpointing during the phase (ops/s)	put64	fillrandom	ops	put64ck	peer	-
1c. durable puts, 64 threads, open loop at 60% of each engine's peak: p99 us	put64ol	fillrandom	p99	put64ol	peer	-
2. durable puts, 256 in flight: cstore 2x128 sessions, peers 256 threads (ops/s)	put256	fillrandom	ops	putsess	peer	>= 3
2b. durable puts, 256 blocking threads, cstore too (ops/s)	put256	fillrandom	ops	put256	peer	-
3. one durable writer, p50 us (ratio: cstore / overwrite+fdatasync floor)	put1	fillrandom	p50	put1	floor	<= 1.25
3b. one durable writer, p50 us (ratio: cstore / fastest peer)	put1	fillrandom	p50	put1	peer	-
3c. one durable writer, CPU us per put (ratio: cstore / sqlite)	put1	fillrandom	cpu	put1	sqlite	<= 1
4. bulk load that persists (ops/s; the clock stops once all is on disk)	bulk	fillrandom	ops	bulk	peer	>= 2
4b. bulk load that persists, compressible values (ops/s)	bulkz	fillrandom	ops	bulkz	peer	-
4c. bulk load that persists: cstore 2x64 sessions (ops/s)	bulk	fillrandom	ops	bulksess	peer	-
5a. readrandom, 2 threads, blocking (ops/s)	read	readrandom	ops	read	peer	>= 1.5
5b. readrandom: cstore 2x64 sessions, peers 2 blocking threads (ops/s)	read	readrandom	ops	readsess	peer	-
5c. readrandom: RocksDB with PlainTable + mmap reads (ops/s)	readplain	readrandom	ops	read	peer	-
5d. readrandom, open loop at 60% of each engine's peak: p99 us	readol	readrandom	p99	readol	peer	-
6. seekrandom + 100 nexts, 2 threads (ops/s)	seek	seekrandom	ops	seek	peer	>= 1
7. ycsb-a, durable, 8 threads (ops/s)	ycsb	ycsb-a	ops	ycsb	peer	>= 2.5
7. ycsb-b (ops/s)	ycsb	ycsb-b	ops	ycsb	peer	>= 2.5
7. ycsb-c (ops/s)	ycsb	ycsb-c	ops	ycsb	peer	>= 1
7. ycsb-d (ops/s)	ycsb	ycsb-d	ops	ycsb	peer	-
7. ycsb-e (ops/s)	ycsb	ycsb-e	ops	ycsb	peer	>= 1
7. ycsb-f (ops/s)	ycsb	ycsb-f	ops	ycsb	peer	-
8. memory after the bulk load: RssAnon growth per record (ratio: / 116 raw bytes)	bulk	fillrandom	bpr	bulk	raw	<= 1.25
8b. memory after cstore's 2x64-session load	bulk	fillrandom	bpr	bulksess	raw	-
8c. bytes on disk per record after the bulk load (ratio: / 116 raw bytes)	bulk	fillrandom	disk	bulk	raw	-
9. reopen after durable puts (200k at scale 1), no checkpoint: records/s of open, cstore 1 shard	reopen	readrandom	replay	reopen	abs	>= 2000000
ROWS

awk -F'\t' -v raw=116 -v ncol="$NCOL" '
    function fmt(v) {
        if (v == "") return "-";
        if (v + 0 >= 100) return sprintf("%.0f", v);
        return sprintf("%.2f", v);
    }
    function metric(c, e, wl, m) {
        if (!((c, e, wl) in seen)) return "";
        if (m == "ops") return ops[c, e, wl];
        if (m == "p50") return p50[c, e, wl];
        if (m == "p99") return p99[c, e, wl];
        if (m == "replay") return replay[c, e, wl];
        if (m == "disk") return disk[c, e, wl];
        if (m == "cpu") return cpu[c, e, wl];
        return bpr[c, e, wl];
    }
    function met(r, goal,    n, g) {
        if (goal == "-" || r == "") return "-";
        n = split(goal, g, " ");
        if (g[1] == ">=") return r + 0 >= g[2] + 0 ? "yes" : "no";
        return r + 0 <= g[2] + 0 ? "yes" : "no";
    }
    FNR == NR {
        k = $1 SUBSEP $2 SUBSEP $3;
        ops[k] = $4; p50[k] = $5; p99[k] = $6; bpr[k] = $7; floor[k] = $8;
        replay[k] = $9 > 0 ? $10 / ($9 / 1000) : "";
        pof[k] = $11; cpu[k] = $12; disk[k] = $10 > 0 ? $14 / $10 : ""; seen[k] = 1;
        lo[k, "ops"] = $(ncol + 1); hi[k, "ops"] = $(ncol + 2);
        lo[k, "p50"] = $(ncol + 3); hi[k, "p50"] = $(ncol + 4); next
    }
    FNR == 1 {
        print "| target / workload | rocksdb | lmdb | sqlite | cstore | fastest peer | ratio | goal | met | CPU us/op cstore | CPU us/op peer | cstore passes min..max |";
        print "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- |";
    }
    {
        label = $1; id = $2; wl = $3; m = $4; cid = $5; vs = $6; goal = $7;
        lower = (m == "p50" || m == "p99" || m == "bpr" || m == "disk" || m == "cpu");
        line = "| " label;
        split("rocksdb lmdb sqlite cstore", es, " ");
        best = ""; bestv = "";
        for (i = 1; i <= 4; i++) {
            e = es[i]; c = (e == "cstore") ? cid : id;
            val[e] = metric(c, e, wl, m); line = line " | " fmt(val[e]);
            if (e != "cstore" && val[e] != "" && val[e] + 0 > 0 &&
                (bestv == "" || (lower ? val[e] + 0 < bestv + 0 : val[e] + 0 > bestv + 0))) {
                best = e; bestv = val[e];
            }
        }
        r = ""; rtxt = "-";
        cs = val["cstore"];
        if (cs != "") {
            if (vs == "floor" && pof[cid, "cstore", wl] > 0) {
                r = pof[cid, "cstore", wl];
                rtxt = sprintf("%.2fx floor (%.0f us)", r, floor[cid, "cstore", wl]);
            } else if (vs == "raw") {
                r = cs / raw; rtxt = sprintf("%.2fx raw", r);
            } else if (vs != "peer" && (vs in val)) {
                if (val[vs] > 0) { r = cs / val[vs]; rtxt = sprintf("%.2fx %s", r, vs) }
            } else if (vs == "abs") {
                r = cs; rtxt = sprintf("%.2fM/s", cs / 1e6);
            } else if (best != "" && bestv > 0) {
                r = cs / bestv; rtxt = sprintf("%.2fx %s", r, best);
            }
        }
        pcpu = best != "" ? cpu[id, best, wl] : "";
        ccpu = ((cid, "cstore", wl) in seen) ? cpu[cid, "cstore", wl] : "";
        spread = "-";
        if ((m == "ops" || m == "p50") && ((cid, "cstore", wl) in seen))
            spread = fmt(lo[cid, "cstore", wl, m]) ".." fmt(hi[cid, "cstore", wl, m]);
        print line " | " (best == "" ? "-" : best) " | " rtxt " | " goal " | " met(r, goal) \
            " | " fmt(ccpu) " | " fmt(pcpu) " | " spread " |";
    }' "$tmp/figures.tsv" "$tmp/rows.tsv" >"$tmp/table.md"

{
    echo
    echo "cstore perf suite, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, scale $SCALE;" \
        "medians of $REPEAT passes; read and mixed phases ${PHASE_S} s after ${WARMUP} s of" \
        "warm-up; $rocksdb_head; fdatasync floors (p50 of each run, before and after it):" \
        "$floors; load average before $load_before, after $load_after (shared machine: other" \
        "jobs ran too)"
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
set ylabel "p99 latency (us; closed loop but the *ol cases)"
plot "$tmp/plot.dat" using 6:xtic(1) title "rocksdb", "" using 7 title "lmdb", \
     "" using 8 title "sqlite", "" using 9 title "cstore"
unset multiplot
GP
    [ -s "$png" ] && echo "plot: $png"
fi
exit $status
