//! Signals to a `fluxo-export-server` process: SIGHUP drains as SIGTERM
//! does, and a second signal during the drain ends the process at once.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use fluxo::grpc::pb::ExportFormat;
use grpc_common::process::ServerProcess;
use grpc_common::*;

/// A stream that has sent its metadata and one batch and goes on: the
/// drain waits for it.
async fn open_stream(server: &ServerProcess) -> Call {
    let mut client = server.client().await;
    let (call, _) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    call.send(batch_msg(rows(1, 0, 10))).await;
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_drains_as_sigterm_does() {
    let server = ServerProcess::spawn(&[]);
    let mut call = open_stream(&server).await;
    server.signal(libc::SIGHUP);
    call.send(batch_msg(rows(2, 10, 10))).await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(
        last.status,
        fluxo::grpc::pb::TaskStatus::Completed as i32,
        "{last:?}"
    );
    assert!(server.wait().success(), "drained, then exited 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    // A drain that would wait five minutes for the open stream.
    let server = ServerProcess::spawn(&[("FLUXO_SHUTDOWN_TIMEOUT", "300")]);
    let _call = open_stream(&server).await;
    server.signal(libc::SIGINT);
    // Once draining, new streams are refused: then the second signal is one.
    let mut client = server.client().await;
    for _ in 0..600 {
        if Call::open(&mut client).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.signal(libc::SIGINT);
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(1), "{exit:?}");
}

/// A store the settings cannot open stops the start, naming the key: it
/// used to start, report live, and refuse every export INVALID_ARGUMENT.
#[test]
fn a_store_the_settings_cannot_open_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_fluxo-export-server"))
        .env("FLUXO_STORAGE", "s3")
        .env("FLUXO_S3_BUCKET", "exports")
        .env("FLUXO_WORK_DIR", &work)
        .env("FLUXO_GRPC_LISTEN", "127.0.0.1:0")
        .env("FLUXO_STATUS_LISTEN", "127.0.0.1:0")
        .env("FLUXO_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exit = server.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exit.success(), "{stderr}");
    assert!(stderr.contains("fluxo.s3_endpoint"), "{stderr}");
}
