//! The subscriber against a scripted relay: resumption after a status, the never-twice
//! guard, giving up, and silence.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_stream::{Stream, wrappers::TcpListenerStream};
use tonic::{
    Code, Request, Response, Status,
    transport::{Channel, Server},
};

use super::*;
use crate::{
    cursor::{Cursor, Position},
    v1::{
        self, Earliest,
        relay_client::RelayClient,
        relay_server::{Relay, RelayServer},
        subscribe_response,
    },
};

type Responses = Vec<Result<SubscribeResponse, Status>>;

/// A relay that answers each Subscribe with the next script (none left: a stream that
/// never sends) and records the starting position of each.
#[derive(Default, Clone)]
struct Scripted {
    scripts: Arc<Mutex<VecDeque<Responses>>>,
    starts: Arc<Mutex<Vec<Option<StartingPosition>>>>,
}

#[tonic::async_trait]
impl Relay for Scripted {
    type SubscribeStream =
        Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send + 'static>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.starts
            .lock()
            .unwrap()
            .push(request.into_inner().starting_position);
        let stream: Self::SubscribeStream = match self.scripts.lock().unwrap().pop_front() {
            Some(script) => Box::pin(tokio_stream::iter(script)),
            None => Box::pin(tokio_stream::pending()),
        };
        Ok(Response::new(stream))
    }

    async fn list_streams(
        &self,
        _: Request<v1::ListStreamsRequest>,
    ) -> Result<Response<v1::ListStreamsResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn describe_stream(
        &self,
        _: Request<v1::DescribeStreamRequest>,
    ) -> Result<Response<v1::DescribeStreamResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// Serves `relay` on a port of its own and returns a client of it.
async fn serve(relay: Scripted) -> RelayClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        Server::builder()
            .add_service(RelayServer::new(relay))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    RelayClient::new(Channel::from_shared(url).unwrap().connect_lazy())
}

fn cursor_at(sequence: u64) -> String {
    let mut cursor = Cursor::new("s");
    cursor.shards.insert(
        "a".into(),
        Position::After {
            sequence: sequence.to_string().parse().unwrap(),
            sub_sequence: None,
        },
    );
    cursor.encode()
}

fn batch(sequences: &[u64]) -> Result<SubscribeResponse, Status> {
    Ok(SubscribeResponse {
        cursor: cursor_at(*sequences.last().unwrap()),
        event: Some(subscribe_response::Event::Records(v1::RecordBatch {
            shard_id: "a".into(),
            records: sequences
                .iter()
                .map(|sequence| v1::Record {
                    sequence_number: sequence.to_string(),
                    ..Default::default()
                })
                .collect(),
        })),
    })
}

fn fast() -> Options {
    Options {
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        idle_timeout: Duration::from_secs(10),
        retry_timeout: Some(Duration::from_secs(10)),
    }
}

/// The sequence numbers of the next response's records.
async fn next_records(subscriber: &mut Subscriber<RelayClient<Channel>>) -> (Vec<String>, u64) {
    loop {
        match subscriber.next().await.unwrap() {
            Event::Response {
                response:
                    SubscribeResponse {
                        event: Some(subscribe_response::Event::Records(batch)),
                        ..
                    },
                repeats,
            } => {
                let sequences = batch.records.into_iter().map(|r| r.sequence_number);
                return (sequences.collect(), repeats);
            }
            Event::Response { .. } | Event::Subscribed => {}
            Event::Interrupted { cause, .. } => panic!("interrupted: {cause:?}"),
        }
    }
}

#[tokio::test]
async fn resumes_after_the_cursor_of_a_status_and_never_repeats() {
    let relay = Scripted::default();
    relay.scripts.lock().unwrap().extend([
        vec![
            batch(&[1, 2]),
            Err(crate::resume::with_cursor(
                Code::Unavailable,
                "restarting".into(),
                &cursor_at(2),
            )),
        ],
        vec![batch(&[2, 3]), Err(Status::not_found("the stream is gone"))],
    ]);
    let client = serve(relay.clone()).await;
    let mut subscriber = Subscriber::new(
        client,
        SubscribeRequest::default(),
        StartingPosition::Earliest(Earliest {}),
        fast(),
    );
    assert!(matches!(
        subscriber.next().await.unwrap(),
        Event::Subscribed
    ));
    assert_eq!(
        next_records(&mut subscriber).await,
        (vec!["1".into(), "2".into()], 0)
    );
    match subscriber.next().await.unwrap() {
        Event::Interrupted {
            cause: Interruption::Status(status),
            ..
        } => assert_eq!(status.code(), Code::Unavailable),
        other => panic!("{other:?}"),
    }
    // Record 2 again: dropped, counted.
    assert_eq!(next_records(&mut subscriber).await, (vec!["3".into()], 1));
    assert_eq!(subscriber.cursor(), Some(cursor_at(3).as_str()));
    match subscriber.next().await {
        Err(Error::Status(status)) => assert_eq!(status.code(), Code::NotFound),
        other => panic!("{other:?}"),
    }
    let starts = relay.starts.lock().unwrap().clone();
    assert_eq!(
        starts,
        vec![
            Some(StartingPosition::Earliest(Earliest {})),
            Some(StartingPosition::AfterCursor(cursor_at(2))),
        ]
    );
}

