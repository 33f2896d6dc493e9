#!/bin/sh
# The cstore CLI, end to end: every command across separate invocations (each one opens and
# closes the database, so a value read back went through close and reopen), the escapes of the
# line format (dump | load round-trips TAB, LF, CR, backslash and NUL), and the bad-input list:
# unknown command and option, bad option values, a shard count that differs from the
# database's, a data path that is a file or lies under a file, an unwritable folder (when not
# root), keys and values over the limits, bad collection names, bad load lines, and a second
# process on a locked database; then backup: the copy verifies, opens and holds the records but
# not later writes, and bad targets are refused unchanged; then apply: a file of puts and
# deletes across shards is one transaction (a reopen shows it), a bad line, a bad name or an
# over-limit transaction applies nothing and names the line, and stdin works. Each check asserts the exit status and
# the output.
#
# Runs $BUILD/cstore (BUILD defaults to build; CSTORE overrides the binary) in a temporary
# folder under ${TMPDIR:-/tmp}, removed at the end. Prints one line per check; exits 1 if any
# failed.
BUILD=${BUILD:-build}
CSTORE=${CSTORE:-$BUILD/cstore}
case "$CSTORE" in
/*) ;;
*) CSTORE="$(pwd)/$CSTORE" ;;
esac
if [ ! -x "$CSTORE" ]; then
    echo "cli.sh: $CSTORE is missing; build it first" >&2
    exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cstore-cli.XXXXXX") || exit 1
lpid=""
cleanup() {
    [ -n "$lpid" ] && kill "$lpid" 2>/dev/null
    chmod -R u+w "$T" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset CSTORE_DB CSTORE_FAULT
DB="$T/db"
passed=0
failed=0
rc=0
TAB=$(printf '\t')

# run ARGS...: run cstore; its exit status goes to $rc, its output to $T/out and $T/err.
run() {
    "$CSTORE" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
# cs ARGS...: run cstore on the main database. Its WAL segments are 1 MiB rather than the
# default 64 MiB: each command opens the database, and a small segment keeps that quick and
# makes the 1 MiB values below span segments.
SEG="--set wal_segment_bytes=1048576"
cs() {
    run --db "$DB" $SEG "$@"
}
pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    sed -n '1,5s/^/     stdout| /p' "$T/out" | cut -c1-200
    sed -n '1,5s/^/     stderr| /p' "$T/err" | cut -c1-200
}
# check NAME STATUS STREAM REGEX: the last run exited with STATUS and its stdout (out) or
# stderr (err) matches the extended REGEX (case-insensitive).
check() {
    if [ "$rc" -ne "$2" ]; then
        fail "$1" "exit status $rc, expected $2"
    elif ! grep -Eqi -- "$4" "$T/$3"; then
        fail "$1" "std$3 does not match /$4/"
    else
        pass "$1"
    fi
}
# check_out NAME STATUS FORMAT [ERR_REGEX]: the last run exited with STATUS, its stdout is
# exactly printf FORMAT, and its stderr matches ERR_REGEX (or is empty when none is given).
check_out() {
    printf "$3" >"$T/want"
    if [ "$rc" -ne "$2" ]; then
        fail "$1" "exit status $rc, expected $2"
    elif ! cmp -s "$T/want" "$T/out"; then
        fail "$1" "stdout differs from the expected $(wc -c <"$T/want") bytes"
    elif [ $# -ge 4 ] && ! grep -Eqi -- "$4" "$T/err"; then
        fail "$1" "stderr does not match /$4/"
    elif [ $# -lt 4 ] && [ -s "$T/err" ]; then
        fail "$1" "unexpected stderr"
    else
        pass "$1"
    fi
}
# repeat N CHAR: N copies of CHAR.
repeat() {
    head -c "$1" /dev/zero | tr '\0' "$2"
}

# ---- Round trip across invocations ----
cs put users bob 2
cs put users alice 1
cs put users carol 3
check_out "put stores records (three invocations)" 0 ""
cs get users alice
check_out "get in another process returns the value" 0 "1\n"
cs get users dave
check_out "get of an absent key: exit 1, not found" 1 "" "not found"
cs get nosuchcoll alice
check_out "get in an absent collection: exit 1" 1 "" "not found"
cs put users alice 11
cs get users alice
check_out "put overwrites" 0 "11\n"
cs put users ttlkey token --ttl-ms 600000
check_out "put --ttl-ms stores a record that expires" 0 ""
cs ttl users ttlkey
check "ttl: the milliseconds left (at most the ttl given)" 0 out '^(5[0-9]{5}|600000)$'
cs get users ttlkey
check_out "a record with an expiry ahead reads as any other" 0 "token\n"
cs put users ttlkey token
cs ttl users ttlkey
check "a put without --ttl-ms clears the expiry: ttl -1" 0 out '^-1$'
cs ttl users nothere
check_out "ttl of an absent key: exit 1" 1 "" "not found"
cs put users ttl2 x --ttl-ms 0
check_out "put --ttl-ms 0: usage error" 2 "" "ttl-ms"
cs put users ttl2 x --ttl 5
check_out "put with an unknown flag: usage error" 2 "" "usage: cstore put COLL KEY VALUE"
cs get users ttl2
check_out "a refused put wrote nothing" 1 "" "not found"
cs del users ttlkey
check_out "del of the ttl test key" 0 ""
cs del users bob
check_out "del removes a record" 0 ""
cs get users bob
check_out "get after del: not found" 1 "" "not found"
cs del users bob
check_out "del of an absent key: exit 1, not found" 1 "" "not found"

for k in k3 k1 k5 k2 k4; do
    cs put order "$k" "v$k"
done
cs scan order
check_out "scan: key order" 0 "k1\tvk1\nk2\tvk2\nk3\tvk3\nk4\tvk4\nk5\tvk5\n"
cs scan order --from k2 --to k4
check_out "scan --from (inclusive) --to (exclusive)" 0 "k2\tvk2\nk3\tvk3\n"
cs scan order --limit 2
check_out "scan --limit" 0 "k1\tvk1\nk2\tvk2\n"
cs scan order --from=k25 --limit=2
check_out "scan --from between keys, --opt=value form" 0 "k3\tvk3\nk4\tvk4\n"
cs scan order --from '' --limit 1
check_out "scan --from '' starts at the first key" 0 "k1\tvk1\n"
cs scan order --to k1
check_out "scan --to the first key is empty" 0 ""
cs scan order --limit x
check_out "scan --limit x: usage error" 2 "" "limit"
cs scan order --sideways 1
check_out "scan with an unknown argument: usage error" 2 "" "unknown argument"
cs dump order
check_out "dump: every record" 0 "k1\tvk1\nk2\tvk2\nk3\tvk3\nk4\tvk4\nk5\tvk5\n"
# A reader that leaves early: the dump (larger than a pipe buffer) meets EPIPE, says nothing,
# exits 3 and still closes the database.
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "m%06d\tvalue %d\n", i, i }' >"$T/many.txt"
cs load many "$T/many.txt"
check_out "load 20000 records" 0 "loaded 20000 records into many\n"
{
    "$CSTORE" --db "$DB" $SEG dump many 2>"$T/err"
    echo $? >"$T/rc"
} | head -n 1 >"$T/out"
rc=$(cat "$T/rc")
check_out "dump into a reader that leaves early: quiet, exit 3" 3 "m000000\tvalue 0\n"
cs get many m019999
check_out "the database is fine after that" 0 "value 19999\n"

# Keys and values holding TAB, LF, CR, backslash and NUL, written escaped, in no order.
{
    printf 'tab\\tkey\tv1\n'
    printf 'nl\\nkey\tline1\\nline2\n'
    printf 'bs\\\\key\tback\\\\slash\n'
    printf 'plain\t\n'
    printf 'cr\\rx\tnul\\0byte\n'
} >"$T/bytes.txt"
cs load bytes "$T/bytes.txt"
check_out "load from a file" 0 "loaded 5 records into bytes\n"
cs dump bytes
want_dump='bs\\\\key\tback\\\\slash\ncr\\rx\tnul\\0byte\nnl\\nkey\tline1\\nline2\n'
want_dump="$want_dump"'plain\t\ntab\\tkey\tv1\n'
check_out "dump escapes TAB, LF, CR, backslash, NUL" 0 "$want_dump"
cp "$T/out" "$T/bytes.dump"
cs get bytes "tab${TAB}key"
check_out "get with a raw TAB in the key" 0 "v1\n"
cs get bytes "$(printf 'nl\nkey')"
check_out "get prints a raw value (with its LF)" 0 "line1\nline2\n"
cs -e get bytes 'cr\rx'
check_out "get -e: escaped key in, escaped value out" 0 'nul\\0byte\n'
cs get bytes plain
check_out "empty value" 0 "\n"
# One database admits one process at a time, so the dump goes through a file; load reads a
# pipe on its stdin.
cat "$T/bytes.dump" | "$CSTORE" --db "$DB" $SEG load copy - >"$T/out" 2>"$T/err"
rc=$?
check_out "load from stdin (a pipe) of a dump" 0 "loaded 5 records into copy\n"
cs dump copy
if cmp -s "$T/out" "$T/bytes.dump"; then
    pass "dump of the copy equals the original dump"
else
    fail "dump of the copy equals the original dump" "differs"
fi
printf 'hex\tx\\x41\\x7a\n' | "$CSTORE" --db "$DB" $SEG load hex - >/dev/null 2>&1
cs get hex hex
check_out "load reads \\xHH" 0 "xAz\n"
cs -e put bytes 'a\tb' 'c\\d'
cs get bytes "a${TAB}b"
check_out "put -e unescapes key and value" 0 'c\\d\n'

# ---- Catalog, stat, help ----
cs create empty
check_out "create" 0 ""
cs create empty
check "create of an existing collection: exit 3" 3 err "exist"
cs collections
check_out "collections lists every name in order" 0 \
    "bytes\ncopy\nempty\nhex\nmany\norder\nusers\n"
cs drop copy
check_out "drop" 0 ""
cs drop copy
check_out "drop of an absent collection: exit 1" 1 "" "not found"
cs get copy plain
check "drop removed the records" 1 err "not found"
cs collections
check_out "collections after drop" 0 "bytes\nempty\nhex\nmany\norder\nusers\n"
cs stat
check "stat prints a per-shard table" 0 out "shard.*records"
grep -q "^total" "$T/out" && grep -Eq "^ +0 " "$T/out"
[ $? -eq 0 ] && pass "stat has shard rows and a total row" ||
    fail "stat has shard rows and a total row" "missing rows"
check "stat shows latency percentiles of puts and fdatasyncs per shard" 0 out \
    "shard op +count +p50_us +p99_us +p999_us"
grep -Eq "^ +0 put +[0-9]+ " "$T/out" && grep -Eq "^ +0 fdatasync +[0-9]+ " "$T/out" &&
    pass "stat: a latency row per shard and operation" ||
    fail "stat: a latency row per shard and operation" "missing rows"
records=$(awk '/^records and requests/ { on = 1 } on && $1 == "total" { print $2; exit }' "$T/out")
cs stat --prometheus
check "stat --prometheus prints the exposition text" 0 out \
    "^# TYPE cstore_request_duration_seconds histogram$"
# every line: a HELP or TYPE line, or name{labels} value; one HELP and one TYPE per family
awk '/^# HELP cstore_[a-z_]+ ./ { help[$3]++; next }
     /^# TYPE cstore_[a-z_]+ (counter|gauge|histogram)$/ { type[$3]++; next }
     /^cstore_[a-z_]+(\{([a-z]+="[^"]*",)*[a-z]+="[^"]*"\})? [0-9][0-9.e+-]*$/ { next }
     { bad++ }
     END { for (f in help) if (help[f] != 1 || type[f] != 1) bad++
           for (f in type) if (help[f] != 1) bad++
           exit bad > 0 }' "$T/out" &&
    pass "stat --prometheus: every line is valid exposition syntax" ||
    fail "stat --prometheus: every line is valid exposition syntax" "bad lines"
[ "$(awk '/^cstore_records\{/ { n += $2 } END { print n + 0 }' "$T/out")" = "$records" ] &&
    grep -q '^cstore_request_duration_seconds_bucket{shard="0",op="put",le="+Inf"} ' "$T/out" &&
    pass "stat --prometheus: records per shard add up to stat's total, put buckets end in +Inf" ||
    fail "stat --prometheus: records per shard add up to stat's total, put buckets end in +Inf" \
        "records $records"
cs stat --json
check "stat with an unknown argument: exit 2" 2 err "unknown argument"
cs checkpoint
check_out "checkpoint" 0 ""
cs get users alice
check_out "records read back after a checkpoint and reopen" 0 "11\n"
cs stat
check "stat shows the checkpoint" 0 out "checkpoint_lsn"
awk '/checkpoint_lsn/ { on = 1; next } on && $1 == "total" { exit !($NF > 0) }' "$T/out" &&
    pass "stat: checkpoint_lsn is set after a checkpoint" ||
    fail "stat: checkpoint_lsn is set after a checkpoint" "no checkpoint LSN"
cs verify
check "verify: a sound database passes" 0 out "every checksum and every tree invariant holds"
# damage the first frame of a shard's log while a later frame is intact
VDB="$T/vdb"
for i in 1 2 3 4 5 6 7 8; do run --db "$VDB" $SEG put v "key$i" "value$i"; done
run --db "$VDB" $SEG verify
check "verify: a second database passes" 0 out "ok"
seg=$(ls "$VDB"/shard-000/wal-* | head -n 1)
printf 'X' | dd of="$seg" bs=1 seek=4160 conv=notrunc 2>/dev/null
damaged=$(cksum <"$seg")
run --db "$VDB" $SEG verify
check "verify: damage in the middle of a WAL is reported with file and offset" 3 err "wal-.*offset"
run --db "$VDB" $SEG get v key1
check "open of a damaged database fails with the damage named" 3 err "corrupt"
[ "$(cksum <"$seg")" = "$damaged" ] &&
    pass "verify and a failed open leave the damaged file as it was" ||
    fail "verify and a failed open leave the damaged file as it was" "the file changed"
run --db "$VDB" $SEG salvage
check "salvage opens the database and says what it cut" 0 out "bytes were cut"
run --db "$VDB" $SEG verify
check "verify passes after salvage" 0 out "every checksum"
run --db "$VDB" $SEG put v after salvage
check_out "writes work after salvage" 0 ""
# damage in the last frame when a checkpoint holds it: the open must not fail, nor cost the
# writes made after it (a cut below the checkpoint once left an LSN gap that failed the next open)
CDB="$T/cdb"
for i in 1 2 3; do run --db "$CDB" --shards 1 $SEG put c "k$i" "value$i"; done
run --db "$CDB" --shards 1 $SEG checkpoint
seg=$(ls "$CDB"/shard-000/wal-* | head -n 1)
at=$(grep -boa value3 "$seg" | head -n 1 | cut -d: -f1)
printf '\130' | dd of="$seg" bs=1 seek="$at" conv=notrunc 2>/dev/null
run --db "$CDB" --shards 1 $SEG get c k3
check_out "a damaged frame the checkpoint holds costs nothing" 0 "value3\n"
run --db "$CDB" --shards 1 $SEG put c new1 x
check_out "writes after it are accepted" 0 ""
run --db "$CDB" --shards 1 $SEG get c new1
check_out "and survive the next open" 0 "x\n"
run --db "$CDB" --shards 1 $SEG verify
check "and verify passes" 0 out "every checksum"
run help
check "help" 0 out "usage: cstore"
grep -q '\\t' "$T/out" && pass "help documents the escapes" ||
    fail "help documents the escapes" "no \\t in help"
run --help
check "--help" 0 out "load COLL"
cp "$T/out" "$T/help"
# Every engine option of the table (engine/options.c) is in --help and works as a flag.
run --help-options-markdown
check "--help-options-markdown" 0 out "^[|] .shards. [|]"
names=$(sed -n 's/^| `\([a-z_]*\)` |.*/\1/p' "$T/out")
missing=""
for n in $names; do
    grep -q -- "^  --$n " "$T/help" || missing="$missing $n"
