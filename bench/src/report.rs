//! The Markdown table and the CSV.

use std::fmt::Write;

use crate::{cell::CellResult, systems::Placement};

/// What the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub mem_gib: f64,
    pub kernel: String,
    pub redis: String,
    pub nats: String,
    pub placement: String,
    /// Loopback TCP ceiling, bytes/s.
    pub loopback: f64,
}

impl Machine {
    pub fn describe(placement: &Placement, loopback: f64) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let version = |program: &str, arg: &str| {
            std::process::Command::new(program)
                .arg(arg)
                .output()
                .ok()
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .unwrap_or_else(|| "not installed".into())
        };
        let placement = match (&placement.server_cpus, &placement.client_cpus) {
            (Some(server), Some(client)) if placement.upstream_cpus.as_ref() == Some(server) => {
                format!(
                    "server (and the relay's emulator upstream) pinned to CPU {server}; publisher and subscribers pinned to CPU {client} (taskset)"
                )
            }
            (Some(server), Some(client)) => format!(
                "server pinned to CPU {server}; publisher, subscribers (and the relay's emulator upstream) pinned to CPU {client} (taskset)"
            ),
            _ => "not pinned".into(),
        };
        Self {
            cpu,
            cpus: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(
                    cpuinfo
                        .lines()
                        .filter(|l| l.starts_with("processor"))
                        .count(),
                ),
            mem_gib: mem_kib / (1 << 20) as f64,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            redis: version("redis-server", "--version"),
            nats: version("nats-server", "--version"),
            placement,
            loopback,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} x {}, {:.1} GiB, Linux {}; {}; {}; {}; loopback TCP ceiling {:.0} MB/s",
            self.cpus,
            self.cpu,
            self.mem_gib,
            self.kernel,
            self.redis,
            self.nats,
            self.placement,
            self.loopback / 1e6
        )
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// A bucket bound of the relay's delay histogram: "≤ 5.00"; "-" where not measured.
fn bound_ms(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(u64::MAX) => "> 10000".into(),
        Some(us) => format!("≤ {}", ms(us)),
    }
}

/// Deliveries per CPU-second, or "-" where the round's span had none (records lost).
fn per_cpu_second(figure: f64) -> String {
    if figure > 0.0 {
        format!("{figure:.0}")
    } else {
        "-".into()
    }
}

/// Records per response with one decimal; `none` where no response was counted (a system
/// that does not batch records into responses).
fn per_response(records: f64, none: &str) -> String {
    if records > 0.0 {
        format!("{records:.1}")
    } else {
        none.into()
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} B"),
    }
}

/// One progress line.
pub fn line(r: &CellResult) -> String {
    if !r.error.is_empty() {
        return format!(
            "{:5} {:>6} x {:>4}: FAILED: {}",
            r.system,
            size(r.payload),
            r.subscribers,
            r.error
        );
    }
    format!(
        "{:5} {:>6} x {:>4}: {:>10.0} rec/s {:>8.1} MB/s cpu {:>3.0}% wire {:.0} B/rec {:.0} B/write | p50 {} p99 {} p99.9 {} ms at {:.0}/s | KiB/sub idle {:.1} loaded {:.1} | gaps {} repeats {} | steal {:.0}%{}",
        r.system,
        size(r.payload),
        r.subscribers,
        r.sat_records_per_s,
        r.sat_bytes_per_s / 1e6,
        r.sat_cpu_pct,
        r.wire_bytes_per_record,
        r.bytes_per_write,
        ms(r.p50_us),
        ms(r.p99_us),
        ms(r.p999_us),
        r.lat_publish_rate,
        r.idle_per_sub_kib(),
        r.loaded_per_sub_kib(),
        r.gaps,
        r.repeats,
        r.sat_steal_pct,
        match per_response(r.records_per_response, "").as_str() {
            "" => String::new(),
            records => format!(" | {records} rec/response"),
        }
    )
}

/// The delivered records/s of `system` in the cell of `r`.
fn peer<'a>(results: &'a [CellResult], r: &CellResult, system: &str) -> Option<&'a CellResult> {
    results.iter().find(|o| {
        o.system == system
            && o.payload == r.payload
            && o.subscribers == r.subscribers
            && o.error.is_empty()
    })
}

