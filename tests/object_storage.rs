//! Exports uploaded to a real S3 server: s3s-fs, which checks SigV4, started
//! per test on a free loopback port (`scripts/test-servers.sh install` puts
//! the binary in ~/.cache/fluxo/tools/bin; `FLUXO_S3S_FS` may name another).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, walk};
use fluxo::config::{ExportSpec, OptionValue, Settings};
use fluxo::schema::{ColumnType, Value};
use fluxo::task::registry::{TaskState, TaskStatus};
use fluxo::task::{self, Export, ExportOutcome};
use fluxo::{ErrorKind, ExportError};
use sha2::{Digest, Sha256};

const BUCKET: &str = "fluxo-test";
const ACCESS_KEY: &str = "fluxo-ak";
const SECRET: &str = "fluxo-sk-0123456789";

struct S3Server {
    child: Child,
    port: u16,
    data: tempfile::TempDir,
}

fn s3s_fs_binary() -> PathBuf {
    std::env::var_os("FLUXO_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/fluxo/tools/bin/s3s-fs")
        })
}

impl S3Server {
    fn start() -> Self {
        let binary = s3s_fs_binary();
        assert!(
            binary.exists(),
            "{} is missing: run scripts/test-servers.sh install",
            binary.display()
        );
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir(data.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, data }
    }

    fn object(&self, key: &str) -> PathBuf {
        self.data.path().join(BUCKET).join(key)
    }

    fn settings(&self, dir: &Path, secret: &str, extra: &[(&str, &str)]) -> Settings {
        settings_for(self.port, dir, secret, extra)
    }

    /// Multipart uploads s3s-fs still holds (it keeps them beside the buckets).
    fn open_uploads(&self) -> Vec<PathBuf> {
        walk(self.data.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".upload"))
            })
            .collect()
    }
}

/// Settings for an S3 store on loopback `port`, files below `dir`.
fn settings_for(port: u16, dir: &Path, secret: &str, extra: &[(&str, &str)]) -> Settings {
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut values: Vec<(String, String)> = vec![
        ("storage".into(), "s3".into()),
        ("s3_endpoint".into(), endpoint),
        ("s3_bucket".into(), BUCKET.into()),
        ("s3_access_key_id".into(), ACCESS_KEY.into()),
        ("s3_secret_access_key".into(), secret.into()),
        ("local_dir".into(), dir.join("out").display().to_string()),
        ("work_dir".into(), dir.join("work").display().to_string()),
    ];
    values.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::resolve_with_env(
        |key| {
            values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        },
        |_| None,
    )
    .unwrap()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(settings: &Settings, format: &str, filename: &str) -> ExportSpec {
    let s = |v: &str| OptionValue::Str(v.into());
    let options = OptionValue::Map(vec![
        ("format".into(), s(format)),
        ("filename".into(), s(filename)),
        (
            "columns".into(),
            OptionValue::List(vec![s("Id"), s("Text")]),
        ),
    ]);
    ExportSpec::from_options(&options, settings).unwrap()
}

/// Adds `rows` rows of ~100 bytes each.
fn feed(export: &mut Export, rows: usize) {
    let text = "x".repeat(90);
    let mut done = 0;
    while done < rows {
        let mut batch = export.new_batch();
        for i in done..(done + 5_000).min(rows) {
            batch.push(Value::Int(i as i64), ColumnType::Auto).unwrap();
            batch
                .push(Value::Bytes(text.as_bytes()), ColumnType::Auto)
                .unwrap();
            batch.end_row();
        }
        done += batch.rows();
        export.add(batch).unwrap();
    }
}

fn export(settings: &Settings, rows: usize, filename: &str) -> Result<ExportOutcome, ExportError> {
    let mut export = Export::start(spec(settings, "csv", filename), settings)?;
    feed(&mut export, rows);
    export.finish()
}

struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 GET, enough for a loopback server and a signed URL.
fn get(url: &str) -> Response {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

#[test]
fn multipart_upload_downloads_byte_identical_under_its_filename() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    // ~20 MB in 5 MiB parts: four or more parts, two in flight.
    let settings = server.settings(
        dir.path(),
        SECRET,
        &[("part_size", "5242880"), ("parallel_parts", "2")],
    );
    let result = export(&settings, 200_000, "订单 11.csv").unwrap();
    assert!(
        result.bytes > 3 * 5_242_880,
        "{} bytes is not multipart",
        result.bytes
    );
    assert_eq!(
        result.path, None,
        "the spool copy is gone without keep_local"
    );
    assert!(result
        .key
        .ends_with(&format!("/{}/订单 11.csv", result.task_id)));
    assert_eq!(
        std::fs::metadata(server.object(&result.key)).unwrap().len(),
        result.bytes
    );

    let response = get(&result.url);
    assert_eq!(response.status, 200, "{}", response.headers);
    assert_eq!(hex::encode(Sha256::digest(&response.body)), result.sha256);
    let headers = response.headers.to_ascii_lowercase();
    assert!(
        headers.contains("content-disposition: attachment;")
            && response
                .headers
                .contains("filename*=UTF-8''%E8%AE%A2%E5%8D%95%2011.csv"),
        "{}",
        response.headers
    );

    let status = task::status(&settings, &result.task_id).unwrap().unwrap();
    assert_eq!(status.state, TaskState::Completed);
    assert_eq!(status.key.as_deref(), Some(result.key.as_str()));
    assert_eq!(status.url.as_deref(), Some(result.url.as_str()));
}

#[test]
fn a_single_part_upload_carries_type_and_checksum() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = server.settings(
        dir.path(),
        SECRET,
        &[("keep_local", "1"), ("key_prefix", "reports")],
    );
    let result = export(&settings, 100, "small").unwrap();
    assert!(result.key.starts_with("reports/"));
    let kept = result.path.clone().expect("keep_local leaves a local copy");
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&kept).unwrap())),
        result.sha256
    );
    let response = get(&result.url);
    assert_eq!(response.status, 200);
    let headers = response.headers.to_ascii_lowercase();
    assert!(
        headers.contains(&format!("x-amz-meta-sha256: {}", result.sha256)),
        "{headers}"
    );
    assert!(headers.contains("content-type: text/csv"), "{headers}");
}