done
[ -n "$names" ] && [ -z "$missing" ] && pass "--help lists every engine option" ||
    fail "--help lists every engine option" "missing:$missing"
# The README's options table is this output (tests/unit/test_options.c checks it too).
if [ -f README.md ]; then
    sed -n '/^<!-- options:begin/,/^<!-- options:end/p' README.md | sed '1d;$d' >"$T/readme-options"
    cmp -s "$T/readme-options" "$T/out" && pass "the README's options table is --help-options-markdown" ||
        fail "the README's options table is --help-options-markdown" "run make readme-options"
fi
run --db "$DB" $SEG --sync-interval-ms 20 --checkpoint_wal_bytes=1M --salvage false \
    --memory-limit 1G collections
check "engine options as flags, - or _, --NAME=VALUE" 0 out "."
run --version
check_out "--version" 0 "cstore 0.1.0\n"
run
check "no command: usage, exit 2" 2 err "usage"

# ---- Bad input ----
cs frobnicate
check_out "unknown command: exit 2" 2 "" "unknown command 'frobnicate'"
cs --bogus 1 get users alice
check_out "unknown option: exit 2" 2 "" "unknown option '--bogus'"
cs -z get users alice
check_out "unknown short option: exit 2" 2 "" "unknown option '-z'"
cs --set bogus=1 get users alice
check_out "unknown --set name: exit 2" 2 "" "unknown option"
cs get users
check_out "missing argument: exit 2" 2 "" "usage: cstore .*get COLL KEY"
cs put users a b c
check_out "extra argument: exit 2" 2 "" "usage"
cs --shards 0 get users alice
check_out "--shards 0: exit 2" 2 "" "shards"
cs --shards 999 get users alice
check_out "--shards 999: exit 2" 2 "" "shards"
cs --cpuset 9999 get users alice
check_out "--cpuset 9999: exit 2" 2 "" "cpu"
cs --durability maybe get users alice
check_out "--durability maybe: exit 2" 2 "" "durability"
cs --db
check_out "--db without a value: exit 2" 2 "" "needs a value"
printf '[cstore]\nshards = 1\nthis line is not ini\n' >"$T/bad.ini"
cs --config "$T/bad.ini" get users alice
check_out "--config with a bad line names it: exit 2" 2 "" "line 3"
printf 'bogus_option = 1\n' >"$T/bad2.ini"
cs --config "$T/bad2.ini" get users alice
check_out "--config with an unknown name: exit 2" 2 "" "line 1"
cs --config "$T/missing.ini" get users alice
check_out "--config that does not exist: exit 2" 2 "" "missing.ini"

