#!/usr/bin/env bash
# Starts kinesis-local (the npm package of kinesis-mock) on PORT (plain HTTP) in the
# background, waits until it answers, and prints the URL to export as KINESIS_LOCAL_URL.
#   producer/tests/start-kinesis-local.sh 4568
# Looks for the package in KINESIS_LOCAL_BIN, node_modules/.bin, /tmp/peers/node_modules/.bin
# or on PATH. The TLS port is PORT+1. The pid goes to $TMPDIR/kinesis-local-PORT.pid, logs
# to $TMPDIR/kinesis-local-PORT.log.
set -euo pipefail
port="${1:?usage: start-kinesis-local.sh PORT}"
tmp="${TMPDIR:-/tmp}"
bin="${KINESIS_LOCAL_BIN:-}"
if [[ -z "$bin" ]]; then
  for candidate in node_modules/.bin/kinesis-local /tmp/peers/node_modules/.bin/kinesis-local \
    "$(command -v kinesis-local || true)"; do
    if [[ -n "$candidate" && -e "$candidate" ]]; then bin="$candidate"; break; fi
  done
fi
if [[ -z "$bin" ]]; then
  echo "kinesis-local not found: npm install kinesis-local, or set KINESIS_LOCAL_BIN" >&2
  exit 1
fi
main_js="$(readlink -f "$bin")"
# Streams are created by the tests themselves; nothing persisted between runs.
KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$((port + 1))" \
  SHOULD_PERSIST_DATA=false LOAD_DATA_IF_EXISTS=false LOG_LEVEL=WARN \
  CREATE_STREAM_DURATION=100ms UPDATE_SHARD_COUNT_DURATION=100ms \
  SPLIT_SHARD_DURATION=100ms MERGE_SHARDS_DURATION=100ms \
  KINESIS_MOCK_CERT_PATH="$(dirname "$main_js")/server.json" \
  nohup node "$main_js" >"$tmp/kinesis-local-$port.log" 2>&1 &
echo $! >"$tmp/kinesis-local-$port.pid"
deadline=$((SECONDS + 60))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  if ! kill -0 "$(cat "$tmp/kinesis-local-$port.pid")" 2>/dev/null || ((SECONDS > deadline)); then
    echo "kinesis-local did not listen on $port (exited, or 60 s passed); log:" >&2
    cat "$tmp/kinesis-local-$port.log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "http://127.0.0.1:$port"
