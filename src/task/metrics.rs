//! Process-wide export counters and histograms, rendered in the Prometheus
//! text format by the server's `/metrics`. Plain atomics: recording costs a
//! few nanoseconds and needs no runtime.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{ErrorKind, ExportError};

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.counts) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

static DURATION: Histogram = Histogram::new();
static UPLOAD_DURATION: Histogram = Histogram::new();
static RECORDS: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static CANCELLED: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Failures by kind.
static ERRORS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const ERROR_KINDS: [&str; 5] = ["invalid_option", "invalid_row", "storage", "busy", "export"];

/// Rows handed to a writer.
pub fn add_records(rows: u64) {
    RECORDS.fetch_add(rows, Ordering::Relaxed);
}

/// Time spent storing one finished file.
pub fn observe_upload(d: Duration) {
    UPLOAD_DURATION.observe(d);
}

/// A task ended: completed (with its size and duration), cancelled or failed.
pub fn task_ended(result: &Result<(u64, Duration), ExportError>) {
    match result {
        Ok((bytes, duration)) => {
            COMPLETED.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(*bytes, Ordering::Relaxed);
            DURATION.observe(*duration);
        }
        Err(e) => count_failure(e.kind),
    }
}

/// An export that failed, or a request refused before it had one.
pub fn count_failure(kind: ErrorKind) {
    let i = match kind {
        ErrorKind::Cancelled => {
            CANCELLED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ErrorKind::InvalidOption => 0,
        ErrorKind::InvalidRow => 1,
        ErrorKind::Storage => 2,
        ErrorKind::Busy => 3,
        ErrorKind::Export => 4,
    };
    ERRORS[i].fetch_add(1, Ordering::Relaxed);
}

/// Prometheus text exposition of the counters, plus the live task gauges.
pub fn render(active: usize, queued: usize) -> String {
    let mut out = String::with_capacity(4096);
    let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge(
        &mut out,
        "export_active_tasks",
        "Exports being written or uploaded by this process.",
        active,
    );
    gauge(
        &mut out,
        "export_queued_tasks",
        "Exports of this process waiting for a slot.",
        queued,
    );
    DURATION.render(
        &mut out,
        "export_duration_seconds",
        "Time from start to a completed export.",
    );
    UPLOAD_DURATION.render(
        &mut out,
        "export_upload_duration_seconds",
        "Time to store a finished file.",
    );
    let _ = writeln!(
        out,
        "# HELP export_errors_total Exports that failed, by kind.\n# TYPE export_errors_total counter"
    );
    for (kind, n) in ERROR_KINDS.iter().zip(&ERRORS) {
        let _ = writeln!(
            out,
            "export_errors_total{{kind=\"{kind}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    };
    counter(
        &mut out,
        "export_records_processed_total",
        "Rows written to export files.",
        &RECORDS,
    );
    counter(
        &mut out,
        "export_completed_total",
        "Exports completed.",
        &COMPLETED,
    );
    counter(
        &mut out,
        "export_cancelled_total",
        "Exports cancelled.",
        &CANCELLED,
    );
    counter(
        &mut out,
        "export_bytes_written_total",
        "Bytes of completed export files.",
        &BYTES,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_metric_names() {
        add_records(3);
        observe_upload(Duration::from_millis(20));
        task_ended(&Ok((10, Duration::from_millis(300))));
        task_ended(&Err(ExportError::invalid_row("x")));
        let text = render(1, 2);
        for name in [
            "export_active_tasks 1",
            "export_queued_tasks 2",
            "export_duration_seconds_bucket{le=\"0.5\"}",
            "export_upload_duration_seconds_count",
            "export_errors_total{kind=\"invalid_row\"}",
            "export_records_processed_total",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
