//! XLSX through rust_xlsxwriter in constant-memory mode: each row is flushed
//! to a temporary sheet file as soon as the next one starts, so memory does
//! not grow with the row count.

use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::{FormatWriter, WrittenFile};
use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::{Cell, Column, ColumnType};

/// Excel's row limit, header included.
pub const MAX_ROWS: u32 = 1_048_576;
/// Integers beyond 15 significant digits lose precision as Excel numbers.
const MAX_EXACT_INT: i64 = 999_999_999_999_999;

const DEFAULT_DATE: &str = "yyyy-mm-dd";
const DEFAULT_DATETIME: &str = "yyyy-mm-dd hh:mm:ss";
const DEFAULT_TIME: &str = "hh:mm:ss";

/// Checks Excel's rules for a sheet name.
pub fn validate_sheet_name(name: &str) -> Result<&str> {
    let invalid = name.is_empty()
        || name.chars().count() > 31
        || name.contains(['[', ']', ':', '*', '?', '/', '\\'])
        || name.starts_with('\'')
        || name.ends_with('\'');
    if invalid {
        return Err(ExportError::invalid_option(format!(
            "sheet name \"{name}\" is not valid in Excel: 1 to 31 characters, none of []:*?/\\, \
             not starting or ending with '"
        )));
    }
    Ok(name)
}

/// The sheet currently written, and what its cells need.
struct Sheet {
    index: usize,
    base_name: String,
    part: u32,
    columns: Vec<Column>,
    formats: Vec<Option<Format>>,
    /// Next row to write (0 is the header).
    row: u32,
}

pub struct XlsxWriter {
    workbook: Workbook,
    path: PathBuf,
    header: Format,
    dates: DateFormats,
    sheet: Option<Sheet>,
    sheets: u32,
    rows_written: u64,
}

impl XlsxWriter {
    pub fn new(path: &Path, compression_level: u8) -> Self {
        let mut workbook = Workbook::new();
        workbook.set_zip_compression_level(compression_level);
        // Constant-memory sheets spill to temp files: keep them beside the spool file.
        if let Some(dir) = path.parent() {
            let _ = workbook.set_tempdir(dir);
        }
        Self {
            workbook,
            path: path.to_path_buf(),
            header: Format::new().set_bold(),
            dates: DateFormats::default(),
            sheet: None,
            sheets: 0,
            rows_written: 0,
        }
    }

    fn add_sheet(
        &mut self,
        name: &str,
        base_name: &str,
        part: u32,
        columns: Vec<Column>,
    ) -> Result<()> {
        let index = self.sheets as usize;
        let ws = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(|e| xlsx_error("adding a sheet", e))?;
        ws.set_name(name)
            .map_err(|e| xlsx_error(&format!("sheet \"{name}\""), e))?;
        for (col, c) in columns.iter().enumerate() {
            ws.write_string_with_format(0, col as u16, &c.name, &self.header)
                .map_err(|e| xlsx_error(&format!("header \"{}\"", c.name), e))?;
        }
        ws.set_freeze_panes(1, 0)
            .map_err(|e| xlsx_error("freezing the header", e))?;
        let formats = columns.iter().map(cell_format).collect();
        self.sheet = Some(Sheet {
            index,
            base_name: base_name.to_owned(),
            part,
            columns,
            formats,
            row: 1,
        });
        self.sheets += 1;
        Ok(())
    }

    /// Continues a full sheet on `Name (2)`, `Name (3)`, ... with the header repeated.
    fn overflow(&mut self) -> Result<()> {
        let sheet = self.sheet.take().expect("a sheet is open");
        let part = sheet.part + 1;
        let suffix = format!(" ({part})");
        let mut base: String = sheet.base_name.clone();
        while base.chars().count() + suffix.chars().count() > 31 {
            base.pop();
        }
        self.add_sheet(
            &format!("{base}{suffix}"),
            &sheet.base_name,
            part,
            sheet.columns,
        )
    }
}

fn cell_format(column: &Column) -> Option<Format> {
    let default = match column.column_type {
        ColumnType::Date => Some(DEFAULT_DATE),
        ColumnType::DateTime => Some(DEFAULT_DATETIME),
        ColumnType::Time => Some(DEFAULT_TIME),
        _ => None,
    };
    let pattern = column.number_format.as_deref().or(default)?;
    Some(Format::new().set_num_format(pattern))
}

