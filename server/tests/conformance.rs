//! gRPC protocol rules (PROTOCOL-HTTP2.md, statuscodes.md) checked with a raw HTTP/2
//! client, for what gRPC libraries will not send: a wrong content type, no request message
//! or two, an unknown message encoding, compressed requests and responses.

mod common;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use common::*;
use h2::client::SendRequest;
use http::{HeaderMap, Request};
use kinesis_relay_api::v1;
use prost::Message;

/// One gRPC-shaped exchange: response status, headers, body and trailers.
struct Exchange {
    status: http::StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: HeaderMap,
}

impl Exchange {
    /// `grpc-status`, from the trailers or (trailers-only responses) the headers.
    fn grpc_status(&self) -> Option<i32> {
        self.trailers
            .get("grpc-status")
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok()?.parse().ok())
    }

    fn grpc_message(&self) -> String {
        let raw = self
            .trailers
            .get("grpc-message")
            .or_else(|| self.headers.get("grpc-message"))
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        percent_decode(&raw)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn h2_client(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sends `body` to `method` with `headers` and reads the whole answer.
async fn call(
    client: &mut SendRequest<Bytes>,
    method: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Exchange {
    let mut request = Request::post(format!("http://relay/kinesis_relay.v1.Relay/{method}"))
        .body(())
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let mut ready = client.clone().ready().await.unwrap();
    let (response, mut send) = ready.send_request(request, false).unwrap();
    send.send_data(Bytes::from(body), true).unwrap();
    tokio::time::timeout(DEADLINE, async {
        let response = response.await.unwrap();
        let (parts, mut body) = response.into_parts();
        let mut bytes = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        Exchange {
            status: parts.status,
            headers: parts.headers,
            body: bytes.freeze(),
            trailers,
        }
    })
    .await
    .expect("the relay answers")
}

fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

const GRPC: (&str, &str) = ("content-type", "application/grpc");
const TE: (&str, &str) = ("te", "trailers");
const UNIMPLEMENTED: i32 = 12;
const RESOURCE_EXHAUSTED: i32 = 8;

#[tokio::test]
async fn protocol_rules_are_kept_for_what_libraries_will_not_send() {
    let mut config = fast_config(&["conformance"]);
    config.transport.max_request_bytes = 1024;
    let (_emulator, relay) = relay_on_one_shard("conformance", config).await;
    let mut client = h2_client(relay.local_addr).await;
    let describe = v1::DescribeStreamRequest {
        stream: "conformance".into(),
    }
    .encode_to_vec();
    let subscribe = v1::SubscribeRequest {
        stream: "conformance".into(),
        ..Default::default()
    }
    .encode_to_vec();

    // Not gRPC: HTTP 415, so no HTTP client mistakes a gRPC error for a success.
    for method in ["ListStreams", "Subscribe"] {
        let json = call(
            &mut client,
            method,
            &[("content-type", "application/json"), TE],
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(
            json.status,
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method}"
        );
    }

    // Request cardinality: Subscribe takes exactly one message.
    let none = call(&mut client, "Subscribe", &[GRPC, TE], vec![]).await;
    assert_eq!(
        none.grpc_status(),
        Some(UNIMPLEMENTED),
        "{}",
        none.grpc_message()
    );
    let two = [framed(0, &subscribe), framed(0, &subscribe)].concat();
    let two = call(&mut client, "Subscribe", &[GRPC, TE], two).await;
    assert_eq!(
        two.grpc_status(),
        Some(UNIMPLEMENTED),
        "{}",
        two.grpc_message()
    );

    // An oversized unary request: RESOURCE_EXHAUSTED naming the limit (not OUT_OF_RANGE).
    let large = v1::DescribeStreamRequest {
        stream: "x".repeat(2000),
    }
    .encode_to_vec();
    let large = call(
        &mut client,
        "DescribeStream",
        &[GRPC, TE],
        framed(0, &large),
    )
    .await;
    assert_eq!(large.grpc_status(), Some(RESOURCE_EXHAUSTED));
    assert!(
        large.grpc_message().contains("--max-request-bytes"),
        "{}",
        large.grpc_message()
    );

    // An encoding the relay does not decode: UNIMPLEMENTED, with the ones it does.
    let snappy = call(
        &mut client,
        "Subscribe",
        &[GRPC, TE, ("grpc-encoding", "snappy")],
        framed(1, b"whatever"),
    )
    .await;
    assert_eq!(snappy.grpc_status(), Some(UNIMPLEMENTED));
    let accepted = snappy.headers.get("grpc-accept-encoding").unwrap();
    assert!(accepted.to_str().unwrap().contains("gzip"), "{accepted:?}");

    // gzip requests are decoded on every method; a unary response is compressed for a
    // client that accepts gzip, and only then.
    let gzip = |message: &[u8]| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(message).unwrap();
        framed(1, &encoder.finish().unwrap())
    };
    let described = call(
        &mut client,
        "DescribeStream",
        &[
            GRPC,
            TE,
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "gzip"),
        ],
        gzip(&describe),
    )
    .await;
    assert_eq!(
        described.grpc_status(),
        Some(0),
        "{}",
        described.grpc_message()
    );
    assert_eq!(described.headers.get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(
        described.body[0], 1,
        "the response message is flagged compressed"
    );
    let plain = call(
        &mut client,
        "DescribeStream",
        &[GRPC, TE],
        framed(0, &describe),
    )
    .await;
    assert_eq!(plain.grpc_status(), Some(0));
    assert_eq!(
        plain.body[0], 0,
        "no compression unless the client accepts it"
    );
    let decoded = v1::DescribeStreamResponse::decode(&plain.body[5..]).unwrap();
    assert_eq!(decoded.stream, "conformance");

    // A gzip Subscribe request is read, and the call streams (ended here by its deadline).
    let subscribed = call(
        &mut client,
        "Subscribe",
        &[
            GRPC,
            TE,
            ("grpc-encoding", "gzip"),
            ("grpc-timeout", "300m"),
        ],
        gzip(&subscribe),
    )
    .await;
    assert_eq!(
        subscribed.grpc_status(),
        Some(4),
        "{}",
        subscribed.grpc_message()
    );
    assert!(subscribed.headers.contains_key("grpc-accept-encoding"));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tonic_client_with_compression_on_both_ways_is_served() {
    use tonic::codec::CompressionEncoding;
    let (emulator, relay) = relay_on_one_shard("compressed", fast_config(&["compressed"])).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", relay.local_addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let mut client = v1::relay_client::RelayClient::new(channel)
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let described = client
            .describe_stream(v1::DescribeStreamRequest {
                stream: "compressed".into(),
            })
            .await
            .unwrap();
        assert_eq!(described.get_ref().stream, "compressed");
        let mut stream = client
            .subscribe(v1::SubscribeRequest {
                stream: "compressed".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
        put(
            &kinesis,
            "compressed",
            &numbered(&format!("{encoding:?}"), 3, 1),
        )
        .await;
        let delivery = receive(&mut stream, 3).await;
        assert_eq!(check_order(&delivery.records).len(), 3);
    }
    relay.shutdown().await.unwrap();
}
