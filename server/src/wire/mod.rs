//! How what the relay sends is encoded: every protobuf field tag the relay writes by hand,
//! and every hand-encoding step, in one place.
//!
//! Records are encoded once, when they enter the hub, as complete `RecordBatch.records`
//! fields packed back to back into shared blocks ([`records`]). A `SubscribeResponse` that
//! carries records is then a short header, slices of those blocks as they are (no copy; see
//! docs/adr/0008), and the cursor ([`response`]): nothing is encoded per subscriber but the
//! header and the cursor. Every other response (heartbeat, shard event, gap) is encoded by
//! prost. What to send is decided elsewhere (`crate::subscription` builds the events); this
//! module only says how it is encoded, and its tests check that the hand-encoded bytes are
//! the bytes prost writes for the same message.
//!
//! # Tags written by hand (`proto/kinesis_relay/v1/relay.proto`)
//!
//! | constant                     | field                              | number | wire type |
//! |------------------------------|------------------------------------|--------|-----------|
//! | [`RESPONSE_RECORDS_TAG`]     | `SubscribeResponse.records`        | 1      | 2 (len)   |
//! | [`RESPONSE_CURSOR_TAG`]      | `SubscribeResponse.cursor`         | 15     | 2 (len)   |
//! | [`BATCH_SHARD_ID_TAG`]       | `RecordBatch.shard_id`             | 1      | 2 (len)   |
//! | [`BATCH_RECORDS_TAG`]        | `RecordBatch.records` (repeated)   | 2      | 2 (len)   |
//!
//! `Record` itself (partition key, data, sequence numbers, arrival time, explicit hash key)
//! is encoded by prost inside each `RecordBatch.records` field.
//!
//! # Layout
//! - `mod.rs`: the tags.
//! - `records.rs`: records encoded once into blocks of `RecordBatch.records` fields.
//! - `response.rs`: [`EncodedResponse`], a `SubscribeResponse` as segments of its bytes.

pub mod records;
pub mod response;

pub use self::response::EncodedResponse;

/// Wire type of length-delimited fields (strings, bytes, messages).
const LEN: u8 = 2;

/// A one-byte field key: `(number << 3) | wire type`, for field numbers up to 15.
const fn tag(number: u8, wire_type: u8) -> u8 {
    (number << 3) | wire_type
}

/// `SubscribeResponse.records` (field 1, a `RecordBatch`): the event of a record batch.
pub const RESPONSE_RECORDS_TAG: u8 = tag(1, LEN);
/// `SubscribeResponse.cursor` (field 15, string): the cursor after the response.
pub const RESPONSE_CURSOR_TAG: u8 = tag(15, LEN);
/// `RecordBatch.shard_id` (field 1, string).
pub const BATCH_SHARD_ID_TAG: u8 = tag(1, LEN);
/// `RecordBatch.records` (field 2, repeated `Record`): one per record, encoded once.
pub const BATCH_RECORDS_TAG: u8 = tag(2, LEN);

/// Bytes of a length-delimited field holding `len` bytes, with a one-byte tag.
fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}
