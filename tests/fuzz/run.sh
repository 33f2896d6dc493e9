#!/bin/sh
# Runs every libFuzzer target of $BUILD/fuzz for $FUZZ_RUNS inputs, starting from its committed
# seed corpus tests/fuzz/corpus_<target>/ (read only: new inputs go to a scratch corpus in
# $BUILD/fuzz/work/, emptied first, so every run starts from the same seeds). $FUZZ_SEED seeds
# libFuzzer (0: a random seed, printed). Prints one line per target (runs, seconds, exec/s,
# coverage) and the closing line "N passed, N failed"; a crash, a leak or a hang (an input that
# takes over 10 s) fails the target and leaves the input in $BUILD/fuzz/artifacts/ and the log
# in $BUILD/fuzz/logs/.
BUILD=${BUILD:-build-fuzz}
FUZZ_RUNS=${FUZZ_RUNS:-20000}
FUZZ_SEED=${FUZZ_SEED:-1}
passed=0
failed=0
failures=""
mkdir -p "$BUILD/fuzz/artifacts" "$BUILD/fuzz/logs"
for bin in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    t=$(basename "$bin")
    seeds="tests/fuzz/corpus_${t#fuzz_}"
    work="$BUILD/fuzz/work/$t"
    log="$BUILD/fuzz/logs/$t.log"
    rm -rf "$work"
    mkdir -p "$work"
    [ -d "$seeds" ] || mkdir -p "$seeds"
    start=$(date +%s.%N)
    if timeout 1800 "$bin" -runs="$FUZZ_RUNS" -seed="$FUZZ_SEED" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD/fuzz/artifacts/$t-" \
        "$work" "$seeds" >"$log" 2>&1; then
        passed=$((passed + 1))
        status=ok
    else
        failed=$((failed + 1))
        failures="$failures $t"
        status=FAILED
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    times=$(awk -v s="$start" -v e="$(date +%s.%N)" -v n="${runs:-0}" \
        'BEGIN { d = e - s; printf "%.1f s, %.0f exec/s", d, (d > 0 ? n / d : 0) }')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "$status $t: ${runs:-?} inputs in $times ($cov, $(ls "$seeds" | wc -l) seeds)"
    if [ "$status" = FAILED ]; then
        grep -E 'ERROR|SUMMARY|Test unit written|panic|timeout' "$log" | head -20
        echo "log: $log"
    fi
done
[ -n "$failures" ] && echo "failed:$failures"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
