//! XLSX, written by a purpose-built streaming writer: rows become sheet XML
//! in a reused buffer, the XML is deflated in 512 KiB chunks on worker threads
//! while the next rows arrive, and the compressed sheet goes to a temporary
//! file beside the spool file. `finish` assembles the zip package around it.
//! Memory stays flat whatever the row count.

mod cells;
mod deflate;
mod package;
mod zip;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::{Compress, Compression};

use self::cells::RowWriter;
use self::deflate::{deflate_piece, ParallelDeflate, Summary, CHUNK};
use self::package::{ColumnLook, SheetEntry, Styles};
use self::zip::ZipWriter;
use super::{FormatWriter, HashingWriter, OutputFile, WrittenFile};
use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::{
    self, Cell, CellError, Column, ColumnType, ColumnWidth, LocalDateTime, TextLimit, TextStyle,
};

/// Excel's row limit, header included.
pub const MAX_ROWS: u32 = 1_048_576;
/// Integers beyond 15 significant digits lose precision as Excel numbers.
const MAX_EXACT_INT: i64 = 999_999_999_999_999;
/// The widest whole number a column of the default width (64 pixels,
/// digits of 7) shows in full: LibreOffice, rendering it, shows nine
/// digits as `1.23E+08`.
const MAX_NARROW_INT: i64 = 99_999_999;

const DEFAULT_DATE: &str = "yyyy-mm-dd";
const DEFAULT_DATETIME: &str = "yyyy-mm-dd hh:mm:ss";
const DEFAULT_TIME: &str = "hh:mm:ss";

/// Excel's longest cell text, in characters.
pub const MAX_TEXT_CHARS: usize = 32_767;
/// Excel's widest column, in characters.
const MAX_WIDTH: f64 = 255.0;
/// Excel's column limit.
pub const MAX_COLUMNS: usize = 16_384;

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
    /// Threads the sheets are deflated on, beside the writer's own.
    pub deflate_threads: usize,
    /// A filter drop-down on every header cell.
    pub autofilter: bool,
    /// Text beyond 32,767 characters is cut instead of an error.
    pub truncate_long_text: bool,
    pub properties: Properties,
}

impl XlsxOptions {
    /// What text cells must keep to: an Excel cell's 32,767 characters,
    /// unless longer text is cut.
    pub fn text_limit(&self) -> Option<TextLimit> {
        (!self.truncate_long_text).then_some(TextLimit::Chars(MAX_TEXT_CHARS))
    }
}

/// `fluxo.workers` when it is 0: one deflate thread per core, at most 4, so
/// that a few exports at once on a large host do not each take every core.
pub fn default_deflate_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl Default for XlsxOptions {
    fn default() -> Self {
        Self {
            compression_level: 2,
            deflate_threads: default_deflate_threads(),
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
        || name.chars().any(char::is_control)
        || name.starts_with('\'')
        || name.ends_with('\'')
        // Excel keeps this name for its change history and repairs the file.
        || name.eq_ignore_ascii_case("History");
    if invalid {
        return Err(ExportError::invalid_option(format!(
            "sheet name \"{name}\" is not valid in Excel: 1 to 31 characters, none of []:*?/\\ \
             or control characters, not starting or ending with ', not History"
        )));
    }
    Ok(name)
}

/// Checks a sheet before a workbook gets it: a valid name
/// ([`validate_sheet_name`]) that is none of `taken` in any case (Excel
/// ignores case), and at most 16,384 columns. The producer checks its own
/// sheets as they are asked for, so that `sheet()` fails rather than the
/// export later; the writer checks again, against the overflow sheets too.
pub fn check_new_sheet<'a>(
    name: &str,
    columns: usize,
    taken: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    validate_sheet_name(name)?;
    if columns > MAX_COLUMNS {
        return Err(ExportError::invalid_option(format!(
            "XLSX sheets hold at most 16,384 columns, not {columns}"
        )));
    }
    if is_taken(name, taken) {
        return Err(ExportError::invalid_option(format!(
            "sheet name \"{name}\" is already used in this workbook (Excel ignores case)"
        )));
    }
    Ok(())
}

fn is_taken<'a>(name: &str, taken: impl IntoIterator<Item = &'a str>) -> bool {
    let lower = name.to_lowercase();
    taken.into_iter().any(|n| n.to_lowercase() == lower)
}

