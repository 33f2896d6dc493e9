#!/bin/sh
# cstore WAL compression on and off (cs_options_set name wal_compress_bytes: 0 = never; 64 =
# LZ4 on every frame body of 64 bytes or more; 4096 = the default), durable puts from 8 threads
# with 100-byte and 1000-byte values. cstore-bench's values are incompressible filler, so this
# measures what compression costs when it cannot win; the keys' letter padding compresses.
# Run from the repository root: sh perf/suites/walcompress.sh
. perf/suites/common.sh
keys=$(n 20000)
suite walcompress-100B -L compress 0,64,4096 \
    "$BIN --engine cstore --db $DB --floor-ops 0 --workload fillrandom --durability sync \
--threads 8 --keys $keys --value-size 100 --set wal_compress_bytes={compress}"
suite walcompress-1000B -L compress 0,64,4096 \
    "$BIN --engine cstore --db $DB --floor-ops 0 --workload fillrandom --durability sync \
--threads 8 --keys $keys --value-size 1000 --set wal_compress_bytes={compress}"
