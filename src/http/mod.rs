//! HTTP (feature `server`), with axum: the JSON status API
//! (`GET /v1/tasks/{id}`), signed downloads of local files
//! (`GET /v1/files/{key}?expires=…&signature=…`), and for operators
//! `/health/live`, `/health/ready` and `/metrics` (Prometheus text).

mod range;

use std::path::{Component, Path};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::StorageKind;
use crate::error::ErrorKind;
use crate::grpc::convert;
use crate::grpc::pb;
use crate::grpc::service::{bearer_matches, bearer_token, Shared};
use crate::storage::{local, signed};
use crate::task::registry::{now_ms, TaskState};
use crate::task::{self, metrics};

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// `router`, answering an unknown path or a method other than GET with
/// JSON, like every other refusal.
pub fn refusing_in_json(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(get_only)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", uri.path()),
    )
}

/// A method other than GET (or HEAD) on a served path.
async fn get_only(method: Method) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not served here: use GET"),
    )
}

/// The status API and downloads (`fluxo.status_listen`).
pub fn status_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/tasks/{id}", get(task_status))
        .route("/v1/files/{*key}", get(download))
        .with_state(shared)
}

/// Health and metrics (`fluxo.metrics_listen`): never behind the token.
pub fn ops_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(shared)
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = shared.settings.server.auth_token.expose().as_bytes();
    if expected.is_empty() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    bearer_matches(given.as_bytes(), expected)
}

fn status_name(code: i32) -> &'static str {
    pb::TaskStatus::try_from(code).map_or("TASK_STATUS_UNKNOWN", |s| s.as_str_name())
}

/// `TaskStatusResponse` as JSON: the same field names, enums by name.
pub fn status_json(r: &pb::TaskStatusResponse) -> serde_json::Value {
    json!({
        "task_id": r.task_id,
        "status": status_name(r.status),
        "oss_url": r.oss_url,
        "file_size_bytes": r.file_size_bytes,
        "record_count": r.record_count,
        "progress_percent": r.progress_percent,
        "checksum_sha256": r.checksum_sha256,
        "error_message": r.error_message,
        "error_code": r.error_code,
        "start_time": r.start_time,
        "completion_time": r.completion_time,
        "records_processed": r.records_processed,
        "estimated_time_remaining": r.estimated_time_remaining,
    })
}

async fn task_status(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &headers) {
        let mut refused = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong \"Authorization: Bearer <token>\" (fluxo.auth_token)",
        );
        // RFC 9110: a 401 names the scheme it wants.
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return refused;
    }
    let settings = shared.settings.clone();
    let lookup = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || task::status(&settings, &id)).await
    };
    match lookup {
        Ok(Ok(Some(s))) => Json(status_json(&convert::status_response(&s))).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("unknown task {id}")),
        // A malformed id is the caller's; a status file that cannot be
        // read is the server's, and its path stays in the server's log.
        Ok(Err(e)) if e.kind == ErrorKind::InvalidOption => {
            error(StatusCode::BAD_REQUEST, e.message)
        }
        Ok(Err(e)) => {
            tracing::error!(task_id = %id, error = %e, "task status not readable");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the status of task {id} cannot be read (see the server's log)"),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct Signed {
    expires: Option<u64>,
    signature: Option<String>,
}

/// The media type of a stored file, from its name and, for a CSV, its
/// byte-order mark: the only sign of its encoding a file keeps. A CSV
/// without one (GBK, GB18030, UTF-8 with `bom` off) gets no charset rather
/// than a wrong one.
fn content_type(key: &str, head: &[u8]) -> &'static str {
    use crate::writer::{csv::CsvEncoding, Format};
    match Path::new(key).extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("xlsx") => crate::writer::XLSX_MEDIA_TYPE,
        Some(e) if e.eq_ignore_ascii_case("gz") => crate::writer::GZIP_MEDIA_TYPE,
        Some(e) if e.eq_ignore_ascii_case("csv") => match head {
            [0xEF, 0xBB, 0xBF, ..] => Format::Csv.content_type(CsvEncoding::Utf8),
            [0xFF, 0xFE, ..] => Format::Csv.content_type(CsvEncoding::Utf16Le),
            _ => "text/csv",
        },
        _ => "application/octet-stream",
    }
}

/// `Content-Range: {range}`, digits and `bytes */-` only: always a header value.
fn set_content_range(response: &mut Response, range: String) {
    if let Ok(value) = header::HeaderValue::try_from(range) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
}

