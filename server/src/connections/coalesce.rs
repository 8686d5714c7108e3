//! Fewer system calls per response for clients with small HTTP/2 frames.
//!
//! h2 writes every DATA frame on its own: it hands the socket the frame's head and payload
//! in one vectored write and flushes before it encodes the next frame. A client that keeps
//! HTTP/2's default 16 KiB frames (grpc-go, grpc-js, grpcurl) thus costs four writes for a
//! 64 KiB batch, where one that accepts 1 MiB frames costs one.
//!
//! [`Coalescing`] sits between hyper and the socket. The first write of each poll of the
//! connection goes to the socket as it is (a response of one frame costs what it did: one
//! write, no copy, no extra poll). Later writes of the same poll, of less than
//! [`DIRECT_WRITE`] bytes, are copied into a buffer; a flush with data buffered only asks
//! for the connection to be polled again, and the buffer goes out in one write at the start
//! of that poll (h2 reads before it writes), or as soon as it holds [`CAPACITY`] bytes. So a
//! 64 KiB batch in 16 KiB frames costs two writes instead of four, and nothing waits: the
//! extra poll comes right after the other tasks ready to run. Writes of [`DIRECT_WRITE`]
//! bytes or more (a whole batch in one frame, as clients with large frames get it) go to the
//! socket as they are, after anything buffered, so they keep their zero-copy path.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes at least this long skip the buffer.
pub const DIRECT_WRITE: usize = 32 << 10;
/// Most bytes held before they are written.
pub const CAPACITY: usize = 256 << 10;

/// An I/O stream whose small writes are gathered into one.
#[derive(Debug)]
pub struct Coalescing<IO> {
    /// The socket.
    io: IO,
    /// Bytes accepted from the writer, not yet written to the socket.
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    written: usize,
    /// This poll of the connection has written to the socket already.
    wrote_this_poll: bool,
}

impl<IO> Coalescing<IO> {
    /// Wraps `io`.
    pub fn new(io: IO) -> Self {
        Self {
            io,
            buf: Vec::new(),
            written: 0,
            wrote_this_poll: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Coalescing<IO> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            // Vectored like the direct writes (writev): for a TCP socket a plain write is a
            // send(2), which the process's I/O accounting (`wchar`, which the benchmark
            // reads) does not count; writev(2) costs the same and is counted.
            let rest = [IoSlice::new(&self.buf[self.written..])];
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        // A burst's buffer is not kept: an idle connection holds no memory for it.
        if self.buf.capacity() > CAPACITY {
            self.buf.shrink_to(CAPACITY);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalescing<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let direct = total >= DIRECT_WRITE || !this.wrote_this_poll;
        if direct || this.buf.len() + total > CAPACITY {
            ready!(this.poll_drain(cx))?;
            if direct {
                this.wrote_this_poll = true;
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            return Pin::new(&mut this.io).poll_flush(cx);
        }
        // h2 flushes after every DATA frame. Poll the connection again instead: whatever it
        // writes until then joins this buffer, which goes out at the start of that poll.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalescing<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The start of a poll of the connection: what the last one buffered goes out now.
        // A full socket is no reason not to read; the drain goes on when it can take more.
        this.wrote_this_poll = false;
        if !this.buf.is_empty()
            && let Poll::Ready(Err(err)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    /// A socket that records each write call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let len = all.len();
            self.get_mut().writes.push(all);
            Poll::Ready(Ok(len))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    fn frame(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn small_frames_of_one_poll_leave_in_one_write_in_order() {
        let mut io = Coalescing::new(Recorder::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut io);
        for byte in 0..4u8 {
            let written = pinned.as_mut().poll_write(&mut cx, &frame(byte, 16 << 10));
            assert!(matches!(written, Poll::Ready(Ok(16384))));
            assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        }
        assert_eq!(pinned.io.writes.len(), 1, "the first frame goes at once");
        let mut storage = [0u8; 16];
        let mut read = ReadBuf::new(&mut storage);
        assert!(pinned.as_mut().poll_read(&mut cx, &mut read).is_pending());
        assert_eq!(pinned.io.writes.len(), 2, "one write for the three others");
        assert_eq!(pinned.io.writes[0], frame(0, 16 << 10));
        let rest: Vec<u8> = (1..4u8).flat_map(|b| frame(b, 16 << 10)).collect();
        assert_eq!(pinned.io.writes[1], rest);
        // The next poll's first write goes at once again.
        let _ = pinned.as_mut().poll_write(&mut cx, &frame(9, 100));
        assert_eq!(pinned.io.writes.len(), 3);
    }

    #[test]
    fn large_writes_go_as_they_are_after_what_is_buffered() {
        let mut io = Coalescing::new(Recorder::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut io);
        let _ = pinned.as_mut().poll_write(&mut cx, &frame(0, 100));
        let head = frame(1, 9);
        let _ = pinned.as_mut().poll_write(&mut cx, &head);
        let payload = frame(2, 64 << 10);
        let written = pinned
            .as_mut()
            .poll_write_vectored(&mut cx, &[IoSlice::new(&head), IoSlice::new(&payload)]);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == 9 + (64 << 10)));
        assert_eq!(pinned.io.writes.len(), 3);
        assert_eq!(pinned.io.writes[1], head, "the buffered bytes first");
        assert_eq!(pinned.io.writes[2].len(), 9 + (64 << 10));
    }

    #[test]
    fn a_full_buffer_is_written_before_it_grows_and_shutdown_drains() {
        let mut io = Coalescing::new(Recorder::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut io);
        for _ in 0..(CAPACITY / (16 << 10)) + 2 {
            let _ = pinned.as_mut().poll_write(&mut cx, &frame(3, 16 << 10));
        }
        assert_eq!(
            pinned.io.writes.len(),
            2,
            "written once it held CAPACITY bytes"
        );
        assert_eq!(pinned.io.writes[1].len(), CAPACITY);
        assert!(pinned.as_mut().poll_shutdown(&mut cx).is_ready());
        assert_eq!(pinned.io.writes.len(), 3);
        assert!(pinned.buf.is_empty());
    }
}
