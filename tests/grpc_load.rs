//! Load and soak against a `fluxo-export-server` process (its RSS and open
//! file descriptors are read from `/proc`), with in-process exports through
//! the core `Export` API — what the PHP extension drives — sharing the
//! server's work dir, and so its host-wide export slots.
//!
//! ```text
//! cargo test --release --features server --test grpc_load -- --nocapture
//! FLUXO_SOAK_SECS=300 cargo test --release --features server --test grpc_load soak -- --nocapture
//! ```
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use calamine::{open_workbook, Reader, Xlsx};
use common::walk;
use fluxo::config::{ExportSpec, OptionValue, Settings};
use fluxo::grpc::pb::{self, export_service_client::ExportServiceClient, ExportFormat, TaskStatus};
use fluxo::schema::{ColumnType, Value};
use fluxo::task::{self, registry::TaskState, Export, ExportOutcome};
use grpc_common::process::ServerProcess;
use grpc_common::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Code;

/// Each test measures a server of its own: run them one at a time so
/// neither starves the other on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SLOTS: usize = 8;
const QUEUE: usize = 8;
const STREAMS: usize = SLOTS + QUEUE;
const IN_PROCESS: usize = 4;
/// Peak RSS the loaded server must stay under, whatever the row count:
/// measured 47-57 MiB while ~47 MB of batches stream in.
const LOAD_PEAK_RSS_MIB: u64 = 128;

/// The server's `fluxo.*` settings as `FLUXO_*` variables; the in-process
/// exports use the same limits on the same work dir.
const LIMITS: [(&str, &str); 4] = [
    ("max_concurrent_tasks", "8"),
    ("task_queue_size", "8"),
    ("queue_timeout", "600"),
    ("buffer_size", "1048576"),
];

fn server_env() -> Vec<(String, String)> {
    LIMITS
        .iter()
        .map(|(k, v)| (format!("FLUXO_{}", k.to_ascii_uppercase()), (*v).to_owned()))
        .collect()
}

fn spawn_server() -> ServerProcess {
    let env = server_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::spawn(&pairs)
}

/// Settings of a PHP-like producer on the server's host.
fn in_process_settings(server: &ServerProcess) -> Settings {
    let out = server.dir.path().join("in-process").display().to_string();
    let work = server.work_dir().display().to_string();
    Settings::resolve_with_env(
        |key| match key {
            "local_dir" => Some(out.clone()),
            "work_dir" => Some(work.clone()),
            "log_level" => Some("off".into()),
            _ => LIMITS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).into()),
        },
        |_| None,
    )
    .unwrap()
}

/// The columns of `grpc_common::metadata`, as PHP options.
fn in_process_spec(settings: &Settings, format: &str, rows: usize) -> ExportSpec {
    let s = |v: &str| OptionValue::Str(v.into());
    let column = |name: &str, ty: &str| {
        OptionValue::Map(vec![("name".into(), s(name)), ("type".into(), s(ty))])
    };
    let options = OptionValue::Map(vec![
        ("format".into(), s(format)),
        ("filename".into(), s("in-process")),
        (
            "columns".into(),
            OptionValue::List(vec![
                column("id", "string"),
                column("amount", "number"),
                column("paid_at", "date"),
                column("ok", "bool"),
            ]),
        ),
        ("total_rows".into(), OptionValue::Int(rows as i64)),
    ]);
    ExportSpec::from_options(&options, settings).unwrap()
}

/// Rows `from..from + n` in batches of 1,000, like `grpc_common::rows`.
fn feed(export: &mut Export, from: usize, n: usize) {
    for start in (from..from + n).step_by(1000) {
        let mut batch = export.new_batch();
        for i in start..(start + 1000).min(from + n) {
            let id = format!("{i:018}");
            batch
                .push(Value::Bytes(id.as_bytes()), ColumnType::String)
                .unwrap();
            batch
                .push(Value::Float(i as f64 + 0.25), ColumnType::Number)
                .unwrap();
            batch
                .push(Value::Bytes(b"2026-11-29"), ColumnType::Date)
                .unwrap();
            batch
                .push(Value::Bool(i % 2 == 0), ColumnType::Bool)
                .unwrap();
            batch.end_row();
        }
        export.add(batch).unwrap();
    }
}

/// The one file a task left under `dir` (`…/{task_id}/{filename}`).
fn file_of(dir: &Path, task_id: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.parent().and_then(Path::file_name) == Some(task_id.as_ref()))
        .collect();
    assert_eq!(found.len(), 1, "files of task {task_id}: {found:?}");
    found.pop().unwrap()
}

