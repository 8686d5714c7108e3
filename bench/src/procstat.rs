//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and `status`.

use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) used so far by `pid`, all threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let Some(rest) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; the rest starts at field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / ticks_per_second()
}

/// What `pid` has written so far through write(2) and its kin, sockets included: bytes
/// (`wchar` of `/proc/<pid>/io`: for a server, about the bytes it sent on the wire) and
/// system calls (`syscw`; eventfd wake-ups count too).
pub fn written(pid: u32) -> Written {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    Written {
        bytes: field("wchar:"),
        calls: field("syscw:"),
    }
}

/// Bytes and write system calls of a process, from [`written`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub calls: u64,
}

impl Written {
    /// What was written since `before`.
    pub fn since(self, before: Written) -> Written {
        Written {
            bytes: self.bytes.saturating_sub(before.bytes),
            calls: self.calls.saturating_sub(before.calls),
        }
    }
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the RSS of a process every 50 ms and keeps the maximum.
#[derive(Debug)]
pub struct PeakRss {
    /// Largest RSS seen, KiB.
    peak: Arc<AtomicU64>,
    /// Tells the sampling thread to stop.
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak_in, stop_in) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                peak_in.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { peak, stop }
    }

    /// The largest RSS seen so far, KiB.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid) > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(cpu_seconds(pid) > 0.0);
        let before = written(pid);
        std::fs::write(
            std::env::temp_dir().join("procstat-bytes-written"),
            [0u8; 4096],
        )
        .unwrap();
        let since = written(pid).since(before);
        assert!(since.bytes >= 4096, "{since:?}");
        assert!(since.calls >= 1, "{since:?}");
    }
}
