//! Translation between protobuf messages and core types.

use std::time::Duration;

use super::pb;
use crate::batch::RecordBatch;
use crate::config::{ExportSpec, OptionValue, Settings};
use crate::error::{ErrorKind, ExportError, Result};
use crate::schema::{Column, ColumnType, Value};
use crate::task::registry::{now_ms, TaskState, TaskStatus};
use crate::task::ExportOutcome;

fn s(v: &str) -> OptionValue {
    OptionValue::Str(v.to_owned())
}

/// The core column type of a proto data type.
pub fn column_type(data_type: i32) -> Result<ColumnType> {
    match pb::DataType::try_from(data_type) {
        Ok(pb::DataType::String) => Ok(ColumnType::String),
        Ok(pb::DataType::Number) => Ok(ColumnType::Number),
        Ok(pb::DataType::Date) => Ok(ColumnType::DateOrDateTime),
        Ok(pb::DataType::Boolean) => Ok(ColumnType::Bool),
        Err(_) => Err(ExportError::invalid_option(format!(
            "unknown data_type {data_type}; valid: DATA_TYPE_STRING, DATA_TYPE_NUMBER, DATA_TYPE_DATE, DATA_TYPE_BOOLEAN"
        ))),
    }
}

/// The proto's name of a column type, for messages.
fn data_type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Number => "DATA_TYPE_NUMBER",
        ColumnType::DateOrDateTime => "DATA_TYPE_DATE",
        ColumnType::Bool => "DATA_TYPE_BOOLEAN",
        _ => "DATA_TYPE_STRING",
    }
}

/// The PHP option type a proto column type stands for.
fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Number => "number",
        ColumnType::DateOrDateTime => "date_or_datetime",
        ColumnType::Bool => "bool",
        _ => "string",
    }
}

/// The options an `ExportMetadata` stands for, as `new Fluxo\Exporter([...])` takes them.
pub fn options(m: &pb::ExportMetadata) -> Result<OptionValue> {
    let format = match pb::ExportFormat::try_from(m.format) {
        Ok(pb::ExportFormat::FormatExcel) => "xlsx",
        Ok(pb::ExportFormat::FormatCsv) => "csv",
        Err(_) => {
            return Err(ExportError::invalid_option(format!(
                "unknown format {}; valid: FORMAT_EXCEL, FORMAT_CSV",
                m.format
            )))
        }
    };
    let columns = column_options(&m.columns)?;
    let mut map = vec![
        ("format".to_owned(), s(format)),
        ("columns".into(), columns),
    ];
    if !m.filename.is_empty() {
        map.push(("filename".into(), s(&m.filename)));
    }
    if let Some(total) = m.total_records {
        map.push(("total_rows".into(), OptionValue::Int(total)));
    }
    if let Some(o) = &m.options {
        // Each format's options are checked whichever format is asked for,
        // as PHP's are: a bad value is a mistake even where it is unused.
        if !o.excel_sheet_name.is_empty() {
            map.push(("sheet".into(), s(&o.excel_sheet_name)));
        }
        if !o.long_text.is_empty() {
            map.push(("long_text".into(), s(&o.long_text)));
        }
        let mut csv = Vec::new();
        if !o.csv_delimiter.is_empty() {
            csv.push(("delimiter".to_owned(), s(&o.csv_delimiter)));
        }
        if !o.csv_encoding.is_empty() {
            csv.push(("encoding".to_owned(), s(&o.csv_encoding)));
        }
        // XLSX is always deflated; for CSV this asks for a .csv.gz file.
        if o.compression_enabled {
            csv.push(("compression".to_owned(), s("gzip")));
        }
        if o.csv_excel_text {
            csv.push(("excel_text".to_owned(), OptionValue::Bool(true)));
        }
        if !o.csv_decimal_separator.is_empty() {
            csv.push(("decimal_separator".to_owned(), s(&o.csv_decimal_separator)));
        }
        if !o.csv_unencodable.is_empty() {
            csv.push(("unencodable".to_owned(), s(&o.csv_unencodable)));
        }
        if !csv.is_empty() {
            map.push(("csv".into(), OptionValue::Map(csv)));
        }
    }
    Ok(OptionValue::Map(map))
}

/// `ColumnDefinition`s as the `columns` option.
fn column_options(defs: &[pb::ColumnDefinition]) -> Result<OptionValue> {
    let mut columns = Vec::with_capacity(defs.len());
    for (i, c) in defs.iter().enumerate() {
        let t = column_type(c.data_type)
            .map_err(|e| ExportError::invalid_option(format!("columns[{i}]: {}", e.message)))?;
        let mut col = vec![
            ("name".to_owned(), s(&c.name)),
            ("type".into(), s(type_name(t))),
        ];
        if !c.format.is_empty() {
            col.push(("format".into(), s(&c.format)));
        }
        match c.width {
            0 => {}
            // A negative width asks for auto width (from the widest value).
            w if w < 0 => col.push(("width".into(), s("auto"))),
            w => col.push(("width".into(), OptionValue::Int(i64::from(w)))),
        }
        columns.push(OptionValue::Map(col));
    }
    Ok(OptionValue::List(columns))
}