#[tokio::test]
async fn a_silent_subscription_is_renewed_after_the_last_cursor() {
    let relay = Scripted::default();
    relay.scripts.lock().unwrap().push_back(vec![batch(&[7])]);
    let client = serve(relay.clone()).await;
    let options = Options {
        idle_timeout: Duration::from_millis(200),
        ..fast()
    };
    let mut subscriber = Subscriber::new(
        client,
        SubscribeRequest::default(),
        StartingPosition::Earliest(Earliest {}),
        options,
    )
    // A cursor saved by an earlier run wins over the starting position.
    .resume_after(Some(cursor_at(5)));
    assert!(matches!(
        subscriber.next().await.unwrap(),
        Event::Subscribed
    ));
    assert_eq!(next_records(&mut subscriber).await, (vec!["7".into()], 0));
    // The script ends the stream; the next one never sends.
    assert!(matches!(
        subscriber.next().await.unwrap(),
        Event::Interrupted {
            cause: Interruption::Ended,
            ..
        }
    ));
    assert!(matches!(
        subscriber.next().await.unwrap(),
        Event::Subscribed
    ));
    assert!(matches!(
        subscriber.next().await.unwrap(),
        Event::Interrupted {
            cause: Interruption::Silent(_),
            ..
        }
    ));
    let starts = relay.starts.lock().unwrap().clone();
    assert_eq!(
        starts,
        vec![
            Some(StartingPosition::AfterCursor(cursor_at(5))),
            Some(StartingPosition::AfterCursor(cursor_at(7))),
        ]
    );
}

#[tokio::test]
async fn gives_up_once_failures_outlast_the_retry_timeout() {
    // Nothing listens on port 1: every attempt is refused at once.
    let client = RelayClient::new(Channel::from_static("http://127.0.0.1:1").connect_lazy());
    let options = Options {
        retry_timeout: Some(Duration::from_millis(300)),
        ..fast()
    };
    let mut subscriber = Subscriber::new(
        client,
        SubscribeRequest::default(),
        StartingPosition::Earliest(Earliest {}),
        options,
    );
    let started = std::time::Instant::now();
    let mut interruptions = 0;
    let error = loop {
        match subscriber.next().await {
            Ok(Event::Interrupted {
                cause: Interruption::Open(_),
                retry_in,
            }) => {
                assert!(retry_in <= Duration::from_millis(300));
                interruptions += 1;
            }
            Ok(other) => panic!("{other:?}"),
            Err(error) => break error,
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never gave up");
    };
    assert!(interruptions >= 2, "{interruptions}");
    match error {
        Error::GaveUp { cause, after } => {
            assert!(
                matches!(cause, Interruption::Open(status) if status.code() == Code::Unavailable)
            );
            assert!(after >= Duration::from_millis(300), "{after:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_response_taken_back_is_delivered_again() {
    let relay = Scripted::default();
    relay
        .scripts
        .lock()
        .unwrap()
        .extend([vec![batch(&[1]), batch(&[2, 3])], vec![batch(&[2, 3, 4])]]);
    let client = serve(relay.clone()).await;
    let mut subscriber = Subscriber::new(
        client,
        SubscribeRequest::default(),
        StartingPosition::Earliest(Earliest {}),
        fast(),
    );
    assert_eq!(next_records(&mut subscriber).await, (vec!["1".into()], 0));
    assert_eq!(
        next_records(&mut subscriber).await,
        (vec!["2".into(), "3".into()], 0)
    );
    // The caller could not use records 2 and 3: they come again, from before them.
    assert!(matches!(
        subscriber.retry_last(Interruption::Ended),
        Event::Interrupted { .. }
    ));
    assert_eq!(
        next_records(&mut subscriber).await,
        (vec!["2".into(), "3".into(), "4".into()], 0)
    );
    let starts = relay.starts.lock().unwrap().clone();
    assert_eq!(
        starts,
        vec![
            Some(StartingPosition::Earliest(Earliest {})),
            Some(StartingPosition::AfterCursor(cursor_at(1))),
        ]
    );
}
