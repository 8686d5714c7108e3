//! Compressed Subscribe responses (gzip, zstd), with each piece of the hub's blocks
//! compressed once per encoding and shared by every subscriber sent it, as records are
//! encoded once.
//!
//! A record batch is a short header of its own, slices of the hub's blocks (shared), and a
//! cursor of its own. The shared slices are cut into pieces at fixed addresses, so that
//! subscribers whose batches start at different records still share the pieces in
//! between; each piece is compressed once and cached ([`cache`]). A response is then its
//! own parts, stored uncompressed, and the cached pieces, put together into one gRPC
//! message as [`formats`] says.
//!
//! # Layout
//! - `formats.rs`: gzip and zstd byte formats that let compressed pieces be concatenated.
//! - `cache.rs`: the bounded cache of compressed pieces.

mod cache;
mod formats;

use std::{
    ops::Range,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::{BufMut, Bytes, BytesMut};
use flate2::Crc;
use http::HeaderMap;

use self::cache::PieceCache;

/// Shared bytes are cut into pieces at addresses that are multiples of this: DEFLATE's
/// window, so pieces compress about as well as one stream would.
const PIECE_ALIGN: usize = 32 << 10;
/// Source bytes each encoding's cache holds: several seconds of records for a relay under
/// load, enough for every subscriber near the tip to find the pieces it is sent; one that
/// lags further compresses its own.
const CACHE_BUDGET: usize = 4 << 20;

/// What compression did for one encoding, process-wide (every relay in the process), read
/// by `crate::metrics` at each scrape: pieces sent against pieces compressed is how much
/// the cache shares.
#[derive(Debug)]
pub struct CompressionCounters {
    /// Pieces of blocks put into responses.
    pub pieces_sent: AtomicU64,
    /// Pieces compressed (the others sent were found compressed in the cache).
    pub pieces_compressed: AtomicU64,
    /// Bytes of the pieces compressed.
    pub bytes_in: AtomicU64,
    /// What they compressed to.
    pub bytes_out: AtomicU64,
}

impl CompressionCounters {
    const fn new() -> Self {
        Self {
            pieces_sent: AtomicU64::new(0),
            pieces_compressed: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// Counts a piece compressed from `bytes_in` bytes to `bytes_out`.
    fn compressed(&self, bytes_in: usize, bytes_out: usize) {
        self.pieces_compressed.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(bytes_out as u64, Ordering::Relaxed);
    }
}

static GZIP_COUNTERS: CompressionCounters = CompressionCounters::new();
static ZSTD_COUNTERS: CompressionCounters = CompressionCounters::new();

/// A compression a Subscribe response can be sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEncoding {
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl ResponseEncoding {
    /// The name in `grpc-encoding`.
    pub fn name(self) -> &'static str {
        match self {
            ResponseEncoding::Gzip => "gzip",
            ResponseEncoding::Zstd => "zstd",
        }
    }

    /// Both encodings.
    pub const ALL: [ResponseEncoding; 2] = [ResponseEncoding::Gzip, ResponseEncoding::Zstd];

    /// What compression did for this encoding.
    pub fn counters(self) -> &'static CompressionCounters {
        match self {
            ResponseEncoding::Gzip => &GZIP_COUNTERS,
            ResponseEncoding::Zstd => &ZSTD_COUNTERS,
        }
    }

    /// The encoding to answer with, from the call's `grpc-accept-encoding`: zstd when the
    /// client takes it (smaller, and cheaper to compress), else gzip, else none: a client
    /// that does not say it decodes an encoding is never sent it.
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let accepted = |name: &str| {
            headers
                .get_all("grpc-accept-encoding")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case(name))
        };
        [ResponseEncoding::Zstd, ResponseEncoding::Gzip]
            .into_iter()
            .find(|encoding| accepted(encoding.name()))
    }
}

/// A DEFLATE piece and the CRC-32 of what it holds.
struct GzipPiece {
    deflate: Bytes,
    crc: Crc,
}

/// Compresses responses, sharing the compression of shared bytes across them.
pub struct ResponseCompression {
    /// gzip level (1 to 9) and zstd level.
    level: u32,
    gzip: PieceCache<GzipPiece>,
    zstd: PieceCache<Bytes>,
}

