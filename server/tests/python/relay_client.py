"""A subscriber written in Python with code generated from proto/ by grpcio-tools.

Usage: relay_client.py GENERATED_DIR ADDRESS STREAM COUNT [gzip]

Lists the relay's streams, describes STREAM, then subscribes to it from the earliest record
held and prints one JSON line per record until COUNT records arrived. With `gzip`, the
channel compresses every request with gzip (grpc.Compression.Gzip).
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from kinesis_relay.v1 import relay_pb2, relay_pb2_grpc  # noqa: E402


def main() -> int:
    address, stream, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    gzip = len(sys.argv) > 5 and sys.argv[5] == "gzip"
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    with grpc.insecure_channel(address, compression=compression) as channel:
        relay = relay_pb2_grpc.RelayStub(channel)
        listed = relay.ListStreams(relay_pb2.ListStreamsRequest(), timeout=10)
        print(json.dumps({"streams": [s.name for s in listed.streams]}), flush=True)
        described = relay.DescribeStream(relay_pb2.DescribeStreamRequest(stream=stream), timeout=10)
        print(json.dumps({"shards": len(described.shards)}), flush=True)
        request = relay_pb2.SubscribeRequest(stream=stream, earliest=relay_pb2.Earliest())
        received = 0
        for response in relay.Subscribe(request, timeout=30):
            if response.WhichOneof("event") != "records":
                continue
            for record in response.records.records:
                print(
                    json.dumps(
                        {
                            "shard": response.records.shard_id,
                            "sequence": record.sequence_number,
                            "key": record.partition_key,
                            "data": record.data.decode("utf-8", "replace"),
                        }
                    ),
                    flush=True,
                )
                received += 1
            if received >= count:
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
