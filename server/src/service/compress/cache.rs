//! Compressed pieces of the hub's blocks, kept so that the subscribers sent the same records
//! share one compression of them.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, OnceLock},
};

use bytes::Bytes;

/// Pieces compressed from slices of shared bytes, by the slice's address and length.
///
/// The key is sound because each entry holds its source slice: the memory at that address
/// cannot be freed and reused for other bytes while the entry lives, and bytes shared by
/// `Bytes` never change.
pub struct PieceCache<P> {
    inner: Mutex<Inner<P>>,
    /// Most source bytes held. Held slices keep their whole block alive (at most 128 KiB,
    /// see `hub::entry`), so memory is bounded by a few times this.
    budget: usize,
}

/// Most pieces held, whatever their size: pieces of a few records each (subscribers at the
/// tip of a slow stream) must not grow the map past a few MiB of entries.
const MAX_PIECES: usize = 16_384;

struct Inner<P> {
    slots: HashMap<(usize, usize), Arc<Slot<P>>>,
    /// Keys oldest first: responses carry records in the order they arrived, so the oldest
    /// piece is the one least likely to be asked for again.
    order: VecDeque<(usize, usize)>,
    /// Source bytes of the slots.
    held: usize,
    /// Lookups answered from the cache, and lookups that compressed.
    hits: u64,
    misses: u64,
}

struct Slot<P> {
    /// Keeps the key's address from being reused while the slot is in the cache.
    source: Bytes,
    /// Set by the first subscriber that needs it; others wait for it rather than compress
    /// the same bytes again.
    piece: OnceLock<Arc<P>>,
}

impl<P> PieceCache<P> {
    /// A cache holding at most `budget` source bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                order: VecDeque::new(),
                held: 0,
                hits: 0,
                misses: 0,
            }),
            budget,
        }
    }

    /// The compression of `source`, made with `compress` unless it is cached.
    pub fn get_or_compress(&self, source: &Bytes, compress: impl FnOnce(&[u8]) -> P) -> Arc<P> {
        let key = (source.as_ptr() as usize, source.len());
        let slot = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = inner.slots.get(&key).cloned() {
                inner.hits += 1;
                slot
            } else {
                inner.misses += 1;
                let slot = Arc::new(Slot {
                    source: source.clone(),
                    piece: OnceLock::new(),
                });
                inner.slots.insert(key, slot.clone());
                inner.order.push_back(key);
                inner.held += source.len();
                while inner.held > self.budget || inner.order.len() > MAX_PIECES {
                    let Some(oldest) = inner.order.pop_front() else {
                        break;
                    };
                    if let Some(evicted) = inner.slots.remove(&oldest) {
                        inner.held -= evicted.source.len();
                    }
                }
                slot
            }
        };
        // Compressed outside the lock: other pieces are served meanwhile.
        slot.piece
            .get_or_init(|| Arc::new(compress(&slot.source)))
            .clone()
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.hits, inner.misses)
    }

    /// Source bytes held.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_slice_is_compressed_once_and_the_cache_stays_within_its_budget() {
        let cache = PieceCache::new(100);
        let block = Bytes::from(vec![1u8; 1000]);
        let mut compressions = 0;
        for _ in 0..3 {
            let piece = cache.get_or_compress(&block.slice(0..40), |data| {
                compressions += 1;
                data.len()
            });
            assert_eq!(*piece, 40);
        }
        assert_eq!(compressions, 1);
        // Same address, other length: another piece.
        cache.get_or_compress(&block.slice(0..50), |data| data.len());
        assert_eq!(cache.stats(), (2, 2));
        // Over the budget the oldest pieces go.
        cache.get_or_compress(&block.slice(100..160), |data| data.len());
        assert!(cache.held() <= 100, "{}", cache.held());
        let mut again = 0;
        cache.get_or_compress(&block.slice(0..40), |_| {
            again += 1;
            0
        });
        assert_eq!(again, 1, "an evicted piece is compressed again");
    }

    #[test]
    fn many_small_pieces_are_bounded_in_number() {
        let cache = PieceCache::new(usize::MAX);
        let block = Bytes::from(vec![1u8; MAX_PIECES + 100]);
        for at in 0..MAX_PIECES + 100 {
            cache.get_or_compress(&block.slice(at..at + 1), |data| data.len());
        }
        assert!(cache.held() <= MAX_PIECES, "{}", cache.held());
    }
}
