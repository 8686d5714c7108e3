//! The largest HTTP/2 frame a client takes, read from the first bytes it sends.
//!
//! A client says how large a frame it accepts (`SETTINGS_MAX_FRAME_SIZE`, 16 KiB unless
//! it says more) in the SETTINGS frame that must follow its connection preface. hyper does
//! not expose the peer's settings, so [`ReadsClientFrame`] reads that one frame as the
//! bytes pass on their way to hyper, and publishes the value to the connection's calls
//! ([`ClientFrameSize`]): a response body cuts its frames to fit it
//! (`service::stream_body`). Only the first SETTINGS frame is read; a client that changes
//! the setting later is served by h2 correctly all the same, with frames cut for the old
//! size.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of a frame head: length (3), type, flags, stream (4).
const FRAME_HEAD: usize = 9;
/// The SETTINGS frame type.
const SETTINGS: u8 = 0x4;
/// The SETTINGS_MAX_FRAME_SIZE identifier.
const MAX_FRAME_SIZE: u16 = 0x5;
/// A client that does not set it takes frames this large (RFC 9113, 6.5.2).
const DEFAULT_MAX_FRAME: u32 = 16 << 10;
/// A first SETTINGS frame longer than this is not read (it would set the same few
/// parameters many times over).
const MAX_SETTINGS_PAYLOAD: usize = 6 * 32;

/// The client's largest frame, once its first SETTINGS frame has been read; clones share it.
#[derive(Debug, Clone, Default)]
pub struct ClientFrameSize(Arc<AtomicU32>);

impl ClientFrameSize {
    /// The client's `SETTINGS_MAX_FRAME_SIZE`, if known (an HTTP/2 client whose SETTINGS
    /// frame has arrived).
    pub fn get(&self) -> Option<u32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            size => Some(size),
        }
    }

    fn set(&self, size: u32) {
        self.0.store(size, Ordering::Relaxed);
    }

    /// A size already known (for tests).
    #[cfg(test)]
    pub fn known(size: u32) -> Self {
        let known = Self::default();
        known.set(size);
        known
    }
}

/// Reads the client's first SETTINGS frame from the bytes passing through.
#[derive(Debug)]
struct Reader {
    /// The bytes of the preface and the frame, so far.
    seen: Vec<u8>,
    /// The frame has been read, or the connection is not HTTP/2 as expected.
    done: bool,
    size: ClientFrameSize,
}

impl Reader {
    /// Takes in the next bytes the client sent.
    fn observe(&mut self, mut bytes: &[u8]) {
        // Twice at most: the preface and frame head, then the frame's payload.
        while !self.done {
            let take = self
                .wanted()
                .saturating_sub(self.seen.len())
                .min(bytes.len());
            self.seen.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.done = match self.parse() {
                Parsed::Size(size) => {
                    self.size.set(size);
                    true
                }
                Parsed::NotHttp2 => true,
                Parsed::NeedMore if take == 0 => return,
                Parsed::NeedMore => false,
            };
        }
        self.seen = Vec::new();
    }

    /// How many bytes the preface and the frame take, as far as is known.
    fn wanted(&self) -> usize {
        let head = PREFACE.len() + FRAME_HEAD;
        if self.seen.len() < head {
            return head;
        }
        let len = &self.seen[PREFACE.len()..PREFACE.len() + 3];
        head + (usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]))
    }

    fn parse(&self) -> Parsed {
        let preface = self.seen.len().min(PREFACE.len());
        if self.seen[..preface] != PREFACE[..preface] {
            return Parsed::NotHttp2;
        }
        let Some(head) = self.seen.get(PREFACE.len()..PREFACE.len() + FRAME_HEAD) else {
            return Parsed::NeedMore;
        };
        let payload_len = self.wanted() - PREFACE.len() - FRAME_HEAD;
        if head[3] != SETTINGS
            || !payload_len.is_multiple_of(6)
            || payload_len > MAX_SETTINGS_PAYLOAD
        {
            return Parsed::NotHttp2;
        }
        let Some(payload) = self.seen.get(PREFACE.len() + FRAME_HEAD..) else {
            return Parsed::NeedMore;
        };
        if payload.len() < payload_len {
            return Parsed::NeedMore;
        }
        // The last value of a parameter given twice is the one that holds.
        let size = payload
            .chunks_exact(6)
            .rev()
            .find(|entry| u16::from_be_bytes([entry[0], entry[1]]) == MAX_FRAME_SIZE)
            .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
            .unwrap_or(DEFAULT_MAX_FRAME);
        Parsed::Size(size.max(DEFAULT_MAX_FRAME))
    }
}

