"""Archive throughput: can `kinesis-relay-client archive` keep up with a 4-shard stream at
Kinesis's write limit (4,000 records/s of 1 KiB JSON), and with how much CPU to spare?

usage: python3 bench/archive_rate.py [SECONDS] [RATE]   (defaults 30 and 4000)

Starts the release relay on its embedded emulator (4 shards, the emulator's write limits
on: 1,000 records/s per shard, as Kinesis), an S3-compatible store (moto, as the tests use;
KINESIS_RELAY_S3_URL when scripts/peers.sh started one), one `kinesis-relay-client
subscribe` to /dev/null and one archiver per format (NDJSON and Parquet, both zstd), then writes
RATE records/s of 1 KiB JSON with `kinesis-producer --generate` for SECONDS. Prints, per
client: records it received/committed, records/s over the run, CPU (percent of one core,
from /proc), and for the archivers the bytes stored per record and the committed lag at
the end. Build first: cargo build --release --locked -p kinesis-relay -p
kinesis-relay-client -p kinesis-producer.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
TICKS = os.sysconf("SC_CLK_TCK")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_until(what, check, timeout=60):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def s3_store(tmp):
    url = os.environ.get("KINESIS_RELAY_S3_URL")
    if url:
        return url, None
    port = free_port()
    log = open(Path(tmp) / "moto.log", "w")
    moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def answers():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until("moto", answers)
    return url, moto


def committed(s3, bucket, prefix):
    """(records, JSON bytes before compression, stored bytes) of the committed objects."""
    records = raw = stored = 0
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_archive/commits/")
    for item in listing.get("Contents", []):
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for obj in manifest["objects"]:
            records += obj["records"]
            raw += obj["bytes"]
            stored += s3.head_object(Bucket=bucket, Key=obj["key"])["ContentLength"]
    return records, raw, stored


def main():
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            s3_url, moto = s3_store(tmp)
            if moto:
                procs.append(moto)
            s3 = boto3.client("s3", endpoint_url=s3_url, aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
            bucket = f"archive-rate-{os.getpid()}"
            s3.create_bucket(Bucket=bucket)

            port = free_port()
            relay_log = open(Path(tmp) / "relay.log", "w")
            relay = subprocess.Popen(
                [RELEASE / "kinesis-relay", "--embedded", "--embedded-shards", "4",
                 "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
                stdout=relay_log, stderr=subprocess.STDOUT)
            procs.append(relay)
            endpoint = None

            def started():
                nonlocal endpoint
                for line in Path(relay_log.name).read_text().splitlines():
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    endpoint = endpoint or entry.get("fields", {}).get("endpoint")
                    if entry.get("fields", {}).get("message") == "relay listening":
                        return endpoint is not None
                return False

            wait_until("the relay", started)
            relay_url = f"http://127.0.0.1:{port}"
            client = RELEASE / "kinesis-relay-client"
            env = dict(os.environ, **S3_ENV, AWS_ENDPOINT_URL_S3=s3_url)
            subscriber = subprocess.Popen(
                [client, "subscribe", "--relay", relay_url, "--stream", "demo", "--from", "latest",
                 "--format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            procs.append(subscriber)
            archivers = {}
            for name, args in [("ndjson+zstd", ["--compression", "zstd"]),
                               ("parquet+zstd", ["--format", "parquet", "--compression", "zstd"])]:
                prefix = name.replace("+", "-")
                archivers[name] = (prefix, subprocess.Popen(
                    [client, "archive", "--relay", relay_url, "--stream", "demo", "--from", "latest",
                     "--to", f"s3://{bucket}/{prefix}", "--rotate-interval", "5s", *args],
                    stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / f"{prefix}.log", "w"), env=env))
                procs.append(archivers[name][1])
            time.sleep(3)  # the subscriptions open (they start at latest)
            counter = subprocess.Popen(["wc", "-l"], stdin=subscriber.stdout, stdout=subprocess.PIPE, text=True)
            cpu0 = {name: cpu_seconds(p.pid) for name, (_, p) in archivers.items()}
            cpu0["subscriber"] = cpu_seconds(subscriber.pid)
            cpu0["relay"] = cpu_seconds(relay.pid)
            began = time.time()
            subprocess.run(
                [RELEASE / "kinesis-producer", "--stream", "demo", "--endpoint-url", endpoint,
                 "--region", "us-east-1", "--generate", "--size", "1024", "--rate", str(RATE),
                 "--duration", f"{SECONDS}s"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x"))
            wrote_for = time.time() - began
            cpu1 = {name: cpu_seconds(p.pid) for name, (_, p) in archivers.items()}
            cpu1["subscriber"] = cpu_seconds(subscriber.pid)
            cpu1["relay"] = cpu_seconds(relay.pid)
            sent = SECONDS * RATE
            # What the archivers committed by the end of writing, then once their last files
            # (rotated every 5 s) are in.
            at_end = {name: committed(s3, bucket, prefix)[0] for name, (prefix, _) in archivers.items()}
            for name, (prefix, _) in archivers.items():
                wait_until(f"{name} to commit every record",
                           lambda p=prefix: committed(s3, bucket, p)[0] >= sent, timeout=60)
            subscriber.terminate()
            received = int(counter.communicate(timeout=30)[0].strip() or 0)
            print(f"{sent} records of 1 KiB JSON written at {RATE}/s over {wrote_for:.1f} s "
                  f"(4 shards, the emulator's write limits on)\n")
            print("| client | records | records/s over the run | CPU % of one core | bytes stored per record | committed when writing ended |")
            print("|---|--:|--:|--:|--:|--:|")
            pct = lambda n: 100 * (cpu1[n] - cpu0[n]) / wrote_for
            print(f"| relay (serving both) | - | - | {pct('relay'):.0f} | - | - |")
            print(f"| subscribe (JSON lines to a pipe) | {received} | {received / wrote_for:.0f} | {pct('subscriber'):.0f} | - | - |")
            for name, (prefix, _) in archivers.items():
                records, raw, stored = committed(s3, bucket, prefix)
                print(f"| archive {name} | {records} | {records / wrote_for:.0f} | {pct(name):.0f} | "
                      f"{stored / records:.0f} (JSON {raw / records:.0f}) | {at_end[name]} |")
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
