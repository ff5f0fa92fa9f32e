//! `fluxo-export-server` killed with SIGKILL in mid-export, then started
//! again on the same folders: the orphaned task reads FAILED with the reason,
//! through gRPC and the JSON status API, and its spool file is gone. Also as
//! pid 1 of a fresh pid namespace both times (a restarted container), where
//! the pid alone cannot tell the two servers apart. And a real SIGTERM with
//! a stream running: the stream completes, then the server exits.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::free_port;
use fluxo::grpc::pb::{self, export_service_client::ExportServiceClient};
use grpc_common::{batch_msg, meta_msg, metadata, query, rows, wait_final, Call};
use tonic::transport::Channel;

/// One run of the server binary on the folders below `dir`.
struct ServerRun {
    /// The server, or the wrapper that runs it as its child.
    child: Child,
    /// The server itself, as this test's pid namespace numbers it.
    server_pid: u32,
    grpc: SocketAddr,
    status: SocketAddr,
}

impl ServerRun {
    /// Starts the server, behind `wrapper` (a command that runs it) if any,
    /// and waits until it listens.
    fn start(dir: &Path, wrapper: &[&str]) -> Self {
        (0..5)
            .find_map(|_| Self::try_start(dir, wrapper))
            .expect("fluxo-export-server never started listening")
    }