/// The part after `part` of a sheet named `base`, and its name: `Base (2)`,
/// `Base (3)`, … cut to 31 characters, skipping the names `taken`.
fn next_part(base: &str, mut part: u32, taken: impl Fn(&str) -> bool) -> (u32, String) {
    loop {
        part += 1;
        let suffix = format!(" ({part})");
        let mut cut = base.to_owned();
        while cut.chars().count() + suffix.chars().count() > 31 {
            cut.pop();
        }
        let name = format!("{cut}{suffix}");
        if !taken(&name) {
            return (part, name);
        }
    }
}

/// Adds to `taken` the sheets that `data_rows` rows of the sheet `base`
/// continue on, named as the writer will name them: the producer checks a
/// new sheet's name against them before the writer gets that far.
pub fn add_overflow_names(base: &str, data_rows: u64, taken: &mut Vec<String>) {
    let parts = data_rows.saturating_sub(1) / u64::from(MAX_ROWS - 1);
    let mut part = 1;
    for _ in 0..parts {
        let (next, name) = next_part(base, part, |n| {
            is_taken(n, taken.iter().map(String::as_str))
        });
        part = next;
        taken.push(name);
    }
}

/// The sheet being written.
struct Sheet {
    name: String,
    base_name: String,
    part: u32,
    columns: Vec<Column>,
    /// Cell style of each column's numbers and dates (0: none).
    styles: Vec<u32>,
    /// Widest value so far of each `width: auto` column.
    auto_widths: Vec<Option<usize>>,
    /// Characters the widest date, or long whole number, of each column
    /// shows: a column narrower than that shows `####` or `1.23E+10`.
    shown_widths: Vec<usize>,
    /// Rows written, header included.
    rows: u32,
    cells: RowWriter,
    /// Sheet XML not yet handed to the compressor.
    xml: Vec<u8>,
    body: BufWriter<File>,
    body_path: PathBuf,
    body_summary: Summary,
}

/// A complete sheet: its compressed rows on disk, its compressed head and
/// tail in memory.
struct FinishedSheet {
    entry: SheetEntry,
    head: (Vec<u8>, Summary),
    body_path: PathBuf,
    body_summary: Summary,
    tail: (Vec<u8>, Summary),
}

pub struct XlsxWriter {
    path: PathBuf,
    options: XlsxOptions,
    deflate: ParallelDeflate,
    /// For the small pieces compressed on this thread.
    compress: Compress,
    styles: Styles,
    /// Styles for date cells in columns that set no format (`auto` columns).
    date_styles: DateStyles,
    sheet: Option<Sheet>,
    finished: Vec<FinishedSheet>,
    /// Scratch for the text form of non-text cells in auto-width columns.
    scratch: Vec<u8>,
    rows_written: u64,
}

struct DateStyles {
    date: u32,
    datetime: u32,
    time: u32,
}

