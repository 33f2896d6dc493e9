#!/bin/sh
# Runs every cstore-fault scenario briefly (about 50 s in all on a 2-core machine) and fails if
# any reports a violation: an acknowledged write lost, a value that was never written, a
# half-applied batch, damage not reported as damage, an I/O error not reported as CS_EIO, a
# database that does not open after a power cut; and for transactions (txn): money created or
# lost, an acknowledged transfer lost, a transfer half applied or applied after its commit
# failed, a committed read-only transaction or a quiescent read that saw part of a transfer;
# and through the network (server): a cstored SIGKILLed under pipelined clients (and
# redis-benchmark) that loses an acknowledged write, shows an MSET in part or a counter out of
# range, or does not restart and answer. One run must fail: the server scenario with cstored at
# durability none, which proves that its check sees lost writes.
# CS_TEST_LONG=1 runs them for about 8.5 minutes instead. CS_FAULT_SEED picks the seed (default:
# a fixed one for the short run, the time for the long one; printed either way, so that a
# failure reproduces).
BUILD=${BUILD:-build}
TOOL="$BUILD/cstore-fault"
SEED=${CS_FAULT_SEED:-20261122}
if [ -n "$CS_TEST_LONG" ] && [ -z "$CS_FAULT_SEED" ]; then
    SEED=$(date +%s) # long runs explore new schedules; the seed printed reproduces one
fi
if [ ! -x "$TOOL" ]; then
    echo "fault.sh: $TOOL is missing (make all)"
    exit 1
fi
failed=""
run() {
    scenario=$1
    shift
    echo "-- cstore-fault $scenario --seed $SEED $*"
    # The tool prints a table header, its result line and "seed N: ok"; engine messages about
    # the injected faults (read-only shards, torn tails cut) go to stderr and are expected.
    if ! "$TOOL" "$scenario" --seed "$SEED" "$@" 2>"${TMPDIR:-/tmp}/cstore-fault-$$.err"; then
        failed="$failed $scenario"
        grep -E "VIOLATION|cstore-fault:" "${TMPDIR:-/tmp}/cstore-fault-$$.err" | head -20
    fi
    rm -f "${TMPDIR:-/tmp}/cstore-fault-$$.err"
}
# must_fail scenario args: the run must exit 1 and report violations (a check that is shown
# broken durability and does not object proves nothing).
must_fail() {
    scenario=$1
    shift
    echo "-- cstore-fault $scenario --seed $SEED $* (must report violations)"
    err="${TMPDIR:-/tmp}/cstore-fault-$$.err"
    "$TOOL" "$scenario" --seed "$SEED" "$@" >/dev/null 2>"$err"
    st=$?
    if [ $st -ne 1 ] || ! grep -q "^VIOLATION" "$err"; then
        failed="$failed $scenario($*)"
        echo "fault.sh: expected violations (exit 1), got exit $st:"
        head -5 "$err"
    else
        echo "   $(grep -c "^VIOLATION" "$err") violations shown, as expected"
    fi
    rm -f "$err"
}
if [ -n "$CS_TEST_LONG" ]; then
    # About 8.5 minutes: tests/run.sh gives each script 10.
    run crash --duration 45
    run torn --duration 40
    run eio --duration 50
    run enospc --duration 50
    run bitflip --duration 40
    run slow --duration 30
    run powercut --duration 50
    run fileio --duration 30
    run alloc --duration 20
    run crash --duration 30 --shards 1
    run crash --duration 30 --threads 8
    run txn --duration 40
    run server --duration 30
    run server --duration 10 --shards 1 --threads 8
    must_fail server --iterations 4 --durability none
else
    run crash --iterations 40
    run torn --iterations 20
    run eio --iterations 9
    run enospc --iterations 6
    run bitflip --iterations 30
    run slow --iterations 3
    run powercut --iterations 15
    run fileio --iterations 6
    run alloc --iterations 6
    run txn --iterations 12
    run server --iterations 12
    must_fail server --iterations 4 --durability none
fi
if [ -n "$failed" ]; then
    echo "fault.sh: FAILED:$failed (seed $SEED)"
    exit 1
fi
echo "fault.sh: all scenarios passed (seed $SEED)"
