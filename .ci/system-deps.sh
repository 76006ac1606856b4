#!/usr/bin/env bash
# Installs the Debian packages the tests use when they are missing and we may (root); otherwise says what is
# missing and lets the tests fall back (amqtt instead of Mosquitto) or skip with a reason.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
# PostgreSQL server binaries: tests/grafana runs every dashboard panel's SQL against a throwaway instance.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# Debian's Chromium: tests/web drive the live twin page in it through Playwright (never a downloaded browser).
[ -x /usr/bin/chromium ] || need+=(chromium)
# Node.js + npm: tests run the FIWARE IoT Agent library (npm iotagent-node-lib, pinned by its package-lock.json);
# its `npm ci` runs on every way out of this script, after the Debian packages (a no-op once installed).
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
trap 'bash "$(dirname "$0")/../tests/peers/iotagent/install.sh" || exit 1' EXIT
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root, not installing ${need[*]}; tests use the pure-Python fallbacks" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the project runs its own instances on its own ports, and a system Mosquitto
# on 1883 would stand in the way of `make demo`.
for service in mosquitto postgresql; do
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$service" >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
done
