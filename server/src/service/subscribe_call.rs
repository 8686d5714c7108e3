//! Subscribe as an HTTP/2 exchange, written without tonic's encoder.
//!
//! tonic's server copies every response into a buffer of its own before HTTP/2 sees it.
//! Here a response's bytes go to HTTP/2 as they are held in the hub: the short per-response
//! parts (gRPC prefix, batch header, cursor) are copied together into one small frame, and
//! each run of records encoded back to back (see `hub::entry`) long enough to be worth its
//! own write goes out as a slice of the hub's block, copied only by the kernel.
//!
//! The request side is [`super::request::read_single`]: exactly one length-prefixed
//! `SubscribeRequest` (gzip, zstd or uncompressed), bounded in size and in time.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use kinesis_relay_api::v1;
use tonic::{Status, body::Body};

use super::{
    RelayService,
    encode::EncodedResponse,
    relay::EncodedStream,
    request::{self, PREFIX},
};

/// Segments at least this long go to HTTP/2 as their own frame instead of being copied:
/// below it, a copy costs less than the extra write a frame of its own takes.
const ZERO_COPY_MIN: usize = 16 << 10;
/// How long a client may take to send its request message once the call has started.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Answers one Subscribe call.
pub async fn subscribe(
    service: RelayService,
    request: http::Request<Body>,
    max_request_bytes: usize,
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
    let request = tonic::Request::from_http(http::Request::from_parts(parts, message));
    let response = match service.subscribe_encoded(request) {
        Ok(stream) => {
            let mut response = http::Response::new(Body::new(ResponseBody::new(stream)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
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

/// The response body: frames of the responses, then the status as trailers.
struct ResponseBody {
    responses: EncodedStream,
    /// Frames of the response being sent.
    frames: VecDeque<Bytes>,
    /// Trailers to send once the frames are out.
    trailers: Option<HeaderMap>,
    /// Set once the trailers are decided.
    done: bool,
}

impl ResponseBody {
    fn new(responses: EncodedStream) -> Self {
        Self {
            responses,
            frames: VecDeque::new(),
            trailers: None,
            done: false,
        }
    }

    /// Splits a response into frames: small segments are copied together, long ones go as
    /// they are.
    fn push(&mut self, response: EncodedResponse) {
        let mut staging = BytesMut::with_capacity(PREFIX + 128);
        staging.put_u8(0);
        staging.put_u32(u32::try_from(response.len()).unwrap_or(u32::MAX));
        for segment in response.segments {
            if segment.len() >= ZERO_COPY_MIN {
                if !staging.is_empty() {
                    self.frames.push_back(staging.split().freeze());
                }
                self.frames.push_back(segment);
            } else {
                staging.put_slice(&segment);
            }
        }
        if !staging.is_empty() {
            self.frames.push_back(staging.freeze());
        }
    }
}

/// Trailers that end the call with `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only an unencodable message gets here; the code alone still says what happened.
        headers.insert(Status::GRPC_STATUS, HeaderValue::from(status.code() as i32));
    }
    headers
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.frames.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.responses.as_mut().poll_next(cx)) {
                Some(Ok(response)) => this.push(response),
                Some(Err(status)) => {
                    this.trailers = Some(trailers(&status));
                    this.done = true;
                }
                None => {
                    this.trailers = Some(trailers(&Status::ok("")));
                    this.done = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.frames.is_empty() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_segments_go_as_they_are_and_short_ones_are_copied_together() {
        let long = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        let response = EncodedResponse {
            segments: vec![
                Bytes::from_static(b"head"),
                long.clone(),
                Bytes::from_static(b"mid"),
                Bytes::from_static(b"cursor"),
            ],
            records: 1,
            oldest: None,
        };
        let total = response.len();
        let mut body = ResponseBody::new(Box::pin(futures::stream::empty()));
        body.push(response);
        let frames: Vec<Bytes> = body.frames.into_iter().collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            &frames[0][..],
            &[&[0u8][..], &(total as u32).to_be_bytes(), b"head"].concat()[..]
        );
        assert_eq!(
            frames[1].as_ptr(),
            long.as_ptr(),
            "the long segment is not copied"
        );
        assert_eq!(&frames[2][..], b"midcursor");
    }
}
