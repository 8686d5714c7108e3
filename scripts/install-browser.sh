#!/usr/bin/env bash
# Installs the browser the web console's test drives (server/tests/console.rs): Debian's
# Chromium and its chromedriver. Idempotent; run as root (CI runs as root). selenium, the
# Python library that drives them, is installed by scripts/peers.sh.
set -euo pipefail

packages=(chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