impl XlsxWriter {
    pub fn new(path: &Path, options: XlsxOptions) -> Result<Self> {
        let mut styles = Styles::default();
        let date_styles = DateStyles {
            date: styles.number_format(DEFAULT_DATE),
            datetime: styles.number_format(DEFAULT_DATETIME),
            time: styles.number_format(DEFAULT_TIME),
        };
        let deflate = ParallelDeflate::new(options.compression_level, options.deflate_threads)
            .map_err(|e| ExportError::export(format!("cannot start the deflate threads: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            deflate,
            compress: Compress::new(Compression::new(options.compression_level.into()), false),
            options,
            styles,
            date_styles,
            sheet: None,
            finished: Vec::new(),
            scratch: Vec::new(),
            rows_written: 0,
        })
    }

    fn sheet_names(&self) -> impl Iterator<Item = &str> {
        let finished = self.finished.iter().map(|s| s.entry.name.as_str());
        finished.chain(self.sheet.iter().map(|s| s.name.as_str()))
    }

    fn name_taken(&self, name: &str) -> bool {
        is_taken(name, self.sheet_names())
    }

    fn add_sheet(
        &mut self,
        name: String,
        base_name: String,
        part: u32,
        columns: Vec<Column>,
    ) -> Result<()> {
        let body_path = temp_path(&self.path, self.finished.len() + 1);
        let body = File::create(&body_path)
            .map_err(|e| ExportError::io("cannot create", &body_path, e))?;
        let styles: Vec<u32> = columns
            .iter()
            .map(|c| {
                let default = match c.column_type {
                    ColumnType::Date => Some(DEFAULT_DATE),
                    ColumnType::DateTime => Some(DEFAULT_DATETIME),
                    ColumnType::Time => Some(DEFAULT_TIME),
                    _ => None,
                };
                c.number_format
                    .as_deref()
                    .or(default)
                    .map_or(0, |p| self.styles.number_format(p))
            })
            .collect();
        let auto_widths = columns
            .iter()
            .map(|c| (c.width == Some(ColumnWidth::Auto)).then(|| schema::display_width(&c.name)))
            .collect();
        let mut cells = RowWriter::new(columns.len());
        let mut xml = self.deflate.buffer();
        cells.begin_row(&mut xml, 1);
        for (col, c) in columns.iter().enumerate() {
            cells.text(&mut xml, col, Styles::HEADER, &c.name);
        }
        RowWriter::end_row(&mut xml);
        self.sheet = Some(Sheet {
            name,
            base_name,
            part,
            columns,
            shown_widths: vec![0; styles.len()],
            styles,
            auto_widths,
            rows: 1,
            cells,
            xml,
            body: BufWriter::with_capacity(128 << 10, body),
            body_path,
            body_summary: Summary::default(),
        });
        Ok(())
    }

    /// Compresses what is left of the open sheet and puts its head (which
    /// needs the final extent and auto widths) and tail together.
    fn close_sheet(&mut self) -> Result<()> {
        let Some(mut sheet) = self.sheet.take() else {
            return Ok(());
        };
        let chunk = std::mem::take(&mut sheet.xml);
        let write_error = |e| ExportError::io("cannot write", &sheet.body_path, e);
        self.deflate
            .submit(chunk, &mut sheet.body, &mut sheet.body_summary)
            .and_then(|()| self.deflate.drain(&mut sheet.body, &mut sheet.body_summary))
            .and_then(|()| sheet.body.flush())
            .map_err(write_error)?;
        let last_col = sheet.columns.len().saturating_sub(1);
        let extent = cells::range(last_col, sheet.rows);
        let looks: Vec<ColumnLook> = (sheet.columns.iter())
            .zip(&sheet.auto_widths)
            .zip(&sheet.shown_widths)
            .map(|((c, auto), &shown)| ColumnLook {
                // One character of padding, as Excel's own autofit leaves.
                width: match (c.width, auto) {
                    (_, Some(chars)) => Some(((*chars).max(shown) as f64 + 1.0).min(MAX_WIDTH)),
                    (Some(ColumnWidth::Chars(w)), None) => Some(w.min(MAX_WIDTH)),
                    // Wider than Excel's default column: #### or 1.23E+10 there.
                    (None | Some(ColumnWidth::Auto), None) => {
                        Some((shown as f64 + 1.0).min(MAX_WIDTH))
                            .filter(|w| *w > package::DEFAULT_WIDTH)
                    }
                },
                hidden: c.hidden,
            })
            .collect();
        let autofilter = self.options.autofilter.then(|| extent.clone());
        let head = package::sheet_head(self.finished.is_empty(), &extent, &looks);
        let tail = package::sheet_tail(autofilter.as_deref());
        let head = self.piece(head.as_bytes(), false);
        let tail = self.piece(tail.as_bytes(), true);
        self.finished.push(FinishedSheet {
            entry: SheetEntry {
                name: sheet.name,
                autofilter,
            },
            head,
            body_path: sheet.body_path.clone(),
            body_summary: sheet.body_summary,
            tail,
        });
        Ok(())
    }

    fn piece(&mut self, xml: &[u8], last: bool) -> (Vec<u8>, Summary) {
        let mut out = Vec::new();
        let summary = deflate_piece(&mut self.compress, xml, last, &mut out);
        (out, summary)
    }

    /// Continues a full sheet on `Name (2)`, `Name (3)`, ... with the header repeated.
    fn overflow(&mut self) -> Result<()> {
        let sheet = self.sheet.as_ref().expect("a sheet is open");
        let (base_name, columns) = (sheet.base_name.clone(), sheet.columns.clone());
        let (part, name) = next_part(&base_name, sheet.part, |n| self.name_taken(n));
        self.close_sheet()?;
        self.add_sheet(name, base_name, part, columns)
    }

    /// The text a cell may hold: at most 32,767 characters as Excel counts
    /// them (UTF-16 units), cut or refused.
    fn fitting_text<'a>(&self, text: &'a str, column: &Column) -> Result<&'a str> {
        match schema::utf16_cut(text, MAX_TEXT_CHARS) {
            None => Ok(text),
            Some(cut) if self.options.truncate_long_text => Ok(&text[..cut]),
            Some(_) => Err(ExportError::invalid_row(format!(
                "data row {}, column \"{}\": {}",
                self.rows_written + 1,
                column.name,
                CellError::TooManyChars {
                    chars: text.encode_utf16().count(),
                    max: MAX_TEXT_CHARS
                }
            ))),
        }
    }

    fn assemble(&mut self) -> std::io::Result<(u64, String)> {
        let file = OutputFile::create(&self.path)?;
        let mut zip = ZipWriter::new(HashingWriter::new(BufWriter::with_capacity(
            128 << 10,
            file,
        )));
        let level = self.options.compression_level;
        let entries: Vec<&SheetEntry> = self.finished.iter().map(|s| &s.entry).collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = LocalDateTime {
            seconds: now as i64,
            nanos: 0,
        };
        let props = &self.options.properties;
        let parts = [
            ("[Content_Types].xml", package::content_types(entries.len())),
            ("_rels/.rels", package::root_relationships()),
            ("docProps/app.xml", package::app_properties(props, &entries)),
            ("docProps/core.xml", package::core_properties(props, now)),
            ("xl/workbook.xml", package::workbook(&entries)),
            (
                "xl/_rels/workbook.xml.rels",
                package::workbook_relationships(entries.len()),
            ),
            ("xl/styles.xml", self.styles.xml()),
        ];
        for (name, xml) in parts {
            zip.add(name, xml.as_bytes(), level)?;
        }
        for (i, sheet) in self.finished.iter().enumerate() {
            let mut summary = sheet.head.1.clone();
            summary.append(&sheet.body_summary);
            summary.append(&sheet.tail.1);
            zip.begin_entry(&format!("xl/worksheets/sheet{}.xml", i + 1), &summary)?;
            zip.write_data(&sheet.head.0)?;
            zip.copy_data(&mut File::open(&sheet.body_path)?)?;
            zip.write_data(&sheet.tail.0)?;
        }
        let (out, bytes, sha256) = zip.finish()?.into_parts();
        out.into_inner().map_err(|e| e.into_error())?;
        Ok((bytes, sha256))
    }
}

