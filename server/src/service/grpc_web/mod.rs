//! gRPC-Web (PROTOCOL-WEB.md), for browsers: a call is translated into a native gRPC call
//! on the way in and its response back on the way out, so that every method, token check,
//! limit and deadline is the native one. Subscribe's response body keeps its pre-encoded
//! frames: in binary mode they pass through as they are, only the trailers become a frame.
//!
//! What changes from native gRPC:
//! - the request's `content-type` is `application/grpc-web`, `application/grpc-web+proto`,
//!   `application/grpc-web-text` or `application/grpc-web-text+proto`; the `-text` forms
//!   carry the body in base64, both ways;
//! - the status comes at the end of the body as a frame flagged 0x80 holding the trailers
//!   as HTTP/1 header lines, or in the headers of a response without a body
//!   (trailers-only);
//! - HTTP/1.1 is served as well as HTTP/2.
//!
//! Text responses are base64 in whole groups of three bytes as long as more bytes are
//! ready; the rest is sent padded when the body waits for more, so that a record is never
//! held back for the next one. A text body is thus a run of padded base64 chunks, which
//! PROTOCOL-WEB.md allows and gRPC-Web clients decode.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Status, body::Body};

mod text;

use self::text::TextRequestBody;
use crate::service::stream_body::PolledFrame;

/// The flag of the frame holding the trailers.
const TRAILERS_FLAG: u8 = 0x80;

/// How a call's messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Length-prefixed messages as in native gRPC.
    Binary,
    /// The same bytes in base64.
    Text,
}

impl Mode {
    /// The mode a request's `content-type` names: `None` when it is not gRPC-Web,
    /// `Some(Err(..))` for a gRPC-Web form the relay does not speak (JSON).
    pub fn of(headers: &HeaderMap) -> Option<Result<Self, &'static str>> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = value.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        let rest = essence.strip_prefix("application/grpc-web")?;
        let (mode, codec) = match rest.strip_prefix("-text") {
            Some(codec) => (Self::Text, codec),
            None => (Self::Binary, rest),
        };
        match codec {
            "" | "+proto" => Some(Ok(mode)),
            _ if codec.starts_with('+') => Some(Err(
                "this relay speaks gRPC-Web with protobuf messages only: send content-type application/grpc-web+proto or application/grpc-web-text+proto\n",
            )),
            // `application/grpc-websomething`: not gRPC-Web at all.
            _ => None,
        }
    }

    /// The response's `content-type`.
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Binary => "application/grpc-web+proto",
            Self::Text => "application/grpc-web-text+proto",
        })
    }
}

/// The native gRPC request of a gRPC-Web `request`.
pub fn into_grpc(mut request: http::Request<Body>, mode: Mode) -> http::Request<Body> {
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    // The text body's length changes once decoded; gRPC reads messages by their prefix.
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    // gRPC-Web responses stay uncompressed: browsers' clients do not all decode them, and
    // the native call compresses only for a client that says it accepts an encoding.
    headers.remove("grpc-accept-encoding");
    match mode {
        Mode::Binary => request,
        Mode::Text => request.map(|body| Body::new(TextRequestBody::new(body))),
    }
}

/// The gRPC-Web response of a native gRPC `response`.
pub fn from_grpc(response: http::Response<Body>, mode: Mode) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, mode.content_type());
    // A status in the headers is a trailers-only response: the headers say it all.
    let body = if parts.headers.contains_key(Status::GRPC_STATUS) {
        Body::empty()
    } else {
        Body::new(ResponseBody::new(body, mode))
    };
    http::Response::from_parts(parts, body)
}

/// The trailers as the frame that ends a gRPC-Web body: flag 0x80, big-endian length, and
/// `name:value\r\n` lines (lower-case names, as `http` holds them).
fn trailers_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers
        .iter()
        .map(|(name, value)| name.as_str().len() + 1 + value.len() + 2)
        .sum();
    let mut frame = BytesMut::with_capacity(5 + len);
    frame.put_u8(TRAILERS_FLAG);
    frame.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    for (name, value) in trailers {
        frame.put_slice(name.as_str().as_bytes());
        frame.put_u8(b':');
        frame.put_slice(value.as_bytes());
        frame.put_slice(b"\r\n");
    }
    frame.freeze()
}

/// The trailers of a call that ends with `status`.
fn status_trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Only an unencodable message gets here; the code alone still says what happened.
        trailers.insert(Status::GRPC_STATUS, HeaderValue::from(status.code() as i32));
    }
    trailers
}

/// A native gRPC response body as a gRPC-Web one.
struct ResponseBody {
    inner: Body,
    mode: Mode,
    /// Text mode: bytes not yet in base64 (fewer than three).
    carry: Vec<u8>,
    /// Frames ready to go.
    ready: VecDeque<Bytes>,
    /// Set once the trailers frame is queued: nothing follows it.
    done: bool,
}

