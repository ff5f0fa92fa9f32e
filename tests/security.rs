//! Who gets in and what leaks: token comparison, signed downloads that try
//! to leave the storage root, hostile filenames on local and object storage,
//! and secrets in `--print-config`, logs, status files, errors and `Debug`.
//! Token auth and tampered or expired signatures are also covered where the
//! features live (`grpc_service.rs`, `http_api.rs`, `storage::signed`).
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Component, Path};

use common::walk;
use fluxo::config::{ExportSpec, OptionValue, Settings};
use fluxo::grpc::pb::{self, ExportFormat, TaskStatus};
use fluxo::grpc::service::{bearer_matches, bearer_token};
use fluxo::schema::{ColumnType, Value};
use fluxo::storage::signed;
use fluxo::task::Export;
use grpc_common::process::ServerProcess;
use grpc_common::*;
use tonic::Code;

/// Hostile download names: traversal both ways, absolute, NUL, only dots,
/// 300 characters.
const HOSTILE_FILENAMES: [&str; 7] = [
    "../../../../etc/cron.d/evil",
    "..\\..\\..\\windows\\win.ini",
    "/etc/passwd",
    "a\0b/../c",
    "....",
    "../..",
    "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
];

/// Every segment a plain name: nothing climbs out or restarts at the root.
fn plain_segments(key: &str) -> bool {
    !key.is_empty()
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']))
}

#[test]
fn bearer_tokens_match_only_whole_and_exact() {
    let token = b"s3cret-token";
    assert!(bearer_matches(token, token));
    for given in [
        &b""[..],
        b"s3cret-toke",
        b"s3cret-token-",
        b"s3cret-tokem",
        b"t3cret-token",
        b"S3CRET-TOKEN",
    ] {
        assert!(!bearer_matches(given, token), "{given:?}");
    }
    // No token configured is "auth off", decided before the comparison.
    assert!(!bearer_matches(b"", b""));
    // Constant time: the bytes are compared with `subtle::ConstantTimeEq`
    // (src/grpc/service.rs); only the length may end the comparison early.
}

#[test]
fn the_bearer_scheme_is_read_in_any_case() {
    for value in ["Bearer t0k", "bearer t0k", "BEARER  t0k"] {
        assert_eq!(bearer_token(value), Some("t0k"), "{value:?}");
    }
    for value in ["Basic t0k", "Bearert0k", "t0k", ""] {
        assert_eq!(bearer_token(value), None, "{value:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_name_the_setting_not_the_token() {
    let server = TestServer::start(&[("auth_token", "s3cret-token")]).await;
    let mut client = server.client().await;
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let err = match Call::open_with(&mut client, token).await {
            Err(e) => e,
            Ok(mut call) => call.recv().await.unwrap_err(),
        };
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
        assert!(err.message().contains("fluxo.auth_token"), "{err:?}");
        assert!(!err.message().contains("s3cret"), "{err:?}");
    }
}

/// GET over a fresh HTTP/1.1 connection: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (reply[9..12].parse().unwrap(), body.to_owned())
}

/// Even a correctly signed URL (a leaked secret) cannot name a file outside
/// `fluxo.local_dir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_download_cannot_leave_the_local_dir() {
    let secret = "download-secret-16";
    let server = TestServer::start(&[
        ("public_base_url", "http://127.0.0.1"),
        ("download_secret", secret),
    ])
    .await;
    std::fs::create_dir_all(server.dir.path().join("out")).unwrap();
    std::fs::write(server.dir.path().join("outside.txt"), "not yours").unwrap();
    let expires = fluxo::task::registry::now_ms() / 1000 + 600;
    let status = server.status;
    let checks = tokio::task::spawn_blocking(move || {
        let mut replies = Vec::new();
        for key in [
            "../outside.txt",
            "a/../../outside.txt",
            "/etc/passwd",
            "./../outside.txt",
        ] {
            let url = signed::sign_url("", secret.as_bytes(), key, expires);
            replies.push((key, url.clone(), http_get(status, &url)));
            // The same key percent-encoded in the path.
            let encoded = url.replace("..", "%2E%2E");
            replies.push((key, encoded.clone(), http_get(status, &encoded)));
        }
        replies
    })
    .await
    .unwrap();
    // The signature is right, so the key check is what refuses.
    for (key, url, (code, body)) in checks {
        assert_eq!(code, 403, "{key} via {url}: {body}");
        assert!(body.contains("bad file key"), "{key} via {url}: {body}");
    }
}