#[test]
fn tampered_and_expired_urls_are_refused() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = server.settings(dir.path(), SECRET, &[("url_expires", "1")]);
    let result = export(&settings, 10, "a.csv").unwrap();
    let signature_at = result.url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = result.url.clone().into_bytes();
    tampered[signature_at] = if tampered[signature_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    assert_eq!(get(&String::from_utf8(tampered).unwrap()).status, 403);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(get(&result.url).status, 403, "expired URL must be refused");
}

#[test]
fn a_wrong_secret_fails_clearly_and_leaves_no_object() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = server.settings(
        dir.path(),
        "not-the-secret",
        &[("max_retries", "0"), ("keep_local", "1")],
    );
    let err = export(&settings, 10, "a.csv").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Storage);
    assert!(
        err.message.contains("403") || err.message.contains("SignatureDoesNotMatch"),
        "{err}"
    );
    assert!(
        !err.message.contains("not-the-secret"),
        "the secret leaked: {err}"
    );
    let objects = walk(&server.data.path().join(BUCKET));
    assert!(objects.is_empty(), "objects left: {objects:?}");
    // keep_local's copy went back to the spool, and its task's folder
    // (named by the task id) is gone.
    let mut folders = vec![dir.path().join("out")];
    let mut task_folders = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                if entry.file_name().len() == 36 {
                    task_folders.push(entry.path());
                }
                folders.push(entry.path());
            }
        }
    }
    assert_eq!(task_folders, Vec::<PathBuf>::new(), "task folders left");
}

