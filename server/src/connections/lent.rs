//! The long body chunks a connection's responses have handed to HTTP/2, so that the
//! connection's I/O layer can hold on to the frames h2 cuts from them instead of copying.
//!
//! h2 writes a DATA frame as its 9-byte head and a slice of the body chunk it came from,
//! and expects the bytes gone (written or copied) when the write returns: the slice is
//! borrowed for the call only. [`super::coalesce::Coalescing`] defers the frames after the
//! first of a poll to write them together, which used to mean copying them (48 KiB of every
//! 64 KiB response to a 16 KiB-frame client). A response body lends its long chunks here
//! ([`LentChunks::lend`]) before h2 sees them; a deferred write whose payload lies inside
//! a lent chunk is then kept as a reference to that chunk ([`LentChunks::borrow`]), which
//! costs an atomic increment instead of a copy.
//!
//! That is sound because a `Bytes` never changes while it has more than one owner: the
//! chunk held here keeps its memory alive and unchanged, so a slice that lies inside it is
//! its bytes. A chunk is forgotten once a write reaches its end (h2 has taken all of it),
//! and at most [`MAX_LENT`] are held, so chunks of calls reset before their end do not pile
//! up: a chunk forgotten early is copied, as before.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;

/// Chunks and write slices shorter than this are copied: below it a copy costs less than
/// a reference and a slot in the vectored write.
pub const LEND_MIN: usize = 4 << 10;
/// Most chunks held per connection (the oldest is forgotten first).
pub const MAX_LENT: usize = 16;

/// The chunks lent by the responses of one connection; clones share them.
#[derive(Debug, Clone, Default)]
pub struct LentChunks(Arc<Mutex<VecDeque<Bytes>>>);

impl LentChunks {
    fn chunks(&self) -> MutexGuard<'_, VecDeque<Bytes>> {
        // Nothing here can leave the list half-changed, so a poisoned lock is still good.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `chunk` is about to be handed to HTTP/2 (chunks shorter than
    /// [`LEND_MIN`] are not worth it and are not kept).
    pub fn lend(&self, chunk: &Bytes) {
        if chunk.len() < LEND_MIN {
            return;
        }
        let mut chunks = self.chunks();
        if chunks.len() == MAX_LENT {
            chunks.pop_front();
        }
        chunks.push_back(chunk.clone());
    }

    /// `slice` as a reference into the lent chunk it lies in, if there is one; the chunk is
    /// forgotten if `slice` reaches its end.
    pub fn borrow(&self, slice: &[u8]) -> Option<Bytes> {
        let mut chunks = self.chunks();
        let index = chunks.iter().position(|chunk| contains(chunk, slice))?;
        let borrowed = chunks[index].slice_ref(slice);
        if ends_together(&chunks[index], slice) {
            chunks.remove(index);
        }
        Some(borrowed)
    }

    /// Forgets the lent chunk whose end `slice`, just written, reaches.
    pub fn written(&self, slice: &[u8]) {
        if slice.len() < LEND_MIN {
            return;
        }
        let mut chunks = self.chunks();
        if let Some(index) = chunks.iter().position(|chunk| ends_together(chunk, slice)) {
            chunks.remove(index);
        }
    }

    /// How many chunks are held (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.chunks().len()
    }
}

/// `slice` lies inside `chunk`'s memory (addresses compared, nothing read).
fn contains(chunk: &Bytes, slice: &[u8]) -> bool {
    let (start, end) = span(chunk);
    let (slice_start, slice_end) = span(slice);
    !slice.is_empty() && start <= slice_start && slice_end <= end
}

/// `slice` ends where `chunk` does.
fn ends_together(chunk: &Bytes, slice: &[u8]) -> bool {
    !slice.is_empty() && span(chunk).1 == span(slice).1 && contains(chunk, slice)
}

fn span(bytes: &[u8]) -> (usize, usize) {
    let start = bytes.as_ptr() as usize;
    (start, start + bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>())
    }

    #[test]
    fn a_slice_of_a_lent_chunk_is_referenced_not_copied() {
        let lent = LentChunks::default();
        let chunk = chunk(64 << 10);
        lent.lend(&chunk);
        let slice = &chunk[16 << 10..32 << 10];
        let borrowed = lent.borrow(slice).expect("inside the chunk");
        assert_eq!(borrowed.as_ptr(), slice.as_ptr(), "the same memory");
        assert_eq!(&borrowed[..], slice);
        assert_eq!(lent.held(), 1, "kept until its end is written");
        let last = lent.borrow(&chunk[48 << 10..]).expect("inside the chunk");
        assert_eq!(&last[..], &chunk[48 << 10..]);
        assert_eq!(lent.held(), 0, "forgotten once its end is taken");
    }

    #[test]
    fn bytes_outside_every_lent_chunk_are_not_borrowed() {
        let lent = LentChunks::default();
        let chunk = chunk(64 << 10);
        lent.lend(&chunk);
        let other = vec![0u8; 16 << 10];
        assert!(lent.borrow(&other).is_none());
        // Partly inside is not inside.
        let wider = chunk.slice(..);
        let lent_half = LentChunks::default();
        lent_half.lend(&wider.slice(..32 << 10));
        assert!(lent_half.borrow(&wider[16 << 10..48 << 10]).is_none());
    }

    #[test]
    fn short_chunks_are_not_lent_and_the_oldest_goes_first() {
        let lent = LentChunks::default();
        lent.lend(&chunk(LEND_MIN - 1));
        assert_eq!(lent.held(), 0);
        let chunks: Vec<Bytes> = (0..=MAX_LENT).map(|_| chunk(LEND_MIN)).collect();
        for chunk in &chunks {
            lent.lend(chunk);
        }
        assert_eq!(lent.held(), MAX_LENT);
        assert!(
            lent.borrow(&chunks[0]).is_none(),
            "the oldest was forgotten"
        );
        assert!(lent.borrow(&chunks[MAX_LENT]).is_some());
    }

    #[test]
    fn a_written_end_forgets_its_chunk() {
        let lent = LentChunks::default();
        let chunk = chunk(64 << 10);
        lent.lend(&chunk);
        lent.written(&chunk[..32 << 10]);
        assert_eq!(lent.held(), 1, "not its end");
        lent.written(&chunk[..]);
        assert_eq!(lent.held(), 0);
    }
}
