//! The benchmark record: `seq: u64 LE`, `stamp_ns: u64 LE` (intended send time on the
//! harness clock), `kind: u8`, then padding up to the payload size. Subscribers check the
//! sequence (gaps, repeats) and, for timed records, record latency.

use std::{
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;

/// Bytes of header at the start of every payload.
pub const HEADER: usize = 17;

/// What a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Sent until every subscriber has seen one; not timed.
    Warmup = 0,
    /// Saturation phase; not timed (its latency is queueing, by design).
    Load = 1,
    /// Fixed-rate phase; latency is recorded.
    Timed = 2,
}

/// Nanoseconds on the harness clock (publisher and subscribers share the process).
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A payload of `size` bytes (at least [`HEADER`]).
pub fn make(seq: u64, stamp_ns: u64, kind: Kind, size: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(size.max(HEADER));
    buf.put_u64_le(seq);
    buf.put_u64_le(stamp_ns);
    buf.put_u8(kind as u8);
    buf.resize(size.max(HEADER), b'x');
    buf.freeze()
}

/// A payload of `size` bytes whose padding is JSON text, as compressible as typical JSON
/// records (field names repeat, values vary), for measuring compressed responses.
pub fn make_json(seq: u64, stamp_ns: u64, kind: Kind, size: usize) -> Bytes {
    let mut buf = BytesMut::from(&make(seq, stamp_ns, kind, HEADER)[..]);
    let mut item = seq;
    while buf.len() < size {
        let text = format!(
            r#"{{"order":{item},"sku":"SKU-{:05}","quantity":{},"price":{}.{:02},"status":"shipped"}},"#,
            item.wrapping_mul(7919) % 100_000,
            item % 9 + 1,
            item % 500,
            item % 100
        );
        buf.put_slice(text.as_bytes());
        item = item.wrapping_add(1);
    }
    buf.truncate(size.max(HEADER));
    buf.freeze()
}

/// Whether `data` is a payload of `kind`.
pub fn is(data: &[u8], kind: Kind) -> bool {
    data.get(HEADER - 1) == Some(&(kind as u8))
}

/// What one subscriber has seen. Only its own task writes it.
#[derive(Debug)]
pub struct SubStats {
    /// The next sequence number expected; `u64::MAX` before the first record.
    next: AtomicU64,
    /// Records received.
    received: AtomicU64,
    /// Sequence numbers skipped over.
    gaps: AtomicU64,
    /// Records at or before one already seen.
    repeats: AtomicU64,
    /// Payloads too short to carry a header.
    malformed: AtomicU64,
    /// Responses that carried records, where a system batches them (the relay's gRPC
    /// subscribers); 0 elsewhere.
    responses: AtomicU64,
}

impl Default for SubStats {
    fn default() -> Self {
        Self {
            next: AtomicU64::new(u64::MAX),
            received: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            responses: AtomicU64::new(0),
        }
    }
}

impl SubStats {
    /// Accounts one received payload; timed ones go into `latency` (microseconds).
    pub fn observe(&self, data: &[u8], latency: &Mutex<Histogram<u64>>) {
        if data.len() < HEADER {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let stamp = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        let next = self.next.load(Ordering::Relaxed);
        if next == u64::MAX || seq == next {
            self.next.store(seq + 1, Ordering::Release);
        } else if seq > next {
            self.gaps.fetch_add(seq - next, Ordering::Relaxed);
            self.next.store(seq + 1, Ordering::Release);
        } else {
            self.repeats.fetch_add(1, Ordering::Relaxed);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        if is(data, Kind::Timed) {
            let micros = now_ns().saturating_sub(stamp) / 1_000;
            if let Ok(mut hist) = latency.lock() {
                hist.saturating_record(micros.max(1));
            }
        }
    }

    /// Accounts one response that carried records (observed one by one).
    pub fn response(&self) {
        self.responses.fetch_add(1, Ordering::Relaxed);
    }

    /// Responses that carried records.
    pub fn responses(&self) -> u64 {
        self.responses.load(Ordering::Relaxed)
    }

    /// The next sequence number expected, if any record arrived.
    pub fn next(&self) -> Option<u64> {
        match self.next.load(Ordering::Acquire) {
            u64::MAX => None,
            next => Some(next),
        }
    }

    /// Records received.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Sequence numbers skipped, counting those never received up to `sent`.
    pub fn gaps(&self, sent: u64) -> u64 {
        let trailing = self.next().map_or(0, |next| sent.saturating_sub(next));
        self.gaps.load(Ordering::Relaxed) + trailing
    }

    /// Repeated or malformed records.
    pub fn repeats(&self) -> u64 {
        self.repeats.load(Ordering::Relaxed) + self.malformed.load(Ordering::Relaxed)
    }
}

/// A latency histogram in microseconds, 1 µs to 100 s, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_and_repeats() {
        let stats = SubStats::default();
        let hist = Mutex::new(histogram());
        for seq in [5, 6, 8, 8, 7, 9] {
            stats.observe(&make(seq, now_ns(), Kind::Timed, 100), &hist);
        }
        assert_eq!(stats.received(), 6);
        assert_eq!(stats.gaps(10), 1);
        assert_eq!(stats.repeats(), 2);
        assert_eq!(stats.gaps(12), 3);
        assert_eq!(hist.lock().unwrap().len(), 6);
        let json = make_json(3, now_ns(), Kind::Load, 1024);
        assert_eq!(json.len(), 1024);
        assert!(is(&json, Kind::Load));
        stats.observe(&json, &hist);
        assert_eq!(
            stats.repeats(),
            3,
            "seq 3 is a repeat: the header is read as ever"
        );
    }
}
