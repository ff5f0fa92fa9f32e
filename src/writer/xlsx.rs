//! XLSX through rust_xlsxwriter in constant-memory mode: each row is flushed
//! to a temporary sheet file as soon as the next one starts, so memory does
//! not grow with the row count.

use std::path::{Path, PathBuf};

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};

use super::{FormatWriter, WrittenFile};
use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::{self, Cell, Column, ColumnType, ColumnWidth, LocalDateTime, TextStyle};

/// Excel's row limit, header included.
pub const MAX_ROWS: u32 = 1_048_576;
/// Integers beyond 15 significant digits lose precision as Excel numbers.
const MAX_EXACT_INT: i64 = 999_999_999_999_999;

const DEFAULT_DATE: &str = "yyyy-mm-dd";
const DEFAULT_DATETIME: &str = "yyyy-mm-dd hh:mm:ss";
const DEFAULT_TIME: &str = "hh:mm:ss";

/// Excel's longest cell text, in characters.
pub const MAX_TEXT_CHARS: usize = 32_767;
/// Excel's widest column, in characters.
const MAX_WIDTH: f64 = 255.0;

/// Workbook properties (File > Info in Excel).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    pub title: Option<String>,
    pub author: Option<String>,
    pub company: Option<String>,
    pub created: Option<LocalDateTime>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct XlsxOptions {
    pub compression_level: u8,
    /// A filter drop-down on every header cell.
    pub autofilter: bool,
    /// Text beyond 32,767 characters is cut instead of an error.
    pub truncate_long_text: bool,
    pub properties: Properties,
}

impl Default for XlsxOptions {
    fn default() -> Self {
        Self {
            compression_level: 3,
            autofilter: false,
            truncate_long_text: false,
            properties: Properties::default(),
        }
    }
}

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
    /// Widest value so far of each `width: auto` column.
    auto_widths: Vec<Option<usize>>,
    /// Next row to write (0 is the header).
    row: u32,
}

pub struct XlsxWriter {
    workbook: Workbook,
    options: XlsxOptions,
    /// Scratch for the text form of non-text cells in auto-width columns.
    scratch: Vec<u8>,
    path: PathBuf,
    header: Format,
    dates: DateFormats,
    sheet: Option<Sheet>,
    sheets: u32,
    rows_written: u64,
}

impl XlsxWriter {
    pub fn new(path: &Path, options: XlsxOptions) -> Self {
        let mut workbook = Workbook::new();
        workbook.set_zip_compression_level(options.compression_level);
        // Constant-memory sheets spill to temp files: keep them beside the spool file.
        if let Some(dir) = path.parent() {
            let _ = workbook.set_tempdir(dir);
        }
        Self {
            workbook,
            options,
            scratch: Vec::new(),
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
        for (col, c) in columns.iter().enumerate() {
            let col = col as u16;
            if let Some(ColumnWidth::Chars(w)) = c.width {
                ws.set_column_width(col, w)
                    .map_err(|e| xlsx_error("setting a column width", e))?;
            }
            if c.hidden {
                ws.set_column_hidden(col)
                    .map_err(|e| xlsx_error("hiding a column", e))?;
            }
        }
        let formats = columns.iter().map(cell_format).collect();
        let auto_widths = columns
            .iter()
            .map(|c| (c.width == Some(ColumnWidth::Auto)).then(|| schema::display_width(&c.name)))
            .collect();
        self.sheet = Some(Sheet {
            index,
            base_name: base_name.to_owned(),
            part,
            columns,
            formats,
            auto_widths,
            row: 1,
        });
        self.sheets += 1;
        Ok(())
    }

    /// Applies what is only known once a sheet is complete: auto widths and
    /// the autofilter range.
    fn close_sheet(&mut self) -> Result<Option<Sheet>> {
        let Some(sheet) = self.sheet.take() else {
            return Ok(None);
        };
        let ws = self
            .workbook
            .worksheet_from_index(sheet.index)
            .map_err(|e| xlsx_error("sheet", e))?;
        for (col, width) in sheet.auto_widths.iter().enumerate() {
            if let Some(chars) = width {
                // One character of padding, as Excel's own autofit leaves.
                let width = (*chars as f64 + 1.0).min(MAX_WIDTH);
                ws.set_column_width(col as u16, width)
                    .map_err(|e| xlsx_error("setting a column width", e))?;
            }
        }
        if self.options.autofilter {
            let last_col = sheet.columns.len().saturating_sub(1) as u16;
            ws.autofilter(0, 0, sheet.row.saturating_sub(1), last_col)
                .map_err(|e| xlsx_error("adding the autofilter", e))?;
        }
        Ok(Some(sheet))
    }

    /// Continues a full sheet on `Name (2)`, `Name (3)`, ... with the header repeated.
    fn overflow(&mut self) -> Result<()> {
        let sheet = self.close_sheet()?.expect("a sheet is open");
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

/// Widths of dates and numbers are measured in their default text form.
fn auto_width_style() -> &'static TextStyle {
    static STYLE: std::sync::OnceLock<TextStyle> = std::sync::OnceLock::new();
    STYLE.get_or_init(TextStyle::default)
}

fn document_properties(p: &Properties) -> Result<DocProperties> {
    let mut doc = DocProperties::new();
    if let Some(title) = &p.title {
        doc = doc.set_title(title);
    }
    if let Some(author) = &p.author {
        doc = doc.set_author(author);
    }
    if let Some(company) = &p.company {
        doc = doc.set_company(company);
    }
    if let Some(created) = p.created {
        let (y, m, d, h, mi, s) = created.parts();
        let when = ExcelDateTime::from_ymd(y as u16, m as u8, d as u8)
            .and_then(|dt| dt.and_hms(h as u16, mi as u8, s as f64))
            .map_err(|e| ExportError::invalid_option(format!("properties.created: {e}")))?;
        doc = doc.set_creation_datetime(&when);
    }
    Ok(doc)
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
        self.close_sheet()?;
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
                let mut cell = *cell;
                if let Cell::Text(text) = cell {
                    if text.len() > MAX_TEXT_CHARS && self.options.truncate_long_text {
                        if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
                            cell = Cell::Text(&text[..cut]);
                        }
                    }
                }
                if let Some(widest) = &mut sheet.auto_widths[col] {
                    let width = match cell {
                        Cell::Text(t) => schema::display_width(t),
                        other => {
                            self.scratch.clear();
                            schema::write_text_form(&other, auto_width_style(), &mut self.scratch);
                            self.scratch.len()
                        }
                    };
                    *widest = (*widest).max(width);
                }
                let cell = &cell;
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
        self.close_sheet()?;
        let properties = document_properties(&self.options.properties)?;
        self.workbook.set_properties(&properties);
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
        let mut w: Box<dyn FormatWriter> = Box::new(XlsxWriter::new(&path, XlsxOptions::default()));
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
        let mut w: Box<dyn FormatWriter> = Box::new(XlsxWriter::new(
            &path,
            XlsxOptions {
                compression_level: 1,
                ..XlsxOptions::default()
            },
        ));
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