/// Data rows in a CSV or XLSX file, counted by an independent reader.
fn data_rows(path: &Path) -> usize {
    if path.extension().is_some_and(|e| e == "xlsx") {
        let mut book: Xlsx<_> = open_workbook(path).unwrap();
        let range = book.worksheet_range_at(0).unwrap().unwrap();
        return range.height() - 1;
    }
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().count() - 1
}

/// Checks a finished file against what the server or the engine reported.
fn check_file(path: &Path, rows: usize, bytes: i64, sha256: &str) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(data.len() as i64, bytes, "{path:?}");
    assert_eq!(hex::encode(Sha256::digest(&data)), sha256, "{path:?}");
    assert_eq!(data_rows(path), rows, "{path:?}");
}

fn grpc_job(n: usize) -> (ExportFormat, usize) {
    if n % 4 == 3 {
        (ExportFormat::FormatExcel, 20_000)
    } else {
        (ExportFormat::FormatCsv, 60_000)
    }
}

fn in_process_job(n: usize) -> (&'static str, usize) {
    if n % 2 == 1 {
        ("xlsx", 10_000)
    } else {
        ("csv", 50_000)
    }
}

/// 16 gRPC streams and 4 in-process exports at once, on one host-wide limit
/// of 8 running exports. All 20 are admitted and started before any may
/// finish, so the limit is checked at a moment when nothing can change: then
/// exactly 8 run and 12 wait, and a 17th stream is refused. Then every file
/// is checked (rows, bytes, SHA-256) and the server's peak RSS is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_streams_and_four_in_process_exports_at_once() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = spawn_server();
    let settings = in_process_settings(&server);

    // In-process producers: start, queue a first batch, wait for the signal.
    let (started_tx, started_rx) = mpsc::channel::<String>();
    let mut gates = Vec::new();
    let mut producers = Vec::new();
    for n in 0..IN_PROCESS {
        let (format, rows) = in_process_job(n);
        let spec = in_process_spec(&settings, format, rows);
        let (settings, started) = (settings.clone(), started_tx.clone());
        let (gate, go) = mpsc::channel::<()>();
        gates.push(gate);
        producers.push(std::thread::spawn(move || -> ExportOutcome {
            let mut export = Export::start(spec, &settings).unwrap();
            feed(&mut export, 0, 1000);
            started.send(export.task_id().to_owned()).unwrap();
            go.recv().unwrap();
            feed(&mut export, 1000, rows - 1000);
            export.finish().unwrap()
        }));
    }
    let local_ids: Vec<String> =
        tokio::task::spawn_blocking(move || started_rx.iter().take(IN_PROCESS).collect())
            .await
            .unwrap();

    // gRPC streams: metadata and a first batch, then wait for the signal.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<String>(STREAMS);
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut streams = Vec::new();
    for n in 0..STREAMS {
        let (format, total) = grpc_job(n);
        let mut client = server.client().await;
        let (ready, mut go) = (ready_tx.clone(), go_rx.clone());
        streams.push(tokio::spawn(async move {
            let mut call = Call::open(&mut client).await.unwrap();
            let mut meta = metadata(&format!("load-{n}"), format);
            meta.total_records = Some(total as i64);
            call.send(meta_msg(meta)).await;
            let first = call.recv().await.unwrap();
            call.send(batch_msg(rows(1, 0, 1000))).await;
            ready.send(first.task_id.clone()).await.unwrap();
            go.wait_for(|go| *go).await.unwrap();
            let mut sent = 0;
            for b in 1..total / 1000 {
                let batch = rows(b as i64 + 1, b * 1000, 1000);
                sent += batch.encoded_len();
                call.send(batch_msg(batch)).await;
            }
            call.half_close();
            let last = call.recv().await.unwrap();
            assert_eq!(last.task_id, first.task_id);
            (last, total, sent)
        }));
    }
    let mut grpc_ids = Vec::new();
    for _ in 0..STREAMS {
        grpc_ids.push(ready_rx.recv().await.unwrap());
    }

    // Queue limit: max_concurrent_tasks + task_queue_size streams are live.
    let mut client = server.client().await;
    let mut extra = Call::open(&mut client).await.unwrap();
    extra
        .send(meta_msg(metadata("load-17", ExportFormat::FormatCsv)))
        .await;
    let refused = extra.recv().await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("fluxo.task_queue_size"),
        "{refused:?}"
    );

    // Slot limit, host-wide: no task can end yet, so the count only grows
    // until every slot is taken, and must then stay at the limit.
    let mut settled = None;
    for _ in 0..1200 {
        let mut states: HashMap<&str, usize> = HashMap::new();
        for id in &grpc_ids {
            let s = query(&mut client, id).await.status;
            let name = match TaskStatus::try_from(s) {
                Ok(TaskStatus::Queued) => "queued",
                Ok(TaskStatus::Processing) => "processing",
                other => panic!("task {id} is {other:?} before its last batch"),
            };
            *states.entry(name).or_default() += 1;
        }
        for id in &local_ids {
            let name = match task::status(&settings, id).unwrap().unwrap().state {
                TaskState::Queued => "queued",
                TaskState::Processing => "processing",
                other => panic!("in-process task {id} is {other:?} before finish()"),
            };
            *states.entry(name).or_default() += 1;
        }
        let running = states.get("processing").copied().unwrap_or(0);
        assert!(
            running <= SLOTS,
            "{running} exports run at once: {states:?}"
        );
        if running == SLOTS {
            settled = Some(states);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = settled.expect("the slots fill up");
    assert_eq!(
        settled.get("queued"),
        Some(&(STREAMS + IN_PROCESS - SLOTS)),
        "{settled:?}"
    );

    go_tx.send(true).unwrap();
    for gate in gates {
        gate.send(()).unwrap();
    }
    let out = server.out_dir();
    let mut sent = 0;
    for h in streams {
        let (last, total, bytes) = h.await.unwrap();
        sent += bytes;
        let id = &last.task_id;
        assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
        assert_eq!(last.record_count as usize, total);
        check_file(
            &file_of(&out, id),
            total,
            last.file_size_bytes,
            &last.checksum_sha256,
        );
        let s = query(&mut client, id).await;
        assert_eq!(s.status, TaskStatus::Completed as i32);
        assert_eq!(s.checksum_sha256, last.checksum_sha256);
        assert_eq!(s.records_processed as usize, total);
    }
    for (n, producer) in producers.into_iter().enumerate() {
        let outcome = tokio::task::spawn_blocking(move || producer.join().unwrap())
            .await
            .unwrap();
        let (_, rows) = in_process_job(n);
        assert!(local_ids.contains(&outcome.task_id));
        assert_eq!(outcome.records as usize, rows);
        check_file(
            outcome.path.as_ref().unwrap(),
            rows,
            outcome.bytes as i64,
            &outcome.sha256,
        );
    }
    assert_eq!(
        walk(&server.work_dir().join("spool")),
        Vec::<PathBuf>::new()
    );

    let peak_mib = server.peak_rss_kib() / 1024;
    let rows_sent: usize = (0..STREAMS).map(|n| grpc_job(n).1).sum();
    println!(
        "LOAD: {STREAMS} gRPC streams ({rows_sent} rows, {:.1} MB of batches) + {IN_PROCESS} in-process exports, {SLOTS} slots: server peak RSS {peak_mib} MiB, {} fds open after",
        sent as f64 / 1e6,
        server.open_fds()
    );
    assert!(
        peak_mib < LOAD_PEAK_RSS_MIB,
        "server peak RSS {peak_mib} MiB"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// GET over a fresh HTTP/1.1 connection; returns the status code.
fn http_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply[9..12].parse().unwrap()
}

/// Opens a stream on a connection of its own and sends a batch, then loses
/// the connection without a half-close, like a killed client: the runtime
/// that owns the connection is shut down. Returns the task id.
fn abandon(grpc: std::net::SocketAddr) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = runtime.block_on(async move {
        let mut client = ExportServiceClient::connect(format!("http://{grpc}"))
            .await
            .unwrap();
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata("", ExportFormat::FormatExcel)))
            .await;
        let id = call.recv().await.unwrap().task_id;
        call.send(batch_msg(rows(1, 0, 500))).await;
        // Dropping the call would half-close it (a normal end).
        std::mem::forget(call);
        id
    });
    runtime.shutdown_background();
    id
}

