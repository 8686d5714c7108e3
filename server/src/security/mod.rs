//! Who may connect and read what, and how much of the relay one client may use.
//!
//! # Layout
//! - `tls.rs`: rustls on the gRPC port, optional client certificates, reload on change.
//! - `auth.rs`: bearer tokens (and certificate subjects) mapped to the streams they may read.
//! - `limits.rs`: subscriber counts and subscribe rates per principal.
//! - `watch.rs`: reloads a file when it changes or on SIGHUP.

pub mod auth;
pub mod limits;
pub mod tls;
pub mod watch;
