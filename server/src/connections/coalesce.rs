//! Fewer system calls per response for clients with small HTTP/2 frames.
//!
//! h2 writes every DATA frame on its own: it hands the socket the frame's head and payload
//! in one vectored write and flushes before it encodes the next frame. A client that keeps
//! HTTP/2's default 16 KiB frames (grpc-go, grpc-js, grpcurl) thus costs four writes for a
//! 64 KiB batch, where one that accepts 1 MiB frames costs one.
//!
//! [`Coalescing`] sits between hyper and the socket and holds what hyper writes during a
//! poll of the connection: writes of less than [`DIRECT_WRITE`] bytes are kept, and a
//! flush with bytes kept does nothing. The connection's task, once hyper's poll returns,
//! writes them all out in one vectored write ([`Drain::after_poll`]): every frame of a
//! poll, whatever hyper wrote, leaves in one system call, with no wait and no extra poll
//! (hyper returns from a poll only when it has nothing more to do). A write of
//! [`DIRECT_WRITE`] bytes or more (a whole batch in one frame, as clients with large frames
//! get it) goes to the socket at once, in one vectored write with what is kept before it,
//! and so keeps its zero-copy path; so does anything that would grow the kept bytes past
//! [`CAPACITY`].
//!
//! A kept frame whose payload lies in a chunk the response lent ([`super::lent`]) is held
//! as a reference to that chunk, not copied: only frame heads and short frames are copied,
//! so gathering the frames costs the relay no more than writing them one by one did, less
//! a system call each.
//!
//! A socket that cannot take the bytes (the client does not read) leaves them kept; its
//! turning writable wakes the connection's task, whose next poll writes them. hyper is
//! not told (its writes of the poll succeeded); it learns of a failed write from its next
//! read or write.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    backlog::{Backlog, MAX_SLICES},
    lent::{LEND_MIN, LentChunks},
};

/// Writes at least this long go to the socket at once.
pub const DIRECT_WRITE: usize = 32 << 10;
/// Most bytes kept before they are written.
pub const CAPACITY: usize = 256 << 10;

/// The socket and the bytes kept for it, shared by the I/O stream hyper writes to and the
/// task that polls hyper; only that task uses either, so the lock is never contended.
#[derive(Debug)]
struct Socket<IO> {
    io: IO,
    /// Bytes accepted from hyper, not yet written to the socket.
    backlog: Backlog,
    /// The long chunks the connection's responses lent, which kept frames reference.
    lent: LentChunks,
    /// A write of kept bytes failed after hyper was told they were written: the next read
    /// or write reports it.
    failed: Option<io::Error>,
}

/// The I/O stream hyper serves the connection on: the socket, with small writes kept until
/// the end of the poll.
#[derive(Debug)]
pub struct Coalescing<IO>(Arc<Mutex<Socket<IO>>>);

/// Where the connection's task writes out what a poll of hyper kept.
pub struct Drain(Arc<dyn DrainKept>);

/// [`Drain`]'s view of a [`Socket`], whatever its I/O type.
trait DrainKept: Send + Sync {
    fn after_poll(&self, cx: &mut Context<'_>);
}

impl<IO> Coalescing<IO> {
    /// Wraps `io`; frames of the chunks lent to `lent` are kept without a copy. The
    /// connection's task must call [`Drain::after_poll`] after each poll of hyper.
    pub fn new(io: IO, lent: LentChunks) -> (Self, Drain)
    where
        IO: AsyncWrite + Unpin + Send + 'static,
    {
        let socket = Arc::new(Mutex::new(Socket {
            io,
            backlog: Backlog::default(),
            lent,
            failed: None,
        }));
        (Self(socket.clone()), Drain(socket))
    }

    fn socket(&self) -> MutexGuard<'_, Socket<IO>> {
        lock(&self.0)
    }
}

/// Nothing leaves a [`Socket`] half-changed, so a poisoned lock is still good.
fn lock<IO>(socket: &Mutex<Socket<IO>>) -> MutexGuard<'_, Socket<IO>> {
    socket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drain {
    /// Writes out what the poll of hyper that just returned kept. Call it after every poll:
    /// a socket that cannot take it all wakes the task when it can, and the next call
    /// writes the rest.
    pub fn after_poll(&self, cx: &mut Context<'_>) {
        self.0.after_poll(cx);
    }
}

impl<IO: AsyncWrite + Unpin + Send> DrainKept for Mutex<Socket<IO>> {
    fn after_poll(&self, cx: &mut Context<'_>) {
        let mut socket = lock(self);
        if socket.backlog.is_empty() || socket.failed.is_some() {
            return;
        }
        // Flushed too, as hyper's own flush would have: a TLS stream holds what its socket
        // did not take until it is flushed (a plain socket holds nothing).
        let written = match socket.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut socket.io).poll_flush(cx),
            drained => drained,
        };
        if let Poll::Ready(Err(err)) = written {
            socket.failed = Some(err);
            // hyper learns of it when it next reads or writes: poll it again.
            cx.waker().wake_by_ref();
        }
    }
}

