//! Each class of failure: one clear line on stderr and its own exit code.

mod common;

use std::time::Duration;

use common::{Setup, client, numbered, run};
use kinesis_relay::hub::RingLimits;
use kinesis_relay_api::{
    cursor::{Cursor, Position},
    v1::{self, relay_server::Relay},
};
use tonic::{Request, Response, Status};

/// One line on stderr, naming the class.
fn assert_one_line(stderr: &str, expected: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(expected), "{stderr}");
}

async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn unreachable_relay_exits_3() {
    let url = closed_port_url().await;
    let listing = run(client(&url, &["streams"])).await;
    assert_eq!(listing.code, 3, "{}", listing.stderr);
    assert_one_line(&listing.stderr, "cannot reach the relay at");
    let subscribing = run(client(&url, &["subscribe", "--retry-timeout", "0s"])).await;
    assert_eq!(subscribing.code, 3, "{}", subscribing.stderr);
    assert_one_line(&subscribing.stderr, "cannot reach the relay at");
    // With a retry budget it keeps trying, then gives up with the same class.
    let retried = run(client(&url, &["subscribe", "--retry-timeout", "1s"])).await;
    assert_eq!(retried.code, 3, "{}", retried.stderr);
    assert!(
        retried.stderr.contains("giving up after"),
        "{}",
        retried.stderr
    );
}

#[tokio::test]
async fn relay_errors_map_to_their_exit_codes() {
    let setup = Setup::start(&[("client-errors", 1)]).await;
    let unknown = run(setup.client(&["subscribe", "--stream", "no-such-stream"])).await;
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    assert_one_line(&unknown.stderr, "not found");
    let unknown = run(setup.client(&["describe", "--stream", "no-such-stream"])).await;
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    let shard = run(setup.client(&["subscribe", "--shard", "shardId-000000000042"])).await;
    assert_eq!(shard.code, 4, "{}", shard.stderr);

    let bad = run(setup.client(&["subscribe", "--from", "cursor:not*a*cursor"])).await;
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    assert_one_line(&bad.stderr, "cursor");

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("cp");
    std::fs::write(&checkpoint, "garbage\n").unwrap();
    let bad = run(setup.client(&["subscribe", "--checkpoint", checkpoint.to_str().unwrap()])).await;
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    assert_one_line(&bad.stderr, "checkpoint");

    // A directory where the checkpoint file should be.
    let local =
        run(setup.client(&["subscribe", "--checkpoint", dir.path().to_str().unwrap()])).await;
    assert_eq!(local.code, 8, "{}", local.stderr);
    assert_one_line(&local.stderr, "checkpoint");

    let usage = run(client("ftp://127.0.0.1:1", &["streams"])).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    setup.shutdown().await;
}

#[tokio::test]
async fn a_position_older_than_the_stream_retention_exits_7() {
    let setup = Setup::start_with(
        &[("client-range", 1)],
        RingLimits {
            max_bytes: 2_000,
            max_age: Duration::from_secs(900),
        },
    )
    .await;
    let sequences = setup.put("client-range", &numbered("old", 100, 3)).await;
    // The old records pass the stream's retention (24 h); one new record stays.
    setup
        .emulator
        .handle()
        .age_records("client-range", Duration::from_secs(25 * 3600))
        .unwrap();
    setup.put("client-range", &numbered("new", 1, 1)).await;
    let mut cursor = Cursor::new("client-range");
    cursor.shards.insert(
        "shardId-000000000000".into(),
        Position::After {
            sequence: sequences[50].parse().unwrap(),
            sub_sequence: None,
        },
    );
    let from = format!("cursor:{}", cursor.encode());
    let old = run(setup.client(&["subscribe", "--from", &from])).await;
    assert_eq!(old.code, 7, "{}", old.stderr);
    assert_one_line(&old.stderr, "out of range");
    setup.shutdown().await;
}

/// A relay that wants `authorization: Bearer secret`.
#[derive(Clone)]
struct Guarded;

#[tonic::async_trait]
impl Relay for Guarded {
    type SubscribeStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<v1::SubscribeResponse, Status>>>;

    async fn subscribe(
        &self,
        _request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn list_streams(
        &self,
        _request: Request<v1::ListStreamsRequest>,
    ) -> Result<Response<v1::ListStreamsResponse>, Status> {
        Ok(Response::new(v1::ListStreamsResponse {
            streams: vec![v1::StreamSummary {
                name: "guarded".into(),
                shard_count: 1,
                status: v1::StreamStatus::Active.into(),
            }],
        }))
    }

    async fn describe_stream(
        &self,
        _request: Request<v1::DescribeStreamRequest>,
    ) -> Result<Response<v1::DescribeStreamResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn check_token(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get("authorization") {
        Some(value) if value == "Bearer secret" => Ok(request),
        Some(_) => Err(Status::permission_denied(
            "this token may not read any stream",
        )),
        None => Err(Status::unauthenticated("a bearer token is required")),
    }
}

#[tokio::test]
async fn refused_credentials_exit_6_and_the_token_is_sent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::relay_server::RelayServer::with_interceptor(
                Guarded,
                check_token,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let none = run(client(&url, &["streams"])).await;
    assert_eq!(none.code, 6, "{}", none.stderr);
    assert_one_line(&none.stderr, "permission denied");
    let wrong = run(client(&url, &["streams", "--token", "nope"])).await;
    assert_eq!(wrong.code, 6, "{}", wrong.stderr);
    assert_one_line(&wrong.stderr, "--token");
    let mut right = client(&url, &["streams", "--json"]);
    right.env("KINESIS_RELAY_TOKEN", "secret");
    let right = run(right).await;
    assert_eq!(right.code, 0, "{}", right.stderr);
    assert!(right.lines()[0].contains("\"guarded\""));
    server.abort();
}
