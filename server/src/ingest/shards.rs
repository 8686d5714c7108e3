//! The stream's shards as `ListShards` lists them.

use aws_sdk_kinesis::Client;
use tokio::sync::watch;

use super::{
    IngestSettings,
    errors::{self, CallError, IngestError},
};
use crate::hub::ShardMeta;

/// A shard the coordinator knows of.
#[derive(Debug, Clone)]
pub(super) struct KnownShard {
    pub(super) meta: ShardMeta,
    /// Ending sequence number, when the listing says the shard is closed.
    pub(super) ending: Option<String>,
    /// Present in the first listing (starts at the initial position, not TRIM_HORIZON).
    pub(super) initial: bool,
}

/// Lists every shard, retrying transient failures.
pub(super) async fn list_shards(
    client: &Client,
    stream: &str,
    settings: &IngestSettings,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Vec<KnownShard>, IngestError> {
    errors::retry(settings, shutdown, "listing shards", || {
        list_shards_once(client, stream)
    })
    .await
}

pub(super) async fn list_shards_once(
    client: &Client,
    stream: &str,
) -> Result<Vec<KnownShard>, CallError> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    // Bounded: 10,000 shards at 1,000 per page.
    for _ in 0..100 {
        let request = client.list_shards().max_results(1000);
        let request = match &next_token {
            Some(token) => request.next_token(token),
            None => request.stream_name(stream),
        };
        let output = request
            .send()
            .await
            .map_err(|err| CallError::from_sdk(&err))?;
        for shard in output.shards() {
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            shards.push(KnownShard {
                meta: ShardMeta {
                    shard_id: shard.shard_id().to_owned(),
                    parents,
                    hash_key_range: shard
                        .hash_key_range()
                        .map(|r| {
                            (
                                r.starting_hash_key().to_owned(),
                                r.ending_hash_key().to_owned(),
                            )
                        })
                        .unwrap_or_default(),
                },
                ending: shard
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .map(str::to_owned),
                initial: false,
            });
        }
        next_token = output.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok(shards)
}