/// The columns of a `SheetStart`; `None` keeps the current ones.
pub fn sheet_columns(defs: &[pb::ColumnDefinition]) -> Result<Option<Vec<Column>>> {
    if defs.is_empty() {
        return Ok(None);
    }
    column_options(defs)
        .and_then(|options| crate::config::parse_columns(&options))
        .map(Some)
        .map_err(|e| {
            let message = format!("SheetStart: {}", e.message);
            e.reworded(message)
        })
}

/// The checked export spec of a metadata message.
pub fn spec(m: &pb::ExportMetadata, settings: &Settings) -> Result<ExportSpec> {
    ExportSpec::from_options(&options(m)?, settings)
}

/// Decodes one `DataBatch` into a batch for the core. Every value is text;
/// the column's type converts it. An empty value is null in a non-string column.
pub fn batch(
    batch: &pb::DataBatch,
    types: &[ColumnType],
    names: &[String],
    mut out: RecordBatch,
) -> Result<RecordBatch> {
    let seq = batch.batch_sequence;
    for (i, record) in batch.records.iter().enumerate() {
        if record.values.len() != types.len() {
            return Err(ExportError::invalid_row(format!(
                "batch_sequence {seq}, record {i}: {} values, but the export has {} columns",
                record.values.len(),
                types.len()
            )));
        }
        for (j, (value, t)) in record.values.iter().zip(types).enumerate() {
            let v = if value.is_empty() && *t != ColumnType::String {
                Value::Null
            } else {
                Value::Bytes(value.as_bytes())
            };
            out.push(v, *t).map_err(|e| {
                let shown: String = value.chars().take(64).collect();
                ExportError::invalid_row(format!(
                    "batch_sequence {seq}, record {i}, column {j} \"{}\" ({}): {e}: \"{}\"",
                    names[j],
                    data_type_name(*t),
                    shown.escape_debug()
                ))
            })?;
        }
        out.end_row();
    }
    Ok(out)
}

pub fn status_enum(state: TaskState) -> pb::TaskStatus {
    match state {
        TaskState::Queued => pb::TaskStatus::Queued,
        TaskState::Processing => pb::TaskStatus::Processing,
        TaskState::Uploading => pb::TaskStatus::Uploading,
        TaskState::Completed => pb::TaskStatus::Completed,
        TaskState::Failed => pb::TaskStatus::Failed,
        TaskState::Cancelled => pb::TaskStatus::Cancelled,
    }
}

/// The engine's messages name PHP's options; a gRPC caller sets these.
const PROTO_NAMES: &[(&str, &str)] = &[
    (
        "options \"csv.delimiter\" and \"csv.enclosure\" must differ",
        "field \"options.csv_delimiter\" must not be '\"', the character that encloses CSV fields",
    ),
    (
        "sheet(): a CSV file has one sheet; use format xlsx for several",
        "SheetStart: a CSV file has one sheet; use FORMAT_EXCEL for several",
    ),
    ("option \"total_rows\"", "field \"total_records\""),
    ("option \"sheet\"", "field \"options.excel_sheet_name\""),
    ("option \"long_text\"", "field \"options.long_text\""),
    (
        "option \"csv.delimiter\"",
        "field \"options.csv_delimiter\"",
    ),
    ("option \"csv.encoding\"", "field \"options.csv_encoding\""),
    (
        "option \"csv.decimal_separator\"",
        "field \"options.csv_decimal_separator\"",
    ),
    (
        "option \"csv.unencodable\"",
        "field \"options.csv_unencodable\"",
    ),
    (", or \"auto\"", ", or negative for auto"),
    (
        "set long_text to truncate",
        "set options.long_text to \"truncate\"",
    ),
    (
        "csv option unencodable => 'replace'",
        "options.csv_unencodable \"replace\"",
    ),
];

/// An engine message in the terms of the proto.
pub fn in_proto_terms(message: &str) -> String {
    PROTO_NAMES
        .iter()
        .fold(message.to_owned(), |m, (php, proto)| m.replace(php, proto))
}

/// `error_code` for an error kind.
pub fn error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidOption => "INVALID_OPTION",
        ErrorKind::InvalidRow => "INVALID_ROW",
        ErrorKind::Storage => "STORAGE",
        ErrorKind::Cancelled => "CANCELLED",
        ErrorKind::Busy => "BUSY",
        ErrorKind::Export => "EXPORT_FAILED",
    }
}

