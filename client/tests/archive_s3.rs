//! `archive --to s3://...` against a local S3-compatible server (moto in server mode, started
//! by scripts/test; its URL in `KINESIS_RELAY_S3_URL`): layout, rotation, partitions,
//! compression, the error prefix, the lock, bad input, and `kill -9` at random points.
//! Without the variable each test says so and passes without running.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{DEADLINE, Setup, eventually, finish, numbered, run, signal};
use futures::TryStreamExt;
use kinesis_relay_client::archive::manifest::Manifest;
use object_store::{ObjectStore, ObjectStoreExt, aws::AmazonS3Builder, path::Path};
use rand::Rng;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

/// The S3 server's URL, from scripts/test.
const S3_URL: &str = "KINESIS_RELAY_S3_URL";

/// A bucket of its own on the S3 server.
struct Bucket {
    endpoint: String,
    name: String,
    store: Arc<dyn ObjectStore>,
}

impl Bucket {
    /// A new bucket named after the test, or `None` (with a message) when no S3 server is
    /// configured.
    async fn create(test: &str) -> Option<Self> {
        let Ok(endpoint) = std::env::var(S3_URL) else {
            eprintln!("skipped: {S3_URL} is not set (scripts/test starts moto and sets it)");
            return None;
        };
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let name = format!(
            "{test}-{}-{}",
            std::process::id(),
            rand::rng().random_range(0..1_000_000u32)
        );
        let address = endpoint.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&address)
            .await
            .expect("the S3 server listens");
        socket
            .write_all(
                format!(
                    "PUT /{name} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&name)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        Some(Self {
            endpoint,
            name,
            store: Arc::new(store),
        })
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.name)
    }

    /// The archiver on `prefix` with the S3 server's environment.
    fn archiver(&self, setup: &Setup, prefix: &str, extra: &[&str]) -> Command {
        let url = self.url(prefix);
        let mut args = vec!["archive", "--to", &url, "--from", "earliest"];
        args.extend_from_slice(extra);
        let mut command = setup.client(&args);
        with_s3_env(&mut command, &self.endpoint);
        command
    }

    /// Keys under `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = Path::from(prefix);
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    async fn exists(&self, key: &str) -> bool {
        self.store.head(&Path::from(key)).await.is_ok()
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        let result = self.store.get(&Path::from(key)).await.unwrap();
        result.bytes().await.unwrap().to_vec()
    }

    /// The manifests under `prefix`, in batch order.
    async fn manifests(&self, prefix: &str) -> Vec<Manifest> {
        let mut manifests = Vec::new();
        for key in self.keys(&format!("{prefix}/_archive/commits")).await {
            manifests.push(serde_json::from_slice(&self.get(&key).await).unwrap());
        }
        manifests
    }

    /// The JSON lines of a data object, decompressed by its extension.
    async fn lines(&self, key: &str) -> Vec<Value> {
        let bytes = self.get(key).await;
        let mut text = String::new();
        if key.ends_with(".gz") {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap();
        } else if key.ends_with(".zst") {
            zstd::Decoder::new(&bytes[..])
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = String::from_utf8(bytes).unwrap();
        }
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Record data in the committed objects under `prefix`, with how often each appears.
    async fn held(&self, prefix: &str) -> (HashMap<String, usize>, Vec<Manifest>) {
        let manifests = self.manifests(prefix).await;
        let mut counts = HashMap::new();
        for manifest in &manifests {
            for object in &manifest.objects {
                let lines = self.lines(&object.key).await;
                assert_eq!(lines.len() as u64, object.records, "{}", object.key);
                for line in lines {
                    let data = line["data"].as_str().unwrap().to_owned();
                    *counts.entry(data).or_insert(0) += 1;
                }
            }
        }
        (counts, manifests)
    }

    /// Data objects under `prefix` (everything but `_archive/`).
    async fn data_keys(&self, prefix: &str) -> Vec<String> {
        self.keys(prefix)
            .await
            .into_iter()
            .filter(|key| !key.contains("/_archive/"))
            .collect()
    }

    /// [`Bucket::held`] once the archiver has stopped: also checks that every data object is
    /// committed.
    async fn committed(&self, prefix: &str) -> (HashMap<String, usize>, Vec<Manifest>) {
        let (counts, manifests) = self.held(prefix).await;
        let mut listed: Vec<String> = manifests
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.key.clone()))
            .collect();
        listed.sort();
        assert_eq!(
            self.data_keys(prefix).await,
            listed,
            "every object under the data prefix is committed"
        );
        (counts, manifests)
    }

    /// Keys named by the pending markers under `prefix`.
    async fn pending(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for marker in self.keys(&format!("{prefix}/_archive/pending")).await {
            let pending: Value = serde_json::from_slice(&self.get(&marker).await).unwrap();
            for key in pending["objects"].as_array().unwrap() {
                keys.push(key.as_str().unwrap().to_owned());
            }
        }
        keys
    }
}

