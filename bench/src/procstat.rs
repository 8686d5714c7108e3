//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and `status`; the
//! machine's CPU time stolen by the hypervisor, from `/proc/stat`.

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

/// The machine's CPU time so far, all CPUs, in clock ticks: from the `cpu` line of
/// `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Every state: user, nice, system, idle, iowait, irq, softirq and steal.
    pub total: u64,
    /// Steal: time a virtual CPU had work and the hypervisor ran another guest instead.
    pub steal: u64,
}

impl MachineTicks {
    /// Now.
    pub fn now() -> Self {
        Self::parse(&fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// The `cpu` line of a `/proc/stat` text (zero when there is none: a kernel without
    /// the file).
    fn parse(stat: &str) -> Self {
        let Some(line) = stat.lines().find_map(|line| line.strip_prefix("cpu ")) else {
            return Self::default();
        };
        // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
        let ticks: Vec<u64> = line
            .split_whitespace()
            .take(8)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        Self {
            total: ticks.iter().sum(),
            steal: ticks.get(7).copied().unwrap_or(0),
        }
    }

    /// Percent of the machine's CPU time stolen since `before` (0 when no time passed).
    pub fn stolen_pct_since(self, before: MachineTicks) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(before.steal) as f64 / total as f64 * 100.0
    }
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

    #[test]
    fn steal_is_the_share_of_all_cpu_time() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let before = MachineTicks::parse("cpu  100 0 50 800 0 0 0 50 30 0\ncpu0 1 2 3\n");
        assert_eq!(
            before,
            MachineTicks {
                total: 1000,
                steal: 50
            }
        );
        let after = MachineTicks::parse("cpu  200 0 100 1500 0 0 0 200 60 0\n");
        // 1,000 ticks passed (guest time not counted twice), 150 of them stolen.
        assert_eq!(after.stolen_pct_since(before), 15.0);
        assert_eq!(after.stolen_pct_since(after), 0.0);
        assert_eq!(MachineTicks::parse("intr 1 2\n"), MachineTicks::default());
        let now = MachineTicks::now();
        assert!(now.total > 0 && now.steal <= now.total, "{now:?}");
    }
}