enum Parsed {
    Size(u32),
    NotHttp2,
    NeedMore,
}

/// An I/O stream that reads its client's largest frame size as the client's first bytes
/// pass; everything else goes through untouched.
#[derive(Debug)]
pub struct ReadsClientFrame<IO> {
    io: IO,
    reader: Reader,
}

impl<IO> ReadsClientFrame<IO> {
    /// Wraps `io`; the size goes to `size` once read.
    pub fn new(io: IO, size: ClientFrameSize) -> Self {
        Self {
            io,
            reader: Reader {
                seen: Vec::new(),
                done: false,
                size,
            },
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadsClientFrame<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if !this.reader.done && matches!(polled, Poll::Ready(Ok(()))) {
            this.reader.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadsClientFrame<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preface and SETTINGS frame with `entries` (identifier, value).
    fn opening(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        let len = entries.len() * 6;
        bytes.extend_from_slice(&[0, 0, len as u8, SETTINGS, 0, 0, 0, 0, 0]);
        for (id, value) in entries {
            bytes.extend_from_slice(&id.to_be_bytes());
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        // The client's next frame (a WINDOW_UPDATE) in the same read.
        bytes.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        bytes
    }

    fn read_in_pieces(bytes: &[u8], piece: usize) -> Option<u32> {
        let size = ClientFrameSize::default();
        let mut reader = Reader {
            seen: Vec::new(),
            done: false,
            size: size.clone(),
        };
        for chunk in bytes.chunks(piece) {
            if !reader.done {
                reader.observe(chunk);
            }
        }
        size.get()
    }

    #[test]
    fn the_setting_is_read_however_the_bytes_are_split() {
        let bytes = opening(&[(0x3, 100), (MAX_FRAME_SIZE, 1 << 20), (0x4, 65535)]);
        for piece in 1..=bytes.len() {
            assert_eq!(
                read_in_pieces(&bytes, piece),
                Some(1 << 20),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn a_client_that_does_not_say_takes_16_kib() {
        assert_eq!(read_in_pieces(&opening(&[]), 7), Some(16384));
        assert_eq!(
            read_in_pieces(&opening(&[(0x4, 1 << 20)]), 100),
            Some(16384)
        );
    }

    #[test]
    fn anything_but_an_http2_opening_leaves_it_unknown() {
        assert_eq!(
            read_in_pieces(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5),
            None
        );
        let mut not_settings = opening(&[(MAX_FRAME_SIZE, 1 << 20)]);
        not_settings[PREFACE.len() + 3] = 0x8;
        assert_eq!(read_in_pieces(&not_settings, 64), None);
        let mut truncated = opening(&[(MAX_FRAME_SIZE, 1 << 20)]);
        truncated.truncate(PREFACE.len() + FRAME_HEAD + 3);
        assert_eq!(read_in_pieces(&truncated, 64), None);
    }

    #[tokio::test]
    async fn bytes_pass_through_unchanged() {
        use tokio::io::AsyncReadExt;
        let bytes = opening(&[(MAX_FRAME_SIZE, 32768)]);
        let size = ClientFrameSize::default();
        let mut io = ReadsClientFrame::new(&bytes[..], size.clone());
        let mut read = Vec::new();
        io.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, bytes);
        assert_eq!(size.get(), Some(32768));
    }
}