fn xlsx_error(what: &str, err: XlsxError) -> ExportError {
    ExportError::export(format!("XLSX {what}: {err}"))
}

/// Date formats for date cells in columns that set none (`auto` columns).
struct DateFormats {
    date: Format,
    datetime: Format,
    time: Format,
}

impl Default for DateFormats {
    fn default() -> Self {
        Self {
            date: Format::new().set_num_format(DEFAULT_DATE),
            datetime: Format::new().set_num_format(DEFAULT_DATETIME),
            time: Format::new().set_num_format(DEFAULT_TIME),
        }
    }
}

fn write_cell(
    ws: &mut Worksheet,
    (row, col): (u32, u16),
    cell: &Cell<'_>,
    format: Option<&Format>,
    dates: &DateFormats,
) -> Result<(), XlsxError> {
    match *cell {
        Cell::Null => return Ok(()),
        Cell::Bool(b) => {
            ws.write_boolean(row, col, b)?;
        }
        Cell::Int(i) if !(-MAX_EXACT_INT..=MAX_EXACT_INT).contains(&i) => {
            ws.write_string(row, col, itoa::Buffer::new().format(i))?;
        }
        Cell::Int(i) => number(ws, row, col, i as f64, format)?,
        Cell::Float(f) => number(ws, row, col, f, format)?,
        Cell::Text(t) => {
            ws.write_string(row, col, t)?;
        }
        Cell::Date(dt) => number(
            ws,
            row,
            col,
            dt.excel_serial(),
            Some(format.unwrap_or(&dates.date)),
        )?,
        Cell::DateTime(dt) => number(
            ws,
            row,
            col,
            dt.excel_serial(),
            Some(format.unwrap_or(&dates.datetime)),
        )?,
        Cell::Time(dt) => number(
            ws,
            row,
            col,
            dt.excel_time(),
            Some(format.unwrap_or(&dates.time)),
        )?,
    };
    Ok(())
}

fn number(
    ws: &mut Worksheet,
    row: u32,
    col: u16,
    n: f64,
    format: Option<&Format>,
) -> Result<(), XlsxError> {
    match format {
        Some(f) => ws.write_number_with_format(row, col, n, f),
        None => ws.write_number(row, col, n),
    }
    .map(|_| ())
}

