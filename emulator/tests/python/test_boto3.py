"""boto3 against kinesis-emulator: plain operations and subscribe_to_shard.

Run by `cargo test -p kinesis-emulator --test boto3`, which starts an emulator and sets
KINESIS_EMULATOR_ENDPOINT; or by hand against a running `kinesis-emulator`:

    KINESIS_EMULATOR_ENDPOINT=http://127.0.0.1:4567 python3 emulator/tests/python/test_boto3.py
"""

import os
import sys
import time
import traceback

import boto3
from botocore.config import Config

ENDPOINT = os.environ["KINESIS_EMULATOR_ENDPOINT"]
DEADLINE_SECONDS = 20


def client():
    return boto3.client(
        "kinesis",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, read_timeout=DEADLINE_SECONDS),
    )


def wait_until(condition, what):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_put_and_get_records():
    kinesis = client()
    kinesis.create_stream(StreamName="py-records", ShardCount=1)
    put = kinesis.put_records(
        StreamName="py-records",
        Records=[{"Data": f"r{i}".encode(), "PartitionKey": "k"} for i in range(5)],
    )
    assert put["FailedRecordCount"] == 0
    iterator = kinesis.get_shard_iterator(
        StreamName="py-records",
        ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["Data"] for r in records] == [f"r{i}".encode() for i in range(5)]
    assert records[0]["ApproximateArrivalTimestamp"].year >= 2024


def test_subscribe_to_shard():
    kinesis = client()
    kinesis.create_stream(StreamName="py-efo", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="py-efo")["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="py")["Consumer"]
    consumer_arn = consumer["ConsumerARN"]
    wait_until(
        lambda: kinesis.describe_stream_consumer(ConsumerARN=consumer_arn)["ConsumerDescription"][
            "ConsumerStatus"
        ]
        == "ACTIVE",
        "the consumer to become ACTIVE",
    )
    kinesis.put_record(StreamName="py-efo", PartitionKey="k", Data=b"hello from boto3")
    response = kinesis.subscribe_to_shard(
        ConsumerARN=consumer_arn,
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "TRIM_HORIZON"},
    )
    received = []
    continuation = None
    for event in response["EventStream"]:
        shard_event = event["SubscribeToShardEvent"]
        received.extend(r["Data"] for r in shard_event["Records"])
        continuation = shard_event["ContinuationSequenceNumber"]
        if received:
            break
    response["EventStream"].close()
    assert received == [b"hello from boto3"], received
    assert len(continuation) == 56


def main():
    tests = [test_put_and_get_records, test_subscribe_to_shard]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"ok {test.__name__}")
        except Exception:  # report every failure, then fail the run
            failed += 1
            print(f"FAILED {test.__name__}")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