#[test]
fn a_server_gone_mid_upload_fails_after_retries_without_an_object() {
    let mut server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = server.settings(
        dir.path(),
        SECRET,
        &[
            ("part_size", "5242880"),
            ("parallel_parts", "1"),
            ("max_retries", "2"),
        ],
    );
    let mut export = Export::start(spec(&settings, "csv", "big.csv"), &settings).unwrap();
    let id = export.task_id().to_owned();
    feed(&mut export, 600_000); // ~60 MB
    export.finish_async().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = task::status(&settings, &id).unwrap().unwrap();
        if status.state == TaskState::Uploading && status.uploaded_bytes > 0 {
            break;
        }
        assert!(
            !status.state.is_final(),
            "finished before the server could be stopped: {status:?}"
        );
        assert!(Instant::now() < deadline, "never reached UPLOADING");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let failed = (0..600).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let s = task::status(&settings, &id).unwrap().unwrap();
        s.state.is_final().then_some(s)
    });
    let status = failed.expect("the task ends");
    assert_eq!(status.state, TaskState::Failed, "{status:?}");
    assert!(status.error.unwrap().contains("upload to s3://fluxo-test"));
    let objects: Vec<_> = walk(&server.data.path().join(BUCKET))
        .into_iter()
        .filter(|p| p.ends_with("big.csv"))
        .collect();
    assert!(objects.is_empty(), "partial object: {objects:?}");
    let kept: Vec<_> = walk(&dir.path().join("work/spool"));
    assert!(
        kept.iter()
            .all(|p| p.extension().is_some_and(|e| e == "failed")),
        "only the failed upload's file is kept for fluxo.temp_retention: {kept:?}"
    );
}

#[test]
fn missing_settings_are_named_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::resolve_with_env(
        |key| match key {
            "storage" => Some("s3".into()),
            "work_dir" => Some(dir.path().display().to_string()),
            _ => None,
        },
        |_| None,
    )
    .unwrap();
    let err = Export::start(spec(&settings, "csv", "a.csv"), &settings)
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidOption);
    assert!(err.message.contains("fluxo.s3_endpoint"), "{err}");
}

/// What the fault proxy does to part uploads (`PUT …?partNumber=`) from the
/// `from_part`-th part request on, retries included; other requests pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answers `503 SlowDown`, as S3 does when it throttles.
    SlowDown,
    /// Reads the request head, then neither reads the body nor answers.
    Stall,
    /// Passes the first CompleteMultipartUpload (`POST …?uploadId=`) on but
    /// never answers it: a store that completes the object after the
    /// client stopped waiting.
    CompleteAnsweredTooLate,
    /// Answers the first part request `400 RequestTimeout`, as S3 and OSS
    /// do when a request's body comes too slowly.
    RequestTimeout,
    /// Answers every request `301 PermanentRedirect` to another host, as S3
    /// does for a bucket of another region.
    Redirect,
    /// Passes every PutObject (a `PUT` without `partNumber=`) on but never
    /// answers it: the object is stored, the client hears nothing.
    PutNeverAnswered,
    /// Reads PutObject bodies at 100 KiB/s: a slow uplink.
    SlowLink,
}

/// A request the proxy saw, and the status it answered (0: none, stalled).
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    status: u16,
}

/// An HTTP/1.1 proxy on loopback in front of s3s-fs that injects a [`Fault`].
/// It serves one request per connection (it answers `Connection: close`),
/// so it needs no keep-alive bookkeeping.
struct FaultProxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    fn start(upstream: u16, fault: Fault, from_part: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (all_seen, stopped) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (seen, stop, counted) = (all_seen.clone(), stopped.clone(), counted.clone());
                std::thread::spawn(move || {
                    let faulty = |method: &str, target: &str| match fault {
                        Fault::SlowDown | Fault::Stall => {
                            method == "PUT"
                                && target.contains("partNumber=")
                                && counted.fetch_add(1, Ordering::SeqCst) + 1 >= from_part
                        }
                        Fault::CompleteAnsweredTooLate => {
                            method == "POST"
                                && target.contains("uploadId=")
                                && counted.fetch_add(1, Ordering::SeqCst) == 0
                        }
                        Fault::RequestTimeout => {
                            method == "PUT"
                                && target.contains("partNumber=")
                                && counted.fetch_add(1, Ordering::SeqCst) == 0
                        }
                        Fault::Redirect => true,
                        Fault::PutNeverAnswered | Fault::SlowLink => {
                            method == "PUT" && !target.contains('?')
                        }
                    };
                    let _ = relay(client, upstream, fault, faulty, &seen, &stop);
                });
            }
        });
        Self { port, seen, stop }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one request: passes it to `upstream`, or injects the fault.
