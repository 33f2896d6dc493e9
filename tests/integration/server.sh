#!/bin/sh
# cstored through redis-cli: a real server on a free loopback port, every command family,
# pipelining, AUTH, CS.* commands, MULTI/EXEC/DISCARD/WATCH blocks, a restart that keeps the data
# (SIGTERM), a SIGKILL that loses nothing acknowledged, and SIGTERM with clients connected. Each
# server stops itself at the end (and on any failure), every wait is bounded.
set -u
BUILD=${BUILD:-build}
D=$(mktemp -d /tmp/cs-test-server.XXXXXX)
PID=""
fail() {
    echo "server.sh: FAIL: $*" >&2
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
    [ -f "$D/log" ] && sed 's/^/  cstored: /' "$D/log" >&2
    rm -rf "$D"
    exit 1
}
command -v redis-cli >/dev/null || fail "redis-cli is not installed (Debian redis-tools)"

# start [extra flags]: cstored on 127.0.0.1, a port the kernel picks; sets PID and PORT
start() {
    rm -f "$D/port"
    "$BUILD/cstored" --db "$D/db" --listen 127.0.0.1:0 --port-file "$D/port" --shards 2 "$@" \
        >>"$D/log" 2>&1 &
    PID=$!
    i=0
    while [ ! -s "$D/port" ]; do
        i=$((i + 1))
        [ $i -gt 200 ] && fail "cstored did not start within 10 s"
        kill -0 "$PID" 2>/dev/null || fail "cstored exited at start"
        sleep 0.05
    done
    PORT=$(cat "$D/port")
}
# stop SIGNAL: send it and wait (bounded) for the exit; returns the exit status
stop() {
    kill "-$1" "$PID" 2>/dev/null
    i=0
    while kill -0 "$PID" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && fail "cstored did not stop within 10 s of SIG$1"
        sleep 0.05
    done
    wait "$PID"
    st=$?
    PID=""
    return $st
}
cli() { timeout 10 redis-cli -p "$PORT" "$@"; }
# expect "what" "expected output" command...
expect() {
    what=$1
    want=$2
    shift 2
    got=$(cli "$@" 2>&1) || fail "$what: redis-cli failed: $got"
    [ "$got" = "$want" ] || fail "$what: expected [$want], got [$got]"
}
# expect_ttl "what" seconds key: TTL key answers seconds, or a little less (time passes between
# the write and the read; the answer is rounded)
expect_ttl() {
    got=$(cli TTL "$3" 2>&1) || fail "$1: redis-cli failed: $got"
    case "$got" in
    '' | *[!0-9]*) fail "$1: expected about $2, got [$got]" ;;
    esac
    [ "$got" -le "$2" ] && [ "$got" -ge $(($2 - 10)) ] || fail "$1: expected about $2, got [$got]"
}

start
expect "ping" "PONG" PING
expect "echo" "hello" ECHO hello
expect "set" "OK" SET k1 v1
expect "get" "v1" GET k1
expect "get missing" "" GET nothere
expect "strlen" "2" STRLEN k1
expect "exists" "2" EXISTS k1 k1
expect "set nx on existing" "" SET k1 other NX
expect "set xx on missing" "" SET k2 other XX
expect "set get" "v1" SET k1 v2 GET
expect "get after set get" "v2" GET k1
expect "setnx" "1" SETNX k3 x
expect "setnx again" "0" SETNX k3 y
expect "incr new" "1" INCR n
expect "incrby" "11" INCRBY n 10
expect "decr" "10" DECR n
expect "decrby" "-5" DECRBY n 15
expect "incr not int" "ERR value is not an integer or out of range" INCR k1
expect "append" "5" APPEND k4 hello
expect "append more" "11" APPEND k4 " world"
expect "get appended" "hello world" GET k4
expect "mset" "OK" MSET a 1 b 2 c 3 d 4
expect "mget" "1
2