/// One round of the soak on a new connection: three exports that complete
/// (checked, then deleted), one a bad value fails, one the client abandons,
/// and the HTTP status and metrics endpoints.
async fn soak_round(server: &ServerProcess, round: usize) {
    let client = server.client().await;
    let complete = |format: ExportFormat, total: usize| {
        let mut client = client.clone();
        async move {
            let mut call = Call::open(&mut client).await.unwrap();
            call.send(meta_msg(metadata("", format))).await;
            call.recv().await.unwrap();
            for b in 0..total / 500 {
                call.send(batch_msg(rows(b as i64 + 1, b * 500, 500))).await;
            }
            call.half_close();
            (call.recv().await.unwrap(), total)
        }
    };
    let fail = async {
        let mut client = client.clone();
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
            .await;
        let id = call.recv().await.unwrap().task_id;
        call.send(batch_msg(pb::DataBatch {
            records: vec![record(&["1", "not a number", "", ""])],
            batch_sequence: 1,
        }))
        .await;
        assert_eq!(call.recv().await.unwrap_err().code(), Code::InvalidArgument);
        id
    };
    let grpc = server.grpc;
    let lost = async move {
        tokio::task::spawn_blocking(move || abandon(grpc))
            .await
            .unwrap()
    };
    let (a, b, c, failed, abandoned) = tokio::join!(
        complete(ExportFormat::FormatCsv, 3000),
        complete(ExportFormat::FormatExcel, 1000),
        complete(ExportFormat::FormatCsv, 2000),
        fail,
        lost,
    );
    let mut client = client.clone();
    for id in [&failed, &abandoned] {
        let s = wait_final(&mut client, id).await;
        let expected = if *id == failed {
            TaskStatus::Failed
        } else {
            TaskStatus::Cancelled
        };
        assert_eq!(s.status, expected as i32, "round {round}: {s:?}");
    }
    let out = server.out_dir();
    for (last, total) in [a, b, c] {
        assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
        let path = file_of(&out, &last.task_id);
        check_file(&path, total, last.file_size_bytes, &last.checksum_sha256);
        // Keeps the disk flat however long the soak runs.
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
    let (status, metrics) = (server.status, server.metrics);
    let path = format!("/v1/tasks/{failed}");
    let codes = tokio::task::spawn_blocking(move || {
        (http_get(status, &path), http_get(metrics, "/metrics"))
    })
    .await
    .unwrap();
    assert_eq!(codes, (200, 200));
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Repeated exports for `FLUXO_SOAK_SECS` (default 25): the server's RSS and
/// open descriptors, sampled after each round, must not keep growing. The
/// last third of the samples is compared with the first third, after two
/// warm-up rounds (thread pools and allocator arenas fill up first).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_shows_no_growth_in_rss_or_open_files() {
    const WARM_UP: usize = 2;
    const MIN_SAMPLES: usize = 9;
    let _alone = ONE_AT_A_TIME.lock().await;
    let secs: u64 = std::env::var("FLUXO_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let server = ServerProcess::spawn(&[
        ("FLUXO_MAX_CONCURRENT_TASKS", "4"),
        ("FLUXO_BUFFER_SIZE", "1048576"),
    ]);
    let started = Instant::now();
    let (mut rss, mut fds) = (Vec::new(), Vec::new());
    let mut round = 0;
    while rss.len() < MIN_SAMPLES || started.elapsed() < Duration::from_secs(secs) {
        soak_round(&server, round).await;
        round += 1;
        if round > WARM_UP {
            rss.push(server.rss_kib());
            fds.push(server.open_fds() as u64);
        }
    }
    let third = rss.len() / 3;
    let first_rss = median(rss[..third].to_vec());
    let last_rss = median(rss[rss.len() - third..].to_vec());
    let first_fds = median(fds[..third].to_vec());
    let last_fds = median(fds[fds.len() - third..].to_vec());
    let tenths: Vec<String> = (0..10)
        .map(|i| format!("{:.1}", rss[i * rss.len() / 10] as f64 / 1024.0))
        .collect();
    println!(
        "SOAK: {round} rounds ({} exports) in {:.0} s; server RSS median {:.1} -> {:.1} MiB (peak {:.1}; by tenths {}), open fds median {first_fds} -> {last_fds} (max {})",
        round * 5,
        started.elapsed().as_secs_f64(),
        first_rss as f64 / 1024.0,
        last_rss as f64 / 1024.0,
        server.peak_rss_kib() as f64 / 1024.0,
        tenths.join(" "),
        fds.iter().max().unwrap(),
    );
    assert!(
        last_rss <= first_rss + first_rss / 4 + 16 * 1024,
        "RSS grew from {first_rss} KiB to {last_rss} KiB: {rss:?}"
    );
    assert!(
        last_fds <= first_fds + 8,
        "open fds grew from {first_fds} to {last_fds}: {fds:?}"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