fn relay(
    mut client: TcpStream,
    upstream: u16,
    fault: Fault,
    faulty: impl Fn(&str, &str) -> bool,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let stall = || {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let mut words = head[0].split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    let record = |status: u16| {
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            status,
        })
    };
    let faulty = faulty(&method, &target);
    if faulty && fault == Fault::Stall {
        record(0);
        stall();
        return Ok(());
    }
    let header = |name: &str| {
        head.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert!(
        header("transfer-encoding").is_none(),
        "the proxy reads Content-Length bodies only"
    );
    let length = header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; length];
    if faulty && fault == Fault::SlowLink {
        for piece in body.chunks_mut(10 * 1024) {
            reader.read_exact(piece)?;
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        reader.read_exact(&mut body)?;
    }
    // Each request is recorded before its answer goes back: the client may
    // act on the answer, and the test read `seen`, at once.
    let refusal = match fault {
        Fault::SlowDown => Some((503, "Slow Down", "SlowDown", "Please reduce your request rate.")),
        Fault::RequestTimeout => Some((400, "Bad Request", "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.")),
        Fault::Redirect => Some((301, "Moved Permanently", "PermanentRedirect", "The bucket you are attempting to access must be addressed using the specified endpoint.")),
        Fault::Stall
        | Fault::CompleteAnsweredTooLate
        | Fault::PutNeverAnswered
        | Fault::SlowLink => None,
    };
    if let Some((status, reason, code, message)) = refusal.filter(|_| faulty) {
        record(status);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Error><Code>{code}</Code><Message>{message}</Message></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n\
             Location: http://127.0.0.1:1/elsewhere\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return Ok(());
    }
    let is_connection = |line: &str| line.to_ascii_lowercase().starts_with("connection:");
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    for line in head.iter().filter(|l| !is_connection(l) && *l != "\r\n") {
        server.write_all(line.as_bytes())?;
    }
    server.write_all(b"Connection: close\r\n\r\n")?;
    server.write_all(&body)?;
    let mut answer = BufReader::new(server);
    let mut status_line = String::new();
    answer.read_line(&mut status_line)?;
    record(
        status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    );
    if faulty
        && matches!(
            fault,
            Fault::CompleteAnsweredTooLate | Fault::PutNeverAnswered
        )
    {
        stall();
        return Ok(());
    }
    client.write_all(status_line.as_bytes())?;
    loop {
        let mut line = String::new();
        if answer.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if !is_connection(&line) {
            client.write_all(line.as_bytes())?;
        }
    }
    client.write_all(b"Connection: close\r\n\r\n")?;
    std::io::copy(&mut answer, &mut client)?;
    Ok(())
}

/// Runs an export that must fail: its final status and the error.
fn failing_export(settings: &Settings, rows: usize, filename: &str) -> (TaskStatus, ExportError) {
    let mut export = Export::start(spec(settings, "csv", filename), settings).unwrap();
    let id = export.task_id().to_owned();
    feed(&mut export, rows);
    let err = export.finish().expect_err("the upload must fail");
    let status = task::status(settings, &id).unwrap().unwrap();
    assert_eq!(status.state, TaskState::Failed, "{status:?}");
    assert_eq!(status.error.as_deref(), Some(err.message.as_str()));
    assert_eq!(err.kind, ErrorKind::Storage, "{err}");
    (status, err)
}

/// The store holds the export's object, byte for byte.
fn assert_stored(server: &S3Server, outcome: &ExportOutcome) {
    let stored = std::fs::read(server.object(&outcome.key)).unwrap();
    assert_eq!(stored.len() as u64, outcome.bytes);
    assert_eq!(hex::encode(Sha256::digest(&stored)), outcome.sha256);
}

