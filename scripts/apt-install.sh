#!/usr/bin/env bash
# Installs the Debian packages named as arguments that are not installed yet (one
# apt-get update first, only if one is missing). Idempotent; run as root (CI runs as root).
set -euo pipefail

missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
