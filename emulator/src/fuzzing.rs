//! Entry points for fuzzing and property tests: the request path and the event-stream
//! encoding, without sockets. Not part of the emulator's stable API.

use std::sync::Arc;

use aws_smithy_eventstream::frame::read_message_from;
use tokio::sync::watch;

use crate::config::Settings;
use crate::emulator::Shared;
use crate::eventstream;
use crate::server::ConnectionState;

/// An in-memory emulator with one stream `fuzz` of two shards, for feeding requests.
#[derive(Debug)]
pub struct RequestHarness {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    _shutdown: watch::Sender<bool>,
}

impl RequestHarness {
    /// A fresh harness.
    pub fn new() -> Self {
        let settings = Arc::new(Settings::default().clamped());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(settings, shutdown_rx));
        shared
            .store
            .create_stream("fuzz", 2, false)
            .expect("a fresh store takes a stream");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        Self {
            shared,
            runtime,
            _shutdown: shutdown,
        }
    }

    /// Runs operation `name` on a JSON body and returns the HTTP status it answers with.
    /// Whatever the input, it must answer, never panic.
    pub fn call(&self, name: &str, body: &[u8]) -> u16 {
        let _guard = self.runtime.enter();
        let connection = ConnectionState::default();
        match crate::ops::call(&self.shared, &connection, name, body) {
            Ok(response) => response.status().as_u16(),
            Err(err) => crate::protocol::error_response(&err).status().as_u16(),
        }
    }
}

impl Default for RequestHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a `SubscribeToShardEvent` frame carrying `payload` decodes, with the SDK's
/// decoder, to the same payload and event type.
pub fn event_frame_round_trips(payload: &[u8]) -> bool {
    let frame = eventstream::subscribe_to_shard_event(payload.to_vec());
    match read_message_from(frame.as_ref()) {
        Ok(message) => {
            message.payload().as_ref() == payload
                && message.headers().iter().any(|h| {
                    h.name().as_str() == ":event-type"
                        && h.value()
                            .as_string()
                            .is_ok_and(|v| v.as_str() == "SubscribeToShardEvent")
                })
        }
        Err(_) => false,
    }
}