4" MGET a b zz d
expect "msetnx refused" "0" MSETNX a 9 e 5
expect "msetnx nothing written" "" GET e
expect "msetnx" "1" MSETNX e 5 f 6
expect "getdel" "5" GETDEL e
expect "getdel gone" "" GET e
expect "del" "2" DEL a b zz
expect "ttl" "-1" TTL c
expect "ttl missing" "-2" TTL zz
expect "pttl missing" "-2" PTTL zz
# expiry: TTL answers are whole seconds left (rounded), so a 100 s expiry reads 100 for a while
expect "set ex" "OK" SET t1 v EX 100
expect_ttl "ttl of set ex" 100 t1
expect "set keepttl" "OK" SET t1 w KEEPTTL
expect_ttl "keepttl kept it" 100 t1
expect "plain set clears it" "OK" SET t1 x
expect "ttl after plain set" "-1" TTL t1
expect "expire" "1" EXPIRE t1 200
expect_ttl "ttl after expire" 200 t1
expect "expire gt refused" "0" EXPIRE t1 100 GT
expect "expire lt" "1" EXPIRE t1 100 LT
expect "expire nx refused" "0" EXPIRE t1 300 NX
expect_ttl "ttl after options" 100 t1
expect "pexpire" "1" PEXPIRE t1 300000
expect_ttl "ttl after pexpire" 300 t1
expect "persist" "1" PERSIST t1
expect "persist again" "0" PERSIST t1
expect "ttl after persist" "-1" TTL t1
expect "expire xx refused" "0" EXPIRE t1 10 XX
expect "expire missing" "0" EXPIRE zz 10
expect "persist missing" "0" PERSIST zz
expect "expireat far" "1" EXPIREAT t1 4102444800
expect "pexpireat far" "1" PEXPIREAT t1 4102444800000
expect "expireat past deletes" "1" EXPIREAT t1 1
expect "gone" "0" EXISTS t1
expect "t6" "OK" SET t6 v
expect "expire negative deletes" "1" EXPIRE t6 -1
expect "t6 gone" "" GET t6
expect "setex" "OK" SETEX t2 100 v
expect_ttl "ttl setex" 100 t2
expect "psetex" "OK" PSETEX t2 50000 w
expect_ttl "ttl psetex" 50 t2
expect "getex persist" "w" GETEX t2 PERSIST
expect "ttl getex persist" "-1" TTL t2
expect "getex ex" "w" GETEX t2 EX 70
expect_ttl "ttl getex ex" 70 t2
expect "getex missing" "" GETEX zz EX 10
expect "incr keeps ttl" "1" INCR t3
expect "expire t3" "1" EXPIRE t3 100
expect "incr" "2" INCR t3
expect_ttl "ttl after incr" 100 t3
expect "append" "2" APPEND t3 x
expect_ttl "ttl after append" 100 t3
expect "set pxat in the past" "OK" SET t4 v PXAT 1
expect "set ex 0 refused" "ERR invalid expire time in 'set' command" SET t5 v EX 0
expect "set ex huge refused" "ERR invalid expire time in 'set' command" SET t5 v EX 99999999999999999
expect "set ex not a number" "ERR value is not an integer or out of range" SET t5 v EX ten
expect "set two expiries" "ERR syntax error" SET t5 v EX 10 PX 10
expect "set ex keepttl" "ERR syntax error" SET t5 v EX 10 KEEPTTL
expect "nothing written" "0" EXISTS t5
expect "expire huge refused" "ERR invalid expire time in 'expire' command" EXPIRE t3 99999999999999999
expect "expire nx xx" "ERR NX and XX, GT or LT options at the same time are not compatible" EXPIRE t3 10 NX XX
expect "expire bad option" "ERR Unsupported option FOO" EXPIRE t3 10 FOO
expect "setex 0 refused" "ERR invalid expire time in 'setex' command" SETEX t5 0 v
expect "getex bad" "ERR syntax error" GETEX t3 FOO
expect_ttl "t3 kept" 100 t3
expect "set pxat in the past: absent at once" "" GET t4
expect "del of an expired key counts it absent (and removes it)" "2" DEL t2 t3 t4
expect "select 0" "OK" SELECT 0
expect "select 1" "ERR DB index is out of range" SELECT 1
expect "unknown command" "ERR unknown command 'NOSUCH', with args beginning with: " NOSUCH x
expect "arity" "ERR wrong number of arguments for 'get' command" GET
expect "client setname" "OK" CLIENT SETNAME tester
expect "hello 3" "NOPROTO unsupported protocol version" HELLO 3
expect "config get" "appendonly
yes" CONFIG GET appendonly
expect "empty key" "ERR key must be 1 to 1024 bytes" GET ""
# DBSIZE and SCAN over what is there now: k1 k3 n k4 c d f
expect "dbsize" "7" DBSIZE
# SCAN by hand, two keys per call: every key once, in key order, the cursor 0 at the end
cursor=0
keys=""
calls=0
while :; do
    out=$(cli SCAN "$cursor" COUNT 2) || fail "scan"
    cursor=$(echo "$out" | head -1)
    keys="$keys$(echo "$out" | tail -n +2 | tr '\n' ' ')"
    calls=$((calls + 1))
    [ "$cursor" = 0 ] && break
    [ $calls -gt 10 ] && fail "scan does not end: $keys"
