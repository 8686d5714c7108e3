//! The KPL aggregation format.
//!
//! The Kinesis Producer Library packs many user records into one Kinesis record:
//! the magic bytes `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 digest of that
//! protobuf. Readers (the KCL, the relay) unpack it; each user record is identified by the
//! Kinesis sequence number plus its index, the sub-sequence number.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user record's own partition key.
    pub partition_key: String,
    /// The user record's explicit hash key, when the producer set one.
    pub explicit_hash_key: Option<String>,
    /// The user record's data.
    pub data: Bytes,
}

/// Why a record that starts with the magic bytes could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    /// The record is too short to hold a digest.
    #[error("aggregate is truncated")]
    Truncated,
    /// The MD5 trailer does not match.
    #[error("aggregate digest does not match its content")]
    DigestMismatch,
    /// The protobuf does not decode.
    #[error("aggregate protobuf does not decode: {0}")]
    Decode(String),
    /// A record points outside the key tables.
    #[error("aggregate record refers to key index {0}, past the end of its key table")]
    BadIndex(u64),
}

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<AggregatedEntry>,
}

// Fields are proto2 `required` in the KPL's schema, so they are always written, even when 0:
// Java readers refuse a message that omits them.
#[derive(Clone, PartialEq, Message)]
struct AggregatedEntry {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    data: Bytes,
}

/// Whether `data` looks like an aggregate (starts with the magic bytes).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Unpacks an aggregate. Call only when [`is_aggregated`] is true; a corrupt aggregate is an
/// error so the caller can pass the record on as it is.
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord>, KplError> {
    let body = data.strip_prefix(&MAGIC).ok_or(KplError::Truncated)?;
    if body.len() < DIGEST_LEN {
        return Err(KplError::Truncated);
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Err(KplError::DigestMismatch);
    }
    let aggregate =
        AggregatedRecord::decode(message).map_err(|err| KplError::Decode(err.to_string()))?;
    aggregate
        .records
        .into_iter()
        .map(|entry| {
            let partition_key = aggregate
                .partition_key_table
                .get(entry.partition_key_index as usize)
                .ok_or(KplError::BadIndex(entry.partition_key_index))?
                .clone();
            let explicit_hash_key = match entry.explicit_hash_key_index {
                None => None,
                Some(index) => Some(
                    aggregate
                        .explicit_hash_key_table
                        .get(index as usize)
                        .ok_or(KplError::BadIndex(index))?
                        .clone(),
                ),
            };
            Ok(UserRecord {
                partition_key,
                explicit_hash_key,
                data: entry.data,
            })
        })
        .collect()
}

/// Packs user records into one aggregate, sharing repeated keys through the key tables.
pub fn aggregate(records: &[UserRecord]) -> Bytes {
    let mut message = AggregatedRecord::default();
    let index_of = |table: &mut Vec<String>, key: &str| -> u64 {
        match table.iter().position(|k| k == key) {
            Some(i) => i as u64,
            None => {
                table.push(key.to_owned());
                (table.len() - 1) as u64
            }
        }
    };
    for record in records {
        let partition_key_index = index_of(&mut message.partition_key_table, &record.partition_key);
        let explicit_hash_key_index = record
            .explicit_hash_key
            .as_deref()
            .map(|key| index_of(&mut message.explicit_hash_key_table, key));
        message.records.push(AggregatedEntry {
            partition_key_index,
            explicit_hash_key_index,
            data: record.data.clone(),
        });
    }
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    Bytes::from(out)
}

/// Bytes an aggregate grows by when `record` is added, an upper bound used by producers to
/// keep aggregates under a size.
pub fn entry_size_bound(record: &UserRecord) -> usize {
    // Tag + length varint + the fields; the keys may also enter the tables.
    16 + record.data.len()
        + 2 * record.partition_key.len()
        + record.explicit_hash_key.as_ref().map_or(0, |k| 2 * k.len())
}

/// Bytes of an empty aggregate: magic and digest.
pub const OVERHEAD: usize = MAGIC.len() + DIGEST_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str, data: &str) -> UserRecord {
        UserRecord {
            partition_key: key.into(),
            explicit_hash_key: None,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn round_trips_with_shared_keys() {
        let mut records = vec![user("a", "1"), user("b", "2"), user("a", "3")];
        records[1].explicit_hash_key = Some("12345".into());
        let packed = aggregate(&records);
        assert!(is_aggregated(&packed));
        assert_eq!(deaggregate(&packed).unwrap(), records);
    }

    #[test]
    fn detects_corruption() {
        let mut packed = aggregate(&[user("a", "hello")]).to_vec();
        let last = packed.len() - 1;
        packed[last] ^= 1;
        assert_eq!(deaggregate(&packed), Err(KplError::DigestMismatch));
        assert_eq!(deaggregate(&MAGIC), Err(KplError::Truncated));
    }

    #[test]
    fn writes_required_zero_indexes() {
        // Index 0 must be on the wire (proto2 required), or Java readers reject the aggregate.
        let packed = aggregate(&[user("a", "x")]);
        let body = &packed[MAGIC.len()..packed.len() - DIGEST_LEN];
        let entry = AggregatedRecord::decode(body).unwrap().records[0].encode_to_vec();
        assert_eq!(&entry[..2], &[0x08, 0x00]);
    }
}