fn with_s3_env(command: &mut Command, endpoint: &str) {
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL");
}

/// Waits until `check` holds (an async check against the store), or panics after
/// [`DEADLINE`].
macro_rules! wait_for {
    ($what:expr, $check:expr) => {
        eventually($what, || async { $check }).await
    };
}

/// Data of the expected records, each once.
fn data_of(records: &[(String, Vec<u8>)]) -> Vec<String> {
    records
        .iter()
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect()
}

fn assert_once(held: &HashMap<String, usize>, expected: &[String]) {
    let repeated: Vec<_> = held.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    let missing: Vec<_> = expected.iter().filter(|d| !held.contains_key(*d)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(held.len(), expected.len(), "nothing else");
}

#[tokio::test]
async fn rotation_by_size_and_interval_under_firehose_prefixes() {
    let Some(bucket) = Bucket::create("rotation").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-rotation", 2)]).await;
    let archiver = bucket
        .archiver(
            &setup,
            "firehose",
            &["--rotate-size", "2KiB", "--rotate-interval", "1s"],
        )
        .spawn()
        .unwrap();
    let mut expected = Vec::new();
    let records = numbered("size", 60, 5);
    setup.put("client-s3-rotation", &records).await;
    expected.extend(data_of(&records));
    wait_for!("several batches rotated by size", {
        bucket.manifests("firehose").await.len() >= 3
    });
    // A few records, far below --rotate-size: committed by --rotate-interval.
    let small = numbered("interval", 3, 1);
    setup.put("client-s3-rotation", &small).await;
    expected.extend(data_of(&small));
    wait_for!("the small batch committed by the interval", {
        bucket.held("firehose").await.0.contains_key("interval-2")
    });
    signal(&archiver, "TERM").await;
    let (code, stderr) = finish(archiver).await;
    assert_eq!(code, 130, "{stderr}");

    let (held, manifests) = bucket.committed("firehose").await;
    assert_once(&held, &expected);
    let now = time::OffsetDateTime::now_utc();
    for manifest in &manifests {
        for object in &manifest.objects {
            // firehose/YYYY/MM/DD/HH/<stream>-<batch>-<n>-<time>.ndjson, from the arrival
            // of the object's first record (within the last hour or so).
            let parts: Vec<&str> = object.key.split('/').collect();
            assert_eq!(parts.len(), 6, "{}", object.key);
            assert_eq!(parts[0], "firehose");
            assert_eq!(
                parts[1].parse::<i32>().unwrap(),
                now.year(),
                "{}",
                object.key
            );
            assert!(parts[4].parse::<u8>().unwrap() < 24);
            assert!(
                parts[5].starts_with("client-s3-rotation-"),
                "{}",
                object.key
            );
            assert!(parts[5].ends_with(".ndjson"), "{}", object.key);
            let first = bucket.lines(&object.key).await.remove(0);
            let arrival = first["arrival_time"].as_str().unwrap();
            assert_eq!(
                format!("{}/{}/{}/{}", parts[1], parts[2], parts[3], parts[4]),
                format!(
                    "{}/{}/{}/{}",
                    &arrival[0..4],
                    &arrival[5..7],
                    &arrival[8..10],
                    &arrival[11..13]
                ),
                "the hour of the first record's arrival"
            );
        }
    }
    // The size rotations: no object holds much more than 2 KiB of JSON.
    let sizes: Vec<u64> = manifests
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| o.bytes))
        .collect();
    assert!(sizes.len() >= 4, "{sizes:?}");
    // The lock was released on exit.
    let lock: Value =
        serde_json::from_slice(&bucket.get("firehose/_archive/lock.json").await).unwrap();
    assert_eq!(lock["expires_at_ms"], 0, "{lock}");
    setup.shutdown().await;
}

