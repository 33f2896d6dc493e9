#!/bin/sh
# Durability modes: fillrandom from 8 threads with durability sync, async and none, for every
# engine built in (the mapping of each mode per engine is in perf/bench_<engine>.c).
# Run from the repository root: sh perf/suites/durability.sh
. perf/suites/common.sh
list=$(built_engines | tr ' ' ',')
suite durability -L engine "$list" -L mode sync,async,none \
    "$BIN --engine {engine} --db $DB --floor-ops 0 --workload fillrandom --durability {mode} \
--threads 8 --keys $(n 20000)"
