// A browser-style subscriber: Connect's gRPC-Web transport for Node (the same protocol
// @connectrpc/connect-web speaks in a browser), with code generated from the proto by
// protoc-gen-es.
//
// Usage: node grpc_web_client.js GENERATED_DIR BASE_URL HTTP_VERSION STREAM COUNT
//
// Prints one JSON line per step: the streams, the shard count, each record as
// {"phase":"first"|"resumed","data":...}, and last the codes of DescribeStream and
// Subscribe for an unknown stream. Subscribes from the earliest record with one record per
// response, stops after half of COUNT, resumes from the cursor of the last response and
// reads until COUNT records and then a heartbeat (so that a repeated record would show).
"use strict";

const path = require("path");
const { createClient, ConnectError, Code } = require("@connectrpc/connect");
const { createGrpcWebTransport } = require("@connectrpc/connect-node");

const [generated, baseUrl, httpVersion, stream, countText] = process.argv.slice(2);
const count = Number(countText);
const { Relay } = require(path.join(generated, "kinesis_relay/v1/relay_pb.js"));
const client = createClient(Relay, createGrpcWebTransport({ baseUrl, httpVersion }));
const timeoutMs = 30_000;

function print(value) {
  console.log(JSON.stringify(value));
}

function codeName(err) {
  return Code[ConnectError.from(err).code];
}

// Reads `subscription` until `enough(received)` holds after a response; returns the
// cursor of the last response.
async function read(subscription, phase, enough) {
  let received = 0;
  let cursor = "";
  for await (const response of subscription) {
    cursor = response.cursor;
    if (response.event.case === "records") {
      for (const record of response.event.value.records) {
        print({ phase, data: Buffer.from(record.data).toString() });
        received += 1;
      }
    }
    if (enough(received, response.event.case)) break;
  }
  return { cursor, received };
}

async function main() {
  const listed = await client.listStreams({}, { timeoutMs });
  print({ streams: listed.streams.map((s) => s.name) });
  const described = await client.describeStream({ stream }, { timeoutMs });
  print({ shards: described.shards.length });

  const half = Math.floor(count / 2);
  const first = await read(
    client.subscribe(
      { stream, startingPosition: { case: "earliest", value: {} }, maxRecordsPerBatch: 1 },
      { timeoutMs },
    ),
    "first",
    (received) => received >= half,
  );
  const rest = count - first.received;
  await read(
    client.subscribe(
      { stream, startingPosition: { case: "afterCursor", value: first.cursor } },
      { timeoutMs },
    ),
    "resumed",
    (received, event) => received >= rest && event === "heartbeat",
  );

  const codes = {};
  try {
    await client.describeStream({ stream: "no-such-stream" }, { timeoutMs });
    codes.describe = "OK";
  } catch (err) {
    codes.describe = codeName(err);
  }
  try {
    for await (const _ of client.subscribe({ stream: "no-such-stream" }, { timeoutMs })) {
      // No response comes.
    }
    codes.subscribe = "OK";
  } catch (err) {
    codes.subscribe = codeName(err);
  }
  print(codes);
  // Calls broken off above leave their timers behind; nothing else is pending.
  process.exit(0);
}

main().catch((err) => {
  console.error(`${codeName(err)}: ${err.message}`);
  process.exit(1);
});