/// Hostile filenames over gRPC land as plain names under
/// `{local_dir}/{key_prefix}/…/{task_id}/`, and nothing is written elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_filenames_stay_under_the_local_root_and_prefix() {
    let server = TestServer::start(&[("key_prefix", "tenant-a/exports")]).await;
    let mut client = server.client().await;
    let root = server.dir.path().join("out").join("tenant-a/exports");
    for name in HOSTILE_FILENAMES {
        let mut call = Call::open(&mut client).await.unwrap();
        let mut meta = metadata("", ExportFormat::FormatCsv);
        meta.filename = name.into();
        call.send(meta_msg(meta)).await;
        let id = call.recv().await.unwrap().task_id;
        call.send(batch_msg(rows(1, 0, 2))).await;
        call.half_close();
        let last = call.recv().await.unwrap();
        assert_eq!(last.status, TaskStatus::Completed as i32, "{name:?}");
        let files: Vec<_> = walk(&root)
            .into_iter()
            .filter(|p| p.parent().and_then(Path::file_name) == Some(id.as_ref()))
            .collect();
        assert_eq!(files.len(), 1, "{name:?}: {files:?}");
        let relative = files[0].strip_prefix(&root).unwrap();
        assert!(
            relative
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{name:?}: {relative:?}"
        );
        let filename = relative.file_name().unwrap().to_str().unwrap();
        assert!(
            filename.ends_with(".csv") && !filename.starts_with('.') && filename.len() <= 200,
            "{name:?}: {filename:?}"
        );
    }
    // Only the export folder and the work dir were written.
    let mut top: Vec<_> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["out", "work"]);
    assert_eq!(
        walk(&server.dir.path().join("out")).len(),
        HOSTILE_FILENAMES.len()
    );
}