done
[ "$keys" = "c d f k1 k3 k4 n " ] || fail "scan count 2: got [$keys]"
[ $calls = 4 ] || fail "scan count 2: $calls calls for 7 keys"
got=$(timeout 10 redis-cli -p "$PORT" --scan | sort | tr '\n' ' ')
[ "$got" = "c d f k1 k3 k4 n " ] || fail "redis-cli --scan: got [$got]"
got=$(timeout 10 redis-cli -p "$PORT" --scan --pattern 'k*' | sort | tr '\n' ' ')
[ "$got" = "k1 k3 k4 " ] || fail "scan match: got [$got]"
expect "scan bad cursor" "ERR invalid cursor" SCAN 12345
# named collections
expect "cs.put" "OK" CS.PUT users alice 1
expect "cs.put 2" "OK" CS.PUT users bob 2
expect "cs.get" "2" CS.GET users bob
expect "cs.scan" "0
alice
1
bob
2" CS.SCAN users
expect "cs.scan range" "0
bob
2" CS.SCAN users FROM b TO c
expect "cs.del" "1" CS.DEL users alice
expect "cs.collections" "redis
users" CS.COLLECTIONS
# MULTI/EXEC: redis-cli reads a block on stdin, one connection, one reply after another (an
# error reply is followed by an empty line, as redis-cli prints it)
# block "what" "expected output" < commands
block() {
    got=$(timeout 10 redis-cli -p "$PORT" 2>&1) || fail "$1: redis-cli failed: $got"
    [ "$got" = "$2" ] || fail "$1: expected [$2], got [$got]"
}
expect "multi setup" "OK" SET m0 notanumber
block "multi exec: queued, then every reply in order, reads seeing the block's writes" "OK
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
OK
2
ab
1
6
ERR value is not an integer or out of range

ab
6

1
2" <<EOF
MULTI
SET m1 a
APPEND m1 b
GET m1
INCR mc
INCRBY mc 5
INCR m0
MGET m1 mc nothere
DEL m1 m1
EXISTS m1 mc mc
EXEC
EOF
expect "multi exec applied" "6" GET mc
block "a refused command aborts the block" "OK
QUEUED
ERR wrong number of arguments for 'get' command

QUEUED
EXECABORT Transaction discarded because of previous errors.

0" <<EOF
MULTI
SET e1 x
GET
SET e2 y
EXEC
EXISTS e1 e2
EOF
block "a command that cannot run inside is refused at queue time" "OK
ERR Command not allowed inside a transaction: 'scan' runs on its own (whole-collection and connection commands)

QUEUED
EXECABORT Transaction discarded because of previous errors." <<EOF
MULTI
SCAN 0
SET e1 x
EXEC
EOF
block "expiry commands inside multi" "OK
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
QUEUED
OK
100
1
200
2
200
1
-1
OK
v
-2" <<EOF
MULTI
SET e1 1 EX 100
TTL e1
EXPIRE e1 200
TTL e1
INCR e1
TTL e1
PERSIST e1
TTL e1
SETEX e2 50 v
GETEX e2 EX 70
EXEC
TTL nothere
EOF
expect_ttl "multi expiries applied" 70 e2
expect "multi persist applied" "-1" TTL e1
block "an expiry amount is checked at queue time" "OK
ERR invalid expire time in 'set' command

