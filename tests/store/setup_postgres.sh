#!/usr/bin/env bash
# Debian's PostgreSQL server for the PostgreSQL store tests (tests/store/conftest.py starts it in a
# temporary folder as the `postgres` user). Idempotent: installs only when initdb is missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin | head -1) is ready"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql
ls /usr/lib/postgresql/*/bin/initdb
