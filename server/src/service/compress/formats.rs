//! The byte formats compressed responses are built from: DEFLATE pieces and stored blocks
//! inside one gzip member, and whole zstd frames.
//!
//! A gzip message is one member (RFC 1952): header, one DEFLATE stream, CRC-32 and length.
//! That stream is made of pieces compressed apart: each piece ends with a sync flush, so it
//! stops at a byte boundary without a final block, and the next piece's blocks follow it
//! (RFC 1951 3.2.3); a piece starts with an empty window, so it never refers back into
//! another piece. The CRC-32 of the whole is combined from the pieces' CRCs. One member,
//! not concatenated members: gRPC C-core (Python's grpcio) and flate2's `GzDecoder` (tonic)
//! read only the first member of a gzip message.
//!
//! A zstd message is frames back to back, which every zstd decoder reads as one content
//! (RFC 8878 3.1); the parts not worth compressing go as frames of one raw block.

use std::cell::RefCell;

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

thread_local! {
    // One compressor of each kind per thread, reset between pieces: a new one allocates and
    // clears hundreds of KiB of state, more work than compressing a small piece.
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Header of a gzip member: magic, DEFLATE, no flags, no time, no extra flags, unknown OS.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final DEFLATE block (fixed Huffman codes, end-of-block code at once): ends the
/// stream after pieces that each ended without one.
pub const DEFLATE_END: [u8; 2] = [0x03, 0x00];
/// Most bytes one stored DEFLATE block holds (its length field is 16 bits).
const STORED_MAX: usize = u16::MAX as usize;
/// Most bytes put in one raw zstd frame here: a single-segment frame's content size field
/// of two bytes counts from 256 (RFC 8878 3.1.1.1.4).
const ZSTD_RAW_MAX: usize = 0xffff + 256;

/// `data` as DEFLATE blocks that end at a byte boundary without a final block, and its
/// CRC-32.
pub fn deflate_piece(data: &[u8], level: u32) -> (Vec<u8>, Crc) {
    let mut crc = Crc::new();
    crc.update(data);
    let out = DEFLATE.with_borrow_mut(|slot| match slot {
        Some((at, compress)) if *at == level => {
            compress.reset();
            deflate_with(compress, data)
        }
        _ => {
            let mut compress = Compress::new(Compression::new(level), false);
            let out = deflate_with(&mut compress, data);
            *slot = Some((level, compress));
            out
        }
    });
    (out, crc)
}

/// `data` through `compress` (fresh or reset), ended with a sync flush.
fn deflate_with(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() / 2 + 64);
        }
        let consumed = usize::try_from(compress.total_in()).unwrap_or(data.len());
        let status = compress.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync);
        let consumed = usize::try_from(compress.total_in()).unwrap_or(data.len());
        // The flush is complete once all input is in and the output did not fill up.
        let done = consumed == data.len() && out.len() < out.capacity();
        if done || !matches!(status, Ok(Status::Ok | Status::BufError)) {
            break;
        }
    }
    out
}

/// Appends `data` as stored (uncompressed) DEFLATE blocks, none of them final.
pub fn put_stored(out: &mut BytesMut, data: &[u8]) {
    for chunk in data.chunks(STORED_MAX) {
        let len = chunk.len() as u16;
        out.put_u8(0); // BFINAL 0, BTYPE 00; the rest of the byte is padding.
        out.put_u16_le(len);
        out.put_u16_le(!len);
        out.put_slice(chunk);
    }
}

/// Appends the gzip trailer: CRC-32 and length (mod 2^32), little-endian.
pub fn put_gzip_trailer(out: &mut BytesMut, crc: &Crc) {
    out.put_u32_le(crc.sum());
    out.put_u32_le(crc.amount());
}

/// Appends `data` as zstd frames of one raw block each: no compression, 7 to 8 bytes of
/// framing per frame, and nothing to set up.
pub fn put_zstd_raw(out: &mut BytesMut, data: &[u8]) {
    for chunk in data.chunks(ZSTD_RAW_MAX) {
        out.put_u32_le(0xFD2F_B528);
        if chunk.len() < 256 {
            // Single segment, content size in one byte.
            out.put_u8(0x20);
            out.put_u8(chunk.len() as u8);
        } else {
            // Single segment, content size in two bytes, less 256.
            out.put_u8(0x60);
            out.put_u16_le((chunk.len() - 256) as u16);
        }
        // Last block, raw, its size (21 bits).
        let header = 1 | ((chunk.len() as u32) << 3);
        out.put_slice(&header.to_le_bytes()[..3]);
        out.put_slice(chunk);
    }
}

/// `data` as one compressed zstd frame.
pub fn zstd_frame(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    ZSTD.with_borrow_mut(|slot| {
        if !matches!(slot, Some((at, _)) if *at == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot {
            Some((_, compressor)) => compressor.compress(data),
            None => zstd::bulk::compress(data, level),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn text(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b"{\"order\":12,\"item\":\"widget\"}"[i % 28].wrapping_add(seed % 2))
            .collect()
    }

    #[test]
    fn deflate_pieces_and_stored_blocks_make_one_gzip_member() {
        let parts = [
            text(40, 0),
            text(70_000, 1),
            vec![],
            text(33_000, 2),
            text(9, 3),
        ];
        let mut out = BytesMut::from(&GZIP_HEADER[..]);
        let mut crc = Crc::new();
        for (i, part) in parts.iter().enumerate() {
            if i % 2 == 1 {
                let (piece, piece_crc) = deflate_piece(part, 3);
                assert!(piece.len() < part.len() / 4 + 16, "{}", piece.len());
                out.put_slice(&piece);
                crc.combine(&piece_crc);
            } else {
                put_stored(&mut out, part);
                crc.update(part);
            }
        }
        out.put_slice(&DEFLATE_END);
        put_gzip_trailer(&mut out, &crc);
        // The single-member decoder tonic uses checks the CRC and the length.
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, parts.concat());
    }

    #[test]
    fn compressed_and_raw_zstd_frames_decode_as_one_content() {
        let parts = [text(10, 0), text(300, 1), text(70_000, 2), text(200_000, 3)];
        let mut out = BytesMut::new();
        put_zstd_raw(&mut out, &parts[0]);
        put_zstd_raw(&mut out, &parts[1]);
        out.put_slice(&zstd_frame(&parts[2], 3).unwrap());
        put_zstd_raw(&mut out, &parts[3]);
        let mut decoded = Vec::new();
        zstd::stream::read::Decoder::new(&out[..])
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, parts.concat());
    }
}