/// After a failed upload: no object, no multipart upload left open in the
/// store, and only the failed upload's spool file, kept for inspection.
fn assert_nothing_stored(server: &S3Server, dir: &Path, filename: &str) {
    let objects: Vec<_> = walk(&server.data.path().join(BUCKET))
        .into_iter()
        .filter(|p| p.ends_with(filename))
        .collect();
    assert!(objects.is_empty(), "partial object: {objects:?}");
    assert_eq!(
        server.open_uploads(),
        Vec::<PathBuf>::new(),
        "multipart upload not aborted"
    );
    let kept = walk(&dir.join("work/spool"));
    assert!(
        kept.iter()
            .all(|p| p.extension().is_some_and(|e| e == "failed")),
        "only the failed upload's file is kept for fluxo.temp_retention: {kept:?}"
    );
}

/// 5 MiB parts one at a time, so the fault hits a known part.
const MULTIPART: [(&str, &str); 3] = [
    ("part_size", "5242880"),
    ("parallel_parts", "1"),
    ("max_retries", "2"),
];

/// With keep_local, a local copy that cannot be made fails the export
/// before the upload: it used to fail after it, leaving the object stored.
#[test]
fn a_local_copy_that_fails_leaves_no_object() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    // A file where the year's folder goes: no folder can be made for the key.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let key = fluxo::storage::object_key("", now.as_secs() as i64, "t", "f");
    let year = key.split('/').next().unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out").join(year), b"in the way").unwrap();
    let settings = settings_for(server.port, dir.path(), SECRET, &[("keep_local", "1")]);
    let (_, err) = failing_export(&settings, 1_000, "kept.csv");
    assert!(err.message.contains("out/"), "{err}");
    assert_nothing_stored(&server, dir.path(), "kept.csv");
}

#[test]
fn an_unreachable_store_fails_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let settings = settings_for(free_port(), dir.path(), SECRET, &MULTIPART);
    let (_, err) = failing_export(&settings, 1_000, "nowhere.csv");
    assert!(err.message.contains("upload to s3://fluxo-test/"), "{err}");
    assert!(err.message.contains("Connection refused"), "{err}");
    assert!(err.message.contains("retries"), "{err}");
    let kept = walk(&dir.path().join("work/spool"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].extension().is_some_and(|e| e == "failed"));
}

#[test]
fn a_store_answering_503_fails_after_retries_and_aborts_the_upload() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::SlowDown, 2);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(proxy.port, dir.path(), SECRET, &MULTIPART);
    let (_, err) = failing_export(&settings, 150_000, "throttled.csv"); // ~15 MB
    assert!(err.message.contains("SlowDown"), "{err}");
    assert!(err.message.contains("retries"), "{err}");
    let seen = proxy.seen();
    let refused = seen.iter().filter(|s| s.status == 503).count();
    assert!(refused > 2, "the refused part is retried: {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.method == "DELETE" && s.target.contains("uploadId=") && s.status == 204),
        "AbortMultipartUpload sent and accepted: {seen:?}"
    );
    assert_nothing_stored(&server, dir.path(), "throttled.csv");
}

/// A part refused with `400 RequestTimeout` (its body came too slowly) is
/// sent again, and the export completes.
#[test]
fn a_part_refused_as_too_slow_is_sent_again() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::RequestTimeout, 0);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(proxy.port, dir.path(), SECRET, &MULTIPART);
    let outcome = export(&settings, 150_000, "slow-part.csv").unwrap(); // ~15 MB
    let parts: Vec<u16> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.target.contains("partNumber="))
        .map(|s| s.status)
        .collect();
    assert_eq!(parts.iter().filter(|&&s| s == 400).count(), 1, "{parts:?}");
    assert_eq!(parts.iter().filter(|&&s| s == 200).count(), 3, "{parts:?}");
    assert_stored(&server, &outcome);
}