# Shard count: recorded at creation, another count is refused, the data stays readable.
D1="$T/one-shard"
run --db "$D1" --shards 1 put c k kept
check_out "create a database with 1 shard" 0 ""
if [ "$(nproc)" -ge 2 ]; then
    run --db "$D1" --shards 2 get c k
    check_out "reopen with 2 shards is refused: exit 2" 2 "" "shard"
else
    echo "skip reopen with another shard count (one CPU)"
fi
run --db "$D1" --shards 1 get c k
check_out "reopen with the right count reads the data" 0 "kept\n"
printf 'shards = 1\n' >"$T/one.ini"
run --db "$D1" --config "$T/one.ini" get c k
check_out "--config supplies the shard count" 0 "kept\n"
run --db "$D1" --set shards=1 get c k
check_out "--set supplies the shard count" 0 "kept\n"

# Data paths that cannot be a database.
printf 'precious\n' >"$T/afile"
run --db "$T/afile" put c k v
check_out "--db is a file: exit 3" 3 "" "cannot open database.*(folder|director)"
if [ "$(cat "$T/afile")" = precious ]; then
    pass "the file is left alone"
else
    fail "the file is left alone" "content changed"
fi
run --db "$T/afile/db" put c k v
check_out "--db under a file: exit 3" 3 "" "cannot open database.*(folder|director)"
run --db "$T/nowhere" get c k
check_out "reading a database that does not exist: exit 3, nothing created" 3 "" \
    "no database"
