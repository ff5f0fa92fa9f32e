//! A server on loopback (ports chosen by the OS) and a tonic client.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fluxo::config::Settings;
use fluxo::grpc::pb::{
    self, export_request::Payload, export_service_client::ExportServiceClient, ExportRequest,
};
use fluxo::grpc::Server;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub struct TestServer {
    pub grpc: SocketAddr,
    pub status: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out").display().to_string();
        let work = dir.path().join("work").display().to_string();
        let mut pairs: Vec<(String, String)> = vec![
            ("local_dir".into(), out),
            ("work_dir".into(), work),
            ("grpc_listen".into(), "127.0.0.1:0".into()),
            ("status_listen".into(), "127.0.0.1:0".into()),
            ("metrics_listen".into(), "127.0.0.1:0".into()),
            ("log_level".into(), "off".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).into(), (*v).into()));
        }
        let settings = Settings::resolve_with_env(
            |k| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            },
            |_| None,
        )
        .unwrap();
        // Separate listeners even though both ask for port 0.
        let bound = Server::bind(settings.clone()).await.unwrap();
        let (grpc, status, metrics) =
            (bound.grpc_addr(), bound.status_addr(), bound.metrics_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            bound
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            grpc,
            status,
            metrics,
            dir,
            settings,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub async fn client(&self) -> ExportServiceClient<Channel> {
        ExportServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// Starts the shutdown (like SIGTERM).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn spool_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("work/spool"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

pub fn column(name: &str, t: pb::DataType) -> pb::ColumnDefinition {
    pb::ColumnDefinition {
        name: name.into(),
        data_type: t as i32,
        ..Default::default()
    }
}

/// id STRING, amount NUMBER, paid_at DATE, ok BOOLEAN
pub fn metadata(request_id: &str, format: pb::ExportFormat) -> pb::ExportMetadata {
    pb::ExportMetadata {
        request_id: request_id.into(),
        format: format as i32,
        filename: "orders".into(),
        columns: vec![
            column("id", pb::DataType::String),
            column("amount", pb::DataType::Number),
            column("paid_at", pb::DataType::Date),
            column("ok", pb::DataType::Boolean),
        ],
        options: None,
        total_records: None,
    }
}

pub fn record(values: &[&str]) -> pb::Record {
    pb::Record {
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

pub fn rows(seq: i64, from: usize, n: usize) -> pb::DataBatch {
    pb::DataBatch {
        records: (from..from + n)
            .map(|i| pb::Record {
                values: vec![
                    format!("{:018}", i),
                    format!("{}.25", i),
                    "2026-11-29 10:00:00".into(),
                    if i % 2 == 0 { "true" } else { "false" }.into(),
                ],
            })
            .collect(),
        batch_sequence: seq,
    }
}

pub fn meta_msg(m: pb::ExportMetadata) -> ExportRequest {
    ExportRequest {
        payload: Some(Payload::Metadata(m)),
    }
}

pub fn sheet_msg(name: &str, columns: Vec<pb::ColumnDefinition>) -> ExportRequest {
    ExportRequest {
        payload: Some(Payload::Sheet(pb::SheetStart {
            name: name.into(),
            columns,
        })),
    }
}

pub fn batch_msg(b: pb::DataBatch) -> ExportRequest {
    ExportRequest {
        payload: Some(Payload::Batch(b)),
    }
}

/// An open StreamExport call: `send` requests, `recv` responses.
pub struct Call {
    pub tx: Option<mpsc::Sender<ExportRequest>>,
    pub rx: tonic::Streaming<pb::ExportResponse>,
}

impl Call {
    pub async fn open(client: &mut ExportServiceClient<Channel>) -> Result<Self, tonic::Status> {
        Self::open_with(client, None).await
    }

    pub async fn open_with(
        client: &mut ExportServiceClient<Channel>,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let rx = client.stream_export(request).await?.into_inner();
        Ok(Self { tx: Some(tx), rx })
    }

    pub async fn send(&self, m: ExportRequest) {
        // A server that already answered with an error may have closed the stream.
        let _ = self.tx.as_ref().unwrap().send(m).await;
    }

    pub fn half_close(&mut self) {
        self.tx = None;
    }

    pub async fn recv(&mut self) -> Result<pb::ExportResponse, tonic::Status> {
        match tokio::time::timeout(Duration::from_secs(60), self.rx.message()).await {
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(tonic::Status::unknown("stream ended without a message")),
            Ok(Err(s)) => Err(s),
            Err(_) => panic!("no response within 60 s"),
        }
    }
}

/// Opens a StreamExport call and sends `meta`: the call and its task id.
pub async fn start_export(
    client: &mut ExportServiceClient<Channel>,
    meta: pb::ExportMetadata,
) -> (Call, String) {
    let mut call = Call::open(client).await.unwrap();
    call.send(meta_msg(meta)).await;
    let task_id = call.recv().await.unwrap().task_id;
    (call, task_id)
}

/// `metadata` with these format options.
pub fn metadata_with(format: pb::ExportFormat, options: pb::FormatOptions) -> pb::ExportMetadata {
    pb::ExportMetadata {
        options: Some(options),
        ..metadata("", format)
    }
}

/// QueryTaskStatus of a task that must exist.
pub async fn query(
    client: &mut ExportServiceClient<Channel>,
    task_id: &str,
) -> pb::TaskStatusResponse {
    client
        .query_task_status(pb::TaskStatusRequest {
            task_id: task_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Polls QueryTaskStatus until the task reaches a final state.
pub async fn wait_final(
    client: &mut ExportServiceClient<Channel>,
    task_id: &str,
) -> pb::TaskStatusResponse {
    for _ in 0..400 {
        let s = query(client, task_id).await;
        if s.status >= pb::TaskStatus::Completed as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task_id} did not end");
}