/// Where sheet `n`'s compressed rows wait: beside the spool file and named
/// after it, so whatever cleans up after an export finds them too.
fn temp_path(spool: &Path, n: usize) -> PathBuf {
    let mut name = spool.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".sheet{n}.part"));
    spool.with_file_name(name)
}

impl Drop for XlsxWriter {
    fn drop(&mut self) {
        let open = self.sheet.iter().map(|s| &s.body_path);
        for path in self.finished.iter().map(|s| &s.body_path).chain(open) {
            let _ = fs::remove_file(path);
        }
    }
}

/// The characters a number needs to show in full where its column gives
/// no width: as its format shows it (`formatted`, where the format can be
/// sized), or in General (no format) a whole number past eight digits,
/// which a default-width column shows as `1.23E+08`. 0 where the default width
/// is enough.
fn number_shown(formatted: Option<usize>, style: u32, value: f64) -> usize {
    if style != 0 {
        return formatted.unwrap_or(0);
    }
    let long_whole = value.fract() == 0.0
        && value.abs() > MAX_NARROW_INT as f64
        && value.abs() <= MAX_EXACT_INT as f64;
    if long_whole {
        int_width(value as i64)
    } else {
        0
    }
}

/// The characters of `i` in decimal, its sign included.
fn int_width(i: i64) -> usize {
    i.unsigned_abs()
        .checked_ilog10()
        .map_or(1, |log| log as usize + 1)
        + usize::from(i < 0)
}