[ ! -e "$T/nowhere" ] && pass "no folder was created by a read" ||
    fail "no folder was created by a read" "$T/nowhere exists"
if [ "$(id -u)" -ne 0 ]; then
    mkdir "$T/ro" && chmod 555 "$T/ro"
    run --db "$T/ro/db" put c k v
    check_out "unwritable folder: exit 3" 3 "" "permission"
else
    echo "skip unwritable folder (root writes anyway; the path under a file covers it)"
fi

# Limits: keys 1..1024 bytes, values up to 1 MiB, names 1..64 bytes without '/'.
cs put lim "$(repeat 1024 k)" v
check_out "key of 1024 bytes" 0 ""
cs put lim "$(repeat 1025 k)" v
check_out "key of 1025 bytes: exit 3" 3 "" "key"
cs put lim "" v
check_out "empty key: exit 3" 3 "" "key"
{
    printf 'big\t'
    repeat 1048576 v
    printf '\n'
} >"$T/max.txt"
cs load lim "$T/max.txt"
check_out "load a value of exactly 1 MiB" 0 "loaded 1 record into lim\n"
"$CSTORE" --db "$DB" $SEG get lim big >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(wc -c <"$T/out")" -eq 1048577 ] && pass "get returns the 1 MiB value" ||
    fail "get returns the 1 MiB value" "exit $rc, $(wc -c <"$T/out") bytes"
{
    printf 'ok\tfirst\nbig\t'
    repeat 1048577 v
    printf '\n'
} >"$T/over.txt"
cs load lim2 "$T/over.txt"
check_out "value over 1 MiB: exit 3, names the line" 3 "" "line 2.*value"
grep -q "1 record loaded before" "$T/err" && pass "load says what it stored before" ||
    fail "load says what it stored before" "no count"
