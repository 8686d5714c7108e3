"""A subscriber that stops and resumes with its cursor, written in Python with code generated
from proto/ by grpcio-tools.

Usage: resume_client.py GENERATED_DIR ADDRESS STREAM COUNT FROM

FROM is `earliest` (read at least COUNT records, ten to a batch, then stop) or `cursor:CURSOR`
(resume after CURSOR, read at least COUNT records, then go on until the next heartbeat so
that a record sent twice shows). Prints one JSON line per record received, then one line
{"cursor": ...} with the cursor of the last response read.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from kinesis_relay.v1 import relay_pb2, relay_pb2_grpc  # noqa: E402


def main() -> int:
    address, stream, count, start = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    resuming = start.startswith("cursor:")
    if resuming:
        request = relay_pb2.SubscribeRequest(stream=stream, after_cursor=start[len("cursor:") :])
    else:
        request = relay_pb2.SubscribeRequest(
            stream=stream, earliest=relay_pb2.Earliest(), max_records_per_batch=10
        )
    received = 0
    cursor = ""
    with grpc.insecure_channel(address) as channel:
        relay = relay_pb2_grpc.RelayStub(channel)
        for response in relay.Subscribe(request, timeout=60):
            cursor = response.cursor
            event = response.WhichOneof("event")
            if event == "records":
                for record in response.records.records:
                    print(
                        json.dumps(
                            {
                                "shard": response.records.shard_id,
                                "sequence": record.sequence_number,
                                "data": record.data.decode("utf-8", "replace"),
                            }
                        ),
                        flush=True,
                    )
                    received += 1
                if received >= count and not resuming:
                    break
            elif event == "heartbeat" and received >= count:
                break
    print(json.dumps({"cursor": cursor}), flush=True)
    return 0 if received >= count else 1


if __name__ == "__main__":
    sys.exit(main())
