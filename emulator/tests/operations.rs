//! Every operation through the real aws-sdk-kinesis client over HTTP/1.1.

mod common;

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, ShardFilter, ShardFilterType, ShardIteratorType,
    StreamMode, StreamModeDetails,
};
use common::*;
use kinesis_emulator::Emulator;

#[tokio::test]
async fn stream_lifecycle_operations() {
    let emu = Emulator::builder().start().await.unwrap();
    let client = client(&emu);
    for i in 0..3 {
        client
            .create_stream()
            .stream_name(format!("s{i}"))
            .shard_count(2)
            .send()
            .await
            .unwrap();
    }
    client
        .create_stream()
        .stream_name("od")
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let dup = client
        .create_stream()
        .stream_name("s0")
        .shard_count(1)
        .send()
        .await;
    assert!(
        dup.unwrap_err()
            .into_service_error()
            .is_resource_in_use_exception()
    );

    // ListStreams with pagination.
    let page = client.list_streams().limit(2).send().await.unwrap();
    assert_eq!(page.stream_names(), ["od", "s0"]);
    assert!(page.has_more_streams());
    let rest = client
        .list_streams()
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.stream_names(), ["s1", "s2"]);
    assert!(!rest.has_more_streams());
    assert_eq!(rest.stream_summaries()[0].stream_arn(), stream_arn("s1"));

    // DescribeStream by name and by ARN.
    let described = client
        .describe_stream()
        .stream_name("s0")
        .send()
        .await
        .unwrap();
    let description = described.stream_description().unwrap();
    assert_eq!(description.stream_status().as_str(), "ACTIVE");
    assert_eq!(description.shards().len(), 2);
    assert_eq!(description.shards()[0].shard_id(), "shardId-000000000000");
    let by_arn = client
        .describe_stream()
        .stream_arn(stream_arn("s0"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_arn.stream_description().unwrap().stream_name(), "s0");
    let summary = client
        .describe_stream_summary()
        .stream_name("od")
        .send()
        .await
        .unwrap();
    let summary = summary.stream_description_summary().unwrap();
    assert_eq!(summary.open_shard_count(), 4);
    assert_eq!(
        summary.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::OnDemand
    );

    // Errors have AWS shapes.
    let missing = client
        .describe_stream()
        .stream_name("nope")
        .send()
        .await
        .unwrap_err();
    let missing = missing.into_service_error();
    assert!(missing.is_resource_not_found_exception());
    assert!(missing.meta().message().unwrap().contains("nope"));

    client
        .delete_stream()
        .stream_name("s2")
        .send()
        .await
        .unwrap();
    let gone = client
        .describe_stream_summary()
        .stream_name("s2")
        .send()
        .await;
    assert!(
        gone.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn records_are_written_and_read_back() {
    // Six reads of one shard in a row exceed GetRecords' 5 calls/s; the read limits have
    // their own tests (tests/get_records.rs).
    let emu = Emulator::builder()
        .stream("rec", 4)
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    // MD5("a") starts with 0x0c: the first of four shards.
    let put = client
        .put_record()
        .stream_name("rec")
        .partition_key("a")
        .data(Blob::new(b"hello".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(put.shard_id(), "shardId-000000000000");
    assert_eq!(put.sequence_number().len(), 56);
    // An explicit hash key overrides the partition key.
    let explicit = client
        .put_record()
        .stream_arn(stream_arn("rec"))
        .partition_key("a")
        .explicit_hash_key(u128::MAX.to_string())
        .data(Blob::new(b"last".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(explicit.shard_id(), "shardId-000000000003");

    let entries = (0..10)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key("a")
                .data(Blob::new(format!("r{i}").into_bytes()))
                .build()
                .unwrap()
        })
        .collect();
    let batch = client
        .put_records()
        .stream_name("rec")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.failed_record_count(), Some(0));
    let seqs: Vec<&str> = batch
        .records()
        .iter()
        .map(|r| r.sequence_number().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(put.sequence_number() < seqs[0]);

    let shard = "shardId-000000000000";
    let iterator = |kind: ShardIteratorType, seq: Option<&str>| {
        client
            .get_shard_iterator()
            .stream_name("rec")
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(seq.map(str::to_owned))
    };
    let trim = iterator(ShardIteratorType::TrimHorizon, None)
        .send()
        .await
        .unwrap();
    let out = client
        .get_records()
        .shard_iterator(trim.shard_iterator().unwrap())
        .limit(4)
        .send()
        .await
        .unwrap();
    assert_eq!(out.records().len(), 4);
    assert_eq!(out.records()[0].data().as_ref(), b"hello");
    assert!(out.records()[0].approximate_arrival_timestamp().is_some());
    assert_eq!(out.millis_behind_latest().map(|m| m >= 0), Some(true));
    let rest = client
        .get_records()
        .shard_iterator(out.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.records().len(), 7);

    let at = iterator(ShardIteratorType::AtSequenceNumber, Some(seqs[3]))
        .send()
        .await
        .unwrap();
    let at = client
        .get_records()
        .shard_iterator(at.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(at.records()[0].sequence_number(), seqs[3]);
    let after = iterator(ShardIteratorType::AfterSequenceNumber, Some(seqs[3]))
        .send()
        .await
        .unwrap();
    let after = client
        .get_records()
        .shard_iterator(after.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(after.records()[0].sequence_number(), seqs[4]);
    let latest = iterator(ShardIteratorType::Latest, None)
        .send()
        .await
        .unwrap();
    let latest = client
        .get_records()
        .shard_iterator(latest.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert!(latest.records().is_empty());
    let timestamp = client
        .get_shard_iterator()
        .stream_name("rec")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(DateTime::from_secs(0))
        .send()
        .await
        .unwrap();
    let from_start = client
        .get_records()
        .shard_iterator(timestamp.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(from_start.records().len(), 11);

    let bad = client
        .get_records()
        .shard_iterator("garbage")
        .send()
        .await
        .unwrap_err();
    assert!(bad.into_service_error().is_invalid_argument_exception());
    emu.shutdown().await;
}

#[tokio::test]
async fn shards_are_listed_split_merged_and_rescaled() {
    let emu = Emulator::builder().stream("sh", 3).start().await.unwrap();
    let client = client(&emu);
    let page = client
        .list_shards()
        .stream_name("sh")
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.shards().len(), 2);
    let rest = client
        .list_shards()
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.shards().len(), 1);
    assert_eq!(rest.shards()[0].shard_id(), "shardId-000000000002");
    assert!(rest.next_token().is_none());
    let after = client
        .list_shards()
        .stream_name("sh")
        .exclusive_start_shard_id("shardId-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(after.shards().len(), 2);

    let first = &page.shards()[0];
    let range = first.hash_key_range().unwrap();
    let middle = range.ending_hash_key().parse::<u128>().unwrap() / 2;
    client
        .split_shard()
        .stream_name("sh")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .unwrap();
    let latest = client
        .list_shards()
        .stream_name("sh")
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let open: Vec<_> = latest.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        open,
        [
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003",
            "shardId-000000000004"
        ]
    );
    let all = client.list_shards().stream_name("sh").send().await.unwrap();
    let closed = &all.shards()[0];
    assert!(
        closed
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .is_some()
    );
    assert_eq!(
        all.shards()[3].parent_shard_id(),
        Some("shardId-000000000000")
    );

    client
        .merge_shards()
        .stream_name("sh")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000004")
        .send()
        .await
        .unwrap();
    let merged = client.list_shards().stream_name("sh").send().await.unwrap();
    let merged = merged.shards().last().unwrap();
    assert_eq!(merged.parent_shard_id(), Some("shardId-000000000003"));
    assert_eq!(
        merged.adjacent_parent_shard_id(),
        Some("shardId-000000000004")
    );
    let not_adjacent = client
        .merge_shards()
        .stream_name("sh")
        .shard_to_merge("shardId-000000000005")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await;
    assert!(
        not_adjacent
            .unwrap_err()
            .into_service_error()
            .is_invalid_argument_exception()
    );

    let updated = client
        .update_shard_count()
        .stream_name("sh")
        .target_shard_count(6)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.current_shard_count(), Some(3));
    assert_eq!(updated.target_shard_count(), Some(6));
    let summary = client
        .describe_stream_summary()
        .stream_name("sh")
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .open_shard_count(),
        6
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn consumers_are_registered_listed_and_deregistered() {
    let emu = Emulator::builder().stream("cons", 1).start().await.unwrap();
    let client = client(&emu);
    let mut arns = Vec::new();
    for name in ["a", "b", "c"] {
        let out = client
            .register_stream_consumer()
            .stream_arn(stream_arn("cons"))
            .consumer_name(name)
            .send()
            .await
            .unwrap();
        let consumer = out.consumer().unwrap();
        assert!(
            consumer
                .consumer_arn()
                .starts_with(&format!("{}/consumer/{name}:", stream_arn("cons")))
        );
        arns.push(consumer.consumer_arn().to_owned());
    }
    let page = client
        .list_stream_consumers()
        .stream_arn(stream_arn("cons"))
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.consumers().len(), 2);
    let rest = client
        .list_stream_consumers()
        .stream_arn(stream_arn("cons"))
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.consumers()[0].consumer_name(), "c");

    let by_name = client
        .describe_stream_consumer()
        .stream_arn(stream_arn("cons"))
        .consumer_name("b")
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_name.consumer_description().unwrap().consumer_arn(),
        arns[1]
    );
    assert_eq!(
        by_name.consumer_description().unwrap().stream_arn(),
        stream_arn("cons")
    );

    client
        .deregister_stream_consumer()
        .consumer_arn(&arns[0])
        .send()
        .await
        .unwrap();
    client
        .deregister_stream_consumer()
        .stream_arn(stream_arn("cons"))
        .consumer_name("b")
        .send()
        .await
        .unwrap();
    let gone = client
        .describe_stream_consumer()
        .consumer_arn(&arns[0])
        .send()
        .await;
    assert!(
        gone.unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    let left = client
        .list_stream_consumers()
        .stream_arn(stream_arn("cons"))
        .send()
        .await
        .unwrap();
    assert_eq!(left.consumers().len(), 1);

    // A stream with consumers is only deleted when asked to delete them too.
    let refused = client.delete_stream().stream_name("cons").send().await;
    assert!(
        refused
            .unwrap_err()
            .into_service_error()
            .is_resource_in_use_exception()
    );
    client
        .delete_stream()
        .stream_name("cons")
        .enforce_consumer_deletion(true)
        .send()
        .await
        .unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn reading_a_split_shard_with_get_records_ends_with_child_shards() {
    let emu = Emulator::builder().stream("gr", 1).start().await.unwrap();
    let client = client(&emu);
    put_many(&client, "gr", 3, 10).await;
    client
        .split_shard()
        .stream_name("gr")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("1000")
        .send()
        .await
        .unwrap();
    let iterator = client
        .get_shard_iterator()
        .stream_name("gr")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let out = client
        .get_records()
        .shard_iterator(iterator.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.records().len(), 3);
    assert!(out.next_shard_iterator().is_none());
    assert_eq!(out.child_shards().len(), 2);
    emu.shutdown().await;
}
