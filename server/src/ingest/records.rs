//! From Kinesis records to relay records: KPL aggregates unpacked.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use bytes::Bytes;
use kinesis_relay_api::{kpl, sequence::SequenceNumber};
use tracing::warn;

use crate::hub::entry::RelayRecord;

/// Aggregates that failed to unpack and were passed on as one raw record.
pub static CORRUPT_AGGREGATES: AtomicU64 = AtomicU64::new(0);

/// Converts one Kinesis record, unpacking it when it is a KPL aggregate. A corrupt
/// aggregate is passed on as one raw record and counted, never dropped.
pub fn convert(record: &aws_sdk_kinesis::types::Record, shard_id: &str) -> Vec<RelayRecord> {
    let Ok(sequence) = record.sequence_number().parse::<SequenceNumber>() else {
        warn!(
            shard = shard_id,
            sequence = record.sequence_number(),
            "record with an invalid sequence number skipped"
        );
        return Vec::new();
    };
    let arrival = record
        .approximate_arrival_timestamp()
        .and_then(|at| SystemTime::try_from(*at).ok())
        .unwrap_or_else(SystemTime::now);
    let data = record.data().as_ref();
    let raw = || RelayRecord {
        partition_key: record.partition_key().to_owned(),
        data: Bytes::copy_from_slice(data),
        sequence: sequence.clone(),
        sub_sequence: None,
        arrival,
        explicit_hash_key: None,
    };
    if !kpl::is_aggregated(data) {
        return vec![raw()];
    }
    match kpl::deaggregate(data) {
        Ok(users) => users
            .into_iter()
            .enumerate()
            .map(|(index, user)| RelayRecord {
                partition_key: user.partition_key,
                data: user.data,
                sequence: sequence.clone(),
                sub_sequence: Some(index as u64),
                arrival,
                explicit_hash_key: user.explicit_hash_key,
            })
            .collect(),
        Err(err) => {
            CORRUPT_AGGREGATES.fetch_add(1, Ordering::Relaxed);
            warn!(shard = shard_id, sequence = %sequence, cause = %err, "corrupt KPL aggregate passed on as one raw record");
            vec![raw()]
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::{primitives::Blob, types::Record};

    use super::*;

    fn kinesis_record(data: Vec<u8>) -> Record {
        Record::builder()
            .sequence_number("100")
            .partition_key("outer")
            .data(Blob::new(data))
            .build()
            .unwrap()
    }

    #[test]
    fn unpacks_aggregates_with_sub_sequence_numbers() {
        let users: Vec<_> = (0..3)
            .map(|i| kpl::UserRecord {
                partition_key: format!("k{i}"),
                explicit_hash_key: None,
                data: Bytes::from(format!("d{i}")),
            })
            .collect();
        let out = convert(&kinesis_record(kpl::aggregate(&users).to_vec()), "s");
        assert_eq!(out.len(), 3);
        for (i, record) in out.iter().enumerate() {
            assert_eq!(record.sub_sequence, Some(i as u64));
            assert_eq!(record.partition_key, format!("k{i}"));
            assert_eq!(record.sequence.as_str(), "100");
        }
    }

    #[test]
    fn passes_corrupt_aggregates_on_raw() {
        let mut bytes = kpl::aggregate(&[kpl::UserRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"x"),
        }])
        .to_vec();
        *bytes.last_mut().unwrap() ^= 0xff;
        let before = CORRUPT_AGGREGATES.load(Ordering::Relaxed);
        let out = convert(&kinesis_record(bytes.clone()), "s");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.as_ref(), bytes.as_slice());
        assert_eq!(out[0].partition_key, "outer");
        assert!(CORRUPT_AGGREGATES.load(Ordering::Relaxed) > before);
    }
}