impl FormatWriter for XlsxWriter {
    fn begin_sheet(&mut self, name: &str, columns: &[Column]) -> Result<()> {
        validate_sheet_name(name)?;
        if columns.len() > 16_384 {
            return Err(ExportError::invalid_option(format!(
                "XLSX sheets hold at most 16,384 columns, not {}",
                columns.len()
            )));
        }
        self.add_sheet(name, name, 1, columns.to_vec())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut reader = batch.reader();
        let mut row = Vec::with_capacity(batch.columns());
        while reader.next_row(&mut row) {
            if self.sheet.as_ref().expect("begin_sheet comes first").row >= MAX_ROWS {
                self.overflow()?;
            }
            let sheet = self.sheet.as_mut().expect("a sheet is open");
            let ws = self
                .workbook
                .worksheet_from_index(sheet.index)
                .map_err(|e| xlsx_error("sheet", e))?;
            for (col, cell) in row.iter().enumerate() {
                let at = (sheet.row, col as u16);
                write_cell(ws, at, cell, sheet.formats[col].as_ref(), &self.dates).map_err(
                    |e| {
                        ExportError::invalid_row(format!(
                            "data row {}, column \"{}\": {e}",
                            self.rows_written + 1,
                            sheet.columns[col].name
                        ))
                    },
                )?;
            }
            sheet.row += 1;
            self.rows_written += 1;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<WrittenFile> {
        self.workbook.save(&self.path).map_err(|e| match e {
            XlsxError::IoError(io) => ExportError::io("cannot write", &self.path, io),
            other => xlsx_error("saving", other),
        })?;
        // The zip container patches its headers as it goes, so the hash is
        // taken once the file is complete.
        let (bytes, sha256) = super::hash_file(&self.path)?;
        Ok(WrittenFile {
            bytes,
            sha256,
            sheets: self.sheets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::LocalDateTime;
    use calamine::{open_workbook, Data, Reader, Xlsx};

    fn export(
        columns: &[Column],
        rows: &[Vec<Cell<'_>>],
    ) -> (tempfile::TempDir, PathBuf, WrittenFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.xlsx");
        let mut w: Box<dyn FormatWriter> = Box::new(XlsxWriter::new(&path, 6));
        w.begin_sheet("Orders", columns).unwrap();
        let mut batch = RecordBatch::new(columns.len(), 0);
        for r in rows {
            r.iter().for_each(|c| batch.push_cell(c));
            batch.end_row();
        }
        w.write_batch(&batch).unwrap();
        let written = w.finish().unwrap();
        (dir, path, written)
    }

    #[test]
    fn values_keep_their_types_in_an_independent_reader() {
        let dt = LocalDateTime::from_parts((2026, 11, 29), (12, 0, 0), 0);
        let columns = vec![
            Column::new("Id", ColumnType::Auto),
            Column::new("Amount", ColumnType::Number),
            Column::new("Paid", ColumnType::Bool),
            Column::new("At", ColumnType::DateTime),
            Column::new("Name", ColumnType::String),
        ];
        let rows = vec![
            vec![
                Cell::Int(123_456_789_012_345_678),
                Cell::Float(12.5),
                Cell::Bool(true),
                Cell::DateTime(dt),
                Cell::Text("张伟"),
            ],
            vec![
                Cell::Int(42),
                Cell::Int(-3),
                Cell::Bool(false),
                Cell::Null,
                Cell::Text("a\u{1}b"),
            ],
        ];
        let (_dir, path, written) = export(&columns, &rows);
        assert_eq!(written.sheets, 1);
        assert_eq!(written.bytes, std::fs::metadata(&path).unwrap().len());

        let mut book: Xlsx<_> = open_workbook(&path).unwrap();
        let range = book.worksheet_range("Orders").unwrap();
        let cells: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
        assert_eq!(cells[0][0], Data::String("Id".into()));
        assert_eq!(cells[1][0], Data::String("123456789012345678".into()));
        assert_eq!(cells[1][1], Data::Float(12.5));
        assert_eq!(cells[1][2], Data::Bool(true));
        match &cells[1][3] {
            Data::DateTime(d) => assert_eq!(d.as_f64(), 46_355.5),
            other => panic!("expected a date, got {other:?}"),
        }
        assert_eq!(cells[1][4], Data::String("张伟".into()));
        assert_eq!(cells[2][0], Data::Float(42.0));
        assert_eq!(cells[2][3], Data::Empty);
    }

    #[test]
    fn sheet_names_follow_excel_rules() {
        assert!(validate_sheet_name("Orders 2026").is_ok());
        for bad in ["", "a/b", "x[1]", &"n".repeat(32), "'quoted'"] {
            assert!(validate_sheet_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_sheet_continues_on_the_next() {
        let columns = vec![Column::new("N", ColumnType::Int)];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.xlsx");
        let mut w: Box<dyn FormatWriter> = Box::new(XlsxWriter::new(&path, 1));
        w.begin_sheet("Data", &columns).unwrap();
        let total = MAX_ROWS as i64 + 9; // one header row per sheet
        let mut n = 0;
        while n < total {
            let mut batch = RecordBatch::new(1, 0);
            for _ in 0..50_000.min(total - n) {
                batch.push_cell(&Cell::Int(n));
                batch.end_row();
                n += 1;
            }
            w.write_batch(&batch).unwrap();
        }
        assert_eq!(w.finish().unwrap().sheets, 2);
        let mut book: Xlsx<_> = open_workbook(&path).unwrap();
        assert_eq!(book.sheet_names(), vec!["Data", "Data (2)"]);
        let second = book.worksheet_range("Data (2)").unwrap();
        assert_eq!(second.get((0, 0)), Some(&Data::String("N".into())));
        // Sheet 1 holds 1,048,575 data rows; the rest continue here.
        assert_eq!(second.height(), 1 + 10);
        assert_eq!(second.get((10, 0)), Some(&Data::Float((total - 1) as f64)));
    }
}
