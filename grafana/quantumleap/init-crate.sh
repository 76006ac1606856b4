#!/bin/sh
# Creates QuantumLeap's tables for each tenant before the first notification, so readings keep full precision
# (grafana/quantumleap.py explains why). Runs once in the `crate-init` compose service; safe to run again.
# Usage: TENANTS="energytwin other" CRATE_URL=http://crate:4200 sh init-crate.sh [crate-tables.jsonl]
set -eu
statements=${1:-/init/crate-tables.jsonl}
crate_url=${CRATE_URL:-http://crate:4200}
for tenant in $(echo "${TENANTS:?set TENANTS}" | tr ',' ' ' | tr '[:upper:]' '[:lower:]'); do
  case "$tenant" in
    *[!a-z0-9_]*) echo "crate-init: tenant '$tenant' must be letters, digits or _" >&2; exit 2 ;;
  esac
  sed "s/__tenant__/$tenant/g" "$statements" | while IFS= read -r body; do
    curl --fail-with-body -sS -X POST "$crate_url/_sql" -H 'Content-Type: application/json' -d "$body" >/dev/null
  done
  echo "crate-init: QuantumLeap tables ready for tenant $tenant"
done
