//! The standard `process_*` metrics (as Prometheus' own client libraries name them), read
//! from `/proc/self` at each scrape: CPU time, resident and virtual memory, open and most
//! file descriptors, threads and the start time. Elsewhere than Linux there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process' figures when a scrape renders them.
#[derive(Debug)]
pub struct ProcessCollector {
    /// When the collector was made (at the server's start), for a start time where
    /// `/proc/stat` cannot be read (systemd's `ProcSubset=pid` hides it).
    made: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let made = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        ProcessCollector { made }
    }
}

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

/// Clock ticks per second of `/proc/self/stat`'s times: 100 on every Linux platform
/// Rust targets (the kernel's `USER_HZ`, fixed by its ABI).
const TICKS: f64 = 100.0;

fn page_size() -> i64 {
    i64::try_from(rustix::param::page_size()).unwrap_or(4096)
}

/// Parses `/proc/self/stat` (after the command name, whose parentheses may hold anything)
/// with `boot_time` (seconds since the epoch, from `/proc/stat`'s `btime`; without it, no
/// start time).
fn parse_stat(stat: &str, boot_time: Option<f64>) -> Option<Reading> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields from the third (state) on; utime is the 14th of the whole line.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Reading {
        cpu_seconds: (utime + stime) as f64 / TICKS,
        threads: field(20)? as i64,
        start_time_seconds: boot_time
            .map_or(0.0, |boot| boot + field(22).unwrap_or(0) as f64 / TICKS),
        virtual_bytes: i64::try_from(field(23)?).unwrap_or(i64::MAX),
        resident_bytes: (field(24)? as i64).saturating_mul(page_size()),
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut reading = parse_stat(&stat, boot_time())?;
    reading.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as i64);
    reading.max_fds =
        std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(parse_max_fds);
    Some(reading)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(mut reading) = read() else { return Ok(()) };
        if reading.start_time_seconds == 0.0 {
            reading.start_time_seconds = self.made;
        }
        let cpu = ConstCounter::new(reading.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, value: f64| {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            reading.resident_bytes as f64,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            reading.virtual_bytes as f64,
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            reading.start_time_seconds,
        )?;
        gauge("process_threads", "Number of OS threads in the process", reading.threads as f64)?;
        if let Some(open) = reading.open_fds {
            gauge("process_open_fds", "Number of open file descriptors", open as f64)?;
        }
        if let Some(max) = reading.max_fds {
            gauge("process_max_fds", "Maximum number of open file descriptors", max as f64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss …
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 \
                    123456789 2048 18446744073709551615";
        let reading = parse_stat(stat, Some(1_700_000_000.0)).expect("parsed");
        assert_eq!(reading.cpu_seconds, 3.0);
        assert_eq!(reading.threads, 7);
        assert_eq!(reading.start_time_seconds, 1_700_000_010.0);
        assert_eq!(reading.virtual_bytes, 123_456_789);
        assert_eq!(reading.resident_bytes, 2048 * page_size());
        // Where /proc/stat is hidden the rest is still read.
        let hidden = parse_stat(stat, None).expect("parsed");
        assert_eq!((hidden.cpu_seconds, hidden.start_time_seconds), (3.0, 0.0));
    }

    #[test]
    fn the_soft_descriptor_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_itself() {
        let reading = read().expect("/proc/self");
        assert!(reading.resident_bytes > 0 && reading.threads >= 1);
        assert!(reading.open_fds.is_some_and(|n| n >= 3), "{reading:?}");
        assert!(reading.start_time_seconds > 1_600_000_000.0);
    }
}