impl std::fmt::Debug for ResponseCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCompression")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl ResponseCompression {
    /// Compression at `level` (1, fastest, to 9), for both encodings.
    pub fn new(level: u32) -> Self {
        Self {
            level: level.clamp(1, 9),
            gzip: PieceCache::new(CACHE_BUDGET),
            zstd: PieceCache::new(CACHE_BUDGET),
        }
    }

    /// The compressed form of the message made of `segments` (concatenated), of which those
    /// in `shared` are held by many messages; returned as segments to concatenate.
    pub fn compress(
        &self,
        encoding: ResponseEncoding,
        segments: &[Bytes],
        shared: Range<usize>,
    ) -> Vec<Bytes> {
        match encoding {
            ResponseEncoding::Gzip => self.gzip(segments, shared),
            ResponseEncoding::Zstd => self.zstd(segments, shared),
        }
    }

    /// Pieces looked up in the cache and pieces compressed, over both encodings.
    pub fn stats(&self) -> (u64, u64) {
        let (gzip_hits, gzip_misses) = self.gzip.stats();
        let (zstd_hits, zstd_misses) = self.zstd.stats();
        (gzip_hits + zstd_hits, gzip_misses + zstd_misses)
    }

    fn gzip(&self, segments: &[Bytes], shared: Range<usize>) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(segments.len() + 2);
        let mut own = BytesMut::with_capacity(256);
        own.put_slice(&formats::GZIP_HEADER);
        let mut crc = Crc::new();
        for (index, segment) in segments.iter().enumerate() {
            if !shared.contains(&index) {
                formats::put_stored(&mut own, segment);
                crc.update(segment);
                continue;
            }
            for piece in pieces(segment) {
                GZIP_COUNTERS.pieces_sent.fetch_add(1, Ordering::Relaxed);
                let compressed = self.gzip.get_or_compress(&piece, |data| {
                    let (deflate, crc) = formats::deflate_piece(data, self.level);
                    GZIP_COUNTERS.compressed(data.len(), deflate.len());
                    GzipPiece {
                        deflate: Bytes::from(deflate),
                        crc,
                    }
                });
                if !own.is_empty() {
                    out.push(own.split().freeze());
                }
                out.push(compressed.deflate.clone());
                crc.combine(&compressed.crc);
            }
        }
        own.put_slice(&formats::DEFLATE_END);
        formats::put_gzip_trailer(&mut own, &crc);
        out.push(own.freeze());
        out
    }

    fn zstd(&self, segments: &[Bytes], shared: Range<usize>) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(segments.len() + 2);
        let mut own = BytesMut::with_capacity(256);
        for (index, segment) in segments.iter().enumerate() {
            if !shared.contains(&index) {
                formats::put_zstd_raw(&mut own, segment);
                continue;
            }
            for piece in pieces(segment) {
                ZSTD_COUNTERS.pieces_sent.fetch_add(1, Ordering::Relaxed);
                let compressed = self.zstd.get_or_compress(&piece, |data| {
                    let level = i32::try_from(self.level).unwrap_or(3);
                    let frame = match formats::zstd_frame(data, level) {
                        Ok(frame) => Bytes::from(frame),
                        // zstd fails only for want of memory; the bytes still go, raw.
                        Err(_) => {
                            let mut raw = BytesMut::with_capacity(data.len() + 16);
                            formats::put_zstd_raw(&mut raw, data);
                            raw.freeze()
                        }
                    };
                    ZSTD_COUNTERS.compressed(data.len(), frame.len());
                    frame
                });
                if !own.is_empty() {
                    out.push(own.split().freeze());
                }
                out.push((*compressed).clone());
            }
        }
        if !own.is_empty() {
            out.push(own.freeze());
        }
        out
    }
}