/// Seconds left by the rate so far; 0 when unknown.
fn eta_seconds(s: &TaskStatus) -> i64 {
    match (s.state, s.total_rows) {
        (TaskState::Queued | TaskState::Processing, Some(total)) if s.records > 0 => {
            let elapsed = now_ms().saturating_sub(s.created_ms) as f64 / 1000.0;
            let left = total.saturating_sub(s.records) as f64;
            (elapsed * left / s.records as f64).ceil() as i64
        }
        _ => 0,
    }
}

pub fn status_response(s: &TaskStatus) -> pb::TaskStatusResponse {
    let code = match s.state {
        TaskState::Failed => s.error_kind.map_or("EXPORT_FAILED", error_code),
        TaskState::Cancelled => "CANCELLED",
        _ => "",
    };
    pb::TaskStatusResponse {
        task_id: s.task_id.clone(),
        status: status_enum(s.state) as i32,
        oss_url: s.url.clone().unwrap_or_default(),
        file_size_bytes: s.bytes as i64,
        record_count: s.records as i64,
        progress_percent: i32::from(s.progress()),
        checksum_sha256: s.sha256.clone().unwrap_or_default(),
        error_message: s.error.as_deref().map(in_proto_terms).unwrap_or_default(),
        error_code: code.into(),
        start_time: s.created_ms as i64,
        completion_time: if s.state.is_final() {
            s.updated_ms as i64
        } else {
            0
        },
        records_processed: s.records as i64,
        estimated_time_remaining: eta_seconds(s),
    }
}

pub fn export_response(s: &TaskStatus) -> pb::ExportResponse {
    let r = status_response(s);
    pb::ExportResponse {
        task_id: r.task_id,
        status: r.status,
        oss_url: r.oss_url,
        file_size_bytes: r.file_size_bytes,
        record_count: r.record_count,
        progress_percent: r.progress_percent,
        checksum_sha256: r.checksum_sha256,
        error_message: r.error_message,
        error_code: r.error_code,
        start_time: r.start_time,
        completion_time: r.completion_time,
    }
}

/// The final response of a finished export.
pub fn outcome_response(
    task_id: &str,
    start_ms: u64,
    outcome: &Result<ExportOutcome>,
) -> pb::ExportResponse {
    let now = now_ms() as i64;
    match outcome {
        Ok(o) => pb::ExportResponse {
            task_id: task_id.to_owned(),
            status: pb::TaskStatus::Completed as i32,
            oss_url: o.url.clone(),
            file_size_bytes: o.bytes as i64,
            record_count: o.records as i64,
            progress_percent: 100,
            checksum_sha256: o.sha256.clone(),
            start_time: start_ms as i64,
            completion_time: now,
            ..Default::default()
        },
        Err(e) => pb::ExportResponse {
            task_id: task_id.to_owned(),
            status: if e.kind == ErrorKind::Cancelled {
                pb::TaskStatus::Cancelled
            } else {
                pb::TaskStatus::Failed
            } as i32,
            error_message: in_proto_terms(&e.message),
            error_code: error_code(e.kind).into(),
            start_time: start_ms as i64,
            completion_time: now,
            ..Default::default()
        },
    }
}

