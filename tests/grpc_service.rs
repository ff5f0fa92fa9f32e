//! ExportService over loopback with a tonic client: the seed's flow, every
//! protocol error, auth, limits, 16 concurrent streams, cancellation,
//! idempotency and shutdown drain.
#![cfg(feature = "server")]

mod common;
mod grpc_common;

use std::time::Duration;

use common::walk;
use fluxo::grpc::pb::{self, ExportFormat, TaskStatus};
use grpc_common::*;
use sha2::{Digest, Sha256};
use tonic::Code;

fn local_path(url: &str) -> std::path::PathBuf {
    let raw = url.strip_prefix("file://").expect("a file:// URL");
    let mut bytes = Vec::new();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            bytes.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            bytes.push(b[i]);
            i += 1;
        }
    }
    std::path::PathBuf::from(String::from_utf8(bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_flow_metadata_task_id_batches_half_close_final_status() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    let mut meta = metadata("req-seed", ExportFormat::FormatCsv);
    meta.total_records = Some(3);
    call.send(meta_msg(meta)).await;
    let first = call.recv().await.unwrap();
    assert!(!first.task_id.is_empty());
    assert!(
        first.status == TaskStatus::Queued as i32 || first.status == TaskStatus::Processing as i32,
        "{first:?}"
    );
    assert!(first.start_time > 1_700_000_000_000, "unix ms");
    call.send(batch_msg(pb::DataBatch {
        records: vec![
            record(&["000000000000000001", "12.50", "2026-11-29 10:00:00", "true"]),
            record(&["b,\"quoted\"", "", "", "0"]),
        ],
        batch_sequence: 1,
    }))
    .await;
    call.send(batch_msg(pb::DataBatch {
        records: vec![record(&["3", "-1e3", "2026-01-02", "no"])],
        batch_sequence: 2,
    }))
    .await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    assert_eq!(last.task_id, first.task_id);
    assert_eq!(last.record_count, 3);
    assert_eq!(last.progress_percent, 100);
    assert!(last.completion_time >= last.start_time);
    assert_eq!(last.start_time, first.start_time, "one task, one start");
    let path = local_path(&last.oss_url);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(last.file_size_bytes as usize, bytes.len());
    assert_eq!(last.checksum_sha256, hex::encode(Sha256::digest(&bytes)));
    let text = String::from_utf8(bytes).unwrap();
    assert!(path.ends_with("orders.csv"), "{path:?}");
    let text = text.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,amount,paid_at,ok");
    assert!(
        lines[1].starts_with("000000000000000001,12.5,2026-11-29"),
        "{text}"
    );
    assert!(lines[2].starts_with("\"b,\"\"quoted\"\"\",,,"), "{text}");
    // DATA_TYPE_DATE keeps what each value carries: a day, or a day and time.
    assert_eq!(
        lines[1].split(',').nth(2),
        Some("2026-11-29 10:00:00"),
        "{text}"
    );
    assert_eq!(lines[3].split(',').nth(2), Some("2026-01-02"), "{text}");
    assert!(
        call.rx.message().await.unwrap().is_none(),
        "two responses only"
    );

    let status = query(&mut client, &first.task_id).await;
    assert_eq!(status.status, TaskStatus::Completed as i32);
    assert_eq!(status.records_processed, 3);
    assert_eq!(status.progress_percent, 100);
    assert_eq!(status.oss_url, last.oss_url);
    assert_eq!(status.checksum_sha256, last.checksum_sha256);
    assert_eq!(status.start_time, first.start_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn excel_export_reads_back() {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    let mut meta = metadata("", ExportFormat::FormatExcel);
    meta.options = Some(pb::FormatOptions {
        excel_sheet_name: "Orders".into(),
        ..Default::default()
    });
    call.send(meta_msg(meta)).await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(1, 0, 1000))).await;
    call.send(batch_msg(rows(2, 1000, 1000))).await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    let mut book: Xlsx<_> = open_workbook(local_path(&last.oss_url)).unwrap();
    let range = book.worksheet_range("Orders").unwrap();
    assert_eq!(range.height(), 2001);
    assert_eq!(
        range.get((1, 0)),
        Some(&Data::String("000000000000000000".into()))
    );
    assert_eq!(range.get((2, 1)), Some(&Data::Float(1.25)));
    assert_eq!(range.get((2, 3)), Some(&Data::Bool(false)));
}

/// `SheetStart` is PHP's `Exporter::sheet()`: later batches go to a new
/// sheet, with new columns or the same ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sheet_start_opens_another_sheet() {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatExcel)))
        .await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(1, 0, 3))).await;
    let refunds = vec![pb::ColumnDefinition {
        name: "refunded".into(),
        data_type: pb::DataType::Number as i32,
        ..Default::default()
    }];
    call.send(sheet_msg("Refunds", refunds)).await;
    call.send(batch_msg(pb::DataBatch {
        records: vec![record(&["12.5"]), record(&["3"])],
        batch_sequence: 2,
    }))
    .await;
    // No columns: the current sheet's columns carry on.
    call.send(sheet_msg("More refunds", vec![])).await;
    call.send(batch_msg(pb::DataBatch {
        records: vec![record(&["7"])],
        batch_sequence: 3,
    }))
    .await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    assert_eq!(last.record_count, 6);
    let mut book: Xlsx<_> = open_workbook(local_path(&last.oss_url)).unwrap();
    assert_eq!(
        book.sheet_names(),
        vec!["Sheet1", "Refunds", "More refunds"]
    );
    let refunds = book.worksheet_range("Refunds").unwrap();
    assert_eq!(refunds.get((0, 0)), Some(&Data::String("refunded".into())));
    assert_eq!(refunds.get((1, 0)), Some(&Data::Float(12.5)));
    let more = book.worksheet_range("More refunds").unwrap();
    assert_eq!(more.get((0, 0)), Some(&Data::String("refunded".into())));
    assert_eq!(more.get((1, 0)), Some(&Data::Float(7.0)));

    // A bad sheet name fails the task like any other protocol error.
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatExcel)))
        .await;
    let task_id = call.recv().await.unwrap().task_id;
    call.send(sheet_msg("a/b", vec![])).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("sheet name \"a/b\""), "{err:?}");
    expect_failed(&server, &task_id, "sheet name").await;

    // So does a sheet name the workbook already has, in any case, at once.
    let options = pb::FormatOptions {
        excel_sheet_name: "Orders".into(),
        ..Default::default()
    };
    let meta = metadata_with(ExportFormat::FormatExcel, options);
    let (mut call, task_id) = start_export(&mut client, meta).await;
    call.send(sheet_msg("ORDERS", vec![])).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("\"ORDERS\" is already used"),
        "{err:?}"
    );
    expect_failed(&server, &task_id, "already used").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_character_the_csv_encoding_cannot_hold_names_its_batch_record_and_column() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let options = pb::FormatOptions {
        csv_encoding: "GBK".into(),
        ..Default::default()
    };
    let meta = metadata_with(ExportFormat::FormatCsv, options);
    let (mut call, id) = start_export(&mut client, meta).await;
    let batch = pb::DataBatch {
        records: vec![
            record(&["张伟", "1", "", ""]),
            record(&["smile 😀", "2", "", ""]),
        ],
        batch_sequence: 1,
    };
    let at = "batch_sequence 1, record 1, column 0 \"id\"";
    let why = "character '😀' (U+1F600) cannot be written in GBK";
    expect_refused_batch(&server, &mut call, &id, batch, at, why).await;
}