/// The same names on an S3 store (s3s-fs, a filesystem-backed S3 server,
/// from `scripts/test-servers.sh`): keys are plain segments under the
/// prefix, and the objects sit under the bucket's prefix folder.
#[test]
fn hostile_filenames_stay_under_the_key_prefix_in_object_storage() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(endpoint), Some(bucket), Some(ak), Some(sk), Some(data)) = (
        env("FLUXO_TEST_S3_ENDPOINT"),
        env("FLUXO_TEST_S3_BUCKET"),
        env("FLUXO_TEST_S3_AK"),
        env("FLUXO_TEST_S3_SK"),
        env("FLUXO_TEST_S3_DATA"),
    ) else {
        eprintln!("FLUXO_TEST_S3_* not set (scripts/test-servers.sh env): skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("security-{}", std::process::id());
    let values = [
        ("storage", "s3".to_owned()),
        ("s3_endpoint", endpoint),
        ("s3_bucket", bucket.clone()),
        ("s3_access_key_id", ak),
        ("s3_secret_access_key", sk),
        ("key_prefix", prefix.clone()),
        ("local_dir", dir.path().join("out").display().to_string()),
        ("work_dir", dir.path().join("work").display().to_string()),
    ];
    let settings = Settings::resolve_with_env(
        |k| {
            values
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        },
        |_| None,
    )
    .unwrap();
    let bucket_dir = Path::new(&data).join(&bucket);
    // Not the 300-character one: s3s-fs keeps an object's metadata in a
    // file named after the whole percent-encoded key, past the 255-byte
    // file name limit (a real store takes 1,024-byte keys).
    for name in &HOSTILE_FILENAMES[..HOSTILE_FILENAMES.len() - 1] {
        let s = |v: &str| OptionValue::Str(v.into());
        let options = OptionValue::Map(vec![
            ("filename".into(), s(name)),
            ("columns".into(), OptionValue::List(vec![s("Id")])),
        ]);
        let spec = ExportSpec::from_options(&options, &settings).unwrap();
        let mut export = Export::start(spec, &settings).unwrap();
        let mut batch = export.new_batch();
        batch.push(Value::Int(1), ColumnType::Auto).unwrap();
        batch.end_row();
        export.add(batch).unwrap();
        let outcome = export.finish().unwrap();
        assert!(
            outcome.key.starts_with(&format!("{prefix}/")) && plain_segments(&outcome.key),
            "{name:?}: {}",
            outcome.key
        );
        let object = bucket_dir.join(&outcome.key);
        assert!(object.is_file(), "{name:?}: {object:?}");
        assert!(object.starts_with(bucket_dir.join(&prefix)));
    }
    let _ = std::fs::remove_dir_all(bucket_dir.join(&prefix));
}

/// A key prefix that would climb out of the root is refused before any export.
#[test]
fn a_key_prefix_that_leaves_the_root_is_refused() {
    for bad in ["../elsewhere", "tenant/../../x", "a\\..\\b"] {
        let err = Settings::resolve_with_env(|k| (k == "key_prefix").then(|| bad.into()), |_| None)
            .unwrap_err();
        assert_eq!(err.kind, fluxo::ErrorKind::InvalidOption);
        assert!(err.message.contains("fluxo.key_prefix"), "{err}");
    }
}

/// Every credential, as the server's environment gives it.
const SECRETS: [(&str, &str); 6] = [
    ("FLUXO_AUTH_TOKEN", "tok-9f8e7d6c5b4a"),
    ("FLUXO_DOWNLOAD_SECRET", "dls-1a2b3c4d5e6f"),
    ("FLUXO_S3_SECRET_ACCESS_KEY", "s3sk-0a9b8c7d6e5f"),
    ("FLUXO_S3_SESSION_TOKEN", "s3st-5e4d3c2b1a0f"),
    ("FLUXO_OSS_ACCESS_KEY_SECRET", "osssk-6f5e4d3c2b1a"),
    ("FLUXO_OSS_SECURITY_TOKEN", "ossst-a1b2c3d4e5f6"),
];

fn assert_no_secret(what: &str, text: &str) {
    for (name, value) in SECRETS {
        assert!(!text.contains(value), "{name} appears in {what}:\n{text}");
    }
}

#[test]
fn settings_debug_and_print_config_mask_every_secret() {
    let settings = Settings::resolve_with_env(
        |_| None,
        |name| {
            SECRETS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        },
    )
    .unwrap();
    assert_no_secret("Debug", &format!("{settings:?} {:?}", settings.server));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fluxo-export-server"))
        .arg("--print-config")
        .envs(SECRETS)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_no_secret("--print-config", &text);
    for key in [
        "auth_token",
        "download_secret",
        "s3_secret_access_key",
        "s3_session_token",
        "oss_access_key_secret",
        "oss_security_token",
    ] {
        assert!(
            text.lines().any(|l| l == format!("fluxo.{key} = ***")),
            "{key}: {text}"
        );
    }
}

/// A server with every credential set, logging at debug level to a file:
/// a call refused for a wrong token, an export that completes with a signed
/// URL, and (on a second server using S3) one whose upload fails. No secret
/// reaches the log, the status files, the gRPC errors or the status API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_in_logs_status_files_or_errors() {
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("server.log").display().to_string();
    // The S3 store does not answer: signing still runs before each attempt.
    let mut env: Vec<(&str, &str)> = vec![
        ("FLUXO_LOG_LEVEL", "debug"),
        ("FLUXO_LOG_FILE", &log_file),
        ("FLUXO_S3_ENDPOINT", "http://127.0.0.1:1"),
        ("FLUXO_S3_BUCKET", "b"),
        ("FLUXO_S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("FLUXO_MAX_RETRIES", "0"),
        ("FLUXO_PUBLIC_BASE_URL", "http://127.0.0.1"),
    ];
    env.extend(SECRETS);
    let server = ServerProcess::spawn(&env);
    let token = SECRETS[0].1;
    let mut client = server.client().await;

    let err = match Call::open_with(&mut client, Some("wrong")).await {
        Err(e) => e,
        Ok(mut call) => call.recv().await.unwrap_err(),
    };
    assert_eq!(err.code(), Code::Unauthenticated);

    let run = |storage: &'static str| {
        let mut client = client.clone();
        async move {
            let mut call = Call::open_with(&mut client, Some(token)).await.unwrap();
            let mut meta = metadata("", ExportFormat::FormatCsv);
            meta.filename = storage.into();
            call.send(meta_msg(meta)).await;
            let id = call.recv().await.unwrap().task_id;
            call.send(batch_msg(rows(1, 0, 10))).await;
            call.half_close();
            (id, call.recv().await)
        }
    };
    let (ok_id, ok) = run("local").await;
    let ok = ok.unwrap();
    assert_eq!(ok.status, TaskStatus::Completed as i32, "{ok:?}");
    assert!(ok.oss_url.contains("signature="), "{}", ok.oss_url);
    assert_no_secret("a signed URL", &ok.oss_url);

    assert_no_secret("status files", &status_files(&server));
    // Per-task storage is a PHP option; over gRPC the server's store is
    // used, so a second server sends this export to the dead S3 store.
    drop(client);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");

    let mut env_s3 = env.clone();
    env_s3.push(("FLUXO_STORAGE", "s3"));
    env_s3.push(("FLUXO_PART_SIZE", "5242880"));
    let server_s3 = ServerProcess::spawn(&env_s3);
    let mut client = server_s3.client().await;
    let mut call = Call::open_with(&mut client, Some(token)).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let failed_id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 10))).await;
    call.half_close();
    // The last answer comes once the task has ended.
    let failed = call.recv().await;
    let mut query = tonic::Request::new(pb::TaskStatusRequest {
        task_id: failed_id.clone(),
    });
    query
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let s = client.query_task_status(query).await.unwrap().into_inner();
    assert_eq!(s.status, TaskStatus::Failed as i32, "{s:?}");
    assert_no_secret("the failed export's response", &format!("{failed:?}"));
    assert_no_secret("QueryTaskStatus", &format!("{s:?}"));
    let status_path = format!("/v1/tasks/{failed_id}");
    let addr = server_s3.status;
    let api = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {status_path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    assert!(api.contains("TASK_STATUS_FAILED"), "{api}");
    assert_no_secret("the status API", &api);
    assert_no_secret("status files", &status_files(&server_s3));
    drop(client);
    let status = server_s3.terminate();
    assert!(status.success(), "{status:?}");

    let mut text = String::new();
    for file in walk(logs.path()) {
        text.push_str(&std::fs::read_to_string(file).unwrap());
    }
    assert!(text.contains(&ok_id) && text.contains(&failed_id), "{text}");
    assert_no_secret("the server log", &text);
}

/// Every status file of a server's tasks, concatenated.
fn status_files(server: &ServerProcess) -> String {
    let files = walk(&server.work_dir().join("tasks"));
    assert!(!files.is_empty());
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}
