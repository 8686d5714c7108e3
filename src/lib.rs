//! The kinesis-relay API crate: the v1 gRPC contract and the formats that every part of the
//! project shares.
//!
//! # Layout
//! - [`v1`]: code generated from `proto/kinesis_relay/v1/relay.proto` (messages, the
//!   `Relay` client and server), and [`FILE_DESCRIPTOR_SET`] for server reflection.
//! - [`sequence`]: Kinesis sequence numbers, which are decimal strings too long for `u128`.
//! - [`cursor`]: the opaque resume cursor carried by every `SubscribeResponse`.
//! - [`kpl`]: the KPL aggregation format (pack and unpack).
//! - [`resume`]: statuses that end a subscription early and carry the resume cursor.
//! - `subscriber` (feature `subscriber`): a subscription that reconnects with backoff,
//!   resumes after its cursor and never hands out a record twice, with an example.
//! - [`backoff`]: exponential backoff with jitter, for every retry loop of the project.
//! - [`units`]: durations and sizes on command lines.

pub mod atomic_file;
pub mod backoff;
pub mod cursor;
pub mod kpl;
pub mod resume;
pub mod sequence;
#[cfg(feature = "subscriber")]
pub mod subscriber;
pub mod units;

/// Generated code of the `kinesis_relay.v1` package.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("kinesis_relay.v1");
}

/// The encoded `FileDescriptorSet` of the contract (with its imports and comments), for
/// `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kinesis_relay_v1_descriptor.bin"));

/// The HTTP/2 frame size (SETTINGS_MAX_FRAME_SIZE) Subscribe clients should accept. The
/// relay's responses are up to 64 KiB of records (more for a single large record); with the
/// HTTP/2 default of 16 KiB each goes out as several frames, and the relay's HTTP/2 stack
/// writes every frame with its own system call. With 1 MiB, one response is one write.
pub const CLIENT_MAX_FRAME_SIZE: u32 = 1 << 20;