    /// `None` if the server exited before it listened: a port picked free
    /// was taken meanwhile (other tests on the host pick ports too).
    fn try_start(dir: &Path, wrapper: &[&str]) -> Option<Self> {
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (grpc, status, metrics) = (addr(), addr(), addr());
        let binary = env!("CARGO_BIN_EXE_fluxo-export-server");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .env("FLUXO_GRPC_LISTEN", grpc.to_string())
            .env("FLUXO_STATUS_LISTEN", status.to_string())
            .env("FLUXO_METRICS_LISTEN", metrics.to_string())
            .env("FLUXO_LOCAL_DIR", dir.join("out"))
            .env("FLUXO_WORK_DIR", dir.join("work"))
            .env("FLUXO_LOG_LEVEL", "info")
            .env("FLUXO_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Logged once all three listeners are bound.
        let listening = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("\"event\":\"listening\""));
        if !listening {
            let _ = child.wait();
            return None;
        }
        // The server must never block on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let server_pid = if wrapper.is_empty() {
            child.id()
        } else {
            let pid = child.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .expect("the kernel lists a process's children");
            children.trim().parse().expect("the wrapper runs one child")
        };
        Some(Self {
            child,
            server_pid,
            grpc,
            status,
        })
    }

    async fn client(&self) -> ExportServiceClient<Channel> {
        let url = format!("http://{}", self.grpc);
        for _ in 0..600 {
            if let Ok(c) = ExportServiceClient::connect(url.clone()).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fluxo-export-server does not accept connections on {url}");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([name, &self.server_pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGKILL: nothing of the server's shutdown runs. Returns once it is
    /// gone (a wrapper exits only after its child).
    fn kill(&mut self) {
        self.signal("-KILL");
        self.child.wait().unwrap();
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    /// The exit status, once the server has exited (bounded wait).
    async fn exited(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not exit");
    }

    /// `GET /v1/tasks/{id}` of the status API, as JSON.
    fn status_json(&self, id: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(self.status).unwrap();
        write!(
            stream,
            "GET /v1/tasks/{id} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.status
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for ServerRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status file's record of which pid ran the task.
fn owner_pid(dir: &Path, id: &str) -> u64 {
    let path = dir.join(format!("work/tasks/{id}.json"));
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    status["owner_pid"].as_u64().unwrap()
}

/// A CSV export of 100 rows under `request_id`: its task id and URL.
async fn small_export(
    client: &mut ExportServiceClient<Channel>,
    request_id: &str,
) -> (String, String) {
    let mut call = Call::open(client).await.unwrap();
    call.send(meta_msg(metadata(request_id, pb::ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 100))).await;
    call.half_close();
    let done = call.recv().await.unwrap();
    assert_eq!(done.status, pb::TaskStatus::Completed as i32, "{done:?}");
    assert_eq!(done.record_count, 100);
    (id, done.oss_url)
}

/// Starts a stream, kills the server once rows are being written, restarts
/// it; returns the folder, the orphaned task's id and that of an export the
/// restarted server ran.
async fn killed_and_restarted(wrapper: &[&str]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ServerRun::start(dir.path(), wrapper);
    let mut client = first.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    let mut meta = metadata("", pb::ExportFormat::FormatCsv);
    meta.total_records = Some(1_000_000);
    call.send(meta_msg(meta)).await;
    let id = call.recv().await.unwrap().task_id;
    for seq in 1..=5 {
        call.send(batch_msg(rows(seq, (seq as usize - 1) * 1_000, 1_000)))
            .await;
    }
    let spool: PathBuf = dir.path().join(format!("work/spool/{id}.csv"));
    let mut writing = false;
    for _ in 0..600 {
        let s = query(&mut client, &id).await;
        if s.records_processed > 0 && spool.exists() {
            assert_eq!(s.status, pb::TaskStatus::Processing as i32, "{s:?}");
            writing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writing, "the export never started writing");

    first.kill();
    drop(call);
    assert!(spool.exists(), "the killed server removed nothing");

    let second = ServerRun::start(dir.path(), wrapper);
    let mut client = second.client().await;
    // The start-up sweep runs before the server listens.
    assert!(!spool.exists(), "the orphan's spool file is removed");
    let reason = "that ran the export exited before it finished";
    let s = query(&mut client, &id).await;
    assert_eq!(s.status, pb::TaskStatus::Failed as i32, "{s:?}");
    assert!(s.error_message.contains(reason), "{s:?}");
    assert_eq!(s.error_code, "EXPORT_FAILED");
    let json = second.status_json(&id);
    assert_eq!(json["status"], "TASK_STATUS_FAILED", "{json}");
    assert_eq!(json["error_message"], s.error_message.as_str(), "{json}");

    // The restarted server exports as usual.
    let (next, _) = small_export(&mut client, "").await;
    assert_eq!(
        wait_final(&mut client, &next).await.status,
        pb::TaskStatus::Completed as i32
    );
    (dir, id, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_orphaned_by_sigkill_reads_failed_after_restart() {
    killed_and_restarted(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_pid_still_ends_the_orphan() {
    // pid 1 of a new pid namespace each time, as a restarted container.
    let wrapper = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
    let probe = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg("true")
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!(
                "SKIPPED a_restart_with_the_same_pid_still_ends_the_orphan: \
                 cannot make a pid namespace (needs root and util-linux unshare): {other:?}"
            );
            return;
        }
    }
    let (dir, orphan, next) = killed_and_restarted(&wrapper).await;
    assert_eq!(
        owner_pid(dir.path(), &orphan),
        1,
        "the first server ran as pid 1"
    );
    assert_eq!(owner_pid(dir.path(), &next), 1, "so did the second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_stream_finish_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerRun::start(dir.path(), &[]);
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", pb::ExportFormat::FormatCsv)))
        .await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(1, 0, 1_000))).await;
    server.terminate();
    // A stream that was running before the signal may go on.
    call.send(batch_msg(rows(2, 1_000, 1_000))).await;
    call.half_close();
    let done = call.recv().await.unwrap();
    assert_eq!(done.status, pb::TaskStatus::Completed as i32, "{done:?}");
    assert_eq!(done.record_count, 2_000);
    let status = server.exited().await;
    assert!(status.success(), "{status:?}");
    let spool = common::walk(&dir.path().join("work/spool"));
    assert_eq!(spool, Vec::<PathBuf>::new());
    assert_eq!(common::walk(&dir.path().join("out")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_remembered_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ServerRun::start(dir.path(), &[]);
    let (id, url) = small_export(&mut first.client().await, "orders-2026-11").await;
    first.terminate();
    assert!(first.exited().await.success());

    let second = ServerRun::start(dir.path(), &[]);
    let (again, again_url) = small_export(&mut second.client().await, "orders-2026-11").await;
    assert_eq!(again, id, "the retry after the restart gets the same task");
    assert_eq!(again_url, url);
    assert_eq!(common::walk(&dir.path().join("out")).len(), 1, "one file");
}
