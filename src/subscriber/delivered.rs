//! Never twice: per shard, the last record handed out, and the cursor just after a record
//! in the middle of a batch.

use std::collections::HashMap;

use crate::{
    cursor::{Cursor, CursorError, Position},
    sequence::SequenceNumber,
    v1,
};

/// The (sequence, sub-sequence) number of the last record handed out of a shard.
pub(super) type LastHandedOut = (SequenceNumber, Option<u64>);

/// Per shard, the last record handed out. The relay never repeats a record after a
/// cursor; this guards the output anyway (a relay that restarted and is still re-reading
/// its upstream could), at the cost of one entry per shard.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Last (sequence, sub-sequence) per shard.
    last: HashMap<String, LastHandedOut>,
    /// Records dropped as repeats since the start, for callers that report them.
    repeats: u64,
}

impl Delivered {
    /// Starts from the positions of a cursor (best effort: cursors are opaque to clients,
    /// so an undecodable one just seeds nothing).
    pub fn seed(&mut self, cursor: &str) {
        if let Ok(cursor) = Cursor::decode(cursor) {
            for (shard, position) in cursor.shards {
                if let Position::After {
                    sequence,
                    sub_sequence,
                } = position
                {
                    self.last.insert(shard, (sequence, sub_sequence));
                }
            }
        }
    }

    /// The records of `shard` that come after everything handed out before. A record whose
    /// sequence number does not parse is kept: the guard only drops what it can order.
    pub fn admit(&mut self, shard: &str, records: Vec<v1::Record>) -> Vec<v1::Record> {
        let before = records.len();
        let mut kept = Vec::with_capacity(before);
        for record in records {
            let Ok(sequence) = record.sequence_number.parse::<SequenceNumber>() else {
                kept.push(record);
                continue;
            };
            let key = (sequence, record.sub_sequence_number);
            if self.last.get(shard).is_some_and(|last| key <= *last) {
                continue;
            }
            self.last.insert(shard.to_owned(), key);
            kept.push(record);
        }
        self.repeats += (before - kept.len()) as u64;
        kept
    }

    /// The last position handed out of `shard`, to put back with [`Self::restore`].
    pub(super) fn last(&self, shard: &str) -> Option<LastHandedOut> {
        self.last.get(shard).cloned()
    }

    /// Puts back what [`Self::last`] returned, so that the records after it are admitted
    /// again.
    pub(super) fn restore(&mut self, shard: &str, last: Option<LastHandedOut>) {
        match last {
            Some(last) => self.last.insert(shard.to_owned(), last),
            None => self.last.remove(shard),
        };
    }

    /// Records dropped as repeats so far.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }
}

/// Why [`cursor_after`] cannot build a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorAfterError {
    /// The batch's cursor does not decode.
    #[error("decoding the relay's cursor: {0}")]
    Cursor(#[from] CursorError),
    /// The record's sequence number is not a number.
    #[error("the relay sent an invalid sequence number {0:?}")]
    Sequence(String),
}

/// The cursor to store when only the records of `batch_cursor`'s batch up to and including
/// `last` were used (a count that ends inside a batch): `batch_cursor` with the shard's
/// position set back to `last`.
pub fn cursor_after(
    batch_cursor: &str,
    shard: &str,
    last: &v1::Record,
) -> Result<String, CursorAfterError> {
    let mut cursor = Cursor::decode(batch_cursor)?;
    let sequence = last
        .sequence_number
        .parse()
        .map_err(|_| CursorAfterError::Sequence(last.sequence_number.clone()))?;
    cursor.shards.insert(
        shard.to_owned(),
        Position::After {
            sequence,
            sub_sequence: last.sub_sequence_number,
        },
    );
    Ok(cursor.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: &str, sub: Option<u64>) -> v1::Record {
        v1::Record {
            sequence_number: sequence.into(),
            sub_sequence_number: sub,
            ..v1::Record::default()
        }
    }

    #[test]
    fn repeats_are_dropped_per_shard() {
        let mut delivered = Delivered::default();
        let first = delivered.admit("a", vec![record("10", None), record("20", None)]);
        assert_eq!(first.len(), 2);
        let again = delivered.admit("a", vec![record("20", None), record("30", None)]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].sequence_number, "30");
        // Another shard has its own sequence.
        assert_eq!(delivered.admit("b", vec![record("5", None)]).len(), 1);
        // Sub-sequence numbers order user records of one aggregate.
        assert_eq!(
            delivered
                .admit("b", vec![record("6", Some(0)), record("6", Some(1))])
                .len(),
            2
        );
        assert_eq!(delivered.admit("b", vec![record("6", Some(1))]).len(), 0);
        assert_eq!(delivered.repeats(), 2);
    }

    #[test]
    fn partial_batch_cursor_points_at_the_last_record_used() {
        let mut cursor = Cursor::new("s");
        cursor.shards.insert(
            "a".into(),
            Position::After {
                sequence: "30".parse().unwrap(),
                sub_sequence: None,
            },
        );
        cursor.shards.insert("b".into(), Position::Start);
        let text = cursor_after(&cursor.encode(), "a", &record("20", None)).unwrap();
        let decoded = Cursor::decode(&text).unwrap();
        assert_eq!(
            decoded.shards["a"],
            Position::After {
                sequence: "20".parse().unwrap(),
                sub_sequence: None
            }
        );
        assert_eq!(decoded.shards["b"], Position::Start);
        let mut seeded = Delivered::default();
        seeded.seed(&text);
        assert_eq!(
            seeded
                .admit("a", vec![record("20", None), record("21", None)])
                .len(),
            1
        );
        assert!(matches!(
            cursor_after("not a cursor!", "a", &record("1", None)),
            Err(CursorAfterError::Cursor(_))
        ));
        assert!(matches!(
            cursor_after(&text, "a", &record("x", None)),
            Err(CursorAfterError::Sequence(_))
        ));
    }
}
