//! A server-streaming gRPC response body for messages that are already encoded.
//!
//! It does what tonic's server body (`tonic::codec::EncodeBody`) does for a
//! server-streaming call: each message as a length-prefixed gRPC message, optionally
//! compressed with the encoding negotiated for the call, then the status as trailers.
//! Where it departs from tonic, and why:
//! - **Messages come encoded, as segments of bytes** ([`PreEncoded`]), not as messages to
//!   encode: tonic encodes each message into a buffer of its own, which copies every record
//!   once more per subscriber (docs/adr/0008-zero-copy-responses-from-encoded-blocks.md).
//!   Segments of at least [`ZERO_COPY_MIN`] bytes go to HTTP/2 as frames of their own; the
//!   shorter ones are copied together.
//! - **Compression is shared across bodies**: tonic compresses each message of each call;
//!   here the segments a message shares with others (slices of the hub's blocks) are
//!   compressed once per encoding and cached ([`super::compress`]), and the message is put
//!   together from compressed pieces. A message with no shared segments (heartbeats, shard
//!   events, a few hundred bytes) goes uncompressed, with the compressed flag 0, as the
//!   protocol allows within a compressed call.
//! - **No encoding size limit** (tonic's `max_encoding_message_size`): messages are bounded
//!   where they are made (a batch is at most 3 MiB, `subscription::batch`).
//! - **No trailers-only answer**: a call that fails before its first message is answered
//!   by the caller with the status in the headers before this body exists; once it exists,
//!   an error ends it with the status in the trailers, as tonic's does.
//! - **Short bytes wait for the next message if it is ready**: the short segments after a
//!   message's last long one (its cursor) are held until the message stream says whether
//!   another message is ready; if it is, they are copied together with that message's
//!   prefix into one frame, and if not, they go at once. Every frame of the body is a DATA
//!   frame of its own to h2, which never joins them, so back-to-back responses cost the
//!   client one frame less each (two instead of three for a response of one run of records;
//!   five instead of six for 64 KiB in 16 KiB frames), and no byte waits for a message that
//!   is not there yet.
//! - **It never fails as a body** (`Error = Infallible`): an error of the message stream is
//!   a status for the client, not a broken HTTP/2 stream.

