//! Sequence numbers: 56-digit decimal strings shaped like AWS's.
//!
//! One counter per emulator allocates the numbers of every shard, so they increase within a
//! shard and also from a parent shard to its children (children are created after their
//! parents close). The counter starts from the start time, so a restarted emulator hands out
//! numbers greater than the previous run's.

use std::fmt;

/// The number of decimal digits of every sequence number, as AWS's.
const DIGITS: usize = 56;
/// The fixed leading digits (AWS sequence numbers start with "49" today).
const PREFIX: &str = "49";

/// A sequence number. Ordered numerically; formatted as 56 digits with a fixed width, so
/// strings compare like numbers too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SequenceNumber(u128);

impl SequenceNumber {
    /// The smallest sequence number; positions "at or after" it start at the oldest record.
    pub const ZERO: Self = Self(0);

    /// Parses a sequence number written by [`fmt::Display`]; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != DIGITS
            || !text.starts_with(PREFIX)
            || !text.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        text[PREFIX.len()..].parse().ok().map(Self)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{:054}", self.0)
    }
}

/// Hands out strictly increasing sequence numbers.
#[derive(Debug)]
pub(crate) struct SequenceAllocator {
    /// The next number to hand out.
    next: u128,
}

impl SequenceAllocator {
    /// Starts the counter at `epoch_secs * 10^20`, which leaves room for 10^20 numbers per
    /// second of uptime and still fits in 54 digits.
    pub(crate) fn starting_at(epoch_secs: u64) -> Self {
        Self {
            next: u128::from(epoch_secs) * 100_000_000_000_000_000_000,
        }
    }

    /// The next sequence number.
    pub(crate) fn allocate(&mut self) -> SequenceNumber {
        let seq = SequenceNumber(self.next);
        self.next = self.next.saturating_add(1);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_56_digits_and_round_trips() {
        let mut alloc = SequenceAllocator::starting_at(1_700_000_000);
        let a = alloc.allocate();
        let b = alloc.allocate();
        assert_eq!(a.to_string().len(), 56);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(SequenceNumber::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn rejects_foreign_shapes() {
        assert_eq!(SequenceNumber::parse(""), None);
        assert_eq!(SequenceNumber::parse("12"), None);
        assert_eq!(SequenceNumber::parse(&"9".repeat(56)), None);
        assert_eq!(
            SequenceNumber::parse(&format!("49{}", "9".repeat(54))),
            None
        );
    }
}
