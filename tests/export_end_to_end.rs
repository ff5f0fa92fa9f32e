//! The whole core path without PHP: options → Export → worker → file in the
//! local folder, read back with independent readers; status, cancel, failure.

use calamine::{open_workbook, Data, Reader, Xlsx};
mod common;
use common::walk;
use fluxo::config::{ExportSpec, OptionValue, Settings};
use fluxo::schema::{ColumnType, Value};
use fluxo::task::{self, registry::TaskState, Export};
use fluxo::ErrorKind;

fn settings(dir: &std::path::Path) -> Settings {
    Settings::resolve_with_env(
        |key| match key {
            "local_dir" => Some(dir.join("out").display().to_string()),
            "work_dir" => Some(dir.join("work").display().to_string()),
            _ => None,
        },
        |_| None,
    )
    .unwrap()
}

fn spec(format: &str, settings: &Settings) -> ExportSpec {
    let s = |v: &str| OptionValue::Str(v.into());
    let column = |name: &str, ty: &str| {
        OptionValue::Map(vec![("name".into(), s(name)), ("type".into(), s(ty))])
    };
    let options = OptionValue::Map(vec![
        ("format".into(), s(format)),
        ("filename".into(), s("orders")),
        (
            "columns".into(),
            OptionValue::List(vec![column("Id", "string"), column("Amount", "number")]),
        ),
        ("total_rows".into(), OptionValue::Int(2_000)),
    ]);
    ExportSpec::from_options(&options, settings).unwrap()
}

fn feed(export: &mut Export, rows: i64) {
    for chunk in 0..rows / 1_000 {
        let mut batch = export.new_batch();
        for i in chunk * 1_000..(chunk + 1) * 1_000 {
            batch
                .push(Value::Int(100_000_000_000_000_000 + i), ColumnType::String)
                .unwrap();
            batch
                .push(Value::Float(i as f64 / 4.0), ColumnType::Number)
                .unwrap();
            batch.end_row();
        }
        export.add(batch).unwrap();
    }
}

#[test]
fn csv_export_lands_in_the_local_folder_with_status() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut export = Export::start(spec("csv", &settings), &settings).unwrap();
    feed(&mut export, 2_000);
    let result = export.finish().unwrap();
    let path = result.path.clone().unwrap();
    assert!(path.starts_with(dir.path().join("out")) && path.ends_with("orders.csv"));

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(result.bytes, bytes.len() as u64);
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2_000);
    assert_eq!(&rows[1999][0], "100000000000001999");
    assert_eq!(&rows[1][1], "0.25");

    let status = task::status(&settings, &result.task_id).unwrap().unwrap();
    assert_eq!(status.state, TaskState::Completed);
    assert_eq!((status.records, status.progress()), (2_000, 100));
    assert_eq!(status.sha256.as_deref(), Some(result.sha256.as_str()));
    let spool = std::fs::read_dir(dir.path().join("work/spool"))
        .unwrap()
        .count();
    assert_eq!(spool, 0, "the spool file was moved, not copied");
}

#[test]
fn xlsx_export_reads_back_in_calamine() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut export = Export::start(spec("xlsx", &settings), &settings).unwrap();
    feed(&mut export, 2_000);
    let result = export.finish().unwrap();
    let mut book: Xlsx<_> = open_workbook(result.path.unwrap()).unwrap();
    let range = book.worksheet_range("Sheet1").unwrap();
    assert_eq!(range.height(), 2_001);
    assert_eq!(
        range.get((2_000, 0)),
        Some(&Data::String("100000000000001999".into()))
    );
    assert_eq!(range.get((2, 1)), Some(&Data::Float(0.25)));
}

/// Rows added one at a time are gathered before they go to the writer;
/// batches and sheets added between them keep their places.
#[test]
fn single_rows_batches_and_sheets_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut export = Export::start(spec("xlsx", &settings), &settings).unwrap();
    let mut next = 0;
    let mut add = |export: &mut Export, rows: i64| {
        let mut batch = export.new_batch();
        for _ in 0..rows {
            batch.push(Value::Int(next), ColumnType::String).unwrap();
            batch.push(Value::Float(0.5), ColumnType::Number).unwrap();
            batch.end_row();
            next += 1;
        }
        export.add(batch).unwrap()
    };
    // 3,000 single rows span several sends of gathered rows.
    for _ in 0..3_000 {
        add(&mut export, 1);
    }
    add(&mut export, 2_000);
    add(&mut export, 1);
    export.start_sheet("Second", None).unwrap();
    add(&mut export, 1);
    assert_eq!(add(&mut export, 1), 5_003, "rows counted as they are added");
    let result = export.finish().unwrap();
    assert_eq!(result.records, 5_003);
    let mut book: Xlsx<_> = open_workbook(result.path.unwrap()).unwrap();
    let mut ids = |sheet: &str| -> Vec<String> {
        let range = book.worksheet_range(sheet).unwrap();
        range.rows().skip(1).map(|r| r[0].to_string()).collect()
    };
    let first = ids("Sheet1");
    assert_eq!(first.len(), 5_001);
    assert!(first.iter().enumerate().all(|(i, id)| *id == i.to_string()));
    assert_eq!(ids("Second"), ["5001", "5002"]);
}

#[test]
fn cancel_leaves_no_file_and_a_cancelled_status() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut export = Export::start(spec("csv", &settings), &settings).unwrap();
    feed(&mut export, 1_000);
    let id = export.task_id().to_owned();
    export.cancel();
    assert_eq!(export.finish().unwrap_err().kind, ErrorKind::Cancelled);
    let cancelled = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        task::status(&settings, &id).unwrap().unwrap().state == TaskState::Cancelled
    });
    assert!(cancelled);
    let files = walk(&dir.path().join("out")).len() + walk(&dir.path().join("work/spool")).len();
    assert_eq!(files, 0, "no file left behind");
}

#[test]
fn dropping_an_unfinished_export_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let export = Export::start(spec("xlsx", &settings), &settings).unwrap();
    let id = export.task_id().to_owned();
    drop(export);
    let cancelled = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        task::status(&settings, &id).unwrap().unwrap().state == TaskState::Cancelled
    });
    assert!(cancelled);
}
