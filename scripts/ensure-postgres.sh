#!/usr/bin/env bash
# Installs the PostgreSQL server binaries from Debian when missing: the catalog tests start a
# throw-away server (initdb + pg_ctl in a temp folder, as the 'postgres' user when root; see
# bench/pgserver.py, which finds them in /usr/lib/postgresql/<version>/bin). Without root or
# apt the PostgreSQL tests skip with a reason instead.
set -u
if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-postgres: not root or no apt-get; PostgreSQL catalog tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || echo "ensure-postgres: apt-get could not install postgresql; its tests will be skipped" >&2
exit 0