pub fn markdown(
    results: &[CellResult],
    machine: &Machine,
    rounds: usize,
    max_steal_pct: f64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}.\n", machine.summary());
    if rounds > 1 {
        let _ = writeln!(
            out,
            "Each cell ran {rounds} rounds, its systems in turns; each row is that system's median round by delivered records/s, with the gaps and repeats of all rounds; its rec per CPU-s is the median of the rounds' own (rounds.csv has every round).\n"
        );
    }
    if max_steal_pct < 100.0 {
        let _ = writeln!(
            out,
            "A round whose saturation span lost more than {max_steal_pct:.0}% of the machine's CPU time to the hypervisor (steal %) was run again, at most {} times, and its least stolen attempt kept.\n",
            crate::rounds::MAX_RERUNS
        );
    }
    let _ = writeln!(
        out,
        "**Throughput, CPU and memory** (saturation, closed loop):\n"
    );
    let _ = writeln!(
        out,
        "| system | payload | subs | delivered rec/s | delivered MB/s | % loopback | server CPU % | rec per CPU-s | wire B/rec | B/write | rec/resp | RSS base MiB | held MiB | KiB/sub idle | KiB/sub loaded | gaps | repeats | steal % |"
    );
    let _ = writeln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in results {
        if !r.error.is_empty() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | failed: {} ||||||||||||||",
                r.system,
                size(r.payload),
                r.subscribers,
                r.error.replace('|', "/")
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.0} |",
            r.system,
            size(r.payload),
            r.subscribers,
            r.sat_records_per_s,
            r.sat_bytes_per_s / 1e6,
            r.sat_bytes_per_s / machine.loopback * 100.0,
            r.sat_cpu_pct,
            per_cpu_second(r.deliveries_per_cpu_s),
            r.wire_bytes_per_record,
            r.bytes_per_write,
            per_response(r.records_per_response, "-"),
            r.rss_base_kib as f64 / 1024.0,
            r.held_kib as f64 / 1024.0,
            r.idle_per_sub_kib(),
            r.loaded_per_sub_kib(),
            r.gaps,
            r.repeats,
            r.sat_steal_pct
        );
    }
    let _ = writeln!(out, "\n**Latency** (open loop; ms):\n");
    let _ = writeln!(
        out,
        "| system | payload | subs | half: pub rec/s | kept up % | p50 | p99 | p99.9 | relay-added p50 | relay-added p99 | server CPU % | common: pub rec/s | kept up % | p50 | p99 | p99.9 | relay-added p50 | relay-added p99 |"
    );
    let _ = writeln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in results.iter().filter(|r| r.error.is_empty()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            r.system,
            size(r.payload),
            r.subscribers,
            r.lat_publish_rate,
            r.kept_up_pct(),
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            bound_ms(r.added.map(|a| a.0)),
            bound_ms(r.added.map(|a| a.1)),
            r.lat_cpu_pct,
            r.common_publish_rate,
            r.common_kept_up_pct(),
            ms(r.common_p50_us),
            ms(r.common_p99_us),
            ms(r.common_p999_us),
            bound_ms(r.common_added.map(|a| a.0)),
            bound_ms(r.common_added.map(|a| a.1)),
        );
    }
    let _ = writeln!(
        out,
        "\nRelay delivered records/s at saturation as a ratio of each peer's (> 1: the relay delivers more):\n"
    );
    let _ = writeln!(
        out,
        "| relay variant | payload | subs | relay / redis | relay / nats |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|");
    for r in results
        .iter()
        .filter(|r| r.system.starts_with("relay") && r.error.is_empty())
    {
        let ratio = |system| {
            peer(results, r, system)
                .filter(|p| p.sat_records_per_s > 0.0)
                .map_or("-".to_owned(), |p| {
                    format!("{:.2}", r.sat_records_per_s / p.sat_records_per_s)
                })
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.system,
            size(r.payload),
            r.subscribers,
            ratio("redis"),
            ratio("nats")
        );
    }
    let _ = writeln!(
        out,
        "\nColumns. *delivered* = records received per second summed over all subscribers at saturation \
         (closed loop: the publisher stays at most ~1 MiB of records ahead of the slowest subscriber); \
         *% loopback* = delivered payload bytes/s over the loopback TCP ceiling ({:.0} MB/s, one plain socket); \
         *server CPU %* = the server process (user+system, /proc/<pid>/stat), percent of one core; \
         *rec per CPU-s* = deliveries per second of server CPU (the server's efficiency, meaningful even where \
         the single load-generator core is the bottleneck), from the phase's start to the end of its drain, where no record is \
         in flight (over the rate's span a window of records written before it would count); *wire B/rec* = bytes the server process wrote \
         (its sockets, mostly: `wchar` of /proc/<pid>/io) per record delivered, over the saturation phase and its drain, which \
         `--subscriber-compression` lowers for the relay; *B/write* = those bytes per write system call \
         (`syscw`; tokio's eventfd wake-ups count too): fewer, larger writes read higher; *rec/resp* = records per \
         response to the relay's gRPC subscribers over the same span (where they keep up, a response carries \
         what arrived since the last one, and the relay's work per response is spread over that many records); *RSS base* = server RSS before any subscriber; \
         *held* = records held for replay (the relay's ring, from DescribeStream); *KiB/sub* = (RSS - base) / \
         subscribers, idle after connecting and loaded at the peak less *held*. \
         *Latency* = publish-to-receive time over all deliveries, records stamped with their intended send \
         time (no coordinated omission), published in 1 ms ticks; *half* = at half of the system's own \
         saturation rate; *common* = at the same offered load for every system ({} deliveries/s summed over \
         subscribers for payloads up to 1 KiB, 40 MB/s for larger ones); *kept up %* = deliveries/s in the \
         phase over the offered rate times subscribers (below ~95% a backlog grew, and the latency is \
         queueing). For the relay, latency includes PutRecords into the emulator and its SubscribeToShard \
         push, and the subscribers' decoding on the shared load-generator core. *relay-added* = the \
         relay's own share, from its `kinesis_relay_delivery_delay_seconds` histogram: a record entering \
         the relay (read from the emulator) to the response carrying it handed to the subscriber's HTTP/2 \
         stream, per record, shown as the upper bound of the bucket holding the quantile. *gaps/repeats* = sequence numbers missed/repeated, summed over subscribers; \
         *steal %* = share of the machine's CPU time (all its CPUs) the hypervisor gave other guests over the saturation span.",
        machine.loopback / 1e6,
        crate::cell::common_deliveries_per_s(100)
    );
    out
}

