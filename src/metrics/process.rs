//! The process's own metrics, read from `/proc` at each scrape (Linux; elsewhere none), under
//! the names Prometheus client libraries use: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` when the registry is encoded.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// What `/proc` says about this process.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    open_fds: Option<f64>,
    start_time: Option<f64>,
}

/// `USER_HZ`: the unit of `/proc/<pid>/stat` times, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

impl ProcessCollector {
    pub(super) fn new() -> ProcessCollector {
        ProcessCollector
    }
}

fn read() -> Reading {
    if !cfg!(target_os = "linux") {
        return Reading::default();
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let boot = std::fs::read_to_string("/proc/stat").ok();
    let mut reading = parse(stat.as_deref(), status.as_deref(), boot.as_deref());
    reading.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as f64);
    reading
}

/// Parses `/proc/self/stat`, `/proc/self/status` and `/proc/stat`.
fn parse(stat: Option<&str>, status: Option<&str>, boot: Option<&str>) -> Reading {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // `state` is field 3 of the line, so field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = match (field(14), field(15)) {
        (Some(user), Some(system)) => Some((user + system) / TICKS_PER_SECOND),
        _ => None,
    };
    let resident_bytes = status.and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb * 1024.0)
    });
    let boot_time = boot.and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let start_time = match (boot_time, field(22)) {
        (Some(boot), Some(ticks)) => Some(boot + ticks / TICKS_PER_SECOND),
        _ => None,
    };
    Reading {
        cpu_seconds,
        resident_bytes,
        open_fds: None,
        start_time,
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reading = read();
        if let Some(seconds) = reading.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                reading.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                reading.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                reading.start_time,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (lens cap) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123400 999 77";
        let status = "Name:\tlenscap\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let reading = parse(Some(stat), Some(status), Some(boot));
        assert_eq!(reading.cpu_seconds, Some(3.0));
        assert_eq!(reading.resident_bytes, Some(2048.0 * 1024.0));
        assert_eq!(reading.start_time, Some(1_700_001_234.0));
        assert_eq!(parse(None, None, None), Reading::default());
    }
}