use std::{
    collections::VecDeque,
    convert::Infallible,
    ops::Range,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use tonic::Status;

use super::compress::{ResponseCompression, ResponseEncoding};
use crate::connections::{client_frame::ClientFrameSize, lent::LentChunks};

/// What [`HttpBody::poll_frame`] returns for the bodies of this service (bytes frames),
/// named once so that each body's signature says only what differs: its error.
pub type PolledFrame<E> = Poll<Option<Result<Frame<Bytes>, E>>>;

/// Bytes of the gRPC message prefix: compression flag and big-endian length.
const PREFIX: usize = 5;
/// Segments at least this long go to HTTP/2 as their own frame instead of being copied:
/// below it, a copy costs less than the extra write a frame of its own takes.
pub const ZERO_COPY_MIN: usize = 16 << 10;

/// A message already encoded.
pub trait PreEncoded {
    /// The segments whose concatenation is the message's encoding, and which of them are
    /// shared with other messages (worth compressing once and keeping).
    fn into_segments(self) -> (Vec<Bytes>, Range<usize>);
}

/// The compression of a call: the shared compressor and the encoding negotiated.
pub type Compression = (Arc<ResponseCompression>, ResponseEncoding);

/// The response body: the messages of `S` as gRPC messages, then the status as trailers.
pub struct StreamingBody<S> {
    messages: S,
    /// `None`: messages go uncompressed.
    compression: Option<Compression>,
    /// Frames of the message being sent.
    frames: VecDeque<Bytes>,
    /// Short bytes after the last long segment of the last message, not framed yet: they
    /// join the next message's first frame if it is ready, or go on their own.
    tail: BytesMut,
    /// Trailers to send once the frames are out.
    trailers: Option<HeaderMap>,
    /// Set once the trailers are decided.
    done: bool,
    /// Where the connection's I/O layer learns of the frames it may hold without a copy.
    lent: Option<LentChunks>,
    /// The largest frame the client takes, once known.
    client_frame: Option<ClientFrameSize>,
}

impl<S, M> StreamingBody<S>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: PreEncoded,
{
    /// The body of `messages`, compressed as `compression` says.
    pub fn new(messages: S, compression: Option<Compression>) -> Self {
        Self {
            messages,
            compression,
            frames: VecDeque::new(),
            tail: BytesMut::new(),
            trailers: None,
            done: false,
            lent: None,
            client_frame: None,
        }
    }

    /// Uses what the connection's I/O layers share with its calls (`extensions` of the
    /// request): each long frame is lent before HTTP/2 gets it, so that the connection may
    /// defer the frames h2 cuts from it without copying them ([`crate::connections::lent`]),
    /// and frames are cut to the client's frame size ([`Self::fill`]).
    pub fn for_connection(mut self, extensions: &http::Extensions) -> Self {
        self.lent = extensions.get::<LentChunks>().cloned();
        self.client_frame = extensions.get::<ClientFrameSize>().cloned();
        self
    }

    /// How many bytes of a long segment to copy into the frame before it, `staged` bytes
    /// long, so that the pair reaches the client in one frame fewer. h2 cuts each body
    /// frame into frames of the client's size on its own, so a 60 KiB run of records after
    /// a 20-byte prefix frame reaches a 16 KiB client as five frames (20 B, then 16, 16,
    /// 16 and 12 KiB); moving the run's first 12 KiB behind the prefix leaves a run of
    /// whole frames, four in all: one frame, one client read and decode less per response.
    /// The copy is the run's last partial frame and no more (a fuller first frame would
    /// save nothing), and only where it fits behind the staged bytes; only a copy shorter
    /// than [`ZERO_COPY_MIN`] is worth a frame, so 1 MiB clients are not filled.
    fn fill(&self, staged: usize, long: usize) -> usize {
        let Some(frame) = self.client_frame.as_ref().and_then(ClientFrameSize::get) else {
            return 0;
        };
        let frame = usize::try_from(frame).unwrap_or(usize::MAX);
        if staged == 0 || staged + long <= frame {
            return 0;
        }
        let partial = match long % frame {
            0 => frame,
            partial => partial,
        };
        if staged + partial <= frame && partial < ZERO_COPY_MIN {
            partial
        } else {
            0
        }
    }

    /// `bytes` as a DATA frame, lent first.
    fn data(&self, bytes: Bytes) -> PolledFrame<Infallible> {
        if let Some(lent) = &self.lent {
            lent.lend(&bytes);
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    /// Queues the frames of `message`.
    fn push(&mut self, message: M) {
        let (segments, shared) = message.into_segments();
        match &self.compression {
            Some((compression, encoding)) if !shared.is_empty() => {
                let compressed = compression.compress(*encoding, &segments, shared);
                self.push_framed(1, compressed);
            }
            _ => self.push_framed(0, segments),
        }
    }

    /// Queues a gRPC message of `segments`: small segments are copied together behind the
    /// prefix (and behind the last message's tail), long ones go as they are; the short
    /// bytes after the last long one become the new tail.
    fn push_framed(&mut self, flag: u8, segments: Vec<Bytes>) {
        let len: usize = segments.iter().map(Bytes::len).sum();
        let mut staging = std::mem::take(&mut self.tail);
        staging.reserve(PREFIX + 128);
        staging.put_u8(flag);
        staging.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        for mut segment in segments {
            if segment.len() >= ZERO_COPY_MIN {
                if !staging.is_empty() {
                    let fill = self.fill(staging.len(), segment.len());
                    staging.put_slice(&segment[..fill]);
                    segment = segment.slice(fill..);
                    self.frames.push_back(staging.split().freeze());
                }
                self.frames.push_back(segment);
            } else {
                staging.put_slice(&segment);
            }
        }
        self.tail = staging;
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

impl<S, M> HttpBody for StreamingBody<S>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: PreEncoded,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame<Infallible> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = this.frames.pop_front() {
                return this.data(frame);
            }
            if !this.done {
                match Pin::new(&mut this.messages).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        this.push(message);
                        continue;
                    }
                    Poll::Ready(Some(Err(status))) => {
                        this.trailers = Some(trailers(&status));
                        this.done = true;
                    }
                    Poll::Ready(None) => {
                        this.trailers = Some(trailers(&Status::ok("")));
                        this.done = true;
                    }
                    // No message ready: the tail goes now rather than wait for one.
                    Poll::Pending if this.tail.is_empty() => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if !this.tail.is_empty() {
                let tail = this.tail.split().freeze();
                return this.data(tail);
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.frames.is_empty() && self.tail.is_empty() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use http_body_util::BodyExt;

    use super::*;

    /// A test message: segments, the middle ones shared.
    struct Parts(Vec<Bytes>);

    impl PreEncoded for Parts {
        fn into_segments(self) -> (Vec<Bytes>, Range<usize>) {
            let shared = 1..self.0.len().saturating_sub(1).max(1);
            (self.0, shared)
        }
    }

    fn body(
        messages: Vec<Result<Parts, Status>>,
        compression: Option<Compression>,
    ) -> StreamingBody<futures::stream::Iter<std::vec::IntoIter<Result<Parts, Status>>>> {
        StreamingBody::new(futures::stream::iter(messages), compression)
    }

    #[test]
    fn long_segments_go_as_they_are_and_short_ones_are_copied_together() {
        let long = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        let parts = vec![
            Bytes::from_static(b"head"),
            long.clone(),
            Bytes::from_static(b"mid"),
            Bytes::from_static(b"cursor"),
        ];
        let total: usize = parts.iter().map(Bytes::len).sum();
        let mut body = body(vec![], None);
        body.push(Parts(parts));
        let mut frames: Vec<Bytes> = body.frames.into_iter().collect();
        frames.push(body.tail.freeze());
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

    /// The data frames `body` yields now, until it has nothing ready.
    fn ready_frames<S, M>(body: &mut StreamingBody<S>) -> Vec<Bytes>
    where
        S: Stream<Item = Result<M, Status>> + Unpin,
        M: PreEncoded,
    {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut frames = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut *body).poll_frame(&mut cx) {
            match frame.into_data() {
                Ok(data) => frames.push(data),
                Err(_) => break,
            }
        }
        frames
    }

    #[test]
    fn a_tail_joins_the_next_ready_message_and_goes_alone_when_none_is() {
        let long = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        let message = || Parts(vec![long.clone(), Bytes::from_static(b"cursor")]);
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Parts, Status>>();
        let mut body = StreamingBody::new(rx, None);
        tx.unbounded_send(Ok(message())).unwrap();
        tx.unbounded_send(Ok(message())).unwrap();
        let frames = ready_frames(&mut body);
        let prefix = |len: usize| [&[0u8][..], &(len as u32).to_be_bytes()].concat();
        let len = ZERO_COPY_MIN + 6;
        // prefix | long | cursor + prefix | long | cursor: five frames for two messages.
        assert_eq!(
            frames.len(),
            5,
            "{:?}",
            frames.iter().map(Bytes::len).collect::<Vec<_>>()
        );
        assert_eq!(frames[0][..], prefix(len)[..]);
        assert_eq!(frames[1].as_ptr(), long.as_ptr());
        assert_eq!(frames[2][..], [&b"cursor"[..], &prefix(len)].concat()[..]);
        assert_eq!(
            &frames[4][..],
            b"cursor",
            "no message ready: the tail went at once"
        );
        // One more message later: its prefix starts a frame of its own.
        tx.unbounded_send(Ok(message())).unwrap();
        drop(tx);
        let frames = ready_frames(&mut body);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0][..], prefix(len)[..]);
        assert!(body.is_end_stream(), "the trailers were the last frame");
    }

    #[test]
    fn long_frames_are_lent_before_http2_gets_them() {
        let long = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        let lent = LentChunks::default();
        let messages = vec![Ok(Parts(vec![long.clone(), Bytes::from_static(b"cursor")]))];
        let mut shares = http::Extensions::new();
        shares.insert(lent.clone());
        let mut body = body(messages, None).for_connection(&shares);
        let frames = ready_frames(&mut body);
        assert_eq!(frames.len(), 3, "prefix, long segment, cursor");
        assert_eq!(lent.held(), 1, "only the long one is worth lending");
        let borrowed = lent
            .borrow(&frames[1][100..])
            .expect("the long frame was lent");
        assert_eq!(borrowed.as_ptr(), long[100..].as_ptr());
    }

    /// The frames of one message of a 64 KiB run and a cursor, for a client of `frame`.
    fn frames_for_client(frame: Option<u32>, long: &Bytes) -> Vec<Bytes> {
        let mut shares = http::Extensions::new();
        if let Some(frame) = frame {
            shares.insert(ClientFrameSize::known(frame));
        }
        let messages = vec![Ok(Parts(vec![long.clone(), Bytes::from_static(b"cursor")]))];
        let mut body = body(messages, None).for_connection(&shares);
        ready_frames(&mut body)
    }

    #[test]
    fn a_long_segments_last_partial_frame_is_moved_behind_the_frame_before_it() {
        let lens = |frames: &[Bytes]| frames.iter().map(Bytes::len).collect::<Vec<_>>();
        // 60 KiB: three frames of 16 KiB and 12 KiB over.
        let long = Bytes::from((0..60 << 10).map(|i| i as u8).collect::<Vec<_>>());
        let unknown = frames_for_client(None, &long);
        assert_eq!(lens(&unknown), [PREFIX, 60 << 10, 6]);
        let filled = frames_for_client(Some(16384), &long);
        let partial = 12 << 10;
        assert_eq!(lens(&filled), [PREFIX + partial, 48 << 10, 6]);
        assert_eq!(
            filled[1].as_ptr(),
            long[partial..].as_ptr(),
            "the rest is not copied"
        );
        assert_eq!(filled.concat(), unknown.concat(), "the same bytes");
        // A client of 1 MiB frames takes the run whole: copying it would save nothing.
        assert_eq!(
            lens(&frames_for_client(Some(1 << 20), &long)),
            lens(&unknown)
        );
        // Nor is a 32 KiB frame worth a copy of 28 KiB.
        assert_eq!(
            lens(&frames_for_client(Some(32 << 10), &long)),
            lens(&unknown)
        );
        // A run of whole frames, or one whose partial frame does not fit behind the
        // prefix, loses no frame to a copy: none is made.
        for len in [64 << 10, (64 << 10) - 2] {
            let long = Bytes::from(vec![7u8; len]);
            assert_eq!(
                lens(&frames_for_client(Some(16384), &long)),
                [PREFIX, len, 6]
            );
        }
    }

    #[tokio::test]
    async fn compressed_messages_are_flagged_and_the_status_ends_the_body() {
        let compression = Some((
            Arc::new(ResponseCompression::new(3)),
            ResponseEncoding::Gzip,
        ));
        let records = Bytes::from(b"{\"n\":1}".repeat(5000));
        let messages = vec![
            Ok(Parts(vec![
                Bytes::from_static(b"h"),
                records.clone(),
                Bytes::from_static(b"c"),
            ])),
            // Nothing shared: not worth compressing.
            Ok(Parts(vec![Bytes::from_static(b"heartbeat")])),
            Err(Status::out_of_range("gone")),
        ];
        let collected = body(messages, compression).collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers.get("grpc-status").unwrap(), "11");
        let data = collected.to_bytes();
        assert_eq!(data[0], 1, "the batch is flagged compressed");
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        assert!(len < records.len() / 10, "{len}");
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&data[5..5 + len])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, [&b"h"[..], &records, b"c"].concat());
        let rest = &data[5 + len..];
        assert_eq!(rest[0], 0, "the heartbeat goes uncompressed");
        assert_eq!(&rest[5..], b"heartbeat");
    }
}