async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath(key): UrlPath<String>,
    query: Result<Query<Signed>, QueryRejection>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let server = &shared.settings.server;
    if server.download_secret.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "signed downloads are off: set fluxo.download_secret",
        );
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (Some(expires), Some(signature)) = (q.expires, q.signature) else {
        return error(StatusCode::FORBIDDEN, "expires and signature are required");
    };
    let now = now_ms() / 1000;
    match signed::verify(
        server.download_secret.expose().as_bytes(),
        &key,
        expires,
        &signature,
        now,
    ) {
        Ok(()) => {}
        Err(signed::Refusal::Expired) => {
            return error(StatusCode::FORBIDDEN, "the download link has expired")
        }
        Err(signed::Refusal::BadSignature) => {
            return error(
                StatusCode::FORBIDDEN,
                "the download link's signature is wrong",
            )
        }
    }
    let relative = Path::new(&key);
    if key.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return error(StatusCode::FORBIDDEN, "bad file key");
    }
    let path = shared.settings.local_dir.join(relative);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    // A key that names a folder opens, and reading it fails mid-response.
    let (len, modified) = match file.metadata().await {
        Ok(m) if m.is_file() => (m.len(), m.modified().ok()),
        _ => return error(StatusCode::NOT_FOUND, "no such file"),
    };
    let modified_nanos = modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = range::etag(len, modified_nanos);
    // Range is for GET only (a HEAD answers as the whole file would); an
    // If-Range that is no text matches no version.
    let range = (method == Method::GET)
        .then(|| headers.get(header::RANGE).and_then(|v| v.to_str().ok()))
        .flatten();
    let if_range = headers
        .get(header::IF_RANGE)
        .map(|v| v.to_str().unwrap_or(""));
    let part = match range::byte_range(range, if_range, &etag, len) {
        range::Ranged::Whole => None,
        range::Ranged::Part(part) => Some(part),
        range::Ranged::Unsatisfiable => {
            let mut refused = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {len} bytes"),
            );
            set_content_range(&mut refused, format!("bytes */{len}"));
            return refused;
        }
    };
    let mut head = [0u8; 3];
    // A regular file gives all the bytes asked for that it has.
    let read = file.read(&mut head).await.unwrap_or(0);
    let start = part.as_ref().map_or(0, |p| *p.start());
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
    }
    let sent = part.as_ref().map_or(len, |p| p.end() - p.start() + 1);
    let filename = key.rsplit('/').next().unwrap_or("export");
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(sent),
        256 * 1024,
    ));
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                content_type(&key, &head[..read]).to_owned(),
            ),
            (header::CONTENT_LENGTH, sent.to_string()),
            (
                header::CONTENT_DISPOSITION,
                crate::storage::content_disposition(filename),
            ),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response();
    if let Some(part) = part {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        set_content_range(
            &mut response,
            format!("bytes {}-{}/{len}", part.start(), part.end()),
        );
    }
    response
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    let settings = shared.settings.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let writable = |dir: &Path| local::writable(dir).map_err(|e| e.message);
        let spool = writable(&settings.work_dir.join("spool"));
        let store = match settings.storage {
            StorageKind::Local => writable(&settings.local_dir),
            kind => crate::storage::open(kind, &settings, &settings.local_dir, None)
                .and_then(|store| store.check())
                .map_err(|e| e.message),
        };
        (spool, store)
    })
    .await;
    let Ok((spool, store)) = checks else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "readiness check failed");
    };
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let ok = spool.is_ok() && store.is_ok();
    let body = Json(json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": { "spool": show(&spool), "storage": show(&store) },
    }));
    if ok {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let states = task::live_states(&shared.settings.work_dir);
    let active = states
        .iter()
        .filter(|s| matches!(s, TaskState::Processing | TaskState::Uploading))
        .count();
    let queued = states.iter().filter(|s| **s == TaskState::Queued).count();
    let mut text = metrics::render(active, queued);
    text.push_str(&format!(
        "# HELP export_grpc_streams gRPC StreamExport streams being served.\n# TYPE export_grpc_streams gauge\nexport_grpc_streams {}\n",
        shared.sessions()
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn a_csv_is_served_with_the_charset_its_bom_shows() {
        assert_eq!(
            content_type("a/x.csv", b"\xEF\xBB\xBFid"),
            "text/csv; charset=utf-8"
        );
        assert_eq!(
            content_type("a/x.CSV", b"\xFF\xFEi"),
            "text/csv; charset=UTF-16LE"
        );
        assert_eq!(
            content_type("a/x.csv", b"\xD5\xC5"),
            "text/csv",
            "GBK: no BOM, no charset"
        );
        assert_eq!(content_type("a/x.csv", b""), "text/csv");
        assert_eq!(content_type("a/x.csv.gz", b"\x1F\x8B"), "application/gzip");
        assert_eq!(
            content_type("a/x.xlsx", b"PK\x03"),
            crate::writer::XLSX_MEDIA_TYPE
        );
        assert_eq!(content_type("a/x", b""), "application/octet-stream");
    }
}
