#!/bin/sh
# Runs every cstore-fault scenario briefly (about 50 s in all on a 2-core machine) and fails if
# any reports a violation: an acknowledged write lost, a value that was never written, a
# half-applied batch, damage not reported as damage, an I/O error not reported as CS_EIO, a
# database that does not open after a power cut; and for transactions (txn): money created or
# lost, an acknowledged transfer lost, a transfer half applied or applied after its commit
# failed, a committed read-only transaction or a quiescent read that saw part of a transfer.
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
if [ -n "$CS_TEST_LONG" ]; then
    # About 8.5 minutes: tests/run.sh gives each script 10.
    run crash --duration 60
    run torn --duration 40
    run eio --duration 50
    run enospc --duration 50
    run bitflip --duration 40
    run slow --duration 30
    run powercut --duration 60
    run fileio --duration 30
    run alloc --duration 20
    run crash --duration 40 --shards 1
    run crash --duration 40 --threads 8
    run txn --duration 40
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
fi
if [ -n "$failed" ]; then
    echo "fault.sh: FAILED:$failed (seed $SEED)"
    exit 1
fi
echo "fault.sh: all scenarios passed (seed $SEED)"