cs put "" k v
check_out "empty collection name: exit 3" 3 "" "name"
cs put "$(repeat 65 n)" k v
check_out "collection name of 65 bytes: exit 3" 3 "" "name"
cs put "$(repeat 64 n)" k v
check_out "collection name of 64 bytes" 0 ""
cs put "a/b" k v
check_out "collection name with '/': exit 3" 3 "" "name"
cs create "x/y"
check_out "create with '/': exit 3" 3 "" "name"

# Bad load lines: refused with their line number, nothing mangled.
printf 'a\t1\nb\t2\nno tab here\nd\t4\n' >"$T/l1.txt"
cs load bad "$T/l1.txt"
check_out "load: a line without TAB" 3 "" "line 3: no TAB"
printf 'a\t1\nb\t2\tmore\n' >"$T/l2.txt"
cs load bad "$T/l2.txt"
check_out "load: a line with a second raw TAB" 3 "" "line 2: a second TAB"
printf 'a\\q\t1\n' >"$T/l3.txt"
cs load bad "$T/l3.txt"
check_out "load: an unknown escape" 3 "" "line 1: key: unknown escape"
printf 'a\tend\\\n' >"$T/l4.txt"
cs load bad "$T/l4.txt"
check_out "load: a lone trailing backslash" 3 "" "line 1: value: lone backslash"
printf 'e\t1\n\n' >"$T/l7.txt"
cs load bad "$T/l7.txt"
check_out "load: an empty line" 3 "" "line 2: empty"
printf '\tv\n' >"$T/l5.txt"
cs load bad "$T/l5.txt"
check_out "load: an empty key" 3 "" "line 1"
{
    printf 'x\t1\n'
    repeat 1025 k
    printf '\tv\n'
} >"$T/l6.txt"
cs load bad "$T/l6.txt"
check_out "load: a key over 1024 bytes" 3 "" "line 2"
cs load bad "$T/nonexistent.txt"
check_out "load: a missing file" 3 "" "nonexistent.txt"
cs dump bad
check_out "load kept the good lines before each bad one, unmangled" 0 "a\t1\nb\t2\ne\t1\nx\t1\n"

