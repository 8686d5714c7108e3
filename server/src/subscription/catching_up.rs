//! Reading a shard from a catch-up reader's window, and what an expired position does.

use std::sync::atomic::Ordering;

use kinesis_relay_api::v1;

use super::{LagPolicy, Source, Stop, Subscription, format_time, sequence_text};
use crate::{catchup::From, hub::StreamHub, wire::EncodedResponse};

impl Subscription {
    /// Reads one batch from the catch-up window of shard `id`. It reads the window alone,
    /// never the ring: of the hub it needs only the children already known (Kinesis names
    /// them at the shard's end, which the window may reach first) and the gap counter.
    pub(super) fn poll_catch_up(
        &mut self,
        hub: &StreamHub,
        id: &str,
        known_children: &[String],
        out: &mut Vec<EncodedResponse>,
    ) -> Result<bool, Stop> {
        let window = match &self.shards[id].source {
            Source::CatchUp(attached) => attached.window.clone(),
            _ => return Ok(false),
        };
        let state = window.lock();
        let last = self.shards[id].last.clone();
        if let Some(expired) = &state.expired
            && last < expired.resume_position()
        {
            let asked = sequence_text(&last);
            let message = format!(
                "the position in shard {id:?} (after sequence number {asked:?}) is older than the stream's retention in Kinesis: the oldest record it holds is {} (arrived {}); resume with the cursor in the status details (just before it), start from trim_horizon, or subscribe with on_lag LAG_POLICY_SKIP to go on past the gap",
                expired.oldest,
                format_time(expired.oldest_arrival)
            );
            if let Some(position) = self.shards.get_mut(id) {
                position.last = expired.resume_position();
            }
            if self.on_lag != LagPolicy::Skip {
                return Err(Stop::Expired {
                    message,
                    cursor: self.encoded_cursor(),
                });
            }
            hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
            out.push(self.event(v1::subscribe_response::Event::Gap(v1::Gap {
                shards: vec![v1::ShardGap {
                    shard_id: id.to_owned(),
                    from_sequence_number: asked,
                    to_sequence_number: String::new(),
                    records_missed: 0,
                }],
                reason: v1::GapReason::UpstreamExpired.into(),
            })));
            return Ok(true);
        }
        if let Some(cause) = &state.failed {
            return Err(Stop::CatchUpFailed {
                message: format!(
                    "reading older records of shard {id:?} from Kinesis failed ({cause}); resume with the cursor in the status details"
                ),
                cursor: self.encoded_cursor(),
            });
        }
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        let Source::CatchUp(attached) = &mut position.source else {
            return Ok(false);
        };
        let reader_gone = state.stopped && !state.finished && attached.next >= state.ring.end();
        if attached.next < state.ring.base() || reader_gone {
            // Fell behind the window, or its reader stopped: read on with another reader.
            // (The window's lock goes first: dropping the attachment takes it.)
            drop(state);
            position.source = Source::Pending(From::After(position.last.clone()));
            return Ok(true);
        }
        let filter = &self.filter;
        let read = state.ring.read_batch(
            &mut attached.next,
            &mut position.last,
            |key| filter.matches(key),
            self.max_batch,
        );
        let ended = state.finished && attached.next >= state.ring.end();
        let children = if known_children.is_empty() {
            state.children.clone()
        } else {
            known_children.to_vec()
        };
        drop(state);
        if read.advanced {
            attached.report();
        }
        let progressed = read.advanced;
        self.push_batch(id, read, out);
        if ended {
            out.push(self.end_shard(id, children));
            return Ok(true);
        }
        Ok(progressed)
    }
}
