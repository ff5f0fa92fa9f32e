//! HTTP: health, metrics, the JSON status API and signed downloads, checked
//! with a plain HTTP/1.1 client over loopback.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use common::free_port;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use fluxo::grpc::pb::{ExportFormat, TaskStatus};
use grpc_common::*;

struct Reply {
    code: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// GET over a fresh connection (blocking: run off the runtime).
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send("GET", addr, path, headers).await
}

async fn send(method: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let code = head[9..12].parse().unwrap();
        Reply {
            code,
            head,
            body: raw[split + 4..].to_vec(),
        }
    })
    .await
    .unwrap()
}

/// A server that signs download URLs of local files, under the base URL
/// it returns: its status address.
async fn download_server(extra: &[(&str, &str)]) -> (TestServer, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut settings = vec![
        ("status_listen", listen.as_str()),
        ("public_base_url", base.as_str()),
        ("download_secret", "download-secret-16"),
    ];
    settings.extend_from_slice(extra);
    let server = TestServer::start(&settings).await;
    (server, base)
}

/// Runs a small CSV export over gRPC; returns (task id, url).
async fn export(server: &TestServer, token: Option<&str>) -> (String, String) {
    let mut client = server.client().await;
    let mut call = Call::open_with(&mut client, token).await.unwrap();
    let mut meta = metadata("", ExportFormat::FormatCsv);
    meta.filename = "订单 11.csv".into();
    call.send(meta_msg(meta)).await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 50))).await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    (id, last.oss_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_is_open_and_ready_checks_the_folders() {
    let server = TestServer::start(&[("auth_token", "t0ken")]).await;
    let live = get(server.metrics, "/health/live", &[]).await;
    assert_eq!(live.code, 200, "{}", live.text());
    let ready = get(server.metrics, "/health/ready", &[]).await;
    assert_eq!(ready.code, 200, "{}", ready.text());
    assert_eq!(ready.json()["checks"]["spool"], "ok");

    let file = tempfile::NamedTempFile::new().unwrap();
    let broken = TestServer::start(&[("local_dir", &file.path().display().to_string())]).await;
    let ready = get(broken.metrics, "/health/ready", &[]).await;
    assert_eq!(ready.code, 503, "{}", ready.text());
    let storage = ready.json()["checks"]["storage"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        storage.starts_with(&format!(
            "cannot create the folder {}: ",
            file.path().display()
        )),
        "{storage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_use_the_seed_names() {
    let server = TestServer::start(&[]).await;
    export(&server, None).await;
    let m = get(server.metrics, "/metrics", &[]).await;
    assert_eq!(m.code, 200);
    assert!(m
        .head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4"));
    let text = m.text();
    for name in [
        "# TYPE export_active_tasks gauge",
        "# TYPE export_queued_tasks gauge",
        "# TYPE export_duration_seconds histogram",
        "# TYPE export_upload_duration_seconds histogram",
        "# TYPE export_errors_total counter",
        "# TYPE export_records_processed_total counter",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let records: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("export_records_processed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(records >= 50, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_refused_for_its_options_counts_as_an_option_error() {
    let server = TestServer::start(&[]).await;
    let option_errors = || async {
        let text = get(server.metrics, "/metrics", &[]).await.text();
        let line = r#"export_errors_total{kind="invalid_option"} "#;
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line} missing:\n{text}"))
            .parse::<u64>()
            .unwrap()
    };
    let before = option_errors().await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    let mut meta = metadata("", ExportFormat::FormatCsv);
    meta.columns.clear();
    call.send(meta_msg(meta)).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // No other test of this binary makes an option error.
    assert_eq!(
        option_errors().await,
        before + 1,
        "the refusal counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_api_answers_json_with_the_proto_field_names() {
    let server = TestServer::start(&[("auth_token", "t0ken")]).await;
    let (id, url) = export(&server, Some("t0ken")).await;
    let path = format!("/v1/tasks/{id}");
    let refused = get(server.status, &path, &[]).await;
    assert_eq!(refused.code, 401);
    assert!(
        refused
            .head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        refused.head
    );
    assert_eq!(
        get(server.status, &path, &[("Authorization", "Bearer nope!")])
            .await
            .code,
        401
    );
    let lower_case_scheme = [("Authorization", "bearer t0ken")];
    assert_eq!(
        get(server.status, &path, &lower_case_scheme).await.code,
        200
    );
    let auth = [("Authorization", "Bearer t0ken")];
    let r = get(server.status, &path, &auth).await;
    assert_eq!(r.code, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["task_id"], id);
    assert_eq!(j["status"], "TASK_STATUS_COMPLETED");
    assert_eq!(j["record_count"], 50);
    assert_eq!(j["records_processed"], 50);
    assert_eq!(j["progress_percent"], 100);
    assert_eq!(j["oss_url"], url);
    for field in [
        "file_size_bytes",
        "checksum_sha256",
        "error_message",
        "error_code",
        "start_time",
        "completion_time",
        "estimated_time_remaining",
    ] {
        assert!(j.get(field).is_some(), "{field} missing in {j}");
    }
    let unknown = get(
        server.status,
        "/v1/tasks/0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b",
        &auth,
    )
    .await;
    assert_eq!(unknown.code, 404);
    assert_eq!(
        get(server.status, "/v1/tasks/not-a-uuid", &auth).await.code,
        400
    );
    // A status file that cannot be read is the server's fault, and its
    // path is not the caller's business.
    let file = server.dir.path().join(format!("work/tasks/{id}.json"));
    std::fs::write(&file, b"").unwrap();
    let damaged = get(server.status, &path, &auth).await;
    assert_eq!(damaged.code, 500, "{}", damaged.text());
    assert!(
        !damaged.text().contains(&file.display().to_string()),
        "{}",
        damaged.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_downloads_serve_local_files_and_refuse_tampering() {
    let (server, base) = download_server(&[("url_expires", "600")]).await;
    let (_, url) = export(&server, None).await;
    let rest = url.strip_prefix(&base).unwrap_or_else(|| panic!("{url}"));
    assert!(
        rest.starts_with("/v1/files/") && rest.contains("?expires="),
        "{url}"
    );
    let ok = get(server.status, rest, &[]).await;
    assert_eq!(ok.code, 200, "{}", ok.text());
    assert!(ok.text().contains("000000000000000049"));
    let head = ok.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/csv; charset=utf-8\r\n"),
        "the BOM says UTF-8: {head}"
    );
    assert!(
        head.contains("filename*=utf-8''%e8%ae%a2%e5%8d%95%2011.csv"),
        "{head}"
    );
    // A key that names a folder, correctly signed: 404, not a dropped connection.
    let encoded_key = rest.strip_prefix("/v1/files/").unwrap();
    // The folders are the date and the task id: nothing to decode.
    let folder = &encoded_key[..encoded_key.rfind('/').unwrap()];
    let url = fluxo::storage::signed::sign_url("", b"download-secret-16", folder, u64::MAX / 2);
    let r = get(server.status, &url, &[]).await;
    assert_eq!(r.code, 404, "{url}: {}", r.text());

    // Tampered signature, key or expiry: 403.
    let (path, query) = rest.split_once('?').unwrap();
    let sig = query.rsplit('=').next().unwrap();
    let mut flipped = sig.to_owned();
    flipped.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    let expires: u64 = query
        .strip_prefix("expires=")
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for bad in [
        format!("{path}?expires={expires}&signature={flipped}"),
        format!("{path}?expires={}&signature={sig}", expires + 1),
        format!("{}x?expires={expires}&signature={sig}", path),
        path.to_owned(),
    ] {
        let r = get(server.status, &bad, &[]).await;
        assert_eq!(r.code, 403, "{bad}: {}", r.text());
    }
    // Correctly signed but expired: 403.
    let key = fluxo::storage::signed::encode_path("x.csv");
    let old = fluxo::storage::signed::sign_url("", b"download-secret-16", "x.csv", 1000);
    assert!(old.contains(&key));
    let r = get(server.status, &old, &[]).await;
    assert_eq!(r.code, 403);
    assert!(r.text().contains("expired"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_is_json() {
    let server = TestServer::start(&[("download_secret", "download-secret-16")]).await;
    for (path, code, says) in [
        ("/v1/tasks/", 404, "no such path: /v1/tasks/"),
        ("/nothing", 404, "no such path: /nothing"),
        (
            "/v1/files/a.csv?expires=1&expires=2&signature=x",
            400,
            "duplicate field `expires`",
        ),
        ("/v1/files/a.csv?expires=-1&signature=x", 400, "expires"),
    ] {
        let r = get(server.status, path, &[]).await;
        assert_eq!(r.code, code, "{path}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(says), "{path}: {error}");
    }
    let posted = send(
        "POST",
        server.status,
        "/v1/files/a.csv",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(posted.code, 405, "{}", posted.text());
    assert_eq!(posted.json()["error"], "POST is not served here: use GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_download_resumes_from_a_byte_range() {
    let (server, base) = download_server(&[]).await;
    let (_, url) = export(&server, None).await;
    let path = url.strip_prefix(&base).unwrap();
    let whole = get(server.status, path, &[]).await;
    assert_eq!(whole.code, 200, "{}", whole.text());
    let len = whole.body.len();
    let head = whole.head.to_ascii_lowercase();
    assert!(head.contains("accept-ranges: bytes\r\n"), "{head}");
    let etag = whole
        .head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .unwrap_or_else(|| panic!("no etag: {head}"))
        .to_owned();

    // The rest of the file after the first 100 bytes, as a resuming client
    // asks for it: the two pieces make the file again.
    let rest = get(
        server.status,
        path,
        &[("Range", "bytes=100-"), ("If-Range", &etag)],
    )
    .await;
    assert_eq!(rest.code, 206, "{}", rest.text());
    assert!(
        rest.head
            .to_ascii_lowercase()
            .contains(&format!("content-range: bytes 100-{}/{len}\r\n", len - 1)),
        "{}",
        rest.head
    );
    assert!(rest
        .head
        .to_ascii_lowercase()
        .contains(&format!("content-length: {}\r\n", len - 100)));
    assert_eq!([&whole.body[..100], &rest.body[..]].concat(), whole.body);

    let middle = get(server.status, path, &[("Range", "bytes=3-12")]).await;
    assert_eq!((middle.code, &middle.body[..]), (206, &whole.body[3..13]));
    let tail = get(server.status, path, &[("Range", "bytes=-7")]).await;
    assert_eq!((tail.code, &tail.body[..]), (206, &whole.body[len - 7..]));

    // Another version's tag: the whole file, never a splice of two.
    let other = get(
        server.status,
        path,
        &[("Range", "bytes=100-"), ("If-Range", "\"0-0\"")],
    )
    .await;
    assert_eq!((other.code, &other.body), (200, &whole.body));

    // HEAD answers as the whole file would: Range is for GET.
    let head = send("HEAD", server.status, path, &[("Range", "bytes=3-12")]).await;
    assert_eq!(head.code, 200, "{}", head.head);
    assert!(
        head.head
            .to_ascii_lowercase()
            .contains(&format!("content-length: {len}\r\n")),
        "{}",
        head.head
    );

    let past = get(server.status, path, &[("Range", &format!("bytes={len}-"))]).await;
    assert_eq!(past.code, 416, "{}", past.text());
    assert!(
        past.head
            .to_ascii_lowercase()
            .contains(&format!("content-range: bytes */{len}\r\n")),
        "{}",
        past.head
    );
    // A range that is not one valid byte range is ignored.
    let several = get(server.status, path, &[("Range", "bytes=0-1,5-6")]).await;
    assert_eq!((several.code, &several.body), (200, &whole.body));
}

/// `scripts/test-servers.sh env` names a real S3 server (s3s-fs); without it
/// the S3 tests only check a store that does not answer.
fn s3_env() -> Option<Vec<(&'static str, String)>> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(vec![
        ("storage", "s3".into()),
        ("s3_endpoint", get("FLUXO_TEST_S3_ENDPOINT")?),
        ("s3_bucket", get("FLUXO_TEST_S3_BUCKET")?),
        ("s3_access_key_id", get("FLUXO_TEST_S3_AK")?),
        ("s3_secret_access_key", get("FLUXO_TEST_S3_SK")?),
        ("s3_region", "us-east-1".into()),
        ("part_size", "5242880".into()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_asks_the_object_store() {
    let dead = TestServer::start(&[
        ("storage", "s3"),
        ("s3_endpoint", "http://127.0.0.1:1"),
        ("s3_bucket", "b"),
        ("s3_access_key_id", "ak"),
        ("s3_secret_access_key", "sk"),
        ("part_size", "5242880"),
        ("max_retries", "0"),
    ])
    .await;
    let r = get(dead.metrics, "/health/ready", &[]).await;
    assert_eq!(r.code, 503, "{}", r.text());
    assert!(r.json()["checks"]["storage"]
        .as_str()
        .unwrap()
        .contains("does not answer"));

    let Some(env) = s3_env() else {
        eprintln!("FLUXO_TEST_S3_* not set: the live S3 half is skipped");
        return;
    };
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let live = TestServer::start(&pairs).await;
    let r = get(live.metrics, "/health/ready", &[]).await;
    assert_eq!(r.code, 200, "{}", r.text());

    // A gRPC export lands in the store; its signed URL downloads it.
    let (_, url) = export(&live, None).await;
    assert!(url.starts_with(&env[1].1), "{url}");
    let rest = &url[env[1].1.len()..];
    let endpoint: SocketAddr = env[1].1.trim_start_matches("http://").parse().unwrap();
    let r = get(endpoint, rest, &[]).await;
    assert_eq!(r.code, 200, "{}", r.text());
    assert!(r.text().contains("000000000000000049"));
}
