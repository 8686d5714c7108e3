//! The responses a subscription sends: record batches, shard ends, heartbeats (with the
//! distance to the tip of every shard it reads) and gaps, each carrying its cursor.

use super::*;

impl Subscription {
    pub(super) fn push_batch(&self, id: &str, read: batch::Batch, out: &mut Vec<EncodedResponse>) {
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
        let state = hub.read();
        let shards = self
            .shards
            .iter()
            .filter(|(_, position)| !position.ended)
            .filter_map(|(id, position)| {
                let millis_behind_latest = match &position.source {
                    Source::CatchUp(attached) => attached.window.lock().millis_behind,
                    _ => state.shards.get(id)?.millis_behind,
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

    pub(super) fn event(&self, event: v1::subscribe_response::Event) -> EncodedResponse {
        EncodedResponse::from_message(&v1::SubscribeResponse {
            event: Some(event),
            cursor: self.encoded_cursor(),
        })
    }

    pub(super) fn skip_gap(&mut self, id: &str, ring: &ShardRing) -> EncodedResponse {
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        let from = sequence_text(&position.last);
        let to = match ring.floor() {
            Floor::After { position, .. } => sequence_text(position),
            Floor::Origin | Floor::Unknown => String::new(),
        };
        let missed = ring.base().saturating_sub(position.next);
        position.next = ring.base();
        position.behind = false;
        position.last = ring.position_before(ring.base());
        self.event(v1::subscribe_response::Event::Gap(v1::Gap {
            shards: vec![v1::ShardGap {
                shard_id: id.to_owned(),
                from_sequence_number: from,
                to_sequence_number: to,
                records_missed: missed,
            }],
            reason: v1::GapReason::SubscriberTooSlow.into(),
        }))
    }
}
