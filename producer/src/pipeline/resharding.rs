//! Following the stream's shards: refreshing the shard map (at most every two seconds) and
//! installing a new one, moving queued records of closed shards, in order, to the shards
//! that now own their keys.

use super::*;

impl Pipeline {
    pub(super) fn request_refresh(&mut self, now: Instant) {
        if !self.refresh.is_empty() || now.duration_since(self.last_refresh) < MIN_REFRESH_INTERVAL
        {
            return;
        }
        self.last_refresh = now;
        self.next_refresh = now + self.config.shard_refresh;
        let client = self.client.clone();
        let stream = self.config.stream.clone();
        let region = self.config.region.clone();
        self.refresh
            .spawn(async move { ShardMap::list(&client, &stream, &region).await });
    }

    /// Installs a new shard map: lanes for new shards, queued entries of closed shards
    /// moved (in order) to the shards that now own their keys.
    pub(super) fn apply_map(&mut self, map: ShardMap, now: Instant) {
        if map.is_empty() && !self.map.is_empty() {
            return;
        }
        self.map = map;
        for id in self.map.shard_ids() {
            if !self.lanes.contains_key(id) {
                self.lanes
                    .insert(id.clone(), new_lane(&self.config, id, now));
            }
        }
        let gone: Vec<Arc<str>> = self
            .lanes
            .keys()
            .filter(|id| !self.map.contains(id))
            .cloned()
            .collect();
        for id in gone {
            let lane = self.lanes.get_mut(&id).expect("listed");
            let mut moved: Vec<Entry> = lane.queue.drain(..).collect();
            moved.extend(lane.aggregator.as_mut().and_then(|a| a.close(&id)));
            if lane.in_flight == 0 {
                self.lanes.remove(&id);
            }
            for mut entry in moved {
                entry.shard =
                    self.lane_id(&entry.partition_key, entry.explicit_hash_key.as_deref());
                let shard = entry.shard.clone();
                self.lane(&shard).queue.push_back(entry);
            }
        }
    }
}