/// A file sent in one PutObject that the store stored but never answered:
/// the store is asked whether it holds the object with this export's
/// SHA-256, and the export completes. It failed, with the object stored.
#[test]
fn a_put_stored_but_never_answered_still_completes_the_export() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::PutNeverAnswered, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut extra = MULTIPART.to_vec();
    extra.push(("upload_timeout", "4"));
    let settings = settings_for(proxy.port, dir.path(), SECRET, &extra);
    let outcome = export(&settings, 1_000, "unanswered.csv").unwrap();
    let puts = proxy.seen().iter().filter(|s| s.method == "PUT").count();
    assert_eq!(puts, 3, "sent, then retried twice, never answered");
    assert_stored(&server, &outcome);
}

/// A 1.5 MB file over a link of 100 KiB/s takes 15 s: more than the 10 s a
/// request of a small file gets, within what 1.5 MB take at the slowest
/// uplink allowed for (64 KiB/s). With 512 KiB/s as that floor it could
/// not be sent, whatever `upload_timeout` said.
#[test]
fn a_slow_link_still_gets_the_file_through() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::SlowLink, 0);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(proxy.port, dir.path(), SECRET, &[]);
    let outcome = export(&settings, 15_000, "slow-link.csv").unwrap();
    assert!(outcome.bytes > 1_400_000, "{} bytes", outcome.bytes);
    let seen = proxy.seen();
    let puts: Vec<u16> = seen
        .iter()
        .filter(|s| s.method == "PUT")
        .map(|s| s.status)
        .collect();
    assert_eq!(puts, [200], "sent once, not cut off: {seen:?}");
    assert_stored(&server, &outcome);
}

/// A redirect (S3's answer for a bucket of another region) is the store's
/// answer: not followed, not retried.
#[test]
fn a_redirect_is_reported_not_followed() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::Redirect, 0);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(proxy.port, dir.path(), SECRET, &MULTIPART);
    let (_, err) = failing_export(&settings, 1_000, "moved.csv");
    assert!(err.message.contains("301"), "{err}");
    assert!(err.message.contains("PermanentRedirect"), "{err}");
    assert!(!err.message.contains("retries"), "{err}");
    let puts = proxy.seen().iter().filter(|s| s.method == "PUT").count();
    assert_eq!(puts, 1, "one PutObject, not retried nor followed");
}

/// An endpoint written with capitals is signed as it is sent (reqwest
/// sends the host in lower case): s3s-fs checks the signature.
#[test]
fn an_endpoint_in_capitals_is_signed_as_sent() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = server.settings(dir.path(), SECRET, &[]);
    settings.s3.endpoint = format!("HTTP://LocalHost:{}/", server.port);
    let outcome = export(&settings, 1_000, "capitals.csv").unwrap();
    assert_stored(&server, &outcome);
    // The signed URL too: it was https://http//localhost:….
    assert!(
        outcome.url.starts_with("http://localhost:"),
        "{}",
        outcome.url
    );
    assert_eq!(get(&outcome.url).status, 200);
}

/// The store completes the object but its answer comes after the request
/// timed out; the retried CompleteMultipartUpload is refused (the upload id
/// is used up). The object is there, with this export's SHA-256: the export
/// completes. It used to fail, and a caller's retry stored a second copy.
#[test]
fn a_completion_answered_too_late_still_completes_the_export() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::CompleteAnsweredTooLate, 0);
    let dir = tempfile::tempdir().unwrap();
    // Each attempt gets a quarter of the 4 s: the first Complete times out.
    let mut extra = MULTIPART.to_vec();
    extra.push(("upload_timeout", "4"));
    let settings = settings_for(proxy.port, dir.path(), SECRET, &extra);
    let outcome = export(&settings, 150_000, "late.csv").unwrap(); // ~15 MB: multipart
    let completes: Vec<u16> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.target.contains("uploadId="))
        .map(|s| s.status)
        .collect();
    assert!(
        completes.len() >= 2,
        "the unanswered Complete was retried: {completes:?}"
    );
    assert_eq!(
        completes[0], 200,
        "the first one took effect: {completes:?}"
    );
    assert_stored(&server, &outcome);
    assert_eq!(server.open_uploads(), Vec::<PathBuf>::new());
}