#[tokio::test]
async fn gzip_and_zstd_objects_read_back_with_every_record_once() {
    let Some(bucket) = Bucket::create("compression").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-compression", 1)]).await;
    let records = numbered("c", 200, 4);
    setup.put("client-s3-compression", &records).await;
    let expected = data_of(&records);
    for (compression, extension) in [("gzip", ".ndjson.gz"), ("zstd", ".ndjson.zst")] {
        let archiver = bucket
            .archiver(
                &setup,
                compression,
                &[
                    "--compression",
                    compression,
                    "--rotate-size",
                    "4KiB",
                    "--rotate-interval",
                    "1s",
                ],
            )
            .spawn()
            .unwrap();
        wait_for!("every record committed", {
            bucket.held(compression).await.0.len() == expected.len()
        });
        signal(&archiver, "TERM").await;
        let (code, stderr) = finish(archiver).await;
        assert_eq!(code, 130, "{stderr}");
        let (held, manifests) = bucket.committed(compression).await;
        assert_once(&held, &expected);
        assert!(manifests.len() >= 2, "rotated");
        for manifest in &manifests {
            for object in &manifest.objects {
                assert!(object.key.ends_with(extension), "{}", object.key);
            }
        }
    }
    setup.shutdown().await;
}

/// Reads Parquet files with pyarrow (an independent reader) and prints one JSON object per row.
const PYARROW_DUMP: &str = r#"
import base64, json, sys
import pyarrow.parquet as pq
for path in sys.argv[1:]:
    file = pq.ParquetFile(path)
    table = file.read()
    for row in table.to_pylist():
        at = row["arrival_time"]
        print(json.dumps({
            "columns": table.schema.names,
            "arrival_type": str(table.schema.field("arrival_time").type),
            "row_groups": file.metadata.num_row_groups,
            "stream": row["stream"],
            "shard_id": row["shard_id"],
            "sequence_number": row["sequence_number"],
            "sub_sequence_number": row["sub_sequence_number"],
            "partition_key": row["partition_key"],
            "explicit_hash_key": row["explicit_hash_key"],
            "arrival_ms": None if at is None else int(at.timestamp() * 1000),
            "data_type": str(table.schema.field("data").type),
            "data": base64.b64encode(
                row["data"] if isinstance(row["data"], bytes) else row["data"].encode()
            ).decode(),
        }))
"#;

/// The rows of the committed Parquet objects, as read by pyarrow.
async fn pyarrow_rows(bucket: &Bucket, manifests: &[Manifest]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, key) in manifests
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| o.key.clone()))
        .filter(|key| !key.contains("/errors/"))
        .enumerate()
    {
        assert!(key.ends_with(".parquet"), "{key}");
        let path = dir.path().join(format!("{i}.parquet"));
        std::fs::write(&path, bucket.get(&key).await).unwrap();
        paths.push(path);
    }
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(PYARROW_DUMP)
        .args(&paths)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn parquet_objects_read_back_with_pyarrow() {
    use base64::Engine;
    let Some(bucket) = Bucket::create("parquet").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-parquet", 2)]).await;
    let mut records = numbered("pq", 300, 6);
    // Data that is not UTF-8 is kept as it is.
    records.push(("binary".into(), vec![0xff, 0x00, 0xfe]));
    setup.put("client-s3-parquet", &records).await;
    let archiver = bucket
        .archiver(
            &setup,
            "pq",
            &[
                "--format",
                "parquet",
                "--compression",
                "zstd",
                "--rotate-size",
                "4KiB",
                "--rotate-interval",
                "1s",
                "--row-group-rows",
                "16",
            ],
        )
        .spawn()
        .unwrap();
    wait_for!("every record committed", {
        let manifests = bucket.manifests("pq").await;
        manifests
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.records))
            .sum::<u64>()
            == records.len() as u64
    });
    signal(&archiver, "TERM").await;
    let (code, stderr) = finish(archiver).await;
    assert_eq!(code, 130, "{stderr}");

    let manifests = bucket.manifests("pq").await;
    assert!(manifests.len() >= 3, "rotated by size");
    let rows = pyarrow_rows(&bucket, &manifests).await;
    let mut held: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut more_than_one_group = false;
    for row in &rows {
        assert_eq!(
            row["columns"],
            serde_json::json!([
                "stream",
                "shard_id",
                "sequence_number",
                "sub_sequence_number",
                "partition_key",
                "explicit_hash_key",
                "arrival_time",
                "data"
            ])
        );
        assert_eq!(row["arrival_type"], "timestamp[ms, tz=UTC]");
        assert_eq!(row["data_type"], "binary");
        assert_eq!(row["stream"], "client-s3-parquet");
        assert!(row["shard_id"].as_str().unwrap().starts_with("shardId-"));
        let sequence = row["sequence_number"].as_str().unwrap();
        assert!(
            !sequence.is_empty() && sequence.bytes().all(|b| b.is_ascii_digit()),
            "{sequence}"
        );
        assert!(row["sub_sequence_number"].is_null());
        assert!(row["explicit_hash_key"].is_null());
        let arrival = row["arrival_ms"].as_i64().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        assert!((now - 600_000..=now).contains(&arrival), "{arrival}");
        more_than_one_group |= row["row_groups"].as_u64().unwrap() > 1;
        let data = base64::engine::general_purpose::STANDARD
            .decode(row["data"].as_str().unwrap())
            .unwrap();
        let key = records
            .iter()
            .find(|(_, d)| *d == data)
            .map(|(k, _)| k.clone())
            .expect("a record that was written");
        assert_eq!(row["partition_key"], key.as_str());
        *held.entry(data).or_insert(0) += 1;
    }
    assert_eq!(rows.len(), records.len(), "every record once");
    assert!(held.values().all(|n| *n == 1));
    assert_eq!(held.len(), records.len());
    assert!(more_than_one_group, "row groups of --row-group-rows");
    setup.shutdown().await;
}

