//! The emulator's request handling reads JSON from any client: every body gets an HTTP
//! answer, never a panic. The first byte picks the operation.
#![no_main]

use std::sync::OnceLock;

use kinesis_emulator::fuzzing::RequestHarness;
use libfuzzer_sys::fuzz_target;

const OPERATIONS: [&str; 18] = [
    "CreateStream", "DeleteStream", "DescribeStream", "DescribeStreamSummary", "ListStreams",
    "ListShards", "SplitShard", "MergeShards", "UpdateShardCount", "PutRecord", "PutRecords",
    "GetShardIterator", "GetRecords", "RegisterStreamConsumer", "DescribeStreamConsumer",
    "ListStreamConsumers", "DeregisterStreamConsumer", "SubscribeToShard",
];

static HARNESS: OnceLock<RequestHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&op, body)) = data.split_first() else {
        return;
    };
    let harness = HARNESS.get_or_init(RequestHarness::new);
    let status = harness.call(OPERATIONS[op as usize % OPERATIONS.len()], body);
    assert!(status == 200 || (400..600).contains(&status));
});
