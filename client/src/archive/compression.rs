//! `--compression`: the one place that knows how archive files are compressed, for the
//! local directory and the object stores alike.

use std::io::{self, Write};

use flate2::write::GzEncoder;

use crate::cli::Compression;

impl Compression {
    /// The file name extension of an archive file, after `.ndjson`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "ndjson",
            Self::Gzip => "ndjson.gz",
            Self::Zstd => "ndjson.zst",
        }
    }
}

/// A compressing writer over `W`.
pub enum Encoder<W: Write> {
    /// Written as is.
    Plain(W),
    /// gzip, default level.
    Gzip(GzEncoder<W>),
    /// zstd, default level.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts a stream in `compression` over `inner`.
    pub fn new(compression: Compression, inner: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Self::Plain(inner),
            Compression::Gzip => Self::Gzip(GzEncoder::new(inner, flate2::Compression::default())),
            Compression::Zstd => Self::Zstd(zstd::Encoder::new(inner, 0)?),
        })
    }

    /// The writer underneath, for taking out what was compressed so far.
    pub fn get_mut(&mut self) -> &mut W {
        match self {
            Self::Plain(w) => w,
            Self::Gzip(w) => w.get_mut(),
            Self::Zstd(w) => w.get_mut(),
        }
    }

    /// Ends the stream (trailer written) and returns the writer underneath.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::Plain(w) => Ok(w),
            Self::Gzip(w) => w.finish(),
            Self::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(w) => w.write(buf),
            Self::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(compression: Compression) -> String {
        let mut encoder = Encoder::new(compression, Vec::new()).unwrap();
        encoder.write_all(b"one\n").unwrap();
        // What was compressed so far can be taken out while the stream goes on.
        let mut bytes = std::mem::take(encoder.get_mut());
        encoder.write_all(b"two\n").unwrap();
        bytes.extend(encoder.finish().unwrap());
        let mut text = String::new();
        match compression {
            Compression::None => text = String::from_utf8(bytes).unwrap(),
            Compression::Gzip => {
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .unwrap();
            }
            Compression::Zstd => {
                zstd::Decoder::new(&bytes[..])
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
            }
        }
        text
    }

    #[test]
    fn every_compression_reads_back() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(round_trip(compression), "one\ntwo\n", "{compression:?}");
        }
    }
}
