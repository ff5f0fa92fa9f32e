//! One server: gRPC (`fluxo.grpc_listen`), the status API and downloads
//! (`fluxo.status_listen`), health and metrics (`fluxo.metrics_listen`), with
//! graceful shutdown. Used by `fluxo-export-server` and `Fluxo\Server`.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, ServerTlsConfig};

use super::pb::export_service_server::ExportServiceServer;
use super::service::{auth_interceptor, ExportGrpc, Shared};
use crate::config::Settings;
use crate::error::{ExportError, Result};

pub struct Server;

/// Listeners bound, not yet serving: the ports are known (tests bind port 0).
pub struct BoundServer {
    shared: Arc<Shared>,
    grpc: TcpListener,
    status: TcpListener,
    /// `None` when health and metrics share the status listener.
    ops: Option<TcpListener>,
}

/// `":9091"` means all interfaces.
fn address(value: &str, key: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ExportError::invalid_option(format!(
            "fluxo.{key} is empty: give host:port"
        )));
    }
    Ok(if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_owned()
    })
}

async fn bind(value: &str, key: &str) -> Result<TcpListener> {
    let addr = address(value, key)?;
    // Not a storage error: PHP gets the base ExportException the stub names.
    TcpListener::bind(&addr)
        .await
        .map_err(|e| ExportError::export(format!("cannot listen on {addr} (fluxo.{key}): {e}")))
}

impl Server {
    /// Binds the three listeners of `settings.server`.
    pub async fn bind(settings: Settings) -> Result<BoundServer> {
        // A store the configuration cannot open (no endpoint, parts below
        // its minimum) stops the start, not each export as if the client's
        // fault.
        crate::storage::open(settings.storage, &settings, &settings.local_dir, None)?;
        let s = &settings.server;
        let grpc = bind(&s.grpc_listen, "grpc_listen").await?;
        let status = bind(&s.status_listen, "status_listen").await?;
        // The same address: one listener serves both routers (port 0 means two).
        let status_addr = address(&s.status_listen, "status_listen")?;
        let same = address(&s.metrics_listen, "metrics_listen")? == status_addr
            && !status_addr.ends_with(":0");
        let ops = if same {
            None
        } else {
            Some(bind(&s.metrics_listen, "metrics_listen").await?)
        };
        // Before the first request: exports a killed predecessor left behind
        // read FAILED, and their spool files no longer take disk.
        crate::task::sweep_spool(&settings);
        let shared = Shared::new(settings);
        shared
            .idempotency
            .prune(shared.settings.server.idempotency_ttl);
        Ok(BoundServer {
            shared,
            grpc,
            status,
            ops,
        })
    }
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr().expect("a bound listener has an address")
}

impl BoundServer {
    pub fn grpc_addr(&self) -> SocketAddr {
        local(&self.grpc)
    }

    pub fn status_addr(&self) -> SocketAddr {
        local(&self.status)
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.ops.as_ref().map_or_else(|| self.status_addr(), local)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn tls(&self) -> Result<Option<ServerTlsConfig>> {
        const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
        let s = &self.shared.settings.server;
        match (&s.tls_cert, &s.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path, key: &str| {
                    std::fs::read(p).map_err(|e| {
                        ExportError::invalid_option(format!(
                            "fluxo.{key}: cannot read {}: {e}",
                            p.display()
                        ))
                    })
                };
                let chain = read(cert, "tls_cert")?;
                // rustls would call a chain with no certificate "peer sent no
                // certificates", as if a client had.
                if !chain
                    .windows(CERTIFICATE_PEM.len())
                    .any(|w| w == CERTIFICATE_PEM)
                {
                    return Err(ExportError::invalid_option(format!(
                        "fluxo.tls_cert: {} holds no certificate (no \"-----BEGIN CERTIFICATE-----\" block)",
                        cert.display()
                    )));
                }
                let identity = Identity::from_pem(chain, read(key, "tls_key")?);
                // Several rustls providers are linked (ring, aws-lc-rs): pick one.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Ok(Some(ServerTlsConfig::new().identity(identity)))
            }
            _ => Err(ExportError::invalid_option(
                "fluxo.tls_cert and fluxo.tls_key must be set together",
            )),
        }
    }

