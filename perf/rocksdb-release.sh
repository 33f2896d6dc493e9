#!/bin/sh
# perf/rocksdb-release.sh: a release build of Debian's RocksDB, for the perf suite's peer driver.
#
# Debian's librocksdb is built by CMake with CMAKE_BUILD_TYPE=None, so NDEBUG is not defined and
# every assert of RocksDB runs (its db_bench says "Assertions are enabled"). Benchmarking against
# that build would flatter cstore. This script builds the same source (Debian's source package,
# with Debian's patches) the way RocksDB's own Makefile builds a release:
#   make DEBUG_LEVEL=0 PORTABLE=1 shared_lib
# DEBUG_LEVEL=0 is -O2 -DNDEBUG; PORTABLE=1 is what Debian's build uses (no -march=native), so the
# library differs from Debian's in its asserts and optimisation only, and cstore is not built
# with -march=native either. Only the shared library is built (no tools, no tests), niced, with
# one job per CPU: about 7 minutes on an idle 2-CPU machine, longer when it is shared.
#
# The result is cached: BUILD/peers/rocksdb/{lib,include,BUILD-INFO}. A later run finds
# BUILD-INFO and does nothing. A failed compile leaves BUILD/peers/rocksdb.failed with the last
# lines of the log and is not retried on every run (remove that file to retry); a failure to get
# the source or the build dependencies (a network that is down) is retried next time. Either
# way the Makefile then links Debian's library and the results say "with assertions".
#
# Getting the source needs a deb-src entry: when apt has none, one is added beside the system's
# Debian entry (/etc/apt/sources.list.d/cstore-deb-src.sources), made from that entry with the
# type changed, so it names the same mirror the machine already uses.
#
# Usage: sh perf/rocksdb-release.sh [BUILD]   (BUILD defaults to build). Exit 0 when the release
# library is there, 1 when it is not. BENCH_ROCKSDB_RELEASE=0 skips the build (Debian's library
# is used). Two runs at once do not build twice: the second waits for the first (flock).
set -u
BUILD=${1:-build}
PEERS="$BUILD/peers"
OUT="$PEERS/rocksdb"
FAILED="$PEERS/rocksdb.failed"
LOG="$PEERS/rocksdb-build.log"

if [ "${BENCH_ROCKSDB_RELEASE:-1}" = 0 ]; then
    echo "rocksdb-release.sh: BENCH_ROCKSDB_RELEASE=0: using Debian's RocksDB (assertions on)" >&2
    exit 1
fi
mkdir -p "$PEERS" || exit 1
if command -v flock >/dev/null 2>&1; then
    exec 9>"$PEERS/rocksdb.lock"
    flock 9
fi
[ -f "$OUT/BUILD-INFO" ] && [ -e "$OUT/lib/librocksdb.so" ] && exit 0
if [ -f "$FAILED" ]; then
    echo "rocksdb-release.sh: an earlier release build failed ($FAILED); using Debian's" \
        "library. Remove that file to try again." >&2
    exit 1
fi
PEERS=$(cd "$PEERS" && pwd)
OUT="$PEERS/rocksdb"
FAILED="$PEERS/rocksdb.failed"
LOG="$PEERS/rocksdb-build.log"

# soft_fail WHY: give up for this run only.
soft_fail() {
    echo "rocksdb-release.sh: $1; this run uses Debian's RocksDB (assertions on). Log: $LOG" >&2
    exit 1
}

# fail WHY: give up and remember it (the compile would fail again).
fail() {
    {
        echo "rocksdb-release.sh: $1 ($(date -u '+%Y-%m-%d %H:%M UTC'))"
        [ -f "$LOG" ] && tail -n 30 "$LOG"
    } >"$FAILED"
    echo "rocksdb-release.sh: $1; the suite uses Debian's RocksDB (assertions on). See $FAILED" >&2
    exit 1
}

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# A deb-src entry for apt-get source, made from the system's own Debian entry.
has_src() {
    grep -qs '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list ||
        grep -qsi '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources
}
if ! has_src; then
    src=/etc/apt/sources.list.d/cstore-deb-src.sources
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' \
            /etc/apt/sources.list.d/debian.sources | $SUDO tee "$src" >/dev/null || soft_fail "cannot write $src"
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list |
            $SUDO tee /etc/apt/sources.list.d/cstore-deb-src.list >/dev/null || soft_fail "cannot write a deb-src list"
    else
        soft_fail "no Debian apt source to copy into a deb-src entry"
    fi
fi

echo "rocksdb-release.sh: building a release RocksDB from Debian's source (once; log: $LOG)" >&2
t0=$(date +%s)
: >"$LOG"
export DEBIAN_FRONTEND=noninteractive
# The build needs what Debian's build does (compression libraries, gflags) and dpkg-source.
$SUDO apt-get update -qq >>"$LOG" 2>&1 || soft_fail "apt-get update failed"
$SUDO apt-get install -y -qq --no-install-recommends dpkg-dev g++ make libsnappy-dev zlib1g-dev \
    libbz2-dev liblz4-dev libzstd-dev libgflags-dev >>"$LOG" 2>&1 ||
    soft_fail "cannot install RocksDB's build dependencies"
src_dir="$PEERS/src"
rm -rf "$src_dir"
mkdir -p "$src_dir" || soft_fail "cannot make $src_dir"
(cd "$src_dir" && apt-get source -qq rocksdb) >>"$LOG" 2>&1 || soft_fail "apt-get source rocksdb failed"
tree=$(find "$src_dir" -mindepth 1 -maxdepth 1 -type d -name 'rocksdb-*' | head -n 1)
[ -n "$tree" ] || soft_fail "apt-get source rocksdb left no source tree"
deb_version=$(cd "$src_dir" && ls rocksdb_*.dsc | sed 's/^rocksdb_\(.*\)\.dsc$/\1/')
jobs=$(nproc 2>/dev/null || echo 2)
# DISABLE_WARNING_AS_ERROR: a newer compiler than RocksDB 7.8 knew warns (Debian's build sets
# FAIL_ON_WARNINGS=OFF for the same reason).
nice -n 19 make -C "$tree" -j"$jobs" DEBUG_LEVEL=0 PORTABLE=1 DISABLE_WARNING_AS_ERROR=1 \
    shared_lib >>"$LOG" 2>&1 || fail "make shared_lib failed"
so=$(find "$tree" -maxdepth 1 -name 'librocksdb.so.*.*.*' -type f | head -n 1)
[ -n "$so" ] || fail "the build made no librocksdb.so"
rm -rf "$OUT"
mkdir -p "$OUT/lib" "$OUT/include" || fail "cannot make $OUT"
cp -a "$tree"/librocksdb.so* "$OUT/lib/" || fail "cannot copy the library"
# The debug info (-g) is most of its 250 MB; the code is the same without it.
strip --strip-debug "$OUT/lib/$(basename "$so")" 2>/dev/null || true
cp -a "$tree/include/rocksdb" "$OUT/include/" || fail "cannot copy the headers"
t1=$(date +%s)
{
    echo "rocksdb $deb_version (Debian source package), release build"
    echo "make DEBUG_LEVEL=0 PORTABLE=1 DISABLE_WARNING_AS_ERROR=1 shared_lib (-O2 -DNDEBUG)"
    echo "built $(date -u '+%Y-%m-%d %H:%M UTC') in $((t1 - t0)) s with $jobs jobs, load average" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/BUILD-INFO"
rm -rf "$src_dir"
echo "rocksdb-release.sh: release RocksDB built in $((t1 - t0)) s: $OUT" >&2
exit 0
