#!/bin/sh
# Engines side by side: the same durable fillrandom (8 threads, blocking calls) and the same
# readrandom (durability none, so that loading costs no fsync for anyone), run as whole
# cstore-bench commands for every engine built in, under hyperfine.
# Run from the repository root: sh perf/suites/engines.sh
. perf/suites/common.sh
list=$(built_engines | tr ' ' ',')
keys=$(n 20000)
suite engines-fill -L engine "$list" \
    "$BIN --engine {engine} --db $DB --floor-ops 0 --workload fillrandom --durability sync \
--threads 8 --keys $keys"
suite engines-read -L engine "$list" \
    "$BIN --engine {engine} --db $DB --floor-ops 0 --workload readrandom --durability none \
--threads 2 --keys $keys --ops $(n 200000)"
