//! The request side of a call: its message size limit, its compression, and for Subscribe
//! its one request message.
//!
//! The unary methods are decoded by tonic's generated server; [`LimitedBody`] only looks
//! at each message's length prefix on the way in, so that an oversized request gets
//! RESOURCE_EXHAUSTED naming `--max-request-bytes` (tonic answers OUT_OF_RANGE, which in
//! this API means "cursor older than held"). Subscribe reads its message here, with tonic's
//! decoder behind the same limit.

use std::{
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, SizeHint};
use prost::Message;
use tonic::{
    Code, Status, Streaming,
    body::Body,
    codec::{CompressionEncoding, DecodeBuf, Decoder},
};

use super::stream_body::PolledFrame;

/// Bytes of the gRPC message prefix: compression flag and big-endian length.
pub const PREFIX: usize = 5;
/// Message encodings the relay decodes, as `grpc-accept-encoding` lists them.
pub const ACCEPTED_ENCODINGS: &str = "gzip,zstd,identity";

/// The status for a request message of `len` bytes over `max`.
fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "the request is {len} bytes; this relay accepts at most {max} (--max-request-bytes)"
    ))
}

/// A request body whose messages may not be longer than a limit: the body fails with
/// RESOURCE_EXHAUSTED at the first length prefix over it.
pub struct LimitedBody {
    inner: Body,
    max: usize,
    /// The prefix being read.
    prefix: [u8; PREFIX],
    /// Bytes of `prefix` read so far.
    have: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl LimitedBody {
    /// Wraps `inner`, allowing messages of at most `max` bytes.
    pub fn new(inner: Body, max: usize) -> Self {
        Self {
            inner,
            max,
            prefix: [0; PREFIX],
            have: 0,
            remaining: 0,
        }
    }

    /// Follows the message framing through `data`.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len());
                self.remaining -= skip;
                data = &data[skip..];
                continue;
            }
            self.prefix[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == PREFIX {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if len > self.max {
                    return Err(too_large(len, self.max));
                }
                self.remaining = len;
                self.have = 0;
            }
        }
        Ok(())
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame<Status> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(status) = this.scan(data)
        {
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The encoding the request's messages are compressed with (`grpc-encoding`), among
/// those the relay accepts; unknown ones are refused with the ones accepted, as tonic's
/// server does (whose check is not public).
fn request_encoding(headers: &HeaderMap) -> Result<Option<CompressionEncoding>, Status> {
    match headers
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Ok(None),
        Some("gzip") => Ok(Some(CompressionEncoding::Gzip)),
        Some("zstd") => Ok(Some(CompressionEncoding::Zstd)),
        Some(other) => Err(Status::unimplemented(format!(
            "grpc-encoding {other:?} is not supported; this relay accepts {ACCEPTED_ENCODINGS}"
        ))),
    }
}

/// Decodes request messages with prost, as tonic's generated servers do, but a message
/// that does not decode is INVALID_ARGUMENT (the client sent it) rather than INTERNAL.
struct RequestDecoder<M>(PhantomData<fn() -> M>);

impl<M: Message + Default + 'static> Decoder for RequestDecoder<M> {
    type Item = M;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<M>, Status> {
        M::decode(buf).map(Some).map_err(|err| {
            Status::invalid_argument(format!("the request is not a valid message: {err}"))
        })
    }
}

/// Reads the one request message of a server-streaming call such as Subscribe with tonic's
/// decoder ([`Streaming`]): exactly one message (none, or a second one, is UNIMPLEMENTED as
/// the protocol says of request cardinality; tonic's server takes the first of several and
/// calls none INTERNAL), compressed as `headers` say, at most `max` bytes, compressed or
/// not (over it is RESOURCE_EXHAUSTED naming the flag).
pub async fn read_single<M: Message + Default + 'static>(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<M, Status> {
    let encoding = request_encoding(headers)?;
    let mut messages = Streaming::new_request(
        RequestDecoder::<M>(PhantomData),
        LimitedBody::new(body, max),
        encoding,
        Some(max),
    );
    let limit = |status: Status| match status.code() {
        // tonic's words for a message that decompresses past the limit.
        Code::ResourceExhausted | Code::OutOfRange
            if !status.message().contains("--max-request-bytes") =>
        {
            Status::resource_exhausted(format!(
                "the request decompresses to more than {max} bytes, the most this relay \
                 accepts (--max-request-bytes)"
            ))
        }
        _ => status,
    };
    let message = messages.message().await.map_err(limit)?;
    let message = message.ok_or_else(cardinality)?;
    if messages.message().await.map_err(limit)?.is_some() {
        return Err(cardinality());
    }
    Ok(message)
}

