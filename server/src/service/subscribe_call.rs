//! Subscribe as an HTTP/2 exchange: the request read with tonic's decoder
//! ([`super::request::read_single`]), the responses written as they are held in the hub
//! by [`StreamingBody`], compressed when the client accepts it.
//!
//! tonic's server copies every response into a buffer of its own before HTTP/2 sees it.
//! Here a response's bytes go to HTTP/2 as they are held in the hub: the short per-response
//! parts (gRPC prefix, batch header, cursor) are copied together into one small frame, and
//! each run of records encoded back to back (see `hub::entry`) long enough to be worth its
//! own write goes out as a slice of the hub's block, copied only by the kernel.

use std::{ops::Range, sync::Arc, time::Duration};

use bytes::Bytes;
use http::HeaderValue;
use kinesis_relay_api::v1;
use tonic::{Status, body::Body};

use super::{
    RelayService,
    compress::{ResponseCompression, ResponseEncoding},
    request,
    stream_body::{PreEncoded, StreamingBody},
};
use crate::wire::EncodedResponse;

/// How long a client may take to send its request message once the call has started.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Answers one Subscribe call; `compression`, if any, compresses the responses for a client
/// that accepts gzip or zstd.
pub async fn subscribe(
    service: RelayService,
    request: http::Request<Body>,
    max_request_bytes: usize,
    compression: Option<Arc<ResponseCompression>>,
) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let read =
        request::read_single::<v1::SubscribeRequest>(&parts.headers, body, max_request_bytes);
    let message = match tokio::time::timeout(REQUEST_DEADLINE, read).await {
        Ok(Ok(message)) => message,
        Ok(Err(status)) => return with_accept_encoding(status.into_http()),
        Err(_) => {
            let status = Status::deadline_exceeded(format!(
                "the request message (and the end of the request stream) did not arrive within {} s",
                REQUEST_DEADLINE.as_secs()
            ));
            return with_accept_encoding(status.into_http());
        }
    };
    let encoding = compression
        .and_then(|compression| Some((compression, ResponseEncoding::negotiate(&parts.headers)?)));
    let shares = parts.extensions.clone();
    let request = tonic::Request::from_http(http::Request::from_parts(parts, message));
    let response = match service.subscribe_encoded(request) {
        Ok(stream) => {
            let name = encoding.as_ref().map(|(_, encoding)| encoding.name());
            let body = StreamingBody::new(stream, encoding).for_connection(&shares);
            let mut response = http::Response::new(Body::new(body));
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            if let Some(name) = name {
                headers.insert("grpc-encoding", HeaderValue::from_static(name));
            }
            response
        }
        Err(status) => status.into_http(),
    };
    with_accept_encoding(response)
}

/// Says which request encodings the relay decodes, as the protocol asks of servers.
fn with_accept_encoding(mut response: http::Response<Body>) -> http::Response<Body> {
    response.headers_mut().insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(request::ACCEPTED_ENCODINGS),
    );
    response
}

impl PreEncoded for EncodedResponse {
    /// A record batch's chunks of records are slices of the hub's blocks, the same for
    /// every subscriber sent them; its header and cursor, and any other response, are its
    /// own.
    fn into_segments(self) -> (Vec<Bytes>, Range<usize>) {
        let shared = self.shared_chunks();
        (self.segments, shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_shares_its_chunks_and_nothing_else() {
        // Each chunk a `RecordBatch.records` field (tag 0x12) of one byte.
        let chunk = |n: u8| Bytes::from(vec![0x12, 1, n]);
        let batch =
            EncodedResponse::record_batch("shard-1", vec![chunk(1), chunk(2)], 2, "c", None);
        let (segments, shared) = batch.into_segments();
        assert_eq!(shared, 1..3);
        assert_eq!(&segments[1][..], &chunk(1)[..]);
        assert_eq!(&segments[2][..], &chunk(2)[..]);
        let heartbeat = EncodedResponse::from_message(&v1::SubscribeResponse::default());
        assert!(heartbeat.into_segments().1.is_empty());
    }
}
