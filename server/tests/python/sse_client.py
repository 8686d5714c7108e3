"""A Python Server-Sent Events client (sseclient-py over requests) of the relay, for
server/tests/sse.rs.

usage: sse_client.py URL FIRST TOTAL

Reads FIRST record events from URL, drops the connection, reconnects with the last event's
id as Last-Event-ID (as a browser's EventSource does) and reads until it has TOTAL records.
Prints one JSON document: {"data": [...], "reconnected_after": id}. Every read has a
deadline (requests' timeout between bytes; the relay sends a heartbeat every few seconds).
"""

import json
import sys

import requests
import sseclient

TIMEOUT_S = 30


def records(url, headers, count, out):
    """Appends the data of `count` record events to `out`; returns the last event id."""
    response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    response.raise_for_status()
    last_id = None
    try:
        for event in sseclient.SSEClient(response).events():
            if event.event != "message":
                continue
            out.append(json.loads(event.data)["data"])
            last_id = event.id
            if len(out) >= count:
                return last_id
    finally:
        response.close()
    raise SystemExit(f"the stream ended after {len(out)} of {count} records")


def main():
    url, first, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    accept = {"Accept": "text/event-stream"}
    data = []
    last_id = records(url, accept, first, data)
    records(url, dict(accept, **{"Last-Event-ID": last_id}), total, data)
    print(json.dumps({"data": data, "reconnected_after": last_id}))


if __name__ == "__main__":
    main()
