#!/usr/bin/env bash
# Installs the test peer iotagent-node-lib (package-lock.json pinned) into tests/peers/iotagent/node_modules.
# Fast when already installed: nothing runs unless package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "note: npm not found; the tests against the FIWARE agent library (tests/peers, tests/provisioning) skip" >&2
  exit 0
fi
stamp=node_modules/.energytwin-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then exit 0; fi
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
cp package-lock.json "$stamp"
