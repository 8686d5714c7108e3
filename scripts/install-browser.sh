#!/usr/bin/env bash
# Installs the browser the web console's test drives (server/tests/console.rs): Debian's
# Chromium and its chromedriver. selenium, the Python library that drives them, is
# installed by scripts/peers.sh.
set -euo pipefail
"$(dirname "$0")/apt-install.sh" chromium chromium-driver