EXECABORT Transaction discarded because of previous errors." <<EOF
MULTI
SET e3 x EX 0
EXEC
EOF
block "discard drops the block" "OK
QUEUED
OK
0
ERR DISCARD without MULTI" <<EOF
MULTI
SET d1 x
DISCARD
EXISTS d1
DISCARD
EOF
block "nested multi and exec without multi" "ERR EXEC without MULTI

OK
ERR MULTI calls can not be nested

QUEUED
OK" <<EOF
EXEC
MULTI
MULTI
SET n1 x
EXEC
EOF
block "watch: a key changed since aborts (null), unchanged runs; watch inside multi refused" "OK
OK
OK
QUEUED

changed
OK
OK
ERR WATCH inside MULTI is not allowed

QUEUED
OK
mine" <<EOF
WATCH wk
SET wk changed
MULTI
SET wk mine
EXEC
GET wk
WATCH wk
MULTI
WATCH wk
SET wk mine
EXEC
GET wk
EOF
block "pipelined after exec: later commands see the block" "OK
OK
QUEUED
2
2" <<EOF
SET po 1
MULTI
INCR po
EXEC
GET po
EOF
# pipelining: 2000 commands in one stream, answers in order
i=0
: >"$D/pipe"
while [ $i -lt 1000 ]; do
    printf 'SET p%d %d\nGET p%d\n' $i $i $i >>"$D/pipe"
    i=$((i + 1))
done
timeout 30 redis-cli -p "$PORT" <"$D/pipe" >"$D/pipe.out" || fail "pipeline"
awk 'NR % 2 == 1 && $0 != "OK" { bad = 1 } NR % 2 == 0 && $0 != (NR / 2 - 1) { bad = 1 }
     END { exit bad || NR != 2000 }' "$D/pipe.out" || fail "pipeline replies out of order"
# redis-benchmark's own pipelined load must finish (it checks every reply)
timeout 60 redis-benchmark -p "$PORT" -n 20000 -c 8 -P 16 -t set,get -q >"$D/bench" 2>&1 ||
    fail "redis-benchmark: $(cat "$D/bench")"
expect "flushall" "OK" FLUSHALL
expect "flushall emptied" "0" DBSIZE
expect "flushall kept collections" "2" CS.GET users bob

# a restart keeps the data (SIGTERM: clean close, exit 0)
expect "set before restart" "OK" SET survive yes
stop TERM || fail "SIGTERM: exit status $?"
start
expect "get after restart" "yes" GET survive
# SIGKILL loses nothing acknowledged (durability sync)
expect "set before kill" "OK" MSET x1 1 x2 2 x3 3
expect "incr before kill" "1" INCR cnt
stop KILL
start
expect "mset after kill" "1
2
3" MGET x1 x2 x3
expect "incr after kill" "1" GET cnt
stop TERM || fail "SIGTERM"

# AUTH
printf 's3cret\n' >"$D/pass"
start --requirepass-file "$D/pass"
expect "noauth" "NOAUTH Authentication required." GET x1
expect "wrong pass" "WRONGPASS invalid username-password pair or user is disabled." AUTH nope
got=$(timeout 10 redis-cli -p "$PORT" -a s3cret --no-auth-warning GET x1 2>&1)
[ "$got" = "1" ] || fail "auth: got [$got]"
got=$(timeout 10 redis-cli -p "$PORT" --user default --pass s3cret --no-auth-warning GET x2 2>&1)
[ "$got" = "2" ] || fail "auth with user: got [$got]"
# SIGTERM while a client is connected and idle: the server still stops
(sleep 30 | timeout 20 redis-cli -p "$PORT" >/dev/null 2>&1) &
sleep 0.3
stop TERM || fail "SIGTERM with an idle client: exit status $?"
rm -rf "$D"
echo "server.sh: all passed"
