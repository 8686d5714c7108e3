//! The soak run: connection churn at the relay's limits, to show that nothing is left
//! behind. Loopback only, bounded in cycles and time.
//!
//! The relay runs in its own process with a small ring and low connection limits
//! (`MAX_CONNECTIONS`, a 1 s setup deadline) while a publisher writes 2,000 records/s.
//! `WORKERS` clients then run connect-subscribe-drop cycles, one in twenty a subscriber that
//! never reads (its window fills; dropped after 2 s) and two in twenty silent or half-preface
//! connections that the setup deadline must close, so the relay sits at its connection limit
//! and refuses some. RSS and open descriptors are taken after a warm-up (the first
//! `WARM_UP_CYCLES` cycles, which size the allocator's pools and the runtime's structures)
//! and again once every connection has closed after the run. A descriptor count that does
//! not come back is a leak and fails the run; RSS is reported.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use kinesis_relay_api::v1::{
    Earliest, LagPolicy, Latest, SubscribeRequest, relay_client::RelayClient,
    subscribe_request::StartingPosition, subscribe_response::Event,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{
    procstat,
    serve::STREAM,
    systems::{
        Placement, Server, System,
        relay::{self, metrics_text},
    },
};

/// The relay's `--max-connections` in the soak.
const MAX_CONNECTIONS: usize = 300;
/// Clients churning at once: with the held connections, enough to reach the limit.
const WORKERS: usize = 256;
/// Cycles run before the baseline is taken (fewer when the run itself is shorter). Over
/// the first few thousand cycles the relay's RSS grows while the allocator's per-thread
/// pools reach the size the peak concurrency needs; then it stays flat.
const WARM_UP_CYCLES: usize = 5_000;
/// Ring bytes: small, so the ring is full (and stays the same size) before the baseline.
const RING_BYTES: u64 = 4 << 20;
/// Longest any one client step may take.
const STEP: Duration = Duration::from_secs(5);

/// RSS and open descriptors of the relay process.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    fds: usize,
}

impl Footprint {
    fn of(pid: u32) -> Self {
        Self {
            rss_kib: procstat::rss_kib(pid),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count()),
        }
    }
}

/// What the cycles did.
#[derive(Debug, Default)]
struct Tally {
    /// Cycles whose client got what it asked for (records, or its stalled subscription).
    served: AtomicUsize,
    /// Cycles refused or failed (over the connection limit, mostly).
    refused: AtomicUsize,
}

/// Runs the soak with `cycles` cycles after the warm-up and prints what it measured.
pub async fn run(cycles: usize) -> anyhow::Result<()> {
    let placement = Placement {
        server_cpus: None,
        client_cpus: None,
        upstream_cpus: None,
    };
    let extra = [
        "--max-connections".to_owned(),
        MAX_CONNECTIONS.to_string(),
        "--setup-timeout-ms".to_owned(),
        "1000".to_owned(),
    ];
    let server = relay::start(System::Relay, &placement, RING_BYTES, &extra).await?;
    let cold = Footprint::of(server.pid);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(server.upstream.clone(), stop.clone()));
    wait_ring_full(&server).await;

    let tally = Arc::new(Tally::default());
    churn(&server, WARM_UP_CYCLES.min(cycles), &tally).await;
    wait_drained(&server).await?;
    let base = Footprint::of(server.pid);

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    churn(&server, cycles, &tally).await;
    let took = started.elapsed();
    wait_drained(&server).await?;
    // Descriptors close as the relay's connection tasks end: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = Footprint::of(server.pid);
    while after.fds > base.fds && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = Footprint::of(server.pid);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.await;
    let refused_by_relay = metric(&metrics_text(&server).await?, "max_connections\"");

    let percent = |after: f64, base: f64| (after - base) / base * 100.0;
    let rss_change = percent(after.rss_kib as f64, base.rss_kib as f64);
    let fd_change = percent(after.fds as f64, base.fds as f64);
    println!("## Soak: connection churn at the relay's limits\n");
    println!(
        "{cycles} connect-subscribe-drop cycles in {:.1} s ({:.0}/s) by {WORKERS} clients against --max-connections {MAX_CONNECTIONS} and a 1 s setup deadline; one in twenty stalls (never reads), two in twenty send nothing or half the preface.\n",
        took.as_secs_f64(),
        cycles as f64 / took.as_secs_f64()
    );
    println!(
        "served {} cycles, {} refused or failed (the relay refused {refused_by_relay:.0} connections over its limit in all)\n",
        tally.served.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    println!("| | before any client | after warm-up | after the run | change |");
    println!("|---|--:|--:|--:|--:|");
    println!(
        "| RSS (KiB) | {} | {} | {} | {rss_change:+.1}% |",
        cold.rss_kib, base.rss_kib, after.rss_kib
    );
    println!(
        "| open files | {} | {} | {} | {fd_change:+.1}% |",
        cold.fds, base.fds, after.fds
    );
    let verdict = |change: f64| {
        if change <= 5.0 {
            "within 5%"
        } else {
            "OVER 5%"
        }
    };
    println!(
        "\nRSS {}, open files {} of the warm-up baseline.",
        verdict(rss_change),
        verdict(fd_change)
    );
    anyhow::ensure!(
        after.fds <= base.fds + (base.fds / 20).max(2),
        "open files did not come back: {} after, {} before (a leak)",
        after.fds,
        base.fds
    );
    Ok(())
}