#[test]
fn a_store_stalling_mid_multipart_fails_after_retries_and_aborts_the_upload() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(server.port, Fault::Stall, 2);
    let dir = tempfile::tempdir().unwrap();
    // Each attempt gets a third of the 4 s: the stalled part is retried.
    let mut extra = MULTIPART.to_vec();
    extra.push(("upload_timeout", "4"));
    let settings = settings_for(proxy.port, dir.path(), SECRET, &extra);
    let (_, err) = failing_export(&settings, 150_000, "stalled.csv");
    assert!(err.message.contains("timeout"), "{err}");
    let seen = proxy.seen();
    let stalled = seen.iter().filter(|s| s.status == 0).count();
    assert!(stalled >= 2, "the stalled part is retried: {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.method == "DELETE" && s.target.contains("uploadId=") && s.status == 204),
        "AbortMultipartUpload sent and accepted: {seen:?}"
    );
    assert_nothing_stored(&server, dir.path(), "stalled.csv");
}

/// Runs an export of ~15 MB in 5 MiB parts through a proxy with `fault`,
/// and fails it as the gRPC server does when its grace period runs out,
/// once the proxy has seen a request `upload_reached` looks for. Checks
/// that `finish()` returns at once, with that reason, and the task ends
/// FAILED; returns the proxy, to see what the upload sent.
fn fail_during_upload(
    server: &S3Server,
    dir: &Path,
    fault: Fault,
    upload_reached: impl Fn(&Seen) -> bool,
    filename: &str,
) -> FaultProxy {
    let proxy = FaultProxy::start(server.port, fault, 2);
    let mut extra = MULTIPART.to_vec();
    extra.push(("upload_timeout", "600"));
    let settings = settings_for(proxy.port, dir, SECRET, &extra);
    let mut export = Export::start(spec(&settings, "csv", filename), &settings).unwrap();
    let id = export.task_id().to_owned();
    feed(&mut export, 150_000);
    let canceller = export.canceller();
    let finishing = std::thread::spawn(move || export.finish());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy.seen().iter().any(&upload_reached) {
        assert!(Instant::now() < deadline, "the upload never got there");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_at = Instant::now();
    canceller.fail(ExportError::export("the server shut down"));
    let err = finishing
        .join()
        .unwrap()
        .expect_err("the export was failed");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(20),
        "stopped at once, not after the upload: {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(err.message, "the server shut down", "{err}");
    let status = task::status(&settings, &id).unwrap().unwrap();
    assert_eq!(status.state, TaskState::Failed, "{status:?}");
    proxy
}

/// An export failed by its producer while it uploads (the gRPC server's
/// grace period ran out) stops the upload and aborts it. The upload used to
/// go on and the task to end COMPLETED, after the client had been told it
/// failed.
#[test]
fn an_export_failed_while_it_uploads_stops_the_upload() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let stalled_part = |s: &Seen| s.status == 0;
    let proxy = fail_during_upload(
        &server,
        dir.path(),
        Fault::Stall,
        stalled_part,
        "stopped.csv",
    );
    let aborted = |s: &Seen| s.method == "DELETE" && s.status == 204;
    assert!(
        proxy.seen().iter().any(aborted),
        "AbortMultipartUpload sent and accepted"
    );
    assert_nothing_stored(&server, dir.path(), "stopped.csv");
}

/// Failed while its CompleteMultipartUpload is in flight, and that request
/// took effect: the object is deleted, so that the export ends as the
/// producer said, with nothing stored.
#[test]
fn an_export_failed_as_its_upload_completes_leaves_no_object() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let completed =
        |s: &Seen| s.method == "POST" && s.target.contains("uploadId=") && s.status == 200;
    let fault = Fault::CompleteAnsweredTooLate;
    let proxy = fail_during_upload(&server, dir.path(), fault, completed, "completed.csv");
    let deleted = |s: &Seen| s.method == "DELETE" && !s.target.contains("uploadId=");
    assert!(
        proxy.seen().iter().any(deleted),
        "the completed object is deleted"
    );
    assert_nothing_stored(&server, dir.path(), "completed.csv");
}
