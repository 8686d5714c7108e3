//! Kinesis sequence numbers.
//!
//! AWS sequence numbers are decimal strings of up to 128 digits (56 in practice), too long
//! for `u128`, and they must be compared numerically: `"9" < "10"`. [`SequenceNumber`] keeps
//! the canonical text (no leading zeros) and orders by length, then by digits.

use std::{cmp::Ordering, fmt, str::FromStr, sync::Arc};

/// Longest sequence number Kinesis documents (`^\d{1,128}$`).
pub const MAX_DIGITS: usize = 128;

/// A Kinesis sequence number, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

/// Why a string is not a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceNumberError {
    /// The string is empty.
    #[error("a sequence number cannot be empty")]
    Empty,
    /// The string holds something other than ASCII digits.
    #[error("a sequence number holds only the digits 0-9")]
    NotDecimal,
    /// The string is longer than Kinesis allows.
    #[error("a sequence number has at most {MAX_DIGITS} digits")]
    TooLong,
}

impl SequenceNumber {
    /// The canonical decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number one below, or `None` for zero: "just before this record" as a position
    /// (Kinesis sequence numbers are not consecutive, so nothing lies between the two).
    pub fn predecessor(&self) -> Option<Self> {
        let mut digits = self.0.as_bytes().to_vec();
        if digits == b"0" {
            return None;
        }
        for digit in digits.iter_mut().rev() {
            if *digit == b'0' {
                *digit = b'9';
            } else {
                *digit -= 1;
                break;
            }
        }
        let text = String::from_utf8(digits).expect("ASCII digits");
        text.parse().ok()
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SequenceNumberError::Empty);
        }
        if s.len() > MAX_DIGITS {
            return Err(SequenceNumberError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SequenceNumberError::NotDecimal);
        }
        let trimmed = s.trim_start_matches('0');
        Ok(Self(Arc::from(if trimmed.is_empty() {
            "0"
        } else {
            trimmed
        })))
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Canonical text has no leading zeros, so a longer number is a larger one.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SequenceNumber({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        s.parse().unwrap()
    }

    #[test]
    fn predecessor_borrows_across_digits() {
        assert_eq!(seq("1000").predecessor(), Some(seq("999")));
        assert_eq!(seq("1").predecessor(), Some(seq("0")));
        assert_eq!(seq("0").predecessor(), None);
        let long = "49590338271490256608559692538361571095921575989136588800";
        assert_eq!(
            seq(long).predecessor().unwrap().as_str(),
            "49590338271490256608559692538361571095921575989136588799"
        );
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("49590338271490256608559692538361571095921575989136588898") > seq("9"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("000").as_str(), "0");
    }

    #[test]
    fn rejects_what_is_not_a_sequence_number() {
        assert_eq!(
            "".parse::<SequenceNumber>(),
            Err(SequenceNumberError::Empty)
        );
        assert_eq!(
            "12a".parse::<SequenceNumber>(),
            Err(SequenceNumberError::NotDecimal)
        );
        assert_eq!(
            "-1".parse::<SequenceNumber>(),
            Err(SequenceNumberError::NotDecimal)
        );
        let long = "1".repeat(MAX_DIGITS + 1);
        assert_eq!(
            long.parse::<SequenceNumber>(),
            Err(SequenceNumberError::TooLong)
        );
    }
}