# A second process on an open database gets the lock error.
mkfifo "$T/fifo"
"$CSTORE" --db "$DB" $SEG load held "$T/fifo" >"$T/lock.out" 2>"$T/lock.err" &
lpid=$!
# The writer's open returns once the load has opened the database and then the FIFO.
timeout 20 sh -c '
    exec 3>"$1"
    "$2" --db "$3" put users eve 5 >"$4/out" 2>"$4/err"
    echo $? >"$4/rc2"
    printf "held\tyes\n" >&3
' sh "$T/fifo" "$CSTORE" "$DB" "$T"
trc=$?
[ "$trc" -ne 0 ] && kill "$lpid" 2>/dev/null
wait "$lpid"
lrc=$?
lpid=""
rc=$(cat "$T/rc2" 2>/dev/null || echo 99)
check_out "second process: exit 3, lock error" 3 "" "cannot open database.*(lock|another process)"
rc=$lrc
cp "$T/lock.out" "$T/out"
cp "$T/lock.err" "$T/err"
check_out "the holder finishes its load" 0 "loaded 1 record into held\n"
cs get held held
check_out "the holder's record is stored" 0 "yes\n"
cs get users eve
check_out "the refused put stored nothing" 1 "" "not found"

# Everything stored earlier is intact after all the refusals.
cs dump users
check_out "data intact after the bad input" 0 "alice\t11\ncarol\t3\n"

