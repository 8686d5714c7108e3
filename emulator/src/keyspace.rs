//! The 128-bit hash key space: ranges of it, and where a partition key falls in it.

use md5::{Digest, Md5};

/// An inclusive range of the 128-bit hash key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashKeyRange {
    /// The lowest hash key of the range.
    pub(crate) start: u128,
    /// The highest hash key of the range.
    pub(crate) end: u128,
}

impl HashKeyRange {
    pub(crate) fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// The JSON shape `{"StartingHashKey": .., "EndingHashKey": ..}`.
    pub(crate) fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "StartingHashKey": self.start.to_string(),
            "EndingHashKey": self.end.to_string(),
        })
    }

    /// `count` ranges of (nearly) equal width covering `self`.
    pub(crate) fn split_evenly(self, count: u32) -> Vec<HashKeyRange> {
        let count = u128::from(count.max(1));
        let width = (self.end - self.start) / count;
        (0..count)
            .map(|i| {
                let start = self.start + i * width;
                let end = if i + 1 == count {
                    self.end
                } else {
                    self.start + (i + 1) * width - 1
                };
                HashKeyRange { start, end }
            })
            .collect()
    }
}

/// The whole key space, `0 ..= 2^128 - 1`.
pub(crate) const FULL_RANGE: HashKeyRange = HashKeyRange {
    start: 0,
    end: u128::MAX,
};

/// The hash key of a partition key: its MD5 as a big-endian 128-bit integer.
pub(crate) fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_key_space_without_gaps() {
        let ranges = FULL_RANGE.split_evenly(3);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[2].end, u128::MAX);
        assert_eq!(ranges[0].end + 1, ranges[1].start);
        assert_eq!(ranges[1].end + 1, ranges[2].start);
    }
}