/// `segment` cut at the addresses that are multiples of [`PIECE_ALIGN`].
fn pieces(segment: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let base = segment.as_ptr() as usize;
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= segment.len() {
            return None;
        }
        let boundary = ((base + at) / PIECE_ALIGN + 1) * PIECE_ALIGN - base;
        let end = boundary.min(segment.len());
        let piece = segment.slice(at..end);
        at = end;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn concat(segments: &[Bytes]) -> Vec<u8> {
        segments.iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn json_block(len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        let mut n = 0;
        while out.len() < len {
            out.extend_from_slice(format!("{{\"order\":{n},\"status\":\"shipped\"}}").as_bytes());
            n += 1;
        }
        out.truncate(len);
        Bytes::from(out)
    }

    fn decode(encoding: ResponseEncoding, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            ResponseEncoding::Gzip => flate2::read::GzDecoder::new(message)
                .read_to_end(&mut out)
                .unwrap(),
            ResponseEncoding::Zstd => zstd::stream::read::Decoder::new(message)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap(),
        };
        out
    }

    #[test]
    fn responses_sharing_a_block_share_its_compression_and_decode_whole() {
        let compression = ResponseCompression::new(3);
        let block = json_block(200 << 10);
        for encoding in [ResponseEncoding::Gzip, ResponseEncoding::Zstd] {
            let before = compression.stats();
            // Two subscribers sent the same records, with headers and cursors of their own;
            // a third starts further in.
            let first = [
                Bytes::from_static(b"head-1"),
                block.slice(1000..150_000),
                Bytes::from_static(b"cursor-1"),
            ];
            let second = [
                Bytes::from_static(b"head-2"),
                block.slice(1000..150_000),
                Bytes::from_static(b"cursor-22"),
            ];
            let third = [Bytes::from_static(b"h"), block.slice(20_000..150_000)];
            for (message, shared) in [(&first[..], 1..2), (&second[..], 1..2), (&third[..], 1..2)] {
                let compressed = compression.compress(encoding, message, shared);
                let compressed = concat(&compressed);
                assert!(
                    compressed.len() < 150_000 / 4,
                    "{encoding:?}: {}",
                    compressed.len()
                );
                assert_eq!(
                    decode(encoding, &compressed),
                    concat(message),
                    "{encoding:?}"
                );
            }
            let counters = encoding.counters();
            assert!(
                counters.pieces_sent.load(Ordering::Relaxed)
                    > counters.pieces_compressed.load(Ordering::Relaxed)
            );
            assert!(
                counters.bytes_out.load(Ordering::Relaxed) * 4
                    < counters.bytes_in.load(Ordering::Relaxed)
            );
            let (hits, misses) = compression.stats();
            let (hits, misses) = (hits - before.0, misses - before.1);
            // The second message compressed nothing; the third only its first piece.
            assert!(hits > misses, "{encoding:?}: {hits} hits, {misses} misses");
        }
    }

    #[test]
    fn messages_without_shared_bytes_still_decode() {
        let compression = ResponseCompression::new(1);
        let message = [Bytes::from(vec![9u8; 100_000]), Bytes::from_static(b"x")];
        for encoding in [ResponseEncoding::Gzip, ResponseEncoding::Zstd] {
            let compressed = concat(&compression.compress(encoding, &message, 0..0));
            assert_eq!(decode(encoding, &compressed), concat(&message));
        }
    }

    #[test]
    fn zstd_is_chosen_over_gzip_and_nothing_unless_accepted() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-accept-encoding", value.parse().unwrap());
            headers
        };
        let negotiate = |value| ResponseEncoding::negotiate(&headers(value));
        assert_eq!(
            negotiate("identity, deflate, gzip"),
            Some(ResponseEncoding::Gzip)
        );
        assert_eq!(negotiate("gzip,zstd"), Some(ResponseEncoding::Zstd));
        assert_eq!(negotiate("identity"), None);
        assert_eq!(ResponseEncoding::negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn pieces_are_cut_at_aligned_addresses() {
        let block = json_block(100 << 10);
        let base = block.as_ptr() as usize;
        let slice = block.slice(5..90_000);
        let cuts: Vec<Bytes> = pieces(&slice).collect();
        assert_eq!(concat(&cuts), slice.to_vec());
        for piece in &cuts[1..] {
            assert_eq!(piece.as_ptr() as usize % PIECE_ALIGN, 0, "{base}");
        }
    }
}