# ---- backup ----
# A copy of the main database opens as a database of its own, passes verify and holds the same
# records; the source keeps working and what it stores afterwards stays out of the copy; a target
# that is not empty, a file, or no argument at all is refused and changed in nothing.
cs backup "$T/bak"
check "backup: writes a copy" 0 out "holds a copy of the"
run --db "$T/bak" $SEG verify
check "backup: the copy passes verify" 0 out "every checksum and every tree invariant holds"
[ -f "$T/bak/CSTORE" ] && [ -d "$T/bak/shard-000" ] &&
    pass "backup: the copy holds the format record and the shard folders" ||
    fail "backup: the copy holds the format record and the shard folders" "missing"
cs put users zed 26
run --db "$T/bak" $SEG dump users
check_out "backup: the copy holds the records, not later writes" 0 "alice\t11\ncarol\t3\n"
run --db "$T/bak" $SEG put users yan 25
run --db "$T/bak" $SEG get users yan
check_out "backup: the copy takes writes of its own" 0 "25\n"
cs get users yan
check_out "backup: the copy's writes stay out of the source" 1 "" "not found"
ls -A "$T/bak" >"$T/before"
cs backup "$T/bak"
check_out "backup: a target that is not empty is refused" 3 "" "backup.*already exists.*not empty"
ls -A "$T/bak" | cmp -s - "$T/before" &&
    pass "backup: the refused target is unchanged" ||
    fail "backup: the refused target is unchanged" "its entries changed"
: >"$T/afile"
cs backup "$T/afile"
check_out "backup: a file as the target is refused" 3 "" "not a folder"
cs backup
check_out "backup: without DIR is a usage error" 2 "" "usage: cstore .*backup DIR"
run --db "$T/nodb" backup "$T/bak2"
check_out "backup: of a missing database is refused" 3 "" "."
[ ! -e "$T/bak2" ] && pass "backup: a refused backup creates no target" ||
    fail "backup: a refused backup creates no target" "$T/bak2 exists"
run help
check "help lists backup" 0 out "backup DIR"

# ---- apply: a file of puts and deletes as one transaction ----
ADB="$T/adb"
ta() {
    run --db "$ADB" --shards 2 $SEG "$@"
}
printf 'put\taccts\ta%s\t100\n' 0 1 2 3 4 5 6 7 >"$T/open.txt"
ta apply "$T/open.txt"
check_out "apply: eight puts across both shards in one transaction" 0 \
    "applied 8 puts and 0 deletes in one transaction (2 shards)\n"
ta dump accts
check_out "apply: a reopen shows every value" 0 \
    "a0\t100\na1\t100\na2\t100\na3\t100\na4\t100\na5\t100\na6\t100\na7\t100\n"
printf 'put\taccts\ta0\t70\nput\taccts\ta4\t130\ndel\taccts\ta7\nput\tnotes\tt\\tab\tx\\ny\n' \
    >"$T/move.txt"
ta apply "$T/move.txt"
check_out "apply: a transfer a0 (shard 0) -> a4 (shard 1), a delete, an escaped key" 0 \
    "applied 3 puts and 1 delete in one transaction (2 shards)\n"
ta dump accts
check_out "apply: the transfer and the delete are there after reopen" 0 \
    "a0\t70\na1\t100\na2\t100\na3\t100\na4\t130\na5\t100\na6\t100\n"
ta dump notes
check_out "apply: escapes in KEY and VALUE as in load" 0 "t\\\\tab\tx\\\\ny\n"
printf 'put\taccts\ta1\t0\nput\taccts\ta2\t0\nput accts a3 0\nput\taccts\ta4\t0\n' >"$T/bad.txt"
ta apply "$T/bad.txt"
check_out "apply: a line with spaces for TABs is refused, naming it" 3 "" \
    "apply .*bad.txt: line 3: no TAB.*nothing applied"
printf 'del\taccts\ta0\nfrob\taccts\ta1\n' >"$T/bad2.txt"
ta apply "$T/bad2.txt"
check_out "apply: an unknown operation is refused, naming the line" 3 "" \
    "line 2: unknown operation.*nothing applied"
printf 'put\taccts\ta1\t0\nput\taccts\ta2\t\\q\n' >"$T/bad3.txt"
ta apply "$T/bad3.txt"
check_out "apply: a bad escape is refused, naming the line and field" 3 "" \
    "line 2: value: unknown escape"