/// `csv_excel_text` and `csv_decimal_separator` are the PHP `csv` options
/// `excel_text` and `decimal_separator`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_options_keep_ids_as_text_and_write_decimal_commas() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let options = pb::FormatOptions {
        csv_delimiter: ";".into(),
        csv_excel_text: true,
        csv_decimal_separator: ",".into(),
        ..Default::default()
    };
    let (mut call, _) =
        start_export(&mut client, metadata_with(ExportFormat::FormatCsv, options)).await;
    call.send(batch_msg(pb::DataBatch {
        records: vec![record(&["000123", "12.25", "2026-11-29", "true"])],
        batch_sequence: 1,
    }))
    .await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    let text = std::fs::read_to_string(local_path(&last.oss_url)).unwrap();
    assert!(
        text.ends_with("\n\"=\"\"000123\"\"\";12,25;2026-11-29;TRUE\n"),
        "{text}"
    );
}

/// A bad option of the other format is refused too, as PHP refuses it: a
/// mistake there is one whichever format is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_options_of_the_other_format_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for (format, options, named) in [
        (
            ExportFormat::FormatExcel,
            pb::FormatOptions {
                csv_delimiter: "ab".into(),
                ..Default::default()
            },
            "delimiter",
        ),
        (
            ExportFormat::FormatCsv,
            pb::FormatOptions {
                excel_sheet_name: "a/b".into(),
                ..Default::default()
            },
            "sheet",
        ),
    ] {
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata_with(format, options))).await;
        let err = call.recv().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{format:?}");
        assert!(err.message().contains(named), "{err:?}");
    }
}