#[tokio::test]
async fn parquet_utf8_data_with_other_records_under_errors() {
    let Some(bucket) = Bucket::create("parquet-utf8").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-parquet-utf8", 1)]).await;
    let mut records = numbered("text", 50, 3);
    records.push(("binary".into(), vec![0xff, 0x00, 0xfe]));
    setup.put("client-s3-parquet-utf8", &records).await;
    let archiver = bucket
        .archiver(
            &setup,
            "text",
            &[
                "--format",
                "parquet",
                "--parquet-data",
                "utf8",
                "--rotate-interval",
                "1s",
            ],
        )
        .spawn()
        .unwrap();
    wait_for!("every record committed", {
        bucket
            .manifests("text")
            .await
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.records))
            .sum::<u64>()
            == records.len() as u64
    });
    signal(&archiver, "TERM").await;
    let (code, stderr) = finish(archiver).await;
    assert_eq!(code, 130, "{stderr}");
    let manifests = bucket.manifests("text").await;
    let rows = pyarrow_rows(&bucket, &manifests).await;
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|row| row["data_type"] == "string"));
    let errors: Vec<String> = manifests
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| o.key.clone()))
        .filter(|key| key.starts_with("text/errors/not-utf8/"))
        .collect();
    assert_eq!(errors.len(), 1, "{manifests:?}");
    assert!(errors[0].ends_with(".ndjson"), "{}", errors[0]);
    let lines = bucket.lines(&errors[0]).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["data_encoding"], "base64");
    assert_eq!(lines[0]["data"], "/wD+");
    assert!(lines[0]["error"].as_str().unwrap().contains("not UTF-8"));
    setup.shutdown().await;
}

/// Reads Parquet files with pyarrow and prints each row's JSON fields and their types.
const PYARROW_FIELDS: &str = r#"
import json, sys
import pyarrow.parquet as pq
for path in sys.argv[1:]:
    table = pq.read_table(path)
    types = {f.name: str(f.type) for f in table.schema}
    for row in table.to_pylist():
        at = row["at"]
        print(json.dumps({
            "types": types,
            "customer": row["customer"],
            "amount": row["amount"],
            "at_ms": None if at is None else int(at.timestamp() * 1000),
        }))
"#;

