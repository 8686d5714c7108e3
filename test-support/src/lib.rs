//! Scaffolding shared by the workspace's integration tests, so that each crate's
//! `tests/common` holds only what is its own.
//!
//! Everything here starts real servers on free ports (`127.0.0.1:0`) and waits on
//! conditions with [`DEADLINE`], never on fixed sleeps. Failing is this crate's job: its
//! functions panic with a message saying what did not happen, which fails the calling test.
//!
//! # Layout
//! - `wait.rs`: [`DEADLINE`] and [`eventually`], the poll-until-true loop.
//! - `peers.rs`: external tools and servers a test needs ([`require_tool`], [`peer_url`]):
//!   skip locally, fail under CI.
//! - `kinesis.rs`: AWS SDK Kinesis clients for a local endpoint, [`put`], [`numbered`]
//!   records, [`create_stream`] and [`unique_name`].
//! - `process.rs`: the binaries under test as child processes: [`run`], [`read_lines`],
//!   [`finish`], [`signal`], [`run_with_input`].
//! - `proxy.rs`: [`Proxy`], a TCP proxy a test cuts and restores to play an outage.
//! - `relay.rs` (feature `relay`): the emulator with short EFO durations and a relay on it,
//!   tuned to each other, and waits on what the relay holds.

mod kinesis;
mod peers;
mod process;
mod proxy;
#[cfg(feature = "relay")]
mod relay;
mod wait;

pub use kinesis::{client, config, create_stream, numbered, put, put_entries, unique_name};
pub use peers::{in_ci, peer_url, require_tool};
pub use process::{Run, finish, lines, read_lines, run, run_with_input, signal};
pub use proxy::Proxy;
#[cfg(feature = "relay")]
pub use relay::{fast_config, fast_emulator, held, start_relay, wait_active, wait_held};
pub use wait::{DEADLINE, eventually};
