//! Never twice: per shard, the last record handed out, and the cursor just after a record
//! in the middle of a batch.

use super::*;

/// Per shard, the last record handed out. The relay never repeats a record after a
/// cursor; this guards the output anyway (a relay that restarted and is still re-reading
/// its upstream could), at the cost of one entry per shard.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Last (sequence, sub-sequence) per shard.
    last: HashMap<String, (SequenceNumber, Option<u64>)>,
    /// Records dropped as repeats, reported on stderr.
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

    /// The records of `shard` that come after everything handed out before.
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
        let dropped = (before - kept.len()) as u64;
        if dropped > 0 {
            self.repeats += dropped;
            notice!(
                "the relay re-sent {dropped} records of shard {shard} already delivered; they were skipped"
            );
        }
        kept
    }
}

/// The cursor to store when only the records of `batch_cursor`'s batch up to and including
/// `last` were used (a `--count` that ends inside a batch): `batch_cursor` with the shard's
/// position set back to `last`.
pub fn cursor_after(batch_cursor: &str, shard: &str, last: &v1::Record) -> anyhow::Result<String> {
    let mut cursor = Cursor::decode(batch_cursor).context("decoding the relay's cursor")?;
    let sequence = last
        .sequence_number
        .parse()
        .context("the relay sent an invalid sequence number")?;
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
        assert_eq!(delivered.repeats, 2);
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
    }
}
