#!/usr/bin/env bash
# Debian packages the test suite and benchmark need beyond Python: a headless browser for the
# page tests, nginx and wrk for the benchmark, Varnish and nginx for the cache tests.
# Idempotent; needs root (or sudo).
set -euo pipefail
packages=(chromium nginx-light varnish wrk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
