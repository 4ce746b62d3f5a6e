#!/usr/bin/env bash
# Arize Phoenix for the tracing integration test, in its own venv (~850 MB) so flowrun's stays lean.
# Idempotent: creates .phoenix-venv only when missing or broken.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.phoenix-venv
if [ -x "$VENV/bin/phoenix" ] && "$VENV/bin/python" -c "import phoenix" 2>/dev/null; then
  echo "phoenix: $VENV is ready"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check arize-phoenix
"$VENV/bin/python" -c "import phoenix; print('phoenix', phoenix.__version__, 'installed in $VENV')"
