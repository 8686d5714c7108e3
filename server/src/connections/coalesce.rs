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
//!
//! A deferred frame whose payload lies in a chunk the response lent ([`super::lent`]) is
//! held as a reference to that chunk, not copied: only frame heads and short frames are
//! copied, so gathering the frames costs the relay no more than writing them one by one
//! did, less a system call each.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    backlog::{Backlog, MAX_SLICES},
    lent::{LEND_MIN, LentChunks},
};

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
    backlog: Backlog,
    /// The long chunks the connection's responses lent, which deferred frames reference.
    lent: LentChunks,
    /// This poll of the connection has written to the socket already.
    wrote_this_poll: bool,
}

impl<IO> Coalescing<IO> {
    /// Wraps `io`; frames of the chunks lent to `lent` are deferred without a copy.
    pub fn new(io: IO, lent: LentChunks) -> Self {
        Self {
            io,
            backlog: Backlog::default(),
            lent,
            wrote_this_poll: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Coalescing<IO> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.backlog.is_empty() {
            // Vectored like the direct writes (writev): for a TCP socket a plain write is a
            // send(2), which the process's I/O accounting (`wchar`, which the benchmark
            // reads) does not count; writev(2) costs the same and is counted.
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.backlog.io_slices(&mut slices);
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.backlog.advance(n);
        }
        // A burst's buffer is not kept: an idle connection holds no memory for it.
        self.backlog.shrink(CAPACITY);
        Poll::Ready(Ok(()))
    }

    /// Writes `bufs` to the socket now, and forgets the lent chunks whose ends it wrote.
    fn poll_write_direct(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        let mut end = 0;
        for buf in bufs {
            end += buf.len();
            if end > n {
                break;
            }
            self.lent.written(buf);
        }
        Poll::Ready(Ok(n))
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
        if direct || this.backlog.len() + total > CAPACITY {
            ready!(this.poll_drain(cx))?;
            if direct {
                this.wrote_this_poll = true;
                return this.poll_write_direct(cx, bufs);
            }
        }
        for buf in bufs {
            match (buf.len() >= LEND_MIN)
                .then(|| this.lent.borrow(buf))
                .flatten()
            {
                Some(chunk) => this.backlog.push_lent(chunk),
                None => this.backlog.push_copy(buf),
            }
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.backlog.is_empty() {
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
        if !this.backlog.is_empty()
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
        /// Where each vectored write's slices were in memory.
        addresses: Vec<Vec<usize>>,
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
            let this = self.get_mut();
            this.writes.push(all);
            this.addresses
                .push(bufs.iter().map(|b| b.as_ptr() as usize).collect());
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
        let mut io = Coalescing::new(Recorder::default(), LentChunks::default());
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
        let mut io = Coalescing::new(Recorder::default(), LentChunks::default());
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
        let mut io = Coalescing::new(Recorder::default(), LentChunks::default());
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
        assert!(pinned.backlog.is_empty());
    }

    #[test]
    fn frames_of_a_lent_chunk_are_deferred_without_a_copy() {
        let lent = LentChunks::default();
        let chunk = bytes::Bytes::from((0..64 << 10).map(|i| i as u8).collect::<Vec<_>>());
        lent.lend(&chunk);
        let mut io = Coalescing::new(Recorder::default(), lent.clone());
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut io);
        // As h2 writes a 64 KiB chunk in 16 KiB frames: head and payload, then a flush.
        let frame_len = 16 << 10;
        for (i, head) in [[1u8; 9], [2; 9], [3; 9], [4; 9]].iter().enumerate() {
            let payload = &chunk[i * frame_len..(i + 1) * frame_len];
            let bufs = [IoSlice::new(head), IoSlice::new(payload)];
            let written = pinned.as_mut().poll_write_vectored(&mut cx, &bufs);
            assert!(matches!(written, Poll::Ready(Ok(n)) if n == 9 + frame_len));
            assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        }
        let mut storage = [0u8; 16];
        assert!(
            pinned
                .as_mut()
                .poll_read(&mut cx, &mut ReadBuf::new(&mut storage))
                .is_pending()
        );
        assert_eq!(
            pinned.io.writes.len(),
            2,
            "the first frame, then the other three"
        );
        let expected: Vec<u8> = (1..4)
            .flat_map(|i| {
                let mut frame = vec![i as u8 + 1; 9];
                frame.extend_from_slice(&chunk[i * frame_len..(i + 1) * frame_len]);
                frame
            })
            .collect();
        assert_eq!(pinned.io.writes[1], expected);
        let base = chunk.as_ptr() as usize;
        let payloads: Vec<usize> = pinned.io.addresses[1]
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect();
        assert_eq!(
            payloads,
            vec![base + frame_len, base + 2 * frame_len, base + 3 * frame_len],
            "the payloads were written from the chunk itself"
        );
        assert_eq!(
            lent.held(),
            0,
            "the chunk is forgotten once its end is written"
        );
    }

    #[test]
    fn a_direct_write_to_a_lent_chunks_end_forgets_it() {
        let lent = LentChunks::default();
        let chunk = bytes::Bytes::from(vec![7u8; 64 << 10]);
        lent.lend(&chunk);
        let mut io = Coalescing::new(Recorder::default(), lent.clone());
        let mut cx = Context::from_waker(Waker::noop());
        let written = Pin::new(&mut io)
            .poll_write_vectored(&mut cx, &[IoSlice::new(&[0; 9]), IoSlice::new(&chunk)]);
        assert!(matches!(written, Poll::Ready(Ok(_))));
        assert_eq!(lent.held(), 0);
    }
}