impl<IO> Socket<IO> {
    /// The failure of a write of kept bytes, once, for hyper's next read, write or flush.
    fn report_failure(&mut self) -> io::Result<()> {
        self.failed.take().map_or(Ok(()), Err)
    }
}

impl<IO: AsyncWrite + Unpin> Socket<IO> {
    /// Writes out everything kept.
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

    /// Writes `bufs` to the socket now, in one write with what is kept before them when
    /// they fit in it; forgets the lent chunks whose ends it wrote.
    fn poll_write_through(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let kept = self.backlog.len();
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.backlog.io_slices(&mut slices);
            let room = MAX_SLICES - count;
            if count < self.backlog.pieces() || room < bufs.len() {
                // Too many pieces for one write: the kept ones first.
                ready!(self.poll_drain(cx))?;
                continue;
            }
            slices[count..count + bufs.len()].copy_from_slice(bufs);
            let n = ready!(
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count + bufs.len()])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.backlog.advance(n.min(kept));
            let n = n.saturating_sub(kept);
            if n == 0 {
                // Only kept bytes went: the rest of them, then `bufs`, on the next round.
                continue;
            }
            let mut end = 0;
            for buf in bufs {
                end += buf.len();
                if end > n {
                    break;
                }
                self.lent.written(buf);
            }
            return Poll::Ready(Ok(n));
        }
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
        let mut socket = self.socket();
        let socket = &mut *socket;
        socket.report_failure()?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total >= DIRECT_WRITE || socket.backlog.len() + total > CAPACITY {
            return socket.poll_write_through(cx, bufs);
        }
        for buf in bufs {
            match (buf.len() >= LEND_MIN)
                .then(|| socket.lent.borrow(buf))
                .flatten()
            {
                Some(chunk) => socket.backlog.push_lent(chunk),
                None => socket.backlog.push_copy(buf),
            }
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut socket = self.socket();
        socket.report_failure()?;
        if !socket.backlog.is_empty() {
            // h2 flushes after every DATA frame; what it kept goes when its poll returns.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut socket.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut socket = self.socket();
        ready!(socket.poll_drain(cx))?;
        Pin::new(&mut socket.io).poll_shutdown(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalescing<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut socket = self.socket();
        socket.report_failure()?;
        Pin::new(&mut socket.io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::Waker,
    };

    use bytes::Bytes;

    use super::*;

    /// A socket that records each write call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        /// Where each vectored write's slices were in memory.
        addresses: Vec<Vec<usize>>,
        /// The client stopped reading: writes find the socket full.
        full: bool,
        /// The client went away: writes fail.
        reset: bool,
        /// Flushes asked for.
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            if self.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if self.full {
                return Poll::Pending;
            }
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let len = all.len();
            let this = self.get_mut();
            this.writes.push(all);
            this.addresses
                .push(bufs.iter().map(|b| b.as_ptr() as usize).collect());
            Poll::Ready(Ok(len))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
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

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection's I/O stream over a [`Recorder`], its drain, and a waker that counts.
    struct Harness {
        io: Coalescing<Recorder>,
        drain: Drain,
        wakes: Arc<Wakes>,
        waker: Waker,
    }

    impl Harness {
        fn new(lent: LentChunks) -> Self {
            let (io, drain) = Coalescing::new(Recorder::default(), lent);
            let wakes = Arc::new(Wakes::default());
            let waker = Waker::from(wakes.clone());
            Self {
                io,
                drain,
                wakes,
                waker,
            }
        }

        /// Writes `bufs` as hyper does: one vectored write, then a flush.
        fn write(&mut self, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
            let mut cx = Context::from_waker(&self.waker);
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let written = Pin::new(&mut self.io).poll_write_vectored(&mut cx, &slices);
            if written.is_ready() {
                assert!(Pin::new(&mut self.io).poll_flush(&mut cx).is_ready());
            }
            written
        }

        /// The end of a poll of the connection.
        fn end_poll(&self) {
            self.drain.after_poll(&mut Context::from_waker(&self.waker));
        }

        fn socket(&self) -> MutexGuard<'_, Socket<Recorder>> {
            self.io.socket()
        }

        fn writes(&self) -> Vec<Vec<u8>> {
            self.socket().io.writes.clone()
        }
    }

    fn frame(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    #[test]
    fn the_frames_of_one_poll_leave_in_one_write_in_order_when_it_returns() {
        let mut io = Harness::new(LentChunks::default());
        for byte in 0..4u8 {
            assert!(matches!(
                io.write(&[&frame(byte, 16 << 10)]),
                Poll::Ready(Ok(16384))
            ));
        }
        assert!(io.writes().is_empty(), "kept while the poll goes on");
        assert_eq!(io.socket().io.flushes, 0, "nothing to flush yet");
        io.end_poll();
        let all: Vec<u8> = (0..4u8).flat_map(|b| frame(b, 16 << 10)).collect();
        assert_eq!(io.writes(), [all]);
        assert_eq!(
            io.socket().io.flushes,
            1,
            "flushed after, as a TLS stream needs"
        );
        assert!(io.socket().backlog.is_empty());
        // A poll that wrote nothing writes nothing.
        io.end_poll();
        assert_eq!(io.writes().len(), 1);
        assert_eq!(
            io.wakes.0.load(Ordering::Relaxed),
            0,
            "no extra poll asked for"
        );
    }

    #[test]
    fn a_large_write_goes_at_once_in_one_write_with_what_was_kept_before_it() {
        let mut io = Harness::new(LentChunks::default());
        let _ = io.write(&[&frame(0, 100)]);
        let head = frame(1, 9);
        let payload = frame(2, 64 << 10);
        let written = io.write(&[&head, &payload]);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == 9 + (64 << 10)));
        let writes = io.writes();
        assert_eq!(writes.len(), 1, "one system call for both");
        assert_eq!(writes[0], [frame(0, 100), head, payload].concat());
        io.end_poll();
        assert_eq!(io.writes().len(), 1, "nothing was left");
    }

    #[test]
    fn kept_bytes_are_written_before_they_pass_the_capacity_and_shutdown_writes_them() {
        let mut io = Harness::new(LentChunks::default());
        for _ in 0..(CAPACITY / (16 << 10)) + 2 {
            let _ = io.write(&[&frame(3, 16 << 10)]);
        }
        let writes = io.writes();
        assert_eq!(writes.len(), 1, "written once the next would pass CAPACITY");
        assert_eq!(writes[0].len(), CAPACITY + (16 << 10));
        let mut cx = Context::from_waker(&io.waker);
        assert!(Pin::new(&mut io.io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(io.writes().len(), 2);
        assert!(io.socket().backlog.is_empty());
    }

    #[test]
    fn a_full_socket_keeps_the_bytes_until_it_takes_them_and_asks_for_no_poll() {
        let mut io = Harness::new(LentChunks::default());
        io.socket().io.full = true;
        let _ = io.write(&[&frame(1, 100)]);
        io.end_poll();
        assert_eq!(io.socket().backlog.len(), 100, "kept");
        // The socket's turning writable wakes the task; nothing else may, or a client that
        // does not read would have its connection polled in a loop.
        assert_eq!(io.wakes.0.load(Ordering::Relaxed), 0);
        // Writes that would not fit go to the socket, which holds them back: hyper waits.
        assert!(io.write(&[&frame(2, 9), &frame(2, 64 << 10)]).is_pending());
        io.socket().io.full = false;
        io.end_poll();
        assert_eq!(io.writes(), [frame(1, 100)]);
    }

    #[test]
    fn a_failed_write_of_kept_bytes_reaches_hyper_at_its_next_write() {
        let mut io = Harness::new(LentChunks::default());
        let _ = io.write(&[&frame(1, 100)]);
        io.socket().io.reset = true;
        io.end_poll();
        assert_eq!(
            io.wakes.0.load(Ordering::Relaxed),
            1,
            "polled again to learn of it"
        );
        let failed = io.write(&[&frame(2, 100)]);
        assert!(
            matches!(&failed, Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::ConnectionReset),
            "{failed:?}"
        );
    }

    #[test]
    fn frames_of_a_lent_chunk_are_kept_without_a_copy() {
        let lent = LentChunks::default();
        let chunk = Bytes::from((0..64 << 10).map(|i| i as u8).collect::<Vec<_>>());
        lent.lend(&chunk);
        let mut io = Harness::new(lent.clone());
        // As h2 writes a 64 KiB chunk in 16 KiB frames: head and payload, then a flush.
        let frame_len = 16 << 10;
        let heads = [[1u8; 9], [2; 9], [3; 9], [4; 9]];
        for (i, head) in heads.iter().enumerate() {
            let payload = &chunk[i * frame_len..(i + 1) * frame_len];
            let written = io.write(&[head, payload]);
            assert!(matches!(written, Poll::Ready(Ok(n)) if n == 9 + frame_len));
        }
        io.end_poll();
        let expected: Vec<u8> = heads
            .iter()
            .enumerate()
            .flat_map(|(i, head)| [&head[..], &chunk[i * frame_len..(i + 1) * frame_len]].concat())
            .collect();
        assert_eq!(io.writes(), [expected]);
        let base = chunk.as_ptr() as usize;
        let payloads: Vec<usize> = io.socket().io.addresses[0]
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect();
        let offsets: Vec<usize> = (0..4).map(|i| base + i * frame_len).collect();
        assert_eq!(
            payloads, offsets,
            "the payloads were written from the chunk itself"
        );
        assert_eq!(
            lent.held(),
            0,
            "the chunk is forgotten once its end is kept"
        );
    }

    #[test]
    fn a_direct_write_to_a_lent_chunks_end_forgets_it() {
        let lent = LentChunks::default();
        let chunk = Bytes::from(vec![7u8; 64 << 10]);
        lent.lend(&chunk);
        let mut io = Harness::new(lent.clone());
        assert!(io.write(&[&[0; 9], &chunk]).is_ready());
        assert_eq!(lent.held(), 0);
    }
}
