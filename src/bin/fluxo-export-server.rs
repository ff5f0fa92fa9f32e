//! `fluxo-export-server`: the export engine as a gRPC service.
//!
//! ```text
//! fluxo-export-server [--config FILE.ini] [--print-config]
//! ```
//!
//! The config file holds the same `fluxo.*` keys as php.ini (see
//! `config.example.ini`); `FLUXO_<KEY>` environment variables override it.
//! SIGTERM or SIGINT: stop accepting, let running exports finish within
//! `fluxo.shutdown_timeout`, fail the rest, flush the logs, exit.

use std::collections::HashMap;
use std::process::ExitCode;

use fluxo::config::Settings;
use fluxo::grpc::{logs, Server};

const USAGE: &str = "usage: fluxo-export-server [--config FILE.ini] [--print-config]

Serves ExportService (gRPC, fluxo.grpc_listen, default 0.0.0.0:9090), the
status API and signed downloads (fluxo.status_listen, 0.0.0.0:9091), and
/health/live, /health/ready, /metrics (fluxo.metrics_listen, 0.0.0.0:8080).
Keys are those of config.example.ini; FLUXO_<KEY> variables override the file.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut print = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) => config = Some(path),
                None => {
                    eprintln!("{arg} needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--print-config" => print = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("fluxo-export-server {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(path.to_owned()),
                None => {
                    eprintln!("unknown argument {other}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let values = match &config {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                let known = |key: &str| fluxo::config::KEYS.iter().any(|(k, ..)| *k == key);
                fluxo::ini::parse(&t, known, |name| std::env::var(name).ok())
            }) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("fluxo-export-server: config {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => HashMap::new(),
    };
    let settings = match Settings::resolve(|key| values.get(key).cloned()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fluxo-export-server: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        for (key, value) in settings.describe() {
            println!("fluxo.{key} = {value}");
        }
        return ExitCode::SUCCESS;
    }
    let guard = match logs::init(&settings) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("fluxo-export-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fluxo-server")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fluxo-export-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let bound = Server::bind(settings).await?;
        bound.serve(shutdown_signal()).await
    });
    // Blocking tasks still waiting on an export (an upload to a store that
    // hangs) would hold the exit for as long as the store takes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(component = "server", event = "fatal", error = %e, "server failed");
            eprintln!("fluxo-export-server: {e}");
            // A setting refused as the server binds (TLS files, the store's
            // part size) exits as a refused configuration file does.
            if e.kind == fluxo::ErrorKind::InvalidOption {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    drop(guard);
    code
}

/// SIGTERM, SIGINT (Ctrl-C) or SIGHUP (a closed terminal) starts the
/// drain; a second one ends the process at once, running exports and all
/// (they read FAILED, their spool files go at the next start).
async fn shutdown_signal() {
    let mut signals = Signals::watch();
    let first = signals.next().await;
    tracing::info!(
        component = "server",
        event = "signal",
        signal = first,
        "{first} received: draining"
    );
    tokio::spawn(async move {
        let second = signals.next().await;
        tracing::warn!(
            component = "server",
            event = "signal",
            signal = second,
            "{second} received again: exiting without waiting for running exports"
        );
        eprintln!("fluxo-export-server: {second} received again: exiting now");
        std::process::exit(1);
    });
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |kind| signal(kind).expect("cannot watch signals");
        Self {
            term: watch(SignalKind::terminate()),
            int: watch(SignalKind::interrupt()),
            hup: watch(SignalKind::hangup()),
        }
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