/// Sends `batch`, which the server must refuse with INVALID_ARGUMENT naming
/// where (`at`: batch, record, column) and `why`; the task ends FAILED.
async fn expect_refused_batch(
    server: &TestServer,
    call: &mut Call,
    task_id: &str,
    batch: pb::DataBatch,
    at: &str,
    why: &str,
) {
    call.send(batch_msg(batch)).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(at) && err.message().contains(why),
        "{err:?}"
    );
    let status = expect_failed(server, task_id, at).await;
    assert_eq!(
        status.error_code, "INVALID_ROW",
        "QueryTaskStatus says what the stream said"
    );
}

async fn expect_failed(server: &TestServer, task_id: &str, reason: &str) -> pb::TaskStatusResponse {
    let mut client = server.client().await;
    let s = wait_final(&mut client, task_id).await;
    assert_eq!(s.status, TaskStatus::Failed as i32, "{s:?}");
    assert!(s.error_message.contains(reason), "{s:?}");
    assert!(
        server.spool_files().is_empty(),
        "{:?}",
        server.spool_files()
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_number_names_batch_record_and_column_and_fails_the_task() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let (mut call, id) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    call.send(batch_msg(rows(1, 0, 10))).await;
    let batch = pb::DataBatch {
        records: vec![record(&["1", "2", "", ""]), record(&["2", "12,5x", "", ""])],
        batch_sequence: 2,
    };
    let at = "batch_sequence 2, record 1, column 1 \"amount\"";
    expect_refused_batch(&server, &mut call, &id, batch, at, "not a number").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_dates_and_bools_are_refused_too() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for (values, column) in [
        (["1", "1", "yesterday", ""], "column 2 \"paid_at\""),
        (["1", "1", "", "maybe"], "column 3 \"ok\""),
    ] {
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
            .await;
        let id = call.recv().await.unwrap().task_id;
        call.send(batch_msg(pb::DataBatch {
            records: vec![record(&values)],
            batch_sequence: 1,
        }))
        .await;
        let err = call.recv().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(column), "{err:?}");
        expect_failed(&server, &id, column).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_sequence_gaps_and_repeats_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for (second, expected) in [
        (3, "batch_sequence 3 out of order: expected 2"),
        (1, "batch_sequence 1 out of order: expected 2"),
    ] {
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
            .await;
        let id = call.recv().await.unwrap().task_id;
        call.send(batch_msg(rows(1, 0, 5))).await;
        call.send(batch_msg(rows(second, 5, 5))).await;
        let err = call.recv().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(expected), "{err:?}");
        expect_failed(&server, &id, expected).await;
    }
    // The first batch must be 0 or 1.
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(5, 0, 5))).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("expected 0 or 1"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_with_the_wrong_number_of_values_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(pb::DataBatch {
        records: vec![record(&["1", "2", "", ""]), record(&["only", "three", ""])],
        batch_sequence: 1,
    }))
    .await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("batch_sequence 1, record 1: 3 values, but the export has 4 columns"),
        "{err:?}"
    );
    expect_failed(&server, &id, "3 values").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_stream_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.half_close();
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("the stream ended before any ExportMetadata"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_before_metadata_and_metadata_twice_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(batch_msg(rows(1, 0, 1))).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("before ExportMetadata"), "{err:?}");

    let mut call = Call::open(&mut client).await.unwrap();
    call.send(sheet_msg("Second", vec![])).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("SheetStart arrived before ExportMetadata"),
        "{err:?}"
    );

    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 3))).await;
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("ExportMetadata sent twice"),
        "{err:?}"
    );
    expect_failed(&server, &id, "ExportMetadata sent twice").await;

    // Bad metadata: nothing starts.
    let mut call = Call::open(&mut client).await.unwrap();
    let mut meta = metadata("", ExportFormat::FormatCsv);
    meta.columns.clear();
    call.send(meta_msg(meta)).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at least one column"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_and_malformed_task_ids() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let q = |id: &str| pb::TaskStatusRequest { task_id: id.into() };
    let err = client
        .query_task_status(q("0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.query_task_status(q("../etc")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Echoed whole, a 100 KB id made a status header that gRPC clients
    // refuse (16 KiB): they saw RESOURCE_EXHAUSTED and no reason.
    let err = client
        .query_task_status(q(&"x".repeat(100_000)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().len() < 4_000, "{}", err.message().len());
    assert!(
        err.message().ends_with(
            "is malformed: expected a UUID such as 0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b"
        ),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_auth_guards_grpc() {
    let server = TestServer::start(&[("auth_token", "s3cret-token")]).await;
    let mut client = server.client().await;
    for token in [None, Some("wrong"), Some("s3cret-token-longer")] {
        let err = match Call::open_with(&mut client, token).await {
            Err(e) => e,
            Ok(mut call) => call.recv().await.unwrap_err(),
        };
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
    }
    let mut req = tonic::Request::new(pb::TaskStatusRequest {
        task_id: "0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b".into(),
    });
    let err = client.query_task_status(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut call = Call::open_with(&mut client, Some("s3cret-token"))
        .await
        .unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    call.recv().await.unwrap();
    call.send(batch_msg(rows(1, 0, 2))).await;
    call.half_close();
    assert_eq!(
        call.recv().await.unwrap().status,
        TaskStatus::Completed as i32
    );
    req = tonic::Request::new(pb::TaskStatusRequest {
        task_id: "0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b".into(),
    });
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    assert_eq!(
        client.query_task_status(req).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_streams_all_complete() {
    let server = TestServer::start(&[("max_concurrent_tasks", "4")]).await;
    let mut handles = Vec::new();
    for n in 0..16 {
        let mut client = server.client().await;
        handles.push(tokio::spawn(async move {
            let mut call = Call::open(&mut client).await.unwrap();
            let mut meta = metadata(&format!("req-{n}"), ExportFormat::FormatCsv);
            meta.total_records = Some(5000);
            call.send(meta_msg(meta)).await;
            let first = call.recv().await.unwrap();
            for b in 0..5 {
                call.send(batch_msg(rows(b + 1, b as usize * 1000, 1000)))
                    .await;
            }
            call.half_close();
            let last = call.recv().await.unwrap();
            assert_eq!(last.task_id, first.task_id);
            last
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let last = h.await.unwrap();
        assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
        assert_eq!(last.record_count, 5000);
        ids.insert(last.task_id);
    }
    assert_eq!(ids.len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_leaves_a_cancelled_task() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    // The client lives in a runtime of its own: shutting that runtime down
    // drops its connection mid-stream, like a crashed or killed client.
    let addr = server.grpc;
    let (id_tx, id_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut client = fluxo::grpc::pb::export_service_client::ExportServiceClient::connect(
                format!("http://{addr}"),
            )
            .await
            .unwrap();
            let mut call = Call::open(&mut client).await.unwrap();
            call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
                .await;
            let id = call.recv().await.unwrap().task_id;
            call.send(batch_msg(rows(1, 0, 100))).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            id_tx.send(id).unwrap();
            // Never half-closed: the call is leaked, then its connection dies.
            std::mem::forget(call);
            std::mem::forget(client);
        });
        rt.shutdown_background();
    });
    let id = tokio::task::spawn_blocking(move || id_rx.recv().unwrap())
        .await
        .unwrap();
    let s = wait_final(&mut client, &id).await;
    assert_eq!(s.status, TaskStatus::Cancelled as i32, "{s:?}");
    assert!(
        s.error_message
            .starts_with("the stream ended before the export did: "),
        "{s:?}"
    );
    assert!(server.spool_files().is_empty());
    let files: Vec<_> = walk(&server.dir.path().join("out"));
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_cancels_after_its_last_batch_leaves_a_cancelled_task() {
    let server = TestServer::start(&[("max_concurrent_tasks", "1")]).await;
    let mut client = server.client().await;
    // The first export holds the only slot, so the second one is still
    // QUEUED, its rows not written, when its client goes away.
    let (mut holder, _) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    let (mut call, id) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    call.send(batch_msg(rows(1, 0, 100))).await;
    call.half_close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        query(&mut client, &id).await.status,
        TaskStatus::Queued as i32
    );
    drop(call);
    let s = wait_final(&mut client, &id).await;
    assert_eq!(s.status, TaskStatus::Cancelled as i32, "{s:?}");
    assert_eq!(
        s.error_message,
        "the stream ended before the export did: the client stopped reading responses while \
         the file was finished",
        "{s:?}"
    );
    holder.half_close();
    assert_eq!(
        holder.recv().await.unwrap().status,
        TaskStatus::Completed as i32
    );
    assert!(server.spool_files().is_empty());
    let files = walk(&server.dir.path().join("out"));
    assert_eq!(files.len(), 1, "only the first export's file: {files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_request_id_returns_the_existing_task() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let run = |client: &mut fluxo::grpc::pb::export_service_client::ExportServiceClient<_>| {
        let mut client = client.clone();
        async move {
            let mut call = Call::open(&mut client).await.unwrap();
            call.send(meta_msg(metadata("same-request", ExportFormat::FormatCsv)))
                .await;
            let first = call.recv().await.unwrap();
            call.send(batch_msg(rows(1, 0, 10))).await;
            call.half_close();
            let last = call.recv().await.unwrap();
            (first, last)
        }
    };
    let (a_first, a_last) = run(&mut client).await;
    let (b_first, b_last) = run(&mut client).await;
    assert_eq!(a_first.task_id, b_first.task_id);
    assert_eq!(b_first.status, TaskStatus::Completed as i32);
    assert_eq!(
        a_last, b_last,
        "the retry's final response is the original's"
    );
    assert_eq!(
        b_last.record_count, 10,
        "the retry's rows are not written again"
    );
    assert_eq!(walk(&server.dir.path().join("out")).len(), 1);
    // A different request id is a new export.
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("other", ExportFormat::FormatCsv)))
        .await;
    assert_ne!(call.recv().await.unwrap().task_id, a_first.task_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_racing_each_other_share_one_task() {
    let server = TestServer::start(&[]).await;
    let client = server.client().await;
    let opened = (0..8).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut call = Call::open(&mut client).await.unwrap();
            call.send(meta_msg(metadata("raced", ExportFormat::FormatCsv)))
                .await;
            let id = call.recv().await.unwrap().task_id;
            (call, id)
        })
    });
    let mut calls = Vec::new();
    for call in opened.collect::<Vec<_>>() {
        calls.push(call.await.unwrap());
    }
    let first = calls[0].1.clone();
    assert!(
        calls.iter().all(|(_, id)| *id == first),
        "one task for one request id"
    );
    for (call, _) in &mut calls {
        call.send(batch_msg(rows(1, 0, 10))).await;
        call.half_close();
    }
    for (call, _) in &mut calls {
        let last = call.recv().await.unwrap();
        assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
        assert_eq!(last.record_count, 10);
    }
    assert_eq!(walk(&server.dir.path().join("out")).len(), 1);
}

/// A client that stalls after its metadata held an export slot for ever:
/// with one slot, every other export waited and failed BUSY.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_sends_nothing_fails_its_export_and_frees_its_slot() {
    let server = TestServer::start(&[
        ("stream_idle_timeout", "1"),
        ("max_concurrent_tasks", "1"),
        ("queue_timeout", "30"),
    ])
    .await;
    let mut client = server.client().await;
    let (mut stalled, stalled_id) =
        start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    // Sent nothing at all, not even metadata: ended too, holding no slot.
    let mut silent = Call::open(&mut client).await.unwrap();
    for call in [&mut stalled, &mut silent] {
        let err = call.recv().await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert!(
            err.message()
                .contains("the client sent nothing for 1 s (fluxo.stream_idle_timeout)"),
            "{err:?}"
        );
    }
    let failed = wait_final(&mut client, &stalled_id).await;
    assert_eq!(failed.status, TaskStatus::Failed as i32);
    assert!(
        failed.error_message.contains("fluxo.stream_idle_timeout"),
        "{failed:?}"
    );
    // The slot it held is free: the next export runs at once.
    let (mut next, _) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    next.send(batch_msg(rows(1, 0, 10))).await;
    next.half_close();
    let done = next.recv().await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed as i32, "{done:?}");
    assert_eq!(done.record_count, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_the_queue_limit_is_resource_exhausted() {
    let server =
        TestServer::start(&[("max_concurrent_tasks", "1"), ("task_queue_size", "1")]).await;
    let mut client = server.client().await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut call = Call::open(&mut client).await.unwrap();
        call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
            .await;
        call.recv().await.unwrap();
        open.push(call);
    }
    let mut third = Call::open(&mut client).await.unwrap();
    third
        .send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let err = third.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("fluxo.task_queue_size"), "{err:?}");
    for mut call in open {
        call.half_close();
        assert_eq!(
            call.recv().await.unwrap().status,
            TaskStatus::Completed as i32
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_running_streams_finish() {
    let mut server = TestServer::start(&[("shutdown_timeout", "30")]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    server.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A client whose export runs can still ask for its status.
    let running = query(&mut client, &id).await;
    assert_eq!(running.status, TaskStatus::Processing as i32, "{running:?}");
    // New streams are refused while draining.
    let refused = match fluxo::grpc::pb::export_service_client::ExportServiceClient::connect(
        format!("http://{}", server.grpc),
    )
    .await
    {
        Err(_) => true,
        Ok(mut fresh) => match Call::open(&mut fresh).await {
            Err(_) => true,
            Ok(mut c) => {
                c.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
                    .await;
                c.recv().await.is_err()
            }
        },
    };
    assert!(refused);
    call.send(batch_msg(rows(1, 0, 100))).await;
    call.half_close();
    let last = call.recv().await.unwrap();
    assert_eq!(last.status, TaskStatus::Completed as i32, "{last:?}");
    tokio::time::timeout(Duration::from_secs(20), server.done.take().unwrap())
        .await
        .expect("the server stops once drained")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_fails_streams_that_outlive_the_timeout() {
    let mut server = TestServer::start(&[("shutdown_timeout", "1")]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 100))).await;
    server.shutdown();
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("shut down"), "{err:?}");
    tokio::time::timeout(Duration::from_secs(20), server.done.take().unwrap())
        .await
        .expect("the server stops")
        .unwrap();
    let status = fluxo::task::status(&server.settings, &id).unwrap().unwrap();
    assert_eq!(status.state, fluxo::task::registry::TaskState::Failed);
    assert!(status.error.unwrap().contains("fluxo.shutdown_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_waits_past_the_queue_timeout_is_told_to_retry_later() {
    let server = TestServer::start(&[("max_concurrent_tasks", "1"), ("queue_timeout", "1")]).await;
    let mut client = server.client().await;
    let (_holder, _) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    let (call, id) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    let status = wait_final(&mut client, &id).await;
    assert_eq!(status.status, TaskStatus::Failed as i32, "{status:?}");
    assert_eq!(status.error_code, "BUSY", "{status:?}");
    call.send(batch_msg(rows(1, 0, 10))).await;
    let mut call = call;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("fluxo.queue_timeout"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_fails_a_stream_whose_upload_hangs() {
    // A store that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut server = TestServer::start(&[
        ("shutdown_timeout", "1"),
        ("storage", "s3"),
        ("s3_endpoint", &endpoint),
        ("s3_bucket", "exports"),
        ("s3_access_key_id", "key"),
        ("s3_secret_access_key", "secret"),
        ("upload_timeout", "600"),
        ("max_retries", "0"),
    ])
    .await;
    let mut client = server.client().await;
    let (mut call, id) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    call.send(batch_msg(rows(1, 0, 100))).await;
    call.half_close();
    while query(&mut client, &id).await.status != pb::TaskStatus::Uploading as i32 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown();
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("shut down"), "{err:?}");
    tokio::time::timeout(Duration::from_secs(60), server.done.take().unwrap())
        .await
        .expect("the server stops while the upload still hangs")
        .unwrap();
    // The upload is stopped, and the task ends as the client was told. It
    // used to go on, and could end COMPLETED after the client heard it failed.
    let status = fluxo::task::status(&server.settings, &id).unwrap().unwrap();
    assert_eq!(status.state, fluxo::task::registry::TaskState::Failed);
    assert!(status.error.unwrap().contains("fluxo.shutdown_timeout"));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gzip_compressed_messages_are_accepted_and_held_to_the_size_limit_inflated() {
    use tonic::codec::CompressionEncoding::Gzip;
    let server = TestServer::start(&[("max_message_size", "65536")]).await;
    let mut client = server
        .client()
        .await
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let (mut call, _) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    call.send(batch_msg(rows(1, 0, 300))).await;
    call.half_close();
    let done = call.recv().await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed as i32, "{done:?}");
    assert_eq!(done.record_count, 300);

    // 1 MiB of one letter: a few kilobytes on the wire, 16 times the limit inflated.
    let (mut call, id) = start_export(&mut client, metadata("", ExportFormat::FormatCsv)).await;
    let big = "a".repeat(1 << 20);
    let mut batch = rows(1, 0, 1);
    batch.records[0].values[0] = big;
    call.send(batch_msg(batch)).await;
    let err = call.recv().await.unwrap_err();
    assert!(
        err.message().contains("fluxo.max_message_size"),
        "{:?} {err:?}",
        err.code()
    );
    let status = wait_final(&mut client, &id).await;
    assert_eq!(status.status, TaskStatus::Failed as i32, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_size_limit_fails_the_task() {
    let server = TestServer::start(&[("max_message_size", "4096")]).await;
    let mut client = server.client().await;
    let mut call = Call::open(&mut client).await.unwrap();
    call.send(meta_msg(metadata("", ExportFormat::FormatCsv)))
        .await;
    let id = call.recv().await.unwrap().task_id;
    call.send(batch_msg(rows(1, 0, 500))).await;
    let err = call.recv().await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("fluxo.max_message_size"), "{err:?}");
    expect_failed(&server, &id, "fluxo.max_message_size").await;
}
