#!/bin/sh
# Runs every test program of the build and prints one closing line "N passed, N failed".
# Unit and integration tests are cmocka programs in $BUILD/tests; shell tests are
# tests/integration/*.sh; raft-sim and txn-sim run a few thousand seeds (many more with
# CS_TEST_LONG=1).
BUILD=${BUILD:-build}
export BUILD
passed=0
failed=0
failures=""
run() {
    name=$1
    shift
    echo "== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures="$failures $name"
    fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run "$(basename "$t")" timeout 600 "$t"
done
for t in tests/integration/*.sh tests/crash/*.sh; do
    [ -f "$t" ] || continue
    run "$(basename "$t")" timeout 600 sh "$t"
done
if [ -x "$BUILD/raft-sim" ]; then
    # make test: 2,000 seeds per node count; make test-long: 100,000 (a quarter of an hour or
    # more each on a loaded machine, hence the longer timeout)
    if [ -n "$CS_TEST_LONG" ]; then seeds=100000; limit=5400; else seeds=2000; limit=900; fi
    run "raft-sim-3" timeout $limit "$BUILD/raft-sim" --seeds $seeds --nodes 3
    run "raft-sim-5" timeout $limit "$BUILD/raft-sim" --seeds $seeds --nodes 5
fi
if [ -x "$BUILD/txn-sim" ]; then
    if [ -n "$CS_TEST_LONG" ]; then seeds=200000; else seeds=5000; fi
    run "txn-sim" timeout 900 "$BUILD/txn-sim" --seeds $seeds
fi
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