printf 'put\taccts\ta1\t0\nput\tbad/name\tk\tv\n' >"$T/bad4.txt"
ta apply "$T/bad4.txt"
check_out "apply: a bad collection name is refused, naming the line" 3 "" "line 2.*nothing applied"
awk 'BEGIN { for (i = 0; i <= 65536; i++) printf "put\tbig\tk%d\tv\n", i }' >"$T/big.txt"
ta apply "$T/big.txt"
check_out "apply: a transaction over its limits (CS_EBATCH) is refused, naming the line" 3 "" \
    "line 65537: over the transaction's limits"
ta dump accts
check_out "apply: the refused files applied nothing" 0 \
    "a0\t70\na1\t100\na2\t100\na3\t100\na4\t130\na5\t100\na6\t100\n"
ta get big k0
check_out "apply: nothing of the over-limit transaction was stored" 1 "" "not found"
printf 'put\taccts\ta0\t60\nput\taccts\ta6\t110' |
    "$CSTORE" --db "$ADB" --shards 2 $SEG apply - >"$T/out" 2>"$T/err"
rc=$?
check_out "apply -: reads stdin (a final line without LF counts)" 0 \
    "applied 2 puts and 0 deletes in one transaction (2 shards)\n"
ta get accts a6
check_out "apply -: the values are there after reopen" 0 "110\n"
: >"$T/empty.txt"
ta apply "$T/empty.txt"
check_out "apply: an empty file commits nothing" 0 \
    "applied 0 puts and 0 deletes in one transaction (0 shards)\n"
ta apply "$T/missing.txt"
check_out "apply: a missing file is an error" 3 "" "apply: .*missing.txt"
ta apply
check_out "apply: without FILE is a usage error" 2 "" "usage: cstore .*apply FILE"
ta stat
check "stat shows transaction commits and conflicts per shard" 0 out "commits +conflicts"
awk '/^transactions/ { on = 1; next } on && $1 == "total" { found = 1 } END { exit !found }' \
    "$T/out" && pass "stat: the transaction table has a total row" ||
    fail "stat: the transaction table has a total row" "missing"
run help
check "help lists apply" 0 out "apply FILE"

# ---- watch: the change feed, from the start of the log or a position ----
WDB="$T/wdb"
tw() {
    run --db "$WDB" --shards 2 $SEG "$@"
}
tw put t a 1
tw put t b 2
tw del t a
printf 'put\tt\tc\t3\nput\tu\td\t4\n' | "$CSTORE" --db "$WDB" --shards 2 $SEG apply - >/dev/null 2>&1
tw watch t
sort "$T/out" >"$T/sorted"
printf 'del\tt\ta\nput\tt\ta\t1\nput\tt\tb\t2\nput\tt\tc\t3\n' >"$T/want_w"
if [ "$rc" -eq 0 ] && cmp -s "$T/want_w" "$T/sorted" && grep -q '^position cs1\.2\.' "$T/err"; then
    pass "watch: every committed write of a collection as apply lines, and the position"
else
    fail "watch: every committed write of a collection as apply lines, and the position" "rc $rc"
fi
grep -n 'a' "$T/out" | head -2 | cut -f3 | tr -d '\n' >"$T/aorder"
[ "$(cat "$T/aorder")" = "aa" ] && [ "$(grep -c '' "$T/out")" -eq 4 ] &&
    [ "$(sed -n '/\ta/=' "$T/out" | head -1)" -lt "$(sed -n '/^del/=' "$T/out")" ] &&
    pass "watch: per key in commit order (the put of a before its delete)" ||
    fail "watch: per key in commit order (the put of a before its delete)" "$(cat "$T/out")"
POS=$(sed -n 's/^position //p' "$T/err")
tw put t e 5
tw watch t --from "$POS"
check_out "watch --from: only what came after the position" 0 "put\tt\te\t5\n" "^position cs1"
tw watch - --from "cs1.2.ffffff-0.0-0"
check "watch: a position beyond the log is refused" 3 err "watch"
tw watch t --bogus
check "watch: an unknown argument is a usage error" 2 err "unknown argument"
run help
check "help lists watch" 0 out "watch COLL"

echo "cli.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