/// The CSV's columns, in the order [`csv_row`] writes them.
const CSV_HEADER: &str = "system,payload_bytes,subscribers,sat_records_per_s,sat_bytes_per_s,loopback_fraction,sat_cpu_pct,deliveries_per_cpu_s,lat_publish_rate,lat_records_per_s,lat_cpu_pct,p50_us,p99_us,p999_us,max_us,common_publish_rate,common_records_per_s,common_p50_us,common_p99_us,common_p999_us,added_p50_us,added_p99_us,added_p999_us,common_added_p50_us,common_added_p99_us,common_added_p999_us,rss_base_kib,rss_idle_kib,rss_loaded_kib,held_kib,idle_kib_per_sub,loaded_kib_per_sub,sent,delivered,gaps,repeats,wire_bytes_per_record,bytes_per_write,steal_pct,records_per_response,error";

/// One row per cell (each system's median round, `rounds::median`).
pub fn csv(results: &[CellResult], machine: &Machine) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in results {
        let _ = writeln!(out, "{}", csv_row(r, machine));
    }
    out
}

/// Every round of every cell, numbered from 1: the spread behind each median.
pub fn rounds_csv(rounds: &[(usize, CellResult)], machine: &Machine) -> String {
    let mut out = format!("round,{CSV_HEADER}\n");
    for (round, r) in rounds {
        let _ = writeln!(out, "{round},{}", csv_row(r, machine));
    }
    out
}

fn csv_row(r: &CellResult, machine: &Machine) -> String {
    format!(
        "{},{},{},{:.0},{:.0},{:.4},{:.1},{:.0},{:.1},{:.0},{:.1},{},{},{},{},{:.1},{:.0},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{:.2},{},{},{},{},{:.1},{:.0},{:.1},{},\"{}\"",
        r.system,
        r.payload,
        r.subscribers,
        r.sat_records_per_s,
        r.sat_bytes_per_s,
        r.sat_bytes_per_s / machine.loopback,
        r.sat_cpu_pct,
        r.deliveries_per_cpu_s,
        r.lat_publish_rate,
        r.lat_records_per_s,
        r.lat_cpu_pct,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        r.max_us,
        r.common_publish_rate,
        r.common_records_per_s,
        r.common_p50_us,
        r.common_p99_us,
        r.common_p999_us,
        csv_us(r.added.map(|a| a.0)),
        csv_us(r.added.map(|a| a.1)),
        csv_us(r.added.map(|a| a.2)),
        csv_us(r.common_added.map(|a| a.0)),
        csv_us(r.common_added.map(|a| a.1)),
        csv_us(r.common_added.map(|a| a.2)),
        r.rss_base_kib,
        r.rss_idle_kib,
        r.rss_loaded_kib,
        r.held_kib,
        r.idle_per_sub_kib(),
        r.loaded_per_sub_kib(),
        r.sent,
        r.delivered,
        r.gaps,
        r.repeats,
        r.wire_bytes_per_record,
        r.bytes_per_write,
        r.sat_steal_pct,
        per_response(r.records_per_response, ""),
        r.error.replace('"', "'")
    )
}

/// A bucket bound for the CSV: empty where not measured, `inf` above the last bound.
fn csv_us(us: Option<u64>) -> String {
    match us {
        None => String::new(),
        Some(u64::MAX) => "inf".into(),
        Some(us) => us.to_string(),
    }
}