#[tokio::test]
async fn parquet_json_fields_from_a_schema_file() {
    let Some(bucket) = Bucket::create("parquet-json").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-parquet-json", 1)]).await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name": "customer", "type": "string"},
            {"name": "amount", "type": "int64", "nullable": false},
            {"name": "at", "type": "timestamp"}]"#,
    )
    .unwrap();
    let mut records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("key-{}", i % 3),
                format!(
                    r#"{{"customer":"c{i}","amount":{i},"at":"2024-05-01T12:00:0{}Z"}}"#,
                    i % 10
                )
                .into_bytes(),
            )
        })
        .collect();
    records.push(("key-0".into(), b"not json".to_vec()));
    records.push(("key-0".into(), br#"{"customer":"no amount"}"#.to_vec()));
    setup.put("client-s3-parquet-json", &records).await;
    let schema_arg = schema.to_str().unwrap().to_owned();
    let archiver = bucket
        .archiver(
            &setup,
            "json",
            &[
                "--format",
                "parquet",
                "--parquet-schema",
                &schema_arg,
                "--rotate-interval",
                "1s",
            ],
        )
        .spawn()
        .unwrap();
    wait_for!("every record committed", {
        bucket
            .manifests("json")
            .await
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.records))
            .sum::<u64>()
            == records.len() as u64
    });
    signal(&archiver, "TERM").await;
    let (code, stderr) = finish(archiver).await;
    assert_eq!(code, 130, "{stderr}");
    let manifests = bucket.manifests("json").await;
    let keys: Vec<String> = manifests
        .iter()
        .flat_map(|m| m.objects.iter().map(|o| o.key.clone()))
        .collect();
    let mut paths = Vec::new();
    for (i, key) in keys.iter().filter(|k| k.ends_with(".parquet")).enumerate() {
        let path = dir.path().join(format!("{i}.parquet"));
        std::fs::write(&path, bucket.get(key).await).unwrap();
        paths.push(path);
    }
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(PYARROW_FIELDS)
        .args(&paths)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    let mut amounts: Vec<i64> = rows.iter().map(|r| r["amount"].as_i64().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, (0..40).collect::<Vec<i64>>());
    for row in &rows {
        let amount = row["amount"].as_i64().unwrap();
        assert_eq!(row["customer"], format!("c{amount}"));
        assert_eq!(row["at_ms"], 1_714_564_800_000 + (amount % 10) * 1000);
        assert_eq!(row["types"]["amount"], "int64");
        assert_eq!(row["types"]["customer"], "string");
        assert!(row["types"].get("data").is_none(), "{row}");
    }
    let rejected = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(rejected("json/errors/not-json/"), 1, "{keys:?}");
    assert_eq!(
        rejected("json/errors/json-does-not-fit-schema/"),
        1,
        "{keys:?}"
    );
    setup.shutdown().await;
}

