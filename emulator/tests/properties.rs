//! Properties of the emulator's input handling (the fuzz targets in `fuzz/` check the same
//! with coverage guidance): any request body gets an answer, never a panic, and event-stream
//! frames decode with the SDK's decoder to what was written.

use kinesis_emulator::fuzzing::{RequestHarness, event_frame_round_trips};
use proptest::prelude::*;

const OPERATIONS: [&str; 19] = [
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "SplitShard",
    "MergeShards",
    "UpdateShardCount",
    "PutRecord",
    "PutRecords",
    "GetShardIterator",
    "GetRecords",
    "RegisterStreamConsumer",
    "DescribeStreamConsumer",
    "ListStreamConsumers",
    "DeregisterStreamConsumer",
    "SubscribeToShard",
    "NoSuchOperation",
];

/// JSON-shaped bodies with the field names the operations read, so inputs get past parsing.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("StreamName"),
        Just("StreamARN"),
        Just("ShardCount"),
        Just("PartitionKey"),
        Just("Data"),
        Just("Records"),
        Just("ShardId"),
        Just("ShardIteratorType"),
        Just("StartingSequenceNumber"),
        Just("Timestamp"),
        Just("ShardIterator"),
        Just("Limit"),
        Just("ConsumerName"),
        Just("ConsumerARN"),
        Just("ExclusiveStartShardId"),
        Just("MaxResults"),
        Just("NextToken"),
        Just("ShardToSplit"),
        Just("NewStartingHashKey"),
        Just("ExplicitHashKey"),
        Just("TargetShardCount"),
        Just("StartingPosition"),
        Just("ShardFilter"),
    ];
    let value = prop_oneof![
        Just("\"fuzz\"".to_owned()),
        Just("\"shardId-000000000000\"".to_owned()),
        Just("\"aGVsbG8=\"".to_owned()),
        Just("[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\"}]".to_owned()),
        Just("{\"Type\":\"LATEST\"}".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| if n.is_finite() {
            n.to_string()
        } else {
            "0".to_owned()
        }),
        ".{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("null".to_owned()),
    ];
    proptest::collection::vec((field, value), 0..6).prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_body_gets_an_answer(op in 0..OPERATIONS.len(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let harness = RequestHarness::new();
        let status = harness.call(OPERATIONS[op], &body);
        prop_assert!(status == 200 || (400..600).contains(&status));
    }

    #[test]
    fn json_shaped_bodies_get_an_answer(op in 0..OPERATIONS.len(), body in json_body()) {
        let harness = RequestHarness::new();
        let status = harness.call(OPERATIONS[op], &body);
        prop_assert!(status == 200 || (400..600).contains(&status), "status {}", status);
    }

    #[test]
    fn event_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(event_frame_round_trips(&payload));
    }
}