/// Waiting time between polls of a task another stream owns.
pub const POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> pb::ExportMetadata {
        pb::ExportMetadata {
            request_id: "r".into(),
            format: pb::ExportFormat::FormatCsv as i32,
            filename: "a.csv".into(),
            columns: vec![
                pb::ColumnDefinition {
                    name: "id".into(),
                    data_type: pb::DataType::String as i32,
                    ..Default::default()
                },
                pb::ColumnDefinition {
                    name: "amount".into(),
                    data_type: pb::DataType::Number as i32,
                    ..Default::default()
                },
            ],
            options: None,
            total_records: Some(2),
        }
    }

    #[test]
    fn a_sheet_start_names_itself_in_its_errors() {
        let mut columns = meta().columns;
        assert_eq!(sheet_columns(&columns).unwrap().unwrap().len(), 2);
        columns[1].name = "id".into();
        let e = sheet_columns(&columns).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidOption);
        assert!(e.message.starts_with("SheetStart: "), "{}", e.message);
        columns[1].data_type = 99;
        assert!(sheet_columns(&columns)
            .unwrap_err()
            .message
            .starts_with("SheetStart: "));
    }

    #[test]
    fn metadata_becomes_a_spec() {
        let spec = spec(&meta(), &Settings::default()).unwrap();
        assert_eq!(spec.columns[1].column_type, ColumnType::Number);
        assert_eq!(spec.total_rows, Some(2));
        let mut bad = meta();
        bad.columns[0].data_type = 9;
        assert!(super::spec(&bad, &Settings::default())
            .unwrap_err()
            .message
            .contains("columns[0]: unknown data_type 9"));
    }

    #[test]
    fn format_options_map_to_the_spec() {
        use crate::schema::ColumnWidth;
        use crate::writer::csv::CsvEncoding;
        let mut m = meta();
        m.columns[0].width = 18;
        m.columns[1].width = -1;
        m.options = Some(pb::FormatOptions {
            csv_delimiter: ";".into(),
            csv_encoding: "GBK".into(),
            excel_sheet_name: String::new(),
            compression_enabled: true,
            csv_excel_text: true,
            csv_decimal_separator: ",".into(),
            long_text: "truncate".into(),
            csv_unencodable: "replace".into(),
        });
        let spec = spec(&m, &Settings::default()).unwrap();
        assert_eq!(spec.columns[0].width, Some(ColumnWidth::Chars(18.0)));
        assert_eq!(spec.columns[1].width, Some(ColumnWidth::Auto));
        assert_eq!(spec.csv.delimiter, b';');
        assert_eq!(spec.csv.encoding, CsvEncoding::Gbk);
        assert!(spec.csv.gzip);
        assert!(spec.csv.excel_text);
        assert_eq!(spec.csv.style.decimal_separator, b',');
        assert_eq!(spec.filename_for("t"), "a.csv.gz");
        assert!(spec.xlsx.truncate_long_text);
        assert!(spec.csv.replace_unencodable);
    }

    #[test]
    fn errors_name_the_fields_a_grpc_caller_sets() {
        use crate::schema::CellError;
        let refused = |change: &dyn Fn(&mut pb::ExportMetadata)| {
            let mut m = meta();
            change(&mut m);
            in_proto_terms(&spec(&m, &Settings::default()).unwrap_err().message)
        };
        let options =
            |o: pb::FormatOptions| move |m: &mut pb::ExportMetadata| m.options = Some(o.clone());
        type Change<'a> = &'a dyn Fn(&mut pb::ExportMetadata);
        let cases: [(Change, &str); 5] = [
            (&|m| m.total_records = Some(-1), "field \"total_records\""),
            (&|m| m.columns[0].width = 300, "or negative for auto"),
            (
                &options(pb::FormatOptions {
                    csv_delimiter: "ab".into(),
                    ..Default::default()
                }),
                "field \"options.csv_delimiter\"",
            ),
            (
                &options(pb::FormatOptions {
                    long_text: "cut".into(),
                    ..Default::default()
                }),
                "field \"options.long_text\"",
            ),
            (
                &options(pb::FormatOptions {
                    csv_unencodable: "drop".into(),
                    ..Default::default()
                }),
                "field \"options.csv_unencodable\"",
            ),
        ];
        for (change, named) in cases {
            let message = refused(change);
            assert!(message.contains(named), "{message}");
            assert!(!message.contains("option \""), "{message}");
        }
        let hint = CellError::Unencodable {
            character: '😀',
            encoding: encoding_rs::GBK,
        };
        assert!(
            in_proto_terms(&hint.to_string()).ends_with("or options.csv_unencodable \"replace\"")
        );
    }

    #[test]
    fn bad_values_name_batch_record_and_column() {
        let types = [ColumnType::String, ColumnType::Number];
        let names = ["id".to_owned(), "amount".to_owned()];
        let rec = |a: &str, b: &str| pb::Record {
            values: vec![a.into(), b.into()],
        };
        let b = pb::DataBatch {
            records: vec![rec("1", "2.5"), rec("2", "")],
            batch_sequence: 1,
        };
        let empty = || RecordBatch::new(types.len(), 0);
        assert_eq!(batch(&b, &types, &names, empty()).unwrap().rows(), 2);
        let b = pb::DataBatch {
            records: vec![rec("1", "2.5"), rec("2", "abc")],
            batch_sequence: 7,
        };
        let e = batch(&b, &types, &names, empty()).unwrap_err().message;
        assert!(
            e.starts_with(
                "batch_sequence 7, record 1, column 1 \"amount\" (DATA_TYPE_NUMBER): not a number"
            ),
            "{e}"
        );
    }

    #[test]
    fn messages_of_options_the_proto_has_not_are_told_in_its_terms() {
        let mut m = meta();
        m.options = Some(pb::FormatOptions {
            csv_delimiter: "\"".into(),
            ..Default::default()
        });
        let message = in_proto_terms(&spec(&m, &Settings::default()).unwrap_err().message);
        assert_eq!(
            message,
            "field \"options.csv_delimiter\" must not be '\"', the character that encloses CSV fields"
        );
        assert_eq!(
            in_proto_terms("sheet(): a CSV file has one sheet; use format xlsx for several"),
            "SheetStart: a CSV file has one sheet; use FORMAT_EXCEL for several"
        );
    }
}
