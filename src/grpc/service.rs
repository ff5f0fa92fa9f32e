//! `ExportService`: one session per `StreamExport` stream, driving a core
//! [`Export`]. Blocking core calls (`add` under back-pressure, `finish`) run
//! on tokio's blocking pool, and the next message is read only once the
//! previous batch is queued: a slow writer slows the client through HTTP/2
//! flow control, never through buffering here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::cancel::ClientGone;
use super::convert;
use super::pb::{
    self, export_request::Payload, export_service_server::ExportService, ExportRequest,
    ExportResponse, TaskStatusRequest, TaskStatusResponse,
};
use crate::config::Settings;
use crate::error::{ErrorKind, ExportError};
use crate::schema::ColumnType;
use crate::task::idempotency::IdempotencyMap;
use crate::task::registry::{now_ms, TaskState};
use crate::task::{self, metrics, Export};

/// What every session of one server shares.
pub struct Shared {
    pub settings: Settings,
    pub idempotency: IdempotencyMap,
    /// Serializes the queue-limit check with the task's creation.
    admit: tokio::sync::Mutex<()>,
    /// Set when the shutdown grace period is over: sessions fail their task.
    abort: watch::Sender<bool>,
    draining: AtomicBool,
    sessions: AtomicUsize,
    sessions_done: tokio::sync::Notify,
}

impl Shared {
    pub fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            idempotency: IdempotencyMap::new(&settings.work_dir),
            settings,
            admit: tokio::sync::Mutex::new(()),
            abort: watch::channel(false).0,
            draining: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            sessions_done: tokio::sync::Notify::new(),
        })
    }

    /// Streams being served now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    /// No new streams; `/health/ready` turns 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Fails every running session's task (end of the shutdown grace period).
    pub fn abort_sessions(&self) {
        self.abort.send_replace(true);
    }

    /// Waits until no stream is served.
    pub async fn sessions_finished(&self) {
        loop {
            let notified = self.sessions_done.notified();
            if self.sessions() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a session while it lives.
struct SessionGuard(Arc<Shared>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
        self.0.sessions_done.notify_waiters();
    }
}

/// Checks `authorization: Bearer <fluxo.auth_token>` in constant time.
pub fn auth_interceptor(
    token: &crate::config::Secret,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let expected = token.expose().as_bytes().to_vec();
    move |req: Request<()>| {
        if expected.is_empty() {
            return Ok(req);
        }
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .unwrap_or("");
        if bearer_matches(given.as_bytes(), &expected) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong \"authorization: Bearer <token>\" (fluxo.auth_token)",
            ))
        }
    }
}