fn cardinality() -> Status {
    Status::unimplemented(
        "this method takes exactly one request message, then the end of the request stream",
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http_body::Frame;
    use http_body_util::BodyExt;
    use kinesis_relay_api::v1;

    use super::*;

    fn body(bytes: Vec<u8>) -> Body {
        Body::new(http_body_util::Full::new(Bytes::from(bytes)))
    }

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn headers(encoding: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(encoding) = encoding {
            headers.insert("grpc-encoding", encoding.parse().unwrap());
        }
        headers
    }

    async fn read(
        encoding: Option<&str>,
        bytes: Vec<u8>,
        max: usize,
    ) -> Result<v1::SubscribeRequest, Status> {
        read_single(&headers(encoding), body(bytes), max).await
    }

    #[tokio::test]
    async fn one_message_is_read_checked_and_decoded() {
        let request = v1::SubscribeRequest {
            stream: "orders".into(),
            ..Default::default()
        };
        let plain = framed(0, &request.encode_to_vec());
        assert_eq!(
            read(None, plain.clone(), 1024).await.unwrap().stream,
            "orders"
        );

        let large = read(None, framed(0, &[0; 2000]), 1024).await.unwrap_err();
        assert_eq!(large.code(), tonic::Code::ResourceExhausted);
        assert!(large.message().contains("--max-request-bytes"), "{large:?}");

        let cut = read(None, plain[..6].to_vec(), 1024).await.unwrap_err();
        assert_eq!(cut.code(), tonic::Code::Internal);

        let garbage = read(None, framed(0, &[0xff; 8]), 1024).await.unwrap_err();
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn none_or_two_messages_are_unimplemented() {
        let none = read(None, vec![], 1024).await.unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unimplemented);
        let one = framed(0, &v1::SubscribeRequest::default().encode_to_vec());
        let two = read(None, [one.clone(), one].concat(), 1024)
            .await
            .unwrap_err();
        assert_eq!(two.code(), tonic::Code::Unimplemented);
    }

    #[tokio::test]
    async fn gzip_and_zstd_messages_are_decompressed_within_the_limit() {
        let request = v1::SubscribeRequest {
            stream: "orders".into(),
            ..Default::default()
        };
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&request.encode_to_vec()).unwrap();
        let gzip = gzip.finish().unwrap();
        let read_gzip = read(Some("gzip"), framed(1, &gzip), 1024).await.unwrap();
        assert_eq!(read_gzip.stream, "orders");
        let zstd = zstd::encode_all(&request.encode_to_vec()[..], 3).unwrap();
        let read_zstd = read(Some("zstd"), framed(1, &zstd), 1024).await.unwrap();
        assert_eq!(read_zstd.stream, "orders");

        // A small compressed message that expands past the limit.
        let bomb = zstd::encode_all(&vec![0u8; 1 << 20][..], 3).unwrap();
        let status = read(Some("zstd"), framed(1, &bomb), 1024)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("--max-request-bytes"),
            "{status:?}"
        );

        let unknown = read(Some("snappy"), framed(1, b"x"), 1024)
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unimplemented);
        assert!(unknown.message().contains("gzip,zstd"));
    }

    #[tokio::test]
    async fn limited_bodies_fail_at_an_oversized_prefix_split_across_frames() {
        let mut message = framed(0, &[7; 100]);
        message.extend(framed(0, &[7; 3000]));
        // Frames of 3 bytes: every prefix is split.
        let frames: Vec<Result<Frame<Bytes>, Status>> = message
            .chunks(3)
            .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
            .collect();
        let inner = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        let mut limited = LimitedBody::new(inner, 1024);
        let mut passed = 0;
        let status = loop {
            match limited.frame().await {
                Some(Ok(frame)) => passed += frame.into_data().unwrap().len(),
                Some(Err(status)) => break status,
                None => panic!("the oversized message went through"),
            }
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(passed >= 105, "the first message passes");
    }
}
