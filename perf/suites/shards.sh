#!/bin/sh
# cstore with --shards 1 against --shards 2: durable puts from 8 threads (group commit per
# shard), then the same with 2 threads x 64 in flight (sessions).
# Run from the repository root: sh perf/suites/shards.sh
. perf/suites/common.sh
keys=$(n 50000)
suite shards-blocking -L shards 1,2 \
    "$BIN --engine cstore --db $DB --floor-ops 0 --workload fillrandom --durability sync \
--threads 8 --keys $keys --shards {shards}"
suite shards-sessions -L shards 1,2 \
    "$BIN --engine cstore --db $DB --floor-ops 0 --workload fillrandom --durability sync \
--threads 2 --inflight 64 --keys $keys --shards {shards}"
