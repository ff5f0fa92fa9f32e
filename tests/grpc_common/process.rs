//! `fluxo-export-server` as a child process: what only a separate process
//! shows (its RSS, its open file descriptors) for the load, soak and bench
//! tests. Ports are picked free on loopback; the folders are a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use fluxo::grpc::pb::export_service_client::ExportServiceClient;
use tonic::transport::Channel;

use crate::common::free_port;

pub struct ServerProcess {
    child: Child,
    pub grpc: SocketAddr,
    pub status: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server; `env` adds or overrides `FLUXO_*` variables.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (grpc, status, metrics) = (addr(), addr(), addr());
        let binary = env!("CARGO_BIN_EXE_fluxo-export-server");
        let mut command = Command::new(binary);
        command
            .env("FLUXO_GRPC_LISTEN", grpc.to_string())
            .env("FLUXO_STATUS_LISTEN", status.to_string())
            .env("FLUXO_METRICS_LISTEN", metrics.to_string())
            .env("FLUXO_LOCAL_DIR", dir.path().join("out"))
            .env("FLUXO_WORK_DIR", dir.path().join("work"))
            .env("FLUXO_LOG_LEVEL", "warn")
            .stdout(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("{binary}: {e}"));
        Self {
            child,
            grpc,
            status,
            metrics,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A client on a new connection, once the server accepts one.
    pub async fn client(&self) -> ExportServiceClient<Channel> {
        let url = format!("http://{}", self.grpc);
        for _ in 0..600 {
            if let Ok(c) = ExportServiceClient::connect(url.clone()).await {
                return c.max_decoding_message_size(64 << 20);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fluxo-export-server does not accept connections on {url}");
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Resident set size now (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set size so far (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Open file descriptors (sockets, files, epoll, pipes).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: signals the child this helper started and has not yet
        // waited for (`wait` takes `self`), so the pid cannot have been
        // reused; no memory is passed.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits for the exit.
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGTERM, then waits for the exit (running exports drain first).
    pub fn terminate(self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }
}

impl Drop for ServerProcess {
    /// A failed test must not leave its server running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