/// The text form of dates and numbers, where a sheet needs one: to measure
/// column widths, and for dates Excel has no serial for.
fn default_text_style() -> &'static TextStyle {
    static STYLE: std::sync::OnceLock<TextStyle> = std::sync::OnceLock::new();
    STYLE.get_or_init(TextStyle::default)
}

impl FormatWriter for XlsxWriter {
    fn begin_sheet(&mut self, name: &str, columns: &[Column]) -> Result<()> {
        check_new_sheet(name, columns.len(), self.sheet_names())?;
        self.close_sheet()?;
        self.add_sheet(name.to_owned(), name.to_owned(), 1, columns.to_vec())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut reader = batch.reader();
        let mut row = Vec::with_capacity(batch.columns());
        while reader.next_row(&mut row) {
            if self.sheet.as_ref().expect("begin_sheet comes first").rows >= MAX_ROWS {
                self.overflow()?;
            }
            let sheet = self.sheet.as_ref().expect("a sheet is open");
            for (col, cell) in row.iter_mut().enumerate() {
                if let Cell::Text(text) = *cell {
                    *cell = Cell::Text(self.fitting_text(text, &sheet.columns[col])?);
                }
            }
            let sheet = self.sheet.as_mut().expect("a sheet is open");
            let xml = &mut sheet.xml;
            sheet.cells.begin_row(xml, sheet.rows + 1);
            for (col, cell) in row.iter().enumerate() {
                let style = sheet.styles[col];
                let date_style = |default| if style == 0 { default } else { style };
                let number = match *cell {
                    Cell::Int(i) if (-MAX_EXACT_INT..=MAX_EXACT_INT).contains(&i) => Some(i as f64),
                    Cell::Float(f) => Some(f),
                    _ => None,
                };
                // As the cell's format shows it, where the format can be sized.
                let formatted = number.and_then(|n| self.styles.number_width(style, n));
                // The characters the cell needs where its column has no width.
                let shown = match *cell {
                    Cell::Null => 0,
                    Cell::Bool(b) => {
                        sheet.cells.bool(xml, col, b);
                        0
                    }
                    Cell::Int(i) if number.is_none() => {
                        sheet.cells.text(xml, col, 0, itoa::Buffer::new().format(i));
                        int_width(i)
                    }
                    Cell::Int(i) => {
                        sheet.cells.int(xml, col, style, i);
                        number_shown(formatted, style, i as f64)
                    }
                    Cell::Float(f) => {
                        sheet.cells.float(xml, col, style, f);
                        number_shown(formatted, style, f)
                    }
                    Cell::Text(t) => {
                        sheet.cells.text(xml, col, 0, t);
                        0
                    }
                    Cell::Date(dt) | Cell::DateTime(dt) => {
                        let default = if matches!(cell, Cell::Date(_)) {
                            self.date_styles.date
                        } else {
                            self.date_styles.datetime
                        };
                        if let Some(serial) = dt.excel_serial() {
                            let style = date_style(default);
                            sheet.cells.float(xml, col, style, serial);
                            self.styles.date_width(style)
                        } else {
                            // No serial for it: text, as Excel keeps a date
                            // typed before 1900.
                            self.scratch.clear();
                            schema::write_text_form(cell, default_text_style(), &mut self.scratch);
                            let text = String::from_utf8_lossy(&self.scratch);
                            sheet.cells.text(xml, col, 0, &text);
                            0
                        }
                    }
                    Cell::Time(dt) => {
                        let style = date_style(self.date_styles.time);
                        sheet.cells.float(xml, col, style, dt.excel_time());
                        self.styles.date_width(style)
                    }
                };
                sheet.shown_widths[col] = sheet.shown_widths[col].max(shown);
                if let Some(widest) = &mut sheet.auto_widths[col] {
                    let width = match (formatted, cell) {
                        (Some(width), _) => width,
                        (None, Cell::Text(t)) => schema::display_width(t),
                        (None, other) => {
                            self.scratch.clear();
                            schema::write_text_form(other, default_text_style(), &mut self.scratch);
                            self.scratch.len()
                        }
                    };
                    *widest = (*widest).max(width);
                }
            }
            RowWriter::end_row(xml);
            sheet.rows += 1;
            self.rows_written += 1;
            if sheet.xml.len() >= CHUNK {
                let next = self.deflate.buffer();
                let chunk = std::mem::replace(&mut sheet.xml, next);
                self.deflate
                    .submit(chunk, &mut sheet.body, &mut sheet.body_summary)
                    .map_err(|e| ExportError::io("cannot write", &sheet.body_path, e))?;
            }
        }
        Ok(())
    }

