//! The server's work per delivered record, over a span with no record in flight at either
//! end.
//!
//! The saturation phase's rate is taken over a span that starts after a ramp and lasts a
//! set time, with up to a window of records per subscriber in flight at both ends: written by
//! the server before the span and delivered in it, or written in it and delivered after.
//! Deliveries over that span divided by the server's CPU over it are not the server's cost
//! per delivery: at 100 B x 1000 subscribers the window holds more deliveries than the span
//! has (4,096 records for each of 1,000 subscribers against about 2.5 M delivered), so a
//! round read 1% CPU at 829,000 records/s (74 M deliveries per CPU-second) when the server
//! had written the span's records before it began. A [`WorkSpan`] is opened where nothing is
//! in flight (after the warm-up's drain) and closed where nothing is (after the
//! saturation's drain): every record written in it is delivered in it, and every delivery
//! in it is of a record written in it, so the server's CPU and bytes over it are the cost
//! of exactly its deliveries.

use crate::procstat::{self, Written};

/// Counters at the start of a span.
#[derive(Debug, Clone, Copy)]
pub struct WorkSpan {
    pid: u32,
    /// Records published so far.
    sent: u64,
    /// Records delivered so far, summed over subscribers.
    delivered: u64,
    /// Responses that carried records so far, summed over subscribers.
    responses: u64,
    /// The server's CPU seconds so far.
    cpu_seconds: f64,
    /// The server's writes so far.
    written: Written,
}

/// What a span measured.
#[derive(Debug, Clone, Copy)]
pub struct SpanFigures {
    /// Deliveries per second of server CPU; 0 when records were in flight at an end of the
    /// span (or lost), where the figure would not be the cost of the span's deliveries.
    pub deliveries_per_cpu_s: f64,
    /// Bytes the server wrote per record delivered.
    pub wire_bytes_per_record: f64,
    /// Bytes the server wrote per write system call.
    pub bytes_per_write: f64,
    /// Records per response (0 where no response was counted: a system that does not batch).
    pub records_per_response: f64,
}

impl WorkSpan {
    /// Opens a span on the server `pid`, with `sent` records published and `delivered`
    /// deliveries in `responses` responses so far; nothing may be in flight.
    pub fn open(pid: u32, sent: u64, delivered: u64, responses: u64) -> Self {
        Self {
            pid,
            sent,
            delivered,
            responses,
            cpu_seconds: procstat::cpu_seconds(pid),
            written: procstat::written(pid),
        }
    }

    /// Closes the span with `sent` records published and `delivered` deliveries in
    /// `responses` responses so far, to `subscribers` each of which should have every record;
    /// nothing may be in flight.
    pub fn close(
        self,
        sent: u64,
        delivered: u64,
        responses: u64,
        subscribers: usize,
    ) -> SpanFigures {
        let written = procstat::written(self.pid).since(self.written);
        let cpu_seconds = procstat::cpu_seconds(self.pid) - self.cpu_seconds;
        let deliveries = delivered.saturating_sub(self.delivered);
        let published = sent.saturating_sub(self.sent);
        SpanFigures {
            deliveries_per_cpu_s: per_cpu_second(
                deliveries,
                published * subscribers as u64,
                cpu_seconds,
            ),
            wire_bytes_per_record: written.bytes as f64 / deliveries.max(1) as f64,
            bytes_per_write: written.bytes as f64 / written.calls.max(1) as f64,
            records_per_response: match responses.saturating_sub(self.responses) {
                0 => 0.0,
                responses => deliveries as f64 / responses as f64,
            },
        }
    }
}

/// `deliveries` per CPU second when they are the `expected` ones (every record published in
/// the span, to every subscriber); 0 (unknown) otherwise.
fn per_cpu_second(deliveries: u64, expected: u64, cpu_seconds: f64) -> f64 {
    if deliveries == expected && deliveries > 0 && cpu_seconds > 0.0 {
        deliveries as f64 / cpu_seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_per_cpu_second_only_when_the_span_holds_every_delivery_of_its_records() {
        assert_eq!(per_cpu_second(3_000, 3_000, 0.5), 6_000.0);
        // Records in flight at an end (a window of them delivered before the span closed,
        // or written before it opened), or lost: no figure.
        assert_eq!(per_cpu_second(2_000, 3_000, 0.5), 0.0);
        assert_eq!(per_cpu_second(4_000, 3_000, 0.5), 0.0);
        // No CPU measured (a span shorter than the clock's tick), nothing delivered.
        assert_eq!(per_cpu_second(3_000, 3_000, 0.0), 0.0);
        assert_eq!(per_cpu_second(0, 0, 0.5), 0.0);
    }

    #[test]
    fn a_span_measures_the_cpu_of_its_process() {
        let pid = std::process::id();
        let span = WorkSpan::open(pid, 10, 100, 7);
        // Burn CPU until the process's clock has moved by a few ticks (at most 10 s).
        let start = procstat::cpu_seconds(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut spin = 0u64;
        while procstat::cpu_seconds(pid) - start < 0.05 && std::time::Instant::now() < deadline {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let figures = span.close(20, 1_100, 57, 100);
        // 1,000 deliveries in 50 responses.
        assert_eq!(figures.records_per_response, 20.0);
        assert_eq!(
            WorkSpan::open(pid, 0, 0, 0)
                .close(1, 10, 0, 10)
                .records_per_response,
            0.0,
            "no responses counted: no figure"
        );
        assert!(figures.deliveries_per_cpu_s > 0.0, "{figures:?}");
        assert!(
            figures.deliveries_per_cpu_s <= 1_000.0 / 0.05,
            "{figures:?}"
        );
    }
}