/// Writes 2,000 records/s of 100 bytes until `stop`.
async fn publish(endpoint: Option<String>, stop: Arc<AtomicBool>) {
    let Some(endpoint) = endpoint else { return };
    let client = kinesis_relay::embedded::client_for(&endpoint);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let batch = vec![Bytes::from(vec![b'x'; 100]); 100];
        if let Err(err) = relay::send(&client, batch).await {
            eprintln!("soak publisher: {err:#}");
        }
    }
}

/// Waits (up to 30 s) until the relay's ring holds nearly [`RING_BYTES`].
async fn wait_ring_full(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let held = crate::systems::held_bytes(server).await;
        if held >= RING_BYTES * 9 / 10 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("soak: the ring did not fill within 30 s; going on");
}

/// Waits (up to 30 s) until the relay holds no client connection.
async fn wait_drained(server: &Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = metric(
            &metrics_text(server).await?,
            "kinesis_relay_connections_open ",
        );
        if open == 0.0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{open} connections still open 30 s after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value on the first line of `text` that contains `needle`.
fn metric(text: &str, needle: &str) -> f64 {
    text.lines()
        .find(|line| line.contains(needle) && !line.starts_with('#'))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `cycles` cycles over [`WORKERS`] clients.
async fn churn(server: &Server, cycles: usize, tally: &Arc<Tally>) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, tally, addr) = (next.clone(), tally.clone(), server.addr.clone());
            tokio::spawn(async move {
                loop {
                    let cycle = next.fetch_add(1, Ordering::Relaxed);
                    if cycle >= cycles {
                        return;
                    }
                    let served = tokio::time::timeout(STEP, one_cycle(&addr, cycle))
                        .await
                        .is_ok_and(|result| result.is_ok());
                    let counter = if served {
                        &tally.served
                    } else {
                        &tally.refused
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

/// One client's visit; which kind depends on `cycle`.
async fn one_cycle(addr: &str, cycle: usize) -> anyhow::Result<()> {
    match cycle % 20 {
        0 => stalled_subscriber(addr).await,
        1 | 2 => {
            // Silent, or half the preface: held past the relay's setup deadline.
            let mut stream = TcpStream::connect(addr).await?;
            if cycle % 20 == 2 {
                stream.write_all(b"PRI * HTTP/2.0\r\n").await?;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(())
        }
        _ => subscriber(addr).await,
    }
}

/// Subscribes from the newest record, reads one batch (or a heartbeat), drops.
async fn subscriber(addr: &str) -> anyhow::Result<()> {
    let mut client = RelayClient::connect(format!("http://{addr}")).await?;
    let mut stream = client
        .subscribe(SubscribeRequest {
            stream: STREAM.to_owned(),
            starting_position: Some(StartingPosition::Latest(Latest {})),
            on_lag: LagPolicy::Skip as i32,
            ..SubscribeRequest::default()
        })
        .await?
        .into_inner();
    let first = stream
        .message()
        .await?
        .context("the stream ended at once")?;
    anyhow::ensure!(
        matches!(first.event, Some(Event::Records(_) | Event::Heartbeat(_))),
        "unexpected first event"
    );
    Ok(())
}

/// Subscribes from the oldest record with a 1 KiB window, never reads, drops after 2 s.
async fn stalled_subscriber(addr: &str) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await?;
    let _stream = RelayClient::new(channel)
        .subscribe(SubscribeRequest {
            stream: STREAM.to_owned(),
            starting_position: Some(StartingPosition::Earliest(Earliest {})),
            on_lag: LagPolicy::Disconnect as i32,
            ..SubscribeRequest::default()
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
