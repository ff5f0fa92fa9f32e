//! Figures for BENCHMARKS.md: 16 concurrent 100,000-row streams from a tonic
//! client to a `fluxo-export-server` process on loopback; aggregate rows/s
//! and the server's peak RSS. Ignored by default:
//!
//! ```text
//! cargo test --release --features server --test grpc_bench -- --ignored --nocapture
//! ```
//! `BENCH_STREAMS`, `BENCH_ROWS`, `BENCH_FORMAT` (csv|xlsx) change the load.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::time::Instant;

use fluxo::grpc::pb::{self, ExportFormat, TaskStatus};
use grpc_common::process::ServerProcess;
use grpc_common::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 10 columns: id, 3 numbers, 2 dates, a bool, 3 texts.
fn wide_metadata(format: ExportFormat, rows: usize) -> pb::ExportMetadata {
    use pb::DataType::*;
    let cols = [
        ("id", String),
        ("amount", Number),
        ("tax", Number),
        ("qty", Number),
        ("created", Date),
        ("paid", Date),
        ("ok", Boolean),
        ("customer", String),
        ("email", String),
        ("note", String),
    ];
    pb::ExportMetadata {
        request_id: std::string::String::new(),
        format: format as i32,
        filename: "bench".into(),
        columns: cols.iter().map(|(n, t)| column(n, *t)).collect(),
        options: None,
        total_records: Some(rows as i64),
    }
}

fn wide_batch(seq: i64, from: usize, n: usize) -> pb::DataBatch {
    pb::DataBatch {
        records: (from..from + n)
            .map(|i| pb::Record {
                values: vec![
                    format!("{i:018}"),
                    format!("{}.{:02}", i % 100_000, i % 100),
                    format!("{}.5", i % 1000),
                    (i % 50).to_string(),
                    "2026-11-29 10:00:00".into(),
                    "2026-11-30".into(),
                    if i % 2 == 0 { "true" } else { "false" }.into(),
                    format!("Customer {}", i % 5000),
                    format!("user{}@example.com", i % 5000),
                    "delivered to the front desk".into(),
                ],
            })
            .collect(),
        batch_sequence: seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn sixteen_streams_of_100k_rows() {
    let streams = env("BENCH_STREAMS", 16);
    let rows = env("BENCH_ROWS", 100_000);
    let format = if std::env::var("BENCH_FORMAT").as_deref() == Ok("xlsx") {
        ExportFormat::FormatExcel
    } else {
        ExportFormat::FormatCsv
    };
    let server = ServerProcess::spawn(&[("FLUXO_MAX_CONCURRENT_TASKS", &streams.to_string())]);
    let client = server.client().await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..streams {
        let mut client = client.clone();
        handles.push(tokio::spawn(async move {
            let mut call = Call::open(&mut client).await.unwrap();
            call.send(meta_msg(wide_metadata(format, rows))).await;
            call.recv().await.unwrap();
            let per = 1000;
            for b in 0..rows.div_ceil(per) {
                let n = per.min(rows - b * per);
                call.send(batch_msg(wide_batch(b as i64 + 1, b * per, n)))
                    .await;
            }
            call.half_close();
            call.recv().await.unwrap()
        }));
    }
    let mut bytes = 0;
    for h in handles {
        let last = h.await.unwrap();
        assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
        assert_eq!(last.record_count as usize, rows);
        bytes += last.file_size_bytes;
    }
    let secs = started.elapsed().as_secs_f64();
    let hwm = server.peak_rss_kib();
    let total = streams * rows;
    println!(
        "BENCH grpc: {streams} streams x {rows} rows ({format:?}, 10 columns): {secs:.2} s, {:.0} rows/s aggregate, {:.1} MiB written, server peak RSS {:.1} MiB",
        total as f64 / secs,
        bytes as f64 / 1048576.0,
        hwm as f64 / 1024.0
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
