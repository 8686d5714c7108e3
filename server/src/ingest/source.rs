//! Where a relay's records come from: Kinesis or another relay. [`Source::new`] chooses,
//! once, from the settings; [`Source::run`] reads one stream into its hub until shutdown,
//! whichever it is, keeping the positions in the stream's checkpoint file
//! (`checkpoint.rs`) and failing with an [`IngestError`].

use std::sync::Arc;

use aws_sdk_kinesis::Client;
use tokio::sync::watch;

use super::{IngestError, IngestSettings, upstream_relay::UpstreamRelay};
use crate::hub::StreamHub;

/// A source of records.
#[derive(Debug, Clone)]
pub enum Source {
    /// Kinesis, through one enhanced fan-out consumer per stream.
    Kinesis(Client),
    /// Another relay (`--upstream-relay`), so that relays form a tree: the first tier holds
    /// the consumers (Kinesis allows 20 per stream), the next tiers fan out further.
    Relay(UpstreamRelay),
}

impl Source {
    /// The upstream relay the settings name, else Kinesis through `client`.
    pub fn new(settings: &IngestSettings, client: Client) -> Self {
        match &settings.upstream {
            Some(upstream) => Self::Relay(upstream.clone()),
            None => Self::Kinesis(client),
        }
    }

    /// The Kinesis client when records come from Kinesis, from which catch-up reads records
    /// older than the rings. `None` for an upstream relay: it serves old cursors itself.
    pub fn kinesis(&self) -> Option<&Client> {
        match self {
            Self::Kinesis(client) => Some(client),
            Self::Relay(_) => None,
        }
    }

    /// Reads `stream` into `hub` until `shutdown` becomes true.
    pub async fn run(
        self,
        stream: String,
        hub: Arc<StreamHub>,
        settings: Arc<IngestSettings>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        match self {
            Self::Kinesis(client) => {
                super::run_stream(client, stream, hub, settings, shutdown).await
            }
            Self::Relay(upstream) => {
                super::upstream_relay::run_stream(upstream, stream, hub, settings, shutdown).await
            }
        }
    }
}
