//! Properties of the formats that read untrusted input (the same properties the fuzz targets
//! in `fuzz/` check with coverage guidance): decoders never panic, and what is encoded decodes
//! to the same value.

use std::collections::BTreeMap;

use bytes::Bytes;
use kinesis_relay_api::{
    cursor::{Cursor, Position},
    kpl::{self, UserRecord},
};
use proptest::prelude::*;

fn position() -> impl Strategy<Value = Position> {
    prop_oneof![
        Just(Position::Start),
        ("[1-9][0-9]{0,60}", proptest::option::of(any::<u64>())).prop_map(
            |(sequence, sub_sequence)| {
                Position::After {
                    sequence: sequence.parse().unwrap(),
                    sub_sequence,
                }
            }
        ),
    ]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (
        "[a-zA-Z0-9_.-]{1,128}",
        proptest::collection::btree_map("shardId-[0-9]{12}", position(), 0..20),
    )
        .prop_map(
            |(stream, shards): (String, BTreeMap<String, Position>)| Cursor { stream, shards },
        )
}

fn user_record() -> impl Strategy<Value = UserRecord> {
    (
        ".{1,64}",
        proptest::option::of("[0-9]{1,39}"),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(partition_key, explicit_hash_key, data)| UserRecord {
            partition_key,
            explicit_hash_key,
            data: Bytes::from(data),
        })
}

proptest! {
    #[test]
    fn cursor_decoding_never_panics(text in ".{0,2048}") {
        let _ = Cursor::decode(&text);
    }

    #[test]
    fn cursor_decoding_of_base64_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        use base64::Engine;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let _ = Cursor::decode(&text);
    }

    #[test]
    fn cursors_round_trip(cursor in cursor()) {
        prop_assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn deaggregation_never_panics(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut data = kpl::MAGIC.to_vec();
        data.extend(body);
        let _ = kpl::deaggregate(&data);
    }

    #[test]
    fn deaggregation_of_valid_digests_never_panics(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        // Right digest, arbitrary protobuf: exercises the decoder past the MD5 check.
        use md5::{Digest, Md5};
        let mut data = kpl::MAGIC.to_vec();
        data.extend(&body);
        data.extend(Md5::digest(&body));
        let _ = kpl::deaggregate(&data);
    }

    #[test]
    fn aggregates_round_trip(records in proptest::collection::vec(user_record(), 1..50)) {
        let packed = kpl::aggregate(&records);
        prop_assert!(kpl::is_aggregated(&packed));
        prop_assert_eq!(kpl::deaggregate(&packed).unwrap(), records);
    }
}
