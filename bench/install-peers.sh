#!/usr/bin/env bash
# Installs what the benchmark harness starts and uses, from Debian: the servers it compares
# the relay with (redis-server, nats-server), taskset (util-linux) for CPU pinning, and
# DejaVu Sans for the plot's text. Idempotent; run as root (CI runs as root).
set -euo pipefail

"$(dirname "$0")/../scripts/apt-install.sh" redis-server nats-server util-linux fonts-dejavu-core
# The Debian package starts a redis-server service where an init system runs; the harness
# starts its own on a free port, so a system one is harmless.
redis-server --version
nats-server --version
