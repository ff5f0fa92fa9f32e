//! `Fluxo\Server` (features `php` + `server`): the gRPC service, status API,
//! health and metrics served from a long-running PHP CLI process. It shares
//! the process's task manager with in-process `Fluxo\Exporter`s.
//!
//! ```php
//! Fluxo\Server::start(['grpc_listen' => '127.0.0.1:9090', 'auth_token' => 't']);
//! pcntl_async_signals(true);
//! pcntl_signal(SIGTERM, fn () => Fluxo\Server::stop());
//! while (Fluxo\Server::running()) { sleep(1); }
//! ```
//!
//! Options are `fluxo.*` keys without the prefix; they override php.ini.
//! Threads start in `start()`, never at module start-up (PHP-FPM forks).

use std::sync::Mutex;
use std::time::Duration;

use ext_php_rs::prelude::*;
use ext_php_rs::types::ZendHashTable;
use tokio::sync::oneshot;

use super::{convert, guarded};
use crate::config::{OptionValue, Settings, KEYS};
use crate::error::ExportError;

struct Running {
    pid: u32,
    runtime: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<crate::error::Result<()>>,
    grace: Duration,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

fn running() -> std::sync::MutexGuard<'static, Option<Running>> {
    let mut guard = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    // A server started before a fork belongs to the parent.
    if guard.as_ref().is_some_and(|r| r.pid != std::process::id()) {
        if let Some(stale) = guard.take() {
            std::mem::forget(stale);
        }
    }
    guard
}

fn text(key: &str, v: &OptionValue) -> Result<String, ExportError> {
    Ok(match v {
        OptionValue::Str(s) => s.clone(),
        OptionValue::Int(i) => i.to_string(),
        OptionValue::Bool(b) => u8::from(*b).to_string(),
        OptionValue::Float(f) => f.to_string(),
        OptionValue::Null => String::new(),
        other => {
            return Err(ExportError::invalid_option(format!(
                "Fluxo\\Server option \"{key}\" must be a scalar, got {}",
                other.type_name()
            )))
        }
    })
}

/// php.ini's `fluxo.*`, the environment's `FLUXO_*` above it, the options
/// above both.
fn settings(options: &OptionValue) -> Result<Settings, ExportError> {
    let map = options.as_map().ok_or_else(|| {
        ExportError::invalid_option(format!(
            "Fluxo\\Server::start() takes an array with string keys, got {}",
            options.type_name()
        ))
    })?;
    let mut given = Vec::new();
    for (k, v) in map {
        let key = k.strip_prefix("fluxo.").unwrap_or(k);
        if !KEYS.iter().any(|(name, ..)| *name == key) {
            return Err(ExportError::invalid_option(format!(
                "unknown Fluxo\\Server option \"{k}\"; options are fluxo.* keys such as grpc_listen, status_listen, metrics_listen, auth_token"
            )));
        }
        given.push((key.to_owned(), text(key, v)?));
    }
    let ini = ext_php_rs::zend::ExecutorGlobals::get().ini_values();
    Settings::resolve_given(
        |key| given.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        |key| ini.get(&format!("fluxo.{key}")).cloned().flatten(),
    )
}

/// `Fluxo\Server`: static methods only.
#[php_class]
#[php(name = "Fluxo\\Server")]
pub struct Server;

#[php_impl]
impl Server {
    /// Binds the listeners and serves in background threads; returns once
    /// the ports are open. Throws if a server already runs or a port is taken.
    pub fn start(options: &ZendHashTable) -> PhpResult<()> {
        guarded(|| {
            let mut slot = running();
            if slot.is_some() {
                return Err(ExportError::export(
                    "Fluxo\\Server is already running in this process; stop() it first",
                ));
            }
            let settings = settings(&convert::options(options))?;
            crate::telemetry::init(&settings);
            let grace = settings.shutdown_timeout;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("fluxo-server")
                .enable_all()
                .build()
                .map_err(|e| {
                    ExportError::export(format!("cannot start the server runtime: {e}"))
                })?;
            let bound = runtime.block_on(crate::grpc::Server::bind(settings))?;
            let (stop, stopped) = oneshot::channel::<()>();
            let done = runtime.spawn(bound.serve(async {
                let _ = stopped.await;
            }));
            *slot = Some(Running {
                pid: std::process::id(),
                runtime,
                stop,
                done,
                grace,
            });
            Ok(())
        })
    }

    /// Graceful stop: no new streams, running ones get
    /// `fluxo.shutdown_timeout` to finish. Does nothing if none runs.
    pub fn stop() -> PhpResult<()> {
        guarded(|| {
            let Some(r) = running().take() else {
                return Ok(());
            };
            let _ = r.stop.send(());
            let waited = r.runtime.block_on(async {
                tokio::time::timeout(r.grace + Duration::from_secs(30), r.done).await
            });
            r.runtime.shutdown_timeout(Duration::from_secs(1));
            match waited {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(ExportError::export(format!("the server task failed: {e}"))),
                Err(_) => Err(ExportError::export("the server did not stop in time")),
            }
        })
    }

    /// Whether a server started by this process is serving.
    pub fn running() -> bool {
        running().as_ref().is_some_and(|r| !r.done.is_finished())
    }
}