    /// Serves until `shutdown` resolves, then drains: no new streams, running
    /// streams get `fluxo.shutdown_timeout` to finish, the rest end FAILED
    /// with the reason, then background exports get what is left of it.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let shared = self.shared.clone();
        let settings = shared.settings.clone();
        // A client whose network vanished (no FIN) stops answering pings,
        // and its stream ends CANCELLED instead of holding a slot.
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        if let Some(tls) = self.tls()? {
            builder = builder
                .tls_config(tls)
                .map_err(|e| {
                    // tonic says only "transport error"; rustls's reason is its source.
                    let reason = std::error::Error::source(&e).map_or(e.to_string(), |c| c.to_string());
                    ExportError::invalid_option(format!(
                        "fluxo.tls_cert and fluxo.tls_key must be a PEM certificate chain and its private key: {reason}"
                    ))
                })?;
        }
        let max = settings.server.max_message_size;
        // tonic holds a gzip message to the same limit once inflated (0.14.3+).
        let service = ExportServiceServer::new(ExportGrpc::new(shared.clone()))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let service = super::cancel::WatchCancel(InterceptedService::new(
            service,
            auth_interceptor(&settings.server.auth_token),
        ));

        let (stop_grpc, grpc_stopped) = watch::channel(false);
        let (stop_http, http_stopped) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let grpc =
            tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc),
                wait(grpc_stopped),
            ));
        let status_router = crate::http::refusing_in_json(match self.ops {
            None => crate::http::status_router(shared.clone())
                .merge(crate::http::ops_router(shared.clone())),
            Some(_) => crate::http::status_router(shared.clone()),
        });
        let mut http = vec![tokio::spawn(
            axum::serve(self.status, status_router)
                .with_graceful_shutdown(wait(http_stopped.clone()))
                .into_future(),
        )];
        if let Some(ops) = self.ops {
            http.push(tokio::spawn(
                axum::serve(
                    ops,
                    crate::http::refusing_in_json(crate::http::ops_router(shared.clone())),
                )
                .with_graceful_shutdown(wait(http_stopped))
                .into_future(),
            ));
        }
        tracing::info!(component = "server", event = "listening", grpc = %settings.server.grpc_listen, status = %settings.server.status_listen, metrics = %settings.server.metrics_listen, "fluxo-export-server listening");

        shutdown.await;
        let started = Instant::now();
        let grace = settings.shutdown_timeout;
        tracing::info!(
            component = "server",
            event = "draining",
            streams = shared.sessions(),
            "shutting down: no new streams"
        );
        // New streams are refused from here (UNAVAILABLE), but the gRPC
        // listener stays up while the running ones finish: their clients
        // may still ask QueryTaskStatus on the connections they have.
        shared.start_draining();
        if tokio::time::timeout(grace, shared.sessions_finished())
            .await
            .is_err()
        {
            tracing::warn!(
                component = "server",
                event = "drain_timeout",
                streams = shared.sessions(),
                "streams still running after fluxo.shutdown_timeout: failing them"
            );
            shared.abort_sessions();
            let _ = tokio::time::timeout(Duration::from_secs(10), shared.sessions_finished()).await;
        }
        // Failed tasks need a moment to record their state and drop their spool.
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(5));
        let reason = super::service::shutdown_reason(&settings);
        let running =
            tokio::task::spawn_blocking(move || crate::task::wait_for_running(left, &reason))
                .await
                .unwrap_or(0);
        if running > 0 {
            tracing::warn!(
                component = "server",
                event = "abandoned",
                running,
                "exports still running at exit: failed, their uploads aborted"
            );
        }
        // Connections close once their streams have ended.
        stop_grpc.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
        // Downloads in flight get what is left of the grace period.
        stop_http.send_replace(true);
        let downloads = tokio::time::Instant::now()
            + grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(5));
        for h in http {
            let _ = tokio::time::timeout_at(downloads, h).await;
        }
        tracing::info!(
            component = "server",
            event = "stopped",
            duration = started.elapsed().as_secs_f64(),
            "server stopped"
        );
        Ok(())
    }
}
