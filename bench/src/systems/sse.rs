//! The relay's Server-Sent Events endpoint as a system of the matrix (`relay-sse`): the
//! same relay and publisher as `relay`, subscribers that read
//! `GET /v1/streams/bench/records` over HTTP/1.1, one connection each, as `curl -N` or a
//! browser does, and decode each record event's JSON (base64 data: the bench's payloads
//! are binary).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use hdrhistogram::Histogram;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    task::JoinHandle,
};

use super::Server;
use crate::{payload::SubStats, serve::STREAM};

/// Longest line accepted from the relay (a record event's JSON of a 1 MiB record is about
/// 1.4 MB); a longer one ends the subscriber.
const MAX_LINE: usize = 4 << 20;

/// Subscribes at `latest` (lag policy SKIP, as the gRPC subscribers); returns once the
/// relay answered with its headers.
pub async fn subscribe(
    server: &Server,
    stats: Arc<SubStats>,
    latency: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut stream = TcpStream::connect(&server.addr)
        .await
        .context("connecting to the relay")?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET /v1/streams/{STREAM}/records?start=latest&on_lag=skip HTTP/1.1\r\nHost: relay\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    anyhow::ensure!(
        line.starts_with(b"HTTP/1.1 200"),
        "the relay refused the event stream: {}",
        String::from_utf8_lossy(&line)
    );
    // The rest of the headers, up to the blank line.
    let mut chunked = false;
    loop {
        line.clear();
        anyhow::ensure!(
            reader.read_until(b'\n', &mut line).await? > 0,
            "the relay closed during the headers"
        );
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let header = String::from_utf8_lossy(&line).to_ascii_lowercase();
        chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
    }
    Ok(tokio::spawn(async move {
        let _ = read_events(reader, chunked, &stats, &latency).await;
    }))
}

/// Reads events until the connection ends, taking the body out of HTTP/1.1's chunked
/// encoding first (a chunk may end in the middle of an event).
async fn read_events(
    mut reader: BufReader<TcpStream>,
    chunked: bool,
    stats: &SubStats,
    latency: &Mutex<Histogram<u64>>,
) -> anyhow::Result<()> {
    let mut events = Events::default();
    let mut line = Vec::new();
    let mut chunk = Vec::new();
    loop {
        if chunked {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|text| text.trim().split(';').next())
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .context("a chunk size")?;
            if size == 0 {
                return Ok(());
            }
            anyhow::ensure!(size <= MAX_LINE, "a chunk of {size} bytes");
            chunk.resize(size + 2, 0);
            reader.read_exact(&mut chunk).await?;
            events.feed(&chunk[..size], stats, latency)?;
        } else {
            chunk.resize(64 << 10, 0);
            let read = reader.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            events.feed(&chunk[..read], stats, latency)?;
        }
    }
}

/// The event being read: what is left of the last line, the data of the event so far, and
/// whether it is a record.
#[derive(Default)]
struct Events {
    partial: Vec<u8>,
    data: Option<Vec<u8>>,
    other: bool,
}

impl Events {
    /// Takes the next bytes of the stream, counting every complete record event.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        stats: &SubStats,
        latency: &Mutex<Histogram<u64>>,
    ) -> anyhow::Result<()> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let line = if self.partial.is_empty() {
                &bytes[..end]
            } else {
                self.partial.extend_from_slice(&bytes[..end]);
                &self.partial[..]
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                // The end of an event.
                if let Some(json) = self.data.take()
                    && !self.other
                {
                    observe(&json, stats, latency);
                }
                self.other = false;
            } else if let Some(value) = line.strip_prefix(b"data: ") {
                self.data = Some(value.to_vec());
            } else if let Some(kind) = line.strip_prefix(b"event: ") {
                self.other = kind != b"message";
            }
            // `id:` lines and `:` comments (heartbeats) are skipped.
            self.partial.clear();
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
        anyhow::ensure!(
            self.partial.len() <= MAX_LINE,
            "a line over {MAX_LINE} bytes"
        );
        Ok(())
    }
}

/// Counts one record event's data.
fn observe(json: &[u8], stats: &SubStats, latency: &Mutex<Histogram<u64>>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let Some(data) = value["data"].as_str() else {
        return;
    };
    let bytes = if value["dataEncoding"] == "base64" {
        match STANDARD.decode(data) {
            Ok(bytes) => bytes,
            Err(_) => return,
        }
    } else {
        data.as_bytes().to_vec()
    };
    stats.observe(&bytes, latency);
}
