#!/bin/sh
# Installs the Debian packages cstore builds and tests with, when any is missing.
# Quiet and quick (one dpkg-query) when everything is there. Extra packages may be passed as
# arguments (the perf suite adds the peers' libraries this way).
set -e
pkgs="gcc make pkg-config liburing-dev libjemalloc-dev liblz4-dev libxxhash-dev libck-dev \
libcmocka-dev libinih-dev redis-tools libhiredis-dev $*"
missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
echo "cstore: installing missing packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
