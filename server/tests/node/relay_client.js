// A subscriber written for Node with @grpc/grpc-js, loading the proto at run time with
// @grpc/proto-loader.
//
// Usage: node relay_client.js PROTO_DIR ADDRESS STREAM COUNT
//
// Every request is compressed with gzip (grpc.default_compression_algorithm). Lists the
// relay's streams and describes STREAM, then subscribes from the earliest record held and
// prints one JSON line per record until COUNT records arrived.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [protoDir, address, stream, countText] = process.argv.slice(2);
const count = Number(countText);
const definition = protoLoader.loadSync(path.join(protoDir, "kinesis_relay/v1/relay.proto"), {
  includeDirs: [protoDir],
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
});
const { Relay } = grpc.loadPackageDefinition(definition).kinesis_relay.v1;
const client = new Relay(address, grpc.credentials.createInsecure(), {
  "grpc.default_compression_algorithm": 2, // gzip
  "grpc.default_compression_level": 2,
});
const deadline = () => new Date(Date.now() + 30_000);

function fail(what, err) {
  console.error(`${what}: ${err.code} ${err.details}`);
  process.exit(1);
}

client.ListStreams({}, { deadline: deadline() }, (err, listed) => {
  if (err) fail("ListStreams", err);
  console.log(JSON.stringify({ streams: listed.streams.map((s) => s.name) }));
  client.DescribeStream({ stream }, { deadline: deadline() }, (err, described) => {
    if (err) fail("DescribeStream", err);
    console.log(JSON.stringify({ shards: described.shards.length }));
    let received = 0;
    let done = false;
    const call = client.Subscribe({ stream, earliest: {} }, { deadline: deadline() });
    call.on("data", (response) => {
      if (done || response.event !== "records") return;
      for (const record of response.records.records) {
        console.log(JSON.stringify({ shard: response.records.shard_id, data: record.data.toString() }));
        received += 1;
        if (received >= count) {
          // Exit once stdout has taken every line: exiting at once can cut the last ones
          // off a pipe. The cancel's CANCELLED error is then expected.
          done = true;
          call.cancel();
          process.stdout.write("", () => process.exit(0));
          return;
        }
      }
    });
    call.on("error", (err) => {
      if (!done) fail("Subscribe", err);
    });
  });
});
