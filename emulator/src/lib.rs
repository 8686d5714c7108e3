//! A Kinesis-compatible endpoint with faithful enhanced fan-out (EFO) semantics, for tests,
//! first runs and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kinesis_emulator::EmulatorError> {
//! let emu = kinesis_emulator::Emulator::builder()
//!     .stream("demo", 4)
//!     .start()
//!     .await?;
//! println!("point the AWS SDK at {}", emu.endpoint_url());
//! emu.handle().fail_next("SubscribeToShard", 1, "LimitExceededException");
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `emulator.rs`: the builder, the running [`Emulator`], shared state, start and shutdown.
//! - `handle.rs`: [`EmulatorHandle`], fault injection and state access in-process.
//! - `server.rs`: accept loop, TLS, HTTP/1.1 + HTTP/2 serving, routing by `X-Amz-Target`.
//! - `control.rs`: the fault-injection HTTP endpoint under `/_emulator/`.
//! - `tls.rs`: the self-signed certificate and ALPN.
//! - `protocol.rs`: AWS JSON 1.1 bodies, error shapes, ARNs, timestamps.
//! - `eventstream.rs`: event-stream frames of `SubscribeToShard`.
//! - `state.rs`: streams, shards and records behind one lock; `keyspace.rs`: hash key ranges
//!   and the MD5 of partition keys; `writing.rs`: writes; `reading.rs`: starting positions
//!   and reads; `retention.rs`: trimming and ageing records; `resharding.rs`: split, merge,
//!   update shard count; `consumers.rs`: EFO consumers; `sequence.rs`: sequence numbers.
//! - `subscriptions.rs`: the one-subscription-per-consumer-and-shard rule and takeover.
//! - `limits.rs`: per-shard write and EFO limits; `read_limits.rs`: GetRecords' per-shard
//!   limits; `faults.rs`: injected faults.
//! - `ops/`: one module per group of operations; `ops/subscribe.rs` pumps the events.

mod config;
mod consumers;
mod control;
mod emulator;
mod error;
mod eventstream;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod keyspace;
mod limits;
mod ops;
mod protocol;
mod read_limits;
mod reading;
mod records_json;
mod resharding;
mod retention;
mod sequence;
mod server;
mod state;
mod subscriptions;
mod tls;
mod writing;

pub use config::Settings;
pub use emulator::{Emulator, EmulatorBuilder};
pub use error::{EmulatorError, KinesisError};
pub use handle::EmulatorHandle;
pub use sequence::SequenceNumber;
pub use subscriptions::EndMode;
