//! Resource monitoring of the running process: its cores, wall time, CPU time (user + system, every
//! thread), and peak resident memory sampled on a thread of its own. The stage runner reports these per
//! stage; the benchmark aggregates them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often the resident set size is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Cores this process may use (its CPU affinity and cgroup quota), read once: the standard
/// library reads the cgroup files again on every call, which costs a one-row commit a fifth of its
/// time.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// The process's resident set size, from `/proc/self/statm`.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * PAGE_BYTES)
}

/// statm's unit: the page, 4 KiB on x86-64 Linux.
const PAGE_BYTES: u64 = 4096;

/// CPU time the process has used so far (user + system over all threads), in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s, the Linux `USER_HZ`).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the full line: utime and stime; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A `/proc/meminfo` figure (`MemTotal`, `MemAvailable`, ...) in bytes.
pub fn meminfo_bytes(key: &str) -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.split(':').next() == Some(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What a monitored span of work used.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Usage {
    /// Wall time in seconds.
    pub wall_seconds: f64,
    /// CPU time in seconds (user + system, all threads).
    pub cpu_seconds: f64,
    /// Peak resident memory of the process during the span, in bytes.
    pub peak_memory_bytes: u64,
}

/// Monitors a span of work: started with [`Monitor::start`], read with [`Monitor::finish`].
pub struct Monitor {
    started: Instant,
    cpu: f64,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Start measuring now.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes().unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::Builder::new()
            .name("floe-rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(r) = rss_bytes() {
                        p.fetch_max(r, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok();
        Self {
            started: Instant::now(),
            cpu: cpu_seconds().unwrap_or(0.0),
            stop,
            peak,
            thread,
        }
    }

    /// Wall time so far.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stop and report.
    pub fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(r) = rss_bytes() {
            self.peak.fetch_max(r, Ordering::Relaxed);
        }
        Usage {
            wall_seconds: self.started.elapsed().as_secs_f64(),
            cpu_seconds: (cpu_seconds().unwrap_or(self.cpu) - self.cpu).max(0.0),
            peak_memory_bytes: self.peak.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_cpu_and_memory_of_busy_work() {
        let m = Monitor::start();
        // Touch 64 MiB and spin for a while.
        let v = vec![1u8; 64 << 20];
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            x = x.wrapping_add(v[(x as usize * 7919) % v.len()] as u64);
        }
        let u = m.finish();
        assert!(x > 0);
        assert!(u.wall_seconds >= 0.3);
        assert!(u.cpu_seconds >= 0.1, "cpu {}", u.cpu_seconds);
        assert!(u.peak_memory_bytes >= 64 << 20, "peak {}", u.peak_memory_bytes);
        drop(v);
    }
}
