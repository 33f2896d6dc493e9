#!/bin/sh
# `make install` into a temporary DESTDIR installs the header, both libraries, cstore.pc and the
# tools; the README's C example (the first ```c block of README.md, so the documented code is
# the tested code) then builds against that copy through pkg-config, linked both against the
# shared library and statically, and both binaries run and print what the example stores. The
# sanitizer builds skip it: their library needs the sanitizer's runtime, which cstore.pc does
# not name.
BUILD=${BUILD:-build}
if [ -n "$SAN" ]; then
    echo "install.sh: skipped under SAN=$SAN (the release build runs it)"
    exit 0
fi
T=$(mktemp -d /tmp/cs-install-XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    [ -f "$T/log" ] && sed -n '1,10s/^/     | /p' "$T/log" | cut -c1-200
}

PREFIX=/opt/cstore
ROOT="$T/root"
# A make of its own (not the jobserver of a make test that runs this), on the same build.
if env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make --no-print-directory install BUILD="$BUILD" \
    PREFIX="$PREFIX" DESTDIR="$ROOT" >"$T/log" 2>&1; then
    pass "make install PREFIX=$PREFIX DESTDIR=..."
else
    fail "make install PREFIX=$PREFIX DESTDIR=..." "exit status $?"
fi
missing=""
for f in include/cstore.h lib/libcstore.a lib/libcstore.so.0 lib/libcstore.so \
    lib/pkgconfig/cstore.pc bin/cstore bin/cstore-bench; do
    [ -e "$ROOT$PREFIX/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && pass "installs the header, libraries, cstore.pc and tools" ||
    fail "installs the header, libraries, cstore.pc and tools" "missing:$missing"
grep -q "^prefix=$PREFIX\$" "$ROOT$PREFIX/lib/pkgconfig/cstore.pc" 2>/dev/null &&
    grep -q '^Version: [0-9]' "$ROOT$PREFIX/lib/pkgconfig/cstore.pc" &&
    pass "cstore.pc names the prefix and version" ||
    fail "cstore.pc names the prefix and version" "$(cat "$ROOT$PREFIX/lib/pkgconfig/cstore.pc" 2>&1)"
"$ROOT$PREFIX/bin/cstore" --version >"$T/log" 2>&1 && grep -q '^cstore ' "$T/log" &&
    pass "the installed cstore runs" || fail "the installed cstore runs" "no version"

export PKG_CONFIG_PATH="$ROOT$PREFIX/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$ROOT"
awk '/^```c$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' README.md \
    >"$T/app.c"
grep -q 'cs_open' "$T/app.c" && pass "README.md has a C example" ||
    fail "README.md has a C example" "no \`\`\`c block with cs_open"
CFLAGS_PC=$(pkg-config --cflags cstore)
LIBS_PC=$(pkg-config --libs --static cstore)
case "$CFLAGS_PC" in
*"$ROOT$PREFIX/include"*) pass "pkg-config --cflags points into DESTDIR" ;;
*) fail "pkg-config --cflags points into DESTDIR" "$CFLAGS_PC" ;;
esac

# want: the example's output: the value it stores, then the key its cursor finds.
printf '{"age":31}\nalice\n' >"$T/want"
# run_app NAME BINARY [ENV...]: run the example in a fresh folder; its output must be $T/want.
run_app() {
    name=$1
    bin=$2
    shift 2
    rm -rf "$T/run" && mkdir -p "$T/run" # cs_open creates ./app-data itself
    (cd "$T/run" && env "$@" "$bin" >"$T/out" 2>"$T/log")
    status=$?
    if [ "$status" -ne 0 ]; then
        fail "$name" "exit status $status"
    elif ! cmp -s "$T/want" "$T/out"; then
        fail "$name" "output: $(head -c 200 "$T/out")"
    else
        pass "$name"
    fi
}
# As the README says: cc app.c $(pkg-config --cflags --libs --static cstore).
if ${CC:-cc} -Wall -Werror -o "$T/app" "$T/app.c" $CFLAGS_PC $LIBS_PC >"$T/log" 2>&1; then
    pass "the README example builds with pkg-config"
    run_app "it runs against the installed libcstore.so.0" "$T/app" \
        LD_LIBRARY_PATH="$ROOT$PREFIX/lib"
    LD_LIBRARY_PATH="$ROOT$PREFIX/lib" ldd "$T/app" | grep -q "$ROOT$PREFIX/lib/libcstore.so.0" &&
        pass "it links the installed libcstore.so.0" ||
        fail "it links the installed libcstore.so.0" "$(ldd "$T/app" 2>&1 | grep cstore)"
else
    fail "the README example builds with pkg-config" "compile failed"
fi
# Statically: libcstore.a with the private libraries that cstore.pc names.
PRIVATE=$(echo "$LIBS_PC" | sed 's/-lcstore//')
if ${CC:-cc} -o "$T/app-static" "$T/app.c" $CFLAGS_PC "$ROOT$PREFIX/lib/libcstore.a" \
    $PRIVATE >"$T/log" 2>&1; then
    pass "the README example links libcstore.a with cstore.pc's private libraries"
    run_app "the static build runs" "$T/app-static"
else
    fail "the README example links libcstore.a with cstore.pc's private libraries" "link failed"
fi

echo "install.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
