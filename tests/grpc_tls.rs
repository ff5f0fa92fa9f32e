//! gRPC over TLS (rustls) with a certificate made by `openssl` for the test.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::process::Command;

use fluxo::grpc::pb::{export_service_client::ExportServiceClient, ExportFormat, TaskStatus};
use grpc_common::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=fluxo test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    );
    let cert = d.join("server.pem").display().to_string();
    let key = d.join("server.key").display().to_string();
    let server = TestServer::start(&[("tls_cert", &cert), ("tls_key", &key)]).await;

    // Plaintext is refused.
    let mut plain = server.client().await;
    assert!(Call::open(&mut plain).await.is_err());

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(d.join("ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ExportServiceClient::new(channel);
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(1, 0, 10))).await;
    call.half_close();
    assert_eq!(
        call.recv().await.unwrap().status,
        TaskStatus::Completed as i32
    );
}

/// rustls called it "peer sent no certificates", as if a client had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_file_without_a_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "key.pem",
        ],
    );
    let key = d.join("key.pem").display().to_string();
    let setting = |k: &str| match k {
        "tls_cert" | "tls_key" => Some(key.clone()),
        "grpc_listen" | "status_listen" | "metrics_listen" => Some("127.0.0.1:0".to_owned()),
        "work_dir" | "local_dir" => Some(d.join(k).display().to_string()),
        _ => None,
    };
    let settings = fluxo::config::Settings::resolve_with_env(setting, |_| None).unwrap();
    let err = fluxo::grpc::Server::bind(settings)
        .await
        .unwrap()
        .serve(async {})
        .await
        .unwrap_err();
    let expected = format!(
        "fluxo.tls_cert: {key} holds no certificate (no \"-----BEGIN CERTIFICATE-----\" block)"
    );
    assert_eq!(err.message, expected);

    // The binary exits 2 for it, as for any setting it refuses.
    let mut binary = Command::new(env!("CARGO_BIN_EXE_fluxo-export-server"));
    for key in [
        "tls_cert",
        "tls_key",
        "grpc_listen",
        "status_listen",
        "metrics_listen",
        "work_dir",
        "local_dir",
    ] {
        binary.env(
            format!("FLUXO_{}", key.to_ascii_uppercase()),
            setting(key).unwrap(),
        );
    }
    let out = binary.env("FLUXO_LOG_LEVEL", "off").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&expected),
        "{out:?}"
    );
}
