#!/bin/sh
# Every suite in perf/suites, one after the other. Run from the repository root.
status=0
for s in engines shards durability walcompress; do
    sh "perf/suites/$s.sh" || status=1
done
exit $status