/// The token of an `authorization: Bearer <token>` value; the scheme's
/// case does not matter (RFC 9110, 11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Constant-time token comparison (length is not secret).
pub fn bearer_matches(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

pub struct ExportGrpc {
    shared: Arc<Shared>,
}

impl ExportGrpc {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn status_of(e: &ExportError) -> Status {
    let message = convert::in_proto_terms(&e.message);
    match e.kind {
        ErrorKind::InvalidOption | ErrorKind::InvalidRow => Status::invalid_argument(message),
        ErrorKind::Cancelled => Status::cancelled(message),
        ErrorKind::Storage => Status::unavailable(message),
        ErrorKind::Busy => Status::resource_exhausted(message),
        ErrorKind::Export => Status::internal(message),
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, Status> {
    r.map_err(|e| Status::internal(format!("export worker call failed: {e}")))
}

type Outbound = mpsc::Sender<Result<ExportResponse, Status>>;

/// Why a session stopped reading.
// One per message, moved once and matched at once: boxing the message
// would cost an allocation for each batch to save stack bytes.
#[allow(clippy::large_enum_variant)]
enum Inbound {
    Message(ExportRequest),
    HalfClosed,
    /// The client cancelled, disconnected or broke the stream.
    Gone(String),
    /// A message could not be decoded (too large, malformed).
    Bad(Status),
    Shutdown,
    /// Nothing came for `fluxo.stream_idle_timeout`.
    Idle,
}

/// One stream's inputs: its messages, its response channel, the cancel
/// flag and the server's abort signal.
struct Io {
    inbound: Streaming<ExportRequest>,
    out: Outbound,
    gone: ClientGone,
    abort: watch::Receiver<bool>,
    /// `fluxo.stream_idle_timeout`; zero: none.
    idle: Duration,
}

async fn next(io: &mut Io) -> Inbound {
    let Io {
        inbound,
        out,
        gone,
        abort,
        idle,
    } = io;
    let idle = *idle;
    if *abort.borrow() {
        return Inbound::Shutdown;
    }
    tokio::select! {
        m = inbound.message() => match m {
            Ok(Some(m)) => Inbound::Message(m),
            Ok(None) if gone.is_set() => Inbound::Gone("the client cancelled the call".into()),
            Ok(None) => Inbound::HalfClosed,
            Err(status) if gone.is_set() => Inbound::Gone(status.message().to_owned()),
            // tonic's own text does not name the setting that limits it
            // (OUT_OF_RANGE as sent, RESOURCE_EXHAUSTED once inflated).
            Err(status) if matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) => Inbound::Bad(Status::new(status.code(), format!(
                "{} (the server's fluxo.max_message_size): send smaller DataBatches",
                status.message()
            ))),
            // A message that cannot be decoded stays INTERNAL, the code
            // gRPC's status code table gives a request that does not parse.
            Err(status) => Inbound::Bad(status),
        },
        _ = out.closed() => Inbound::Gone("the client stopped reading responses".into()),
        _ = abort.wait_for(|a| *a) => Inbound::Shutdown,
        _ = tokio::time::sleep(idle), if !idle.is_zero() => Inbound::Idle,
    }
}

fn idle_reason(settings: &Settings) -> String {
    format!(
        "the client sent nothing for {} s (fluxo.stream_idle_timeout)",
        settings.server.stream_idle_timeout.as_secs()
    )
}

/// How a stream's task ends when its client goes away: CANCELLED, with why
/// in its status and in its one log line.
fn client_gone(why: &str) -> ExportError {
    ExportError::new(
        ErrorKind::Cancelled,
        format!("the stream ended before the export did: {why}"),
    )
}

pub(super) fn shutdown_reason(settings: &Settings) -> String {
    format!(
        "the server shut down before the export finished (fluxo.shutdown_timeout = {} s)",
        settings.shutdown_timeout.as_secs()
    )
}

/// Serves one `StreamExport` stream until its final response.
async fn session(shared: Arc<Shared>, mut io: Io) -> Result<(), Status> {
    let settings = &shared.settings;
    let metadata = match next(&mut io).await {
        Inbound::Message(ExportRequest {
            payload: Some(Payload::Metadata(m)),
        }) => m,
        Inbound::Message(ExportRequest {
            payload: Some(Payload::Batch(b)),
        }) => {
            return Err(Status::invalid_argument(format!(
                "DataBatch (batch_sequence {}) arrived before ExportMetadata: the first message must be the metadata",
                b.batch_sequence
            )))
        }
        Inbound::Message(ExportRequest {
            payload: Some(Payload::Sheet(_)),
        }) => {
            return Err(Status::invalid_argument(
                "SheetStart arrived before ExportMetadata: the first message must be the metadata",
            ))
        }
        Inbound::Message(_) => {
            return Err(Status::invalid_argument(
                "empty ExportRequest: set metadata, batch or sheet",
            ))
        }
        Inbound::HalfClosed => {
            return Err(Status::invalid_argument(
                "the stream ended before any ExportMetadata",
            ))
        }
        Inbound::Gone(why) => return Err(Status::cancelled(why)),
        Inbound::Bad(status) => return Err(status),
        Inbound::Shutdown => return Err(Status::unavailable(shutdown_reason(settings))),
        Inbound::Idle => return Err(Status::deadline_exceeded(idle_reason(settings))),
    };

    let request_id = metadata.request_id.clone();
    // One stream at a time from the request id's lookup to its task's
    // start: two retries racing each other must not both start an export.
    let admit = shared.admit.lock().await;
    if !request_id.is_empty() {
        if let Some(task_id) = shared
            .idempotency
            .get(&request_id, settings.server.idempotency_ttl)
        {
            let existing = task::status(settings, &task_id).ok().flatten();
            if let Some(status) =
                existing.filter(|s| !matches!(s.state, TaskState::Failed | TaskState::Cancelled))
            {
                drop(admit);
                tracing::info!(task_id = %task_id, request_id = %request_id, component = "grpc", event = "idempotent_replay", "request_id seen before: returning its task");
                return replay(&shared, status.task_id, io).await;
            }
        }
    }

    let spec = convert::spec(&metadata, settings).map_err(|e| refused(&e))?;
    let mut types: Arc<[ColumnType]> = spec.columns.iter().map(|c| c.column_type).collect();
    let mut names: Arc<[String]> = spec.columns.iter().map(|c| c.name.clone()).collect();
    let mut export = {
        let live = task::live_states(&settings.work_dir)
            .into_iter()
            .filter(|s| !s.is_final())
            .count();
        let limit = settings.max_concurrent_tasks + settings.server.task_queue_size;
        if live >= limit {
            return Err(Status::resource_exhausted(format!(
                "{live} exports are running or queued (fluxo.max_concurrent_tasks = {} + fluxo.task_queue_size = {}); retry later",
                settings.max_concurrent_tasks, settings.server.task_queue_size
            )));
        }
        let s = settings.clone();
        joined(tokio::task::spawn_blocking(move || Export::start(spec, &s)).await)?
            .map_err(|e| refused(&e))?
    };
    let task_id = export.task_id().to_owned();
    if !request_id.is_empty() {
        if let Err(e) =
            shared
                .idempotency
                .insert(&request_id, &task_id, settings.server.idempotency_ttl)
        {
            tracing::warn!(task_id = %task_id, request_id = %request_id, component = "grpc", error = %e, "request id not recorded: a retry would start another export");
        }
    }
    drop(admit);
    tracing::info!(task_id = %task_id, request_id = %request_id, component = "grpc", event = "stream_started", "export stream started");
    let first = match task::status(settings, &task_id) {
        Ok(Some(s)) => convert::export_response(&s),
        _ => ExportResponse {
            task_id: task_id.clone(),
            status: pb::TaskStatus::Queued as i32,
            start_time: now_ms() as i64,
            ..Default::default()
        },
    };
    // The final response starts when the first one (and the task) did.
    let start_ms = first.start_time as u64;
    if io.out.send(Ok(first)).await.is_err() {
        export.cancel();
        return Ok(());
    }

    let mut last_seq: Option<i64> = None;
    loop {
        let batch = match next(&mut io).await {
            Inbound::HalfClosed => break,
            Inbound::Gone(why) => {
                // Logged once, by the task, with this reason.
                export.fail(client_gone(&why));
                return Err(Status::cancelled(format!("export cancelled: {why}")));
            }
            Inbound::Bad(status) => {
                export.fail(ExportError::invalid_row(status.message()));
                return Err(status);
            }
            Inbound::Shutdown => {
                let reason = shutdown_reason(settings);
                export.fail(ExportError::export(reason.clone()));
                return Err(Status::unavailable(reason));
            }
            Inbound::Idle => {
                let reason = idle_reason(settings);
                tracing::warn!(task_id = %task_id, component = "grpc", event = "stream_idle", "{reason}: export failed");
                export.fail(ExportError::export(reason.clone()));
                return Err(Status::deadline_exceeded(reason));
            }
            Inbound::Message(ExportRequest { payload }) => match payload {
                Some(Payload::Batch(b)) => b,
                Some(Payload::Sheet(sheet)) => {
                    let columns = match convert::sheet_columns(&sheet.columns) {
                        Ok(c) => c,
                        Err(e) => return Err(fail_with(&mut export, e)),
                    };
                    let (returned, result) = joined(
                        tokio::task::spawn_blocking(move || {
                            let result = export.start_sheet(&sheet.name, columns);
                            (export, result)
                        })
                        .await,
                    )?;
                    export = returned;
                    if let Err(e) = result {
                        return Err(fail_with(&mut export, e));
                    }
                    types = export.columns().iter().map(|c| c.column_type).collect();
                    names = export.columns().iter().map(|c| c.name.clone()).collect();
                    continue;
                }
                Some(Payload::Metadata(_)) => {
                    return Err(fail(
                        &mut export,
                        "ExportMetadata sent twice: it must be the first message only",
                    ))
                }
                None => {
                    return Err(fail(
                        &mut export,
                        "empty ExportRequest: set metadata, batch or sheet",
                    ))
                }
            },
        };
        let seq = batch.batch_sequence;
        let in_order = match last_seq {
            None => seq == 0 || seq == 1,
            Some(prev) => seq == prev + 1,
        };
        if !in_order {
            let expected = last_seq.map_or("0 or 1".to_owned(), |p| (p + 1).to_string());
            return Err(fail(
                &mut export,
                &format!("batch_sequence {seq} out of order: expected {expected}"),
            ));
        }
        last_seq = Some(seq);
        let (types, names) = (types.clone(), names.clone());
        let (returned, result) = joined(
            tokio::task::spawn_blocking(move || {
                let result = convert::batch(&batch, &types, &names, export.new_batch())
                    .and_then(|b| export.add(b));
                (export, result)
            })
            .await,
        )?;
        export = returned;
        if let Err(e) = result {
            if e.kind == ErrorKind::InvalidRow {
                export.fail(e.clone());
            }
            tracing::warn!(task_id = %task_id, component = "grpc", event = "batch_rejected", error = %e, "batch rejected");
            return Err(status_of(&e));
        }
    }

    let canceller = export.canceller();
    let mut finishing = tokio::task::spawn_blocking(move || {
        let outcome = export.finish();
        (export, outcome)
    });
    let finished = tokio::select! {
        // A file finished as the grace period ends is still reported.
        biased;
        finished = &mut finishing => finished,
        // Past the shutdown grace period: the client hears why now, not
        // when an upload to a store that hangs gives up.
        () = async { let _ = io.abort.wait_for(|a| *a).await; } => {
            let reason = shutdown_reason(settings);
            canceller.fail(ExportError::export(reason.clone()));
            return Err(Status::unavailable(reason));
        }
        // A client that cancels after its half-close, while the file is
        // finished: the task ends CANCELLED, as for a cancel mid-stream.
        _ = io.out.closed() => {
            // An upload in progress is stopped and aborted.
            canceller.fail(client_gone(
                "the client stopped reading responses while the file was finished",
            ));
            finishing.await
        }
    };
    let (_export, outcome) = joined(finished)?;
    // The task's final status, as QueryTaskStatus and a replay answer it
    // (a failed export's rows so far, its end time); the outcome if the
    // status cannot be read.
    let response = match task::status(settings, &task_id) {
        Ok(Some(s)) if s.state.is_final() => convert::export_response(&s),
        _ => convert::outcome_response(&task_id, start_ms, &outcome),
    };
    tracing::info!(task_id = %task_id, component = "grpc", event = "stream_finished", status = response.status, "export stream finished");
    let _ = io.out.send(Ok(response)).await;
    Ok(())
}

/// Ends the task FAILED with `reason`; the stream gets INVALID_ARGUMENT.
fn fail(export: &mut Export, reason: &str) -> Status {
    fail_with(export, ExportError::invalid_row(reason))
}

/// Ends the task FAILED with `error`; the stream gets its status.
fn fail_with(export: &mut Export, error: ExportError) -> Status {
    tracing::warn!(task_id = %export.task_id(), component = "grpc", event = "protocol_error", reason = %error, "stream rejected");
    let status = status_of(&error);
    export.fail(error);
    status
}

/// A stream refused before it had a task: counted as a failed export is.
fn refused(e: &ExportError) -> Status {
    metrics::count_failure(e.kind);
    status_of(e)
}

/// A retried request: answers with the existing task, ignores the batches,
/// and after the half-close reports the task's final state.
async fn replay(shared: &Shared, task_id: String, mut io: Io) -> Result<(), Status> {
    let settings = &shared.settings;
    let current = || {
        task::status(settings, &task_id)
            .ok()
            .flatten()
            .ok_or_else(|| Status::not_found(format!("task {task_id} is no longer known")))
    };
    if io
        .out
        .send(Ok(convert::export_response(&current()?)))
        .await
        .is_err()
    {
        return Ok(());
    }
    loop {
        match next(&mut io).await {
            Inbound::Message(_) => continue,
            Inbound::HalfClosed => break,
            Inbound::Gone(why) => return Err(Status::cancelled(why)),
            Inbound::Bad(status) => return Err(status),
            Inbound::Shutdown => return Err(Status::unavailable(shutdown_reason(settings))),
            Inbound::Idle => return Err(Status::deadline_exceeded(idle_reason(settings))),
        }
    }
    loop {
        let status = current()?;
        if status.state.is_final() {
            let _ = io.out.send(Ok(convert::export_response(&status))).await;
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(convert::POLL) => {}
            _ = io.out.closed() => return Ok(()),
        }
    }
}

#[tonic::async_trait]
impl ExportService for ExportGrpc {
    type StreamExportStream = ReceiverStream<Result<ExportResponse, Status>>;

    async fn stream_export(
        &self,
        request: Request<Streaming<ExportRequest>>,
    ) -> Result<Response<Self::StreamExportStream>, Status> {
        if self.shared.is_draining() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        let gone = request
            .extensions()
            .get::<ClientGone>()
            .cloned()
            .unwrap_or_default();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        let shared = self.shared.clone();
        shared.sessions.fetch_add(1, Ordering::SeqCst);
        let io = Io {
            inbound,
            out: tx.clone(),
            gone,
            abort: shared.abort.subscribe(),
            idle: shared.settings.server.stream_idle_timeout,
        };
        tokio::spawn(async move {
            let _guard = SessionGuard(shared.clone());
            if let Err(status) = session(shared, io).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn query_task_status(
        &self,
        request: Request<TaskStatusRequest>,
    ) -> Result<Response<TaskStatusResponse>, Status> {
        let id = request.into_inner().task_id;
        let settings = self.shared.settings.clone();
        let found = {
            let id = id.clone();
            joined(tokio::task::spawn_blocking(move || task::status(&settings, &id)).await)?
        };
        match found {
            Ok(Some(s)) => Ok(Response::new(convert::status_response(&s))),
            Ok(None) => Err(Status::not_found(format!("unknown task {id}"))),
            Err(e) => Err(status_of(&e)),
        }
    }
}
