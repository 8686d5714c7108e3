//! The bytes [`super::coalesce::Coalescing`] has accepted and not yet written, in order:
//! runs of short writes copied into one buffer, and frames of lent chunks
//! ([`super::lent`]) held as references. They leave in one vectored write.

use std::{collections::VecDeque, io::IoSlice, ops::Range};

use bytes::{Buf, Bytes};

/// Most pieces handed to one vectored write (the kernel takes up to 1,024; a 256 KiB
/// backlog of 16 KiB frames is 32 pieces).
pub const MAX_SLICES: usize = 64;

/// One stretch of the backlog.
#[derive(Debug)]
enum Piece {
    /// Bytes of [`Backlog::copied`].
    Copied(Range<usize>),
    /// Bytes of a chunk a response lent.
    Lent(Bytes),
}

/// Accepted bytes not yet written.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Every copied piece's bytes, back to back.
    copied: Vec<u8>,
    /// The stretches, in the order they were accepted.
    pieces: VecDeque<Piece>,
    /// Bytes held in all.
    len: usize,
}

impl Backlog {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `bytes`.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        let start = self.copied.len();
        self.copied.extend_from_slice(bytes);
        self.len += bytes.len();
        match self.pieces.back_mut() {
            Some(Piece::Copied(range)) if range.end == start => range.end = self.copied.len(),
            _ => self
                .pieces
                .push_back(Piece::Copied(start..self.copied.len())),
        }
    }

    /// Appends `bytes` as they are.
    pub fn push_lent(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.pieces.push_back(Piece::Lent(bytes));
    }

    /// Pieces held (each a slice of the vectored write).
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Fills `slices` with the first pieces; returns how many it filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, piece) in slices.iter_mut().zip(&self.pieces) {
            *slot = IoSlice::new(match piece {
                Piece::Copied(range) => &self.copied[range.clone()],
                Piece::Lent(bytes) => bytes,
            });
            filled += 1;
        }
        filled
    }

    /// Drops the first `written` bytes (the socket took them).
    pub fn advance(&mut self, mut written: usize) {
        self.len -= written.min(self.len);
        while written > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let len = match front {
                Piece::Copied(range) => range.len(),
                Piece::Lent(bytes) => bytes.len(),
            };
            if written < len {
                match front {
                    Piece::Copied(range) => range.start += written,
                    Piece::Lent(bytes) => bytes.advance(written),
                }
                break;
            }
            written -= len;
            self.pieces.pop_front();
        }
        if self.pieces.is_empty() {
            self.copied.clear();
        }
    }

    /// Lets go of the copy buffer's memory beyond `keep` bytes (an idle connection holds
    /// none for a past burst); only when nothing is held.
    pub fn shrink(&mut self, keep: usize) {
        if self.is_empty() && self.copied.capacity() > keep {
            self.copied.shrink_to(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(backlog: &Backlog) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = backlog.io_slices(&mut slices);
        slices[..count]
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }

    #[test]
    fn pieces_leave_in_order_and_copies_join() {
        let mut backlog = Backlog::default();
        backlog.push_copy(b"head1");
        backlog.push_copy(b"+more");
        backlog.push_lent(Bytes::from_static(b"PAYLOAD1"));
        backlog.push_copy(b"head2");
        backlog.push_lent(Bytes::from_static(b"PAYLOAD2"));
        assert_eq!(backlog.len(), 31);
        assert_eq!(backlog.pieces.len(), 4, "adjacent copies are one piece");
        assert_eq!(gathered(&backlog), b"head1+morePAYLOAD1head2PAYLOAD2");
    }

    #[test]
    fn a_partial_write_resumes_where_it_stopped() {
        let mut backlog = Backlog::default();
        backlog.push_copy(b"abc");
        backlog.push_lent(Bytes::from_static(b"defgh"));
        backlog.push_copy(b"ij");
        backlog.advance(2);
        assert_eq!(gathered(&backlog), b"cdefghij");
        backlog.advance(3);
        assert_eq!(gathered(&backlog), b"fghij");
        assert_eq!(backlog.len(), 5);
        backlog.advance(5);
        assert!(backlog.is_empty());
        assert!(backlog.copied.is_empty(), "the copy buffer is reused");
        backlog.push_copy(b"k");
        assert_eq!(gathered(&backlog), b"k");
    }
}
