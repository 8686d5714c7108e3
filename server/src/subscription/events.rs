//! The responses a subscription sends: record batches, shard ends, heartbeats (with the
//! distance to the tip of every shard it reads) and gaps, each carrying its cursor.

use super::*;
use crate::hub::batch::Batch;

impl Subscription {
    pub(super) fn push_batch(&self, id: &str, read: Batch, out: &mut Vec<EncodedResponse>) {
        if read.records > 0 {
            out.push(EncodedResponse::record_batch(
                id,
                read.runs,
                read.records,
                &self.encoded_cursor(),
                read.oldest,
            ));
        }
    }

    /// Marks shard `id` read to its end and returns its ENDED event.
    pub(super) fn end_shard(&mut self, id: &str, children: Vec<String>) -> EncodedResponse {
        if let Some(position) = self.shards.get_mut(id) {
            position.ended = true;
            position.source = Source::Ring;
        }
        self.event(v1::subscribe_response::Event::ShardEvent(v1::ShardEvent {
            shard_id: id.to_owned(),
            kind: v1::ShardEventKind::Ended.into(),
            child_shard_ids: children,
            parent_shard_ids: vec![],
        }))
    }

    /// A heartbeat with the distance to the tip of every shard being read (from the
    /// catch-up reader for shards read from Kinesis).
    pub fn heartbeat(&self, hub: &StreamHub) -> EncodedResponse {
        let view = hub.view();
        let shards = self
            .shards
            .iter()
            .filter(|(_, position)| !position.ended)
            .filter_map(|(id, position)| {
                let millis_behind_latest = match &position.source {
                    Source::CatchUp(attached) => attached.window.lock().millis_behind,
                    _ => view.shard(id)?.millis_behind(),
                };
                Some(v1::ShardLag {
                    shard_id: id.clone(),
                    millis_behind_latest,
                })
            })
            .collect();
        self.event(v1::subscribe_response::Event::Heartbeat(v1::Heartbeat {
            shards,
            server_time: Some(timestamp(SystemTime::now())),
        }))
    }

    /// An event with the current cursor, encoded.
    pub(super) fn event(&self, event: v1::subscribe_response::Event) -> EncodedResponse {
        EncodedResponse::event(event, self.encoded_cursor())
    }

    /// Moves a subscriber that fell below shard's oldest record on to it (SKIP) and returns
    /// the gap event that says what it missed.
    pub(super) fn skip_gap(&mut self, shard: ShardView<'_>) -> EncodedResponse {
        let id = shard.id();
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        let from = sequence_text(&position.last);
        let missed = shard.missed(position.next);
        position.next = missed.resume_at;
        position.behind = false;
        position.last = missed.resume_after;
        self.event(v1::subscribe_response::Event::Gap(v1::Gap {
            shards: vec![v1::ShardGap {
                shard_id: id.to_owned(),
                from_sequence_number: from,
                to_sequence_number: missed
                    .through
                    .as_ref()
                    .map(sequence_text)
                    .unwrap_or_default(),
                records_missed: missed.records,
            }],
            reason: v1::GapReason::SubscriberTooSlow.into(),
        }))
    }
}