#[tokio::test]
async fn dynamic_partitions_each_their_own_file_and_rejects_under_errors() {
    let Some(bucket) = Bucket::create("partitions").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-partitions", 1)]).await;
    let mut records = Vec::new();
    for i in 0..30 {
        let customer = ["alice", "bob", "carol"][i % 3];
        records.push((
            format!("key-{}", i % 2),
            format!(r#"{{"customer":"{customer}","n":"p-{i}"}}"#).into_bytes(),
        ));
    }
    records.push(("key-0".into(), b"not json: bad-1".to_vec()));
    records.push(("key-1".into(), br#"{"n":"missing-1"}"#.to_vec()));
    setup.put("client-s3-partitions", &records).await;
    let expected = data_of(&records);
    let archiver = bucket
        .archiver(
            &setup,
            "dyn",
            &[
                "--prefix-template",
                "{stream}/customer={json:customer}/key={partition_key}/{yyyy}/",
                "--rotate-interval",
                "2s",
            ],
        )
        .spawn()
        .unwrap();
    // The records were written before the archiver started: they arrive at once, all in
    // the batch that the interval completes.
    wait_for!("every record committed", {
        bucket.held("dyn").await.0.len() == expected.len()
    });
    signal(&archiver, "TERM").await;
    let (code, stderr) = finish(archiver).await;
    assert_eq!(code, 130, "{stderr}");
    let (held, manifests) = bucket.committed("dyn").await;
    assert_once(&held, &expected);
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for manifest in &manifests {
        for object in &manifest.objects {
            let (dir, _) = object.key.rsplit_once('/').unwrap();
            let dir = dir.rsplit_once('/').unwrap().0.to_owned(); // without the year
            for line in bucket.lines(&object.key).await {
                by_dir
                    .entry(dir.clone())
                    .or_default()
                    .push(line["data"].as_str().unwrap().to_owned());
                if dir.starts_with("dyn/errors/") {
                    assert!(line["error"].as_str().is_some(), "{line}");
                }
            }
        }
    }
    // 3 customers x 2 keys, and two error reasons (each with its hour: errors/<reason>/YYYY/MM/DD).
    let dirs: Vec<&String> = by_dir.keys().collect();
    assert_eq!(dirs.len(), 8, "{dirs:?}");
    let alice = &by_dir["dyn/client-s3-partitions/customer=alice/key=key-0"];
    assert!(alice.iter().all(|d| d.contains("alice")), "{alice:?}");
    let not_json: Vec<_> = by_dir
        .iter()
        .filter(|(dir, _)| dir.starts_with("dyn/errors/not-json/"))
        .flat_map(|(_, data)| data.clone())
        .collect();
    assert_eq!(not_json, ["not json: bad-1"]);
    let missing: Vec<_> = by_dir
        .iter()
        .filter(|(dir, _)| dir.starts_with("dyn/errors/missing-partition-value/"))
        .flat_map(|(_, data)| data.clone())
        .collect();
    assert_eq!(missing, [r#"{"n":"missing-1"}"#]);
    // Each partition its own file, all in the one batch.
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].objects.len(), 8);
    setup.shutdown().await;
}

#[tokio::test]
async fn a_second_archiver_is_refused_until_the_lease_expires() {
    let Some(bucket) = Bucket::create("lock").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-lock", 1)]).await;
    let args = ["--lock-lease", "3s", "--rotate-size", "1KiB"];
    let first = bucket.archiver(&setup, "locked", &args).spawn().unwrap();
    wait_for!("the first archiver's lock", {
        bucket.exists("locked/_archive/lock.json").await
    });
    let second = run(bucket.archiver(&setup, "locked", &args)).await;
    assert_eq!(second.code, 8, "{}", second.stderr);
    assert!(
        second.stderr.contains("another archiver holds the lock"),
        "{}",
        second.stderr
    );
    // Frozen, the first one stops renewing while its process still exists: once the lease
    // has expired, another archiver takes over, and the first, thawed, stops.
    signal(&first, "STOP").await;
    let frozen = Instant::now();
    let third = loop {
        // Refused (exit 8) until the lease has expired; then it says it took over.
        let mut attempt = bucket.archiver(&setup, "locked", &args).spawn().unwrap();
        let mut stderr = BufReader::new(attempt.stderr.take().unwrap()).lines();
        let mut took_over = false;
        while let Ok(Ok(Some(line))) = tokio::time::timeout(DEADLINE, stderr.next_line()).await {
            if line.contains("took over the lock") {
                assert!(line.contains("its lease expired"), "{line}");
                took_over = true;
                break;
            }
            assert!(line.contains("another archiver holds the lock"), "{line}");
        }
        if took_over {
            break attempt;
        }
        let (code, _) = finish(attempt).await;
        assert_eq!(code, 8);
        assert!(frozen.elapsed() < DEADLINE, "the lease never expired");
    };
    assert!(
        frozen.elapsed() >= Duration::from_secs(1),
        "taken over only after the lease"
    );
    signal(&first, "CONT").await;
    let (code, stderr) = finish(first).await;
    assert_eq!(code, 8, "{stderr}");
    assert!(
        stderr.contains("another archiver took over the lock"),
        "{stderr}"
    );
    signal(&third, "TERM").await;
    let (code, stderr) = finish(third).await;
    assert_eq!(code, 130, "{stderr}");
    setup.shutdown().await;
}

#[tokio::test]
async fn bad_input_fails_before_any_record_is_read() {
    // The relay is unreachable: an error that came after reading would be exit code 3.
    let relay = "http://127.0.0.1:1";
    let unknown_scheme = run(common::client(
        relay,
        &["archive", "--to", "ftp://host/archive"],
    ))
    .await;
    assert_eq!(unknown_scheme.code, 2, "{}", unknown_scheme.stderr);
    assert!(unknown_scheme.stderr.contains("unknown scheme ftp://"));
    let unknown_field = run(common::client(
        relay,
        &[
            "archive",
            "--to",
            "s3://bucket/x",
            "--prefix-template",
            "{stream}/{year}/",
        ],
    ))
    .await;
    assert_eq!(unknown_field.code, 2, "{}", unknown_field.stderr);
    assert!(unknown_field.stderr.contains("unknown field {year}"));
    let Some(bucket) = Bucket::create("badinput").await else {
        return;
    };
    let mut no_credentials = common::client(relay, &["archive", "--to", &bucket.url("x")]);
    with_s3_env(&mut no_credentials, &bucket.endpoint);
    no_credentials
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let no_credentials = run(no_credentials).await;
    assert_eq!(no_credentials.code, 6, "{}", no_credentials.stderr);
    assert!(
        no_credentials.stderr.contains("no AWS credentials found"),
        "{}",
        no_credentials.stderr
    );
    let missing = format!("s3://{}-missing/x", bucket.name);
    let mut no_bucket = common::client(relay, &["archive", "--to", &missing]);
    with_s3_env(&mut no_bucket, &bucket.endpoint);
    let no_bucket = run(no_bucket).await;
    assert_eq!(no_bucket.code, 8, "{}", no_bucket.stderr);
    assert!(
        no_bucket.stderr.contains("does not exist"),
        "{}",
        no_bucket.stderr
    );
    assert!(bucket.keys("x").await.is_empty(), "nothing written");
}

#[tokio::test]
async fn killed_at_random_points_every_record_is_committed_once() {
    let Some(bucket) = Bucket::create("kill").await else {
        return;
    };
    let setup = Setup::start(&[("client-s3-kill", 2)]).await;
    let args = [
        "--rotate-size",
        "1KiB",
        "--rotate-interval",
        "300ms",
        "--compression",
        "zstd",
    ];
    let started = Instant::now();
    let mut expected = Vec::new();
    let mut rng = rand::rng();
    let runs = 24;
    let mut cleaned = 0;
    let mut verified = std::collections::HashSet::new();
    for run in 0..runs {
        let records = numbered(&format!("run{run}"), 40, 7);
        setup.put("client-s3-kill", &records).await;
        expected.extend(data_of(&records));
        let mut archiver = bucket.archiver(&setup, "kill", &args).spawn().unwrap();
        // Half the runs die at a random moment after start, half right after a commit,
        // when the next batch's uploads are under way.
        if run % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        } else {
            let before = bucket.manifests("kill").await.len();
            let since = Instant::now();
            while bucket.manifests("kill").await.len() == before
                && since.elapsed() < Duration::from_secs(5)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
        }
        signal(&archiver, "KILL").await;
        let status = archiver.wait().await.unwrap();
        assert_eq!(status.code(), None, "killed, not exited");
        let mut stderr = String::new();
        if let Some(mut pipe) = archiver.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        if stderr.contains("completed but never committed") {
            cleaned += 1;
        }
        // Whatever the moment of the kill: every visible data object is whole (it
        // decompresses to JSON lines), and committed or named by a pending marker that the
        // next start undoes.
        let mut accounted: Vec<String> = bucket
            .manifests("kill")
            .await
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.key.clone()))
            .collect();
        accounted.extend(bucket.pending("kill").await);
        for key in bucket.data_keys("kill").await {
            assert!(
                accounted.contains(&key),
                "{key}: neither committed nor pending"
            );
            if verified.insert(key.clone()) {
                assert!(!bucket.lines(&key).await.is_empty(), "{key}");
            }
        }
    }
    // A last run to the end: every record once, across committed objects only.
    let last = bucket.archiver(&setup, "kill", &args).spawn().unwrap();
    wait_for!("every record committed after the kills", {
        let manifests = bucket.manifests("kill").await;
        let mut count = 0;
        for manifest in &manifests {
            count += manifest.objects.iter().map(|o| o.records).sum::<u64>();
        }
        count as usize >= expected.len()
    });
    signal(&last, "TERM").await;
    let (code, stderr) = finish(last).await;
    assert_eq!(code, 130, "{stderr}");
    let (held, manifests) = bucket.committed("kill").await;
    assert_once(&held, &expected);
    assert!(
        bucket.keys("kill/_archive/pending").await.is_empty(),
        "no pending marker left"
    );
    eprintln!(
        "{runs} kills in {:.1}s: {} batches committed, {cleaned} restarts found uncommitted objects",
        started.elapsed().as_secs_f64(),
        manifests.len()
    );
    setup.shutdown().await;
}