    fn written_so_far(&self) -> (u64, u32) {
        let finished = self.finished.iter().map(|s| s.body_summary.compressed_len);
        let open = self.sheet.iter().map(|s| s.body_summary.compressed_len);
        let sheets = self.finished.len() + self.sheet.iter().count();
        (finished.chain(open).sum(), sheets as u32)
    }

    fn finish(mut self: Box<Self>) -> Result<WrittenFile> {
        self.close_sheet()?;
        let (bytes, sha256) = self
            .assemble()
            .map_err(|e| ExportError::io("cannot write", &self.path, e))?;
        Ok(WrittenFile {
            bytes,
            sha256,
            sheets: self.finished.len() as u32,
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
        let mut w: Box<dyn FormatWriter> =
            Box::new(XlsxWriter::new(&path, XlsxOptions::default()).unwrap());
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
    fn an_abandoned_writer_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.xlsx");
        let columns = vec![Column::new("N", ColumnType::Int)];
        let mut w = XlsxWriter::new(&path, XlsxOptions::default()).unwrap();
        w.begin_sheet("One", &columns).unwrap();
        w.begin_sheet("Two", &columns).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "one file per sheet"
        );
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_sheet_name_is_used_once_whatever_its_case() {
        let dir = tempfile::tempdir().unwrap();
        let columns = vec![Column::new("N", ColumnType::Int)];
        let mut w = XlsxWriter::new(&dir.path().join("x.xlsx"), XlsxOptions::default()).unwrap();
        w.begin_sheet("Orders", &columns).unwrap();
        let err = w.begin_sheet("ORDERS", &columns).unwrap_err();
        assert!(err.message.contains("already used"), "{err}");
    }

    #[test]
    fn sheet_names_follow_excel_rules() {
        assert!(validate_sheet_name("Orders 2026").is_ok());
        for bad in [
            "",
            "a/b",
            "x[1]",
            &"n".repeat(32),
            "'quoted'",
            "tab\there",
            "history",
        ] {
            assert!(validate_sheet_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn int_widths_count_digits_and_sign() {
        let cases = [
            0,
            7,
            -7,
            10,
            9_999_999_999,
            -10_000_000_000,
            i64::MIN,
            i64::MAX,
        ];
        for i in cases {
            assert_eq!(int_width(i), i.to_string().len(), "{i}");
        }
    }

    #[test]
    fn a_full_sheet_continues_on_the_next() {
        let columns = vec![Column::new("N", ColumnType::Int)];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.xlsx");
        let mut w: Box<dyn FormatWriter> = Box::new(
            XlsxWriter::new(
                &path,
                XlsxOptions {
                    compression_level: 1,
                    ..XlsxOptions::default()
                },
            )
            .unwrap(),
        );
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
        // What a producer predicts for those rows: the names the writer gave.
        let mut predicted = vec!["Data".to_owned()];
        add_overflow_names("Data", total as u64, &mut predicted);
        assert_eq!(predicted, book.sheet_names());
    }

    #[test]
    fn overflow_names_are_predicted_as_the_writer_gives_them() {
        let full = u64::from(MAX_ROWS - 1);
        let predict = |rows: u64, taken: &[&str]| {
            let mut names: Vec<String> = taken.iter().map(|n| (*n).to_owned()).collect();
            add_overflow_names("Data", rows, &mut names);
            names
        };
        assert_eq!(predict(full, &["Data"]), ["Data"], "one full sheet");
        assert_eq!(predict(full + 1, &["Data"]), ["Data", "Data (2)"]);
        assert_eq!(
            predict(2 * full + 1, &["Data", "data (2)"]),
            ["Data", "data (2)", "Data (3)", "Data (4)"],
            "a name taken is skipped, in any case"
        );
    }
}