impl ResponseBody {
    fn new(inner: Body, mode: Mode) -> Self {
        Self {
            inner,
            mode,
            carry: Vec::new(),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// Queues `data` as this mode sends it: as it is, or in base64 in whole groups of
    /// three bytes with the rest carried over (all of it when `flush`).
    fn queue(&mut self, data: Bytes, flush: bool) {
        match self.mode {
            Mode::Binary => {
                if !data.is_empty() {
                    self.ready.push_back(data);
                }
            }
            Mode::Text => {
                self.carry.extend_from_slice(&data);
                let whole = if flush {
                    self.carry.len()
                } else {
                    self.carry.len() / 3 * 3
                };
                if whole > 0 {
                    let text = STANDARD.encode(&self.carry[..whole]);
                    self.carry.drain(..whole);
                    self.ready.push_back(Bytes::from(text));
                }
            }
        }
    }

    /// Queues the trailers frame that ends the body.
    fn finish(&mut self, trailers: &HeaderMap) {
        self.queue(trailers_frame(trailers), true);
        self.done = true;
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame<Status> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    if this.carry.is_empty() {
                        return Poll::Pending;
                    }
                    // Nothing more is ready: send what is held rather than wait.
                    this.queue(Bytes::new(), true);
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.queue(data, false),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        this.finish(&trailers);
                    }
                },
                Poll::Ready(Some(Err(status))) => this.finish(&status_trailers(&status)),
                // A gRPC body always ends with trailers; one that does not ends as it is.
                Poll::Ready(None) => {
                    this.queue(Bytes::new(), true);
                    this.done = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::{text::decode_groups, *};

    fn content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        headers
    }

    #[test]
    fn content_types_name_the_mode() {
        for (value, mode) in [
            ("application/grpc-web", Mode::Binary),
            ("application/grpc-web+proto", Mode::Binary),
            ("Application/gRPC-Web+proto; charset=utf-8", Mode::Binary),
            ("application/grpc-web-text", Mode::Text),
            ("application/grpc-web-text+proto", Mode::Text),
        ] {
            assert_eq!(Mode::of(&content_type(value)), Some(Ok(mode)), "{value}");
        }
        assert!(matches!(
            Mode::of(&content_type("application/grpc-web+json")),
            Some(Err(_))
        ));
        for other in ["application/grpc", "application/grpc+proto", "text/plain"] {
            assert_eq!(Mode::of(&content_type(other)), None, "{other}");
        }
        assert_eq!(Mode::of(&HeaderMap::new()), None);
    }

    fn body_of(frames: Vec<Frame<Bytes>>) -> Body {
        Body::new(StreamBody::new(futures::stream::iter(
            frames.into_iter().map(Ok::<_, Status>),
        )))
    }

    async fn collect(body: impl HttpBody<Data = Bytes, Error = Status> + Unpin) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    fn ok_trailers() -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("kinesis-relay-cursor", HeaderValue::from_static("abc"));
        trailers
    }

    #[tokio::test]
    async fn binary_bodies_pass_data_as_it_is_and_end_with_a_trailers_frame() {
        let message = Bytes::from_static(b"\0\0\0\0\x03abc");
        let body = body_of(vec![
            Frame::data(message.clone()),
            Frame::trailers(ok_trailers()),
        ]);
        let mut web = ResponseBody::new(body, Mode::Binary);
        let first = web.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            first.as_ptr(),
            message.as_ptr(),
            "the message is not copied"
        );
        let trailers = web.frame().await.unwrap().unwrap().into_data().unwrap();
        let lines = b"grpc-status:0\r\nkinesis-relay-cursor:abc\r\n";
        assert_eq!(trailers[0], 0x80);
        assert_eq!(&trailers[1..5], &(lines.len() as u32).to_be_bytes());
        assert_eq!(&trailers[5..], lines);
        assert!(web.frame().await.is_none());
    }

    #[tokio::test]
    async fn text_bodies_are_base64_of_the_binary_ones() {
        let frames = || {
            vec![
                Frame::data(Bytes::from_static(b"\0\0\0\0\x04abcd")),
                Frame::data(Bytes::from_static(b"\0\0\0\0\x01e")),
                Frame::trailers(ok_trailers()),
            ]
        };
        let binary = collect(ResponseBody::new(body_of(frames()), Mode::Binary)).await;
        let text = collect(ResponseBody::new(body_of(frames()), Mode::Text)).await;
        assert_eq!(decode_groups(&text).unwrap(), binary);
    }

    #[tokio::test]
    async fn an_error_ends_the_body_with_its_status() {
        let body = Body::new(StreamBody::new(futures::stream::iter([Err::<
            Frame<Bytes>,
            Status,
        >(
            Status::unavailable("going away"),
        )])));
        let out = collect(ResponseBody::new(body, Mode::Binary)).await;
        assert_eq!(out[0], 0x80);
        let text = String::from_utf8(out[5..].to_vec()).unwrap();
        assert!(text.contains("grpc-status:14\r\n"), "{text}");
        assert!(text.contains("grpc-message:going%20away\r\n"), "{text}");
    }

    #[tokio::test]
    async fn text_requests_decode_across_frames_and_padded_chunks() {
        let message = b"\0\0\0\0\x05hello";
        let one = STANDARD.encode(&message[..4]);
        let two = STANDARD.encode(&message[4..]);
        let all = format!("{one}{two}");
        // Split at every byte so that every group straddles frames.
        let frames = all
            .as_bytes()
            .chunks(1)
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        let decoded = collect(TextRequestBody::new(body_of(frames))).await;
        assert_eq!(decoded, message);

        let bad = TextRequestBody::new(body_of(vec![Frame::data(Bytes::from_static(b"!!!!"))]));
        let status = bad.collect().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let cut = TextRequestBody::new(body_of(vec![Frame::data(Bytes::from_static(b"AAA"))]));
        assert_eq!(
            cut.collect().await.unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
