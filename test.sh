#!/usr/bin/env bash
# Run the whole DistKV test suite. Installs what the tests need first:
#   - Debian packages mosquitto and mosquitto-clients (replication / MQTT tests, the
#     tutorial's devices) and owserver (1-wire tests),
#   - Debian's chromium for the web page's browser tests (skipped if it cannot be installed),
#   - a virtualenv in .venv with DistKV and its test dependencies (PEP 668 safe).
# Extra arguments go to pytest, e.g. ./test.sh -x tests/core
set -euo pipefail
cd "$(dirname "$0")"

need=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)  # the tutorial's MQTT devices
command -v owserver >/dev/null 2>&1 || need+=(owserver ow-shell)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian package: chromium (tests/web browser tests)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium </dev/null; } ||
    echo "== chromium could not be installed: the browser tests will be skipped"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing DistKV and test dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
