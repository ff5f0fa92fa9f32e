//! CSV: fields quoted by `csv_core` (the core of BurntSushi's `csv`) into a
//! buffer of our own. Dialect: see [`CsvOptions`] and
//! `schema::write_text_form` for how each value type is shown.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{FormatWriter, HashingWriter, OutputFile, WrittenFile};
use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::{self, Cell, Column, ColumnType, TextLimit, TextStyle};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Output character encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvEncoding {
    Utf8,
    /// Simplified Chinese (Windows code page 936): what Excel on a Chinese
    /// Windows opens without an import dialog.
    Gbk,
    /// GB18030: every Unicode character, GBK-compatible.
    Gb18030,
    Utf16Le,
}

impl CsvEncoding {
    pub const NAMES: &'static str = "UTF-8, GBK, GB18030, UTF-16LE";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().replace('_', "-").as_str() {
            "UTF-8" | "UTF8" => Self::Utf8,
            "GBK" | "CP936" => Self::Gbk,
            "GB18030" => Self::Gb18030,
            "UTF-16LE" | "UTF16LE" => Self::Utf16Le,
            _ => return None,
        })
    }

    /// The byte-order mark Excel needs to recognise the encoding, if any.
    fn bom(self) -> &'static [u8] {
        match self {
            Self::Utf8 => UTF8_BOM,
            Self::Utf16Le => b"\xFF\xFE",
            Self::Gbk | Self::Gb18030 => b"",
        }
    }

    /// The encodings that cannot hold every character. GB18030 as the
    /// WHATWG defines it holds all but U+E5E5, a private-use one.
    pub fn partial(self) -> Option<&'static encoding_rs::Encoding> {
        match self {
            Self::Gbk => Some(encoding_rs::GBK),
            Self::Gb18030 => Some(encoding_rs::GB18030),
            Self::Utf8 | Self::Utf16Le => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    pub encoding: CsvEncoding,
    /// A character the encoding cannot hold becomes `?` instead of an error.
    pub replace_unencodable: bool,
    /// Text starting with `=`, `+`, `-`, `@`, tab or CR (but not a plain
    /// signed number) gets a leading `'`,
    /// so a spreadsheet does not run it as a formula (OWASP CSV injection).
    pub formula_guard: bool,
    /// Text of a `string` column that a spreadsheet would turn into a
    /// number, date or time (an 18-digit id, `00123`, ` 00123`, `1e5`,
    /// `2024-01-02`) is written as `="00123"`, which Excel and LibreOffice
    /// show as that text instead of `1.23E+17` or `123`.
    pub excel_text: bool,
    pub delimiter: u8,
    pub enclosure: u8,
    /// Start with a UTF-8 BOM, so Excel reads Chinese text correctly.
    pub bom: bool,
    pub header: bool,
    /// `\r\n` line endings instead of `\n`.
    pub crlf: bool,
    pub null_text: String,
    /// Bools and dates as text.
    pub style: TextStyle,
    /// Write `file.csv.gz`: gzip-compressed CSV.
    pub gzip: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            encoding: CsvEncoding::Utf8,
            replace_unencodable: false,
            formula_guard: true,
            excel_text: false,
            delimiter: b',',
            enclosure: b'"',
            bom: true,
            header: true,
            crlf: false,
            null_text: String::new(),
            style: TextStyle::default(),
            gzip: false,
        }
    }
}

impl CsvOptions {
    /// What text cells must keep to: only characters the encoding holds,
    /// unless those it cannot are replaced.
    pub fn text_limit(&self) -> Option<TextLimit> {
        let encoding = self.encoding.partial()?;
        (!self.replace_unencodable).then_some(TextLimit::Encoding(encoding))
    }
}

type Sink = Transcoder<Compressor<HashingWriter<BufWriter<OutputFile>>>>;

/// Optional gzip between the CSV text and the file; the hash is of the file.
enum Compressor<W: Write> {
    Plain(W),
    Gzip(Box<flate2::write::GzEncoder<W>>),
}

impl<W: Write> Compressor<W> {
    fn get_ref(&self) -> &W {
        match self {
            Self::Plain(w) => w,
            Self::Gzip(gz) => gz.get_ref(),
        }
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Self::Plain(w) => Ok(w),
            Self::Gzip(gz) => (*gz).finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(gz) => gz.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(gz) => gz.flush(),
        }
    }
}

/// Records are encoded here and written to the sink in pieces of this size:
/// the capacity of the `BufWriter` below, which then passes them through
/// without a copy of its own.
const RECORD_BUFFER: usize = 1 << 17;

/// CSV records in a byte buffer. `csv_core` decides which fields need quotes
/// and quotes them; going through `csv::Writer::write_field` instead, a
/// state machine per field, cost twice as much (BENCHMARKS.md).
struct Records {
    core: csv_core::Writer,
    buf: Vec<u8>,
    terminator: &'static [u8],
    fields: usize,
    /// Where the current record starts in `buf`.
    record_start: usize,
    /// No field written yet, and nothing before the first: no BOM without
    /// `bom`, nor in GBK and GB18030. Excel takes a file that begins with
    /// `ID` for a SYLK file and refuses it, so a text field there that
    /// starts with `ID` is quoted: the file begins with `"ID`. That field is
    /// the first header, or the first cell without a header.
    at_bare_start: bool,
}

impl Records {
    fn new(options: &CsvOptions) -> Self {
        Self {
            core: csv_core::WriterBuilder::new()
                .delimiter(options.delimiter)
                .quote(options.enclosure)
                .quote_style(csv_core::QuoteStyle::Necessary)
                .build(),
            buf: Vec::with_capacity(RECORD_BUFFER + (RECORD_BUFFER >> 2)),
            terminator: if options.crlf { b"\r\n" } else { b"\n" },
            fields: 0,
            record_start: 0,
            at_bare_start: !options.bom || options.encoding.bom().is_empty(),
        }
    }

    /// Starts the next field: the delimiter, unless it is the first.
    fn next_field(&mut self) {
        if self.fields > 0 {
            self.buf.push(self.core.get_delimiter());
        }
        self.fields += 1;
        self.at_bare_start = false;
    }

    /// A field of text. With GBK or GB18030, each character the encoding
    /// cannot hold becomes `?` here, before quoting: a `?` put in after
    /// quoting, by the transcoder, could be the delimiter or the enclosure and
    /// split the field (found by fuzzing). Text cells and headers only get
    /// here with such characters under `unencodable => 'replace'`.
    fn field(&mut self, encoding: CsvEncoding, field: &[u8]) {
        let replaced = encoding
            .partial()
            .filter(|_| !field.is_ascii())
            .and_then(|e| replace_unencodable(e, std::str::from_utf8(field).ok()?));
        let field = replaced.as_deref().map_or(field, str::as_bytes);
        let begins_file = self.at_bare_start;
        self.next_field();
        if begins_file && field.starts_with(b"ID") {
            self.enclose(field);
        } else {
            self.quoted(field);
        }
    }

    /// `field`, quoted if it needs to be.
    fn quoted(&mut self, field: &[u8]) {
        if !self.core.should_quote(field) {
            schema::extend_short(&mut self.buf, field);
            return;
        }
        self.enclose(field);
    }

    /// `field` between quotes, its quotes escaped.
    fn enclose(&mut self, field: &[u8]) {
        let quote = self.core.get_quote();
        self.buf.push(quote);
        let start = self.buf.len();
        // Worst case: every byte is a quote and is doubled.
        self.buf.resize(start + 2 * field.len(), 0);
        let (_, _, written) = csv_core::quote(
            field,
            &mut self.buf[start..],
            quote,
            self.core.get_escape(),
            self.core.get_double_quote(),
        );
        self.buf.truncate(start + written);
        self.buf.push(quote);
    }

    fn end_record(&mut self) {
        // A record of one empty field would be a blank line, which readers
        // skip: quote it, as the `csv` crate does.
        if self.fields == 1 && self.buf.len() == self.record_start {
            self.buf.extend_from_slice(&[self.core.get_quote(); 2]);
        }
        self.buf.extend_from_slice(self.terminator);
        self.fields = 0;
        self.record_start = self.buf.len();
    }

    /// Writes the buffer out once it holds a piece's worth (or `all`).
    fn drain(&mut self, sink: &mut impl Write, all: bool) -> std::io::Result<()> {
        if all || self.buf.len() >= RECORD_BUFFER {
            sink.write_all(&self.buf)?;
            self.buf.clear();
            self.record_start = 0;
        }
        Ok(())
    }
}

pub struct CsvWriter {
    records: Records,
    sink: Sink,
    options: CsvOptions,
    path: PathBuf,
    field: Vec<u8>,
    /// No text form of a number, bool or date can need quotes, nor hold a
    /// character the encoding may not: see [`plain_text_forms`]. Decided once
    /// per export, instead of checking each form.
    text_forms_plain: bool,
    /// What each column's text cells get beyond quoting.
    text_rules: Vec<TextRule>,
    sheets: u32,
    rows_written: u64,
}

impl CsvWriter {
    pub fn create(path: &Path, options: CsvOptions) -> Result<Self> {
        let file =
            OutputFile::create(path).map_err(|e| ExportError::io("cannot create", path, e))?;
        let hashed = HashingWriter::new(BufWriter::with_capacity(RECORD_BUFFER, file));
        let mut sink = if options.gzip {
            Compressor::Gzip(Box::new(flate2::write::GzEncoder::new(
                hashed,
                flate2::Compression::fast(),
            )))
        } else {
            Compressor::Plain(hashed)
        };
        if options.bom {
            sink.write_all(options.encoding.bom())
                .map_err(|e| ExportError::io("cannot write", path, e))?;
        }
        Ok(Self {
            records: Records::new(&options),
            sink: Transcoder::new(sink, options.encoding),
            text_forms_plain: plain_text_forms(&options),
            options,
            path: path.to_path_buf(),
            field: Vec::with_capacity(64),
            text_rules: Vec::new(),
            sheets: 0,
            rows_written: 0,
        })
    }

    fn drain(&mut self, all: bool) -> Result<()> {
        self.records
            .drain(&mut self.sink, all)
            .map_err(|e| ExportError::io("cannot write", &self.path, e))
    }

    /// A number, bool or date in its text form: straight into the record
    /// buffer when the dialect cannot need quotes or re-encoding for it,
    /// else through `Records::field` like text.
    fn text_form_field(&mut self, cell: &Cell<'_>) {
        if self.text_forms_plain {
            self.records.next_field();
            schema::write_text_form(cell, &self.options.style, &mut self.records.buf);
        } else {
            self.field.clear();
            schema::write_text_form(cell, &self.options.style, &mut self.field);
            self.records.field(self.options.encoding, &self.field);
        }
    }

    /// Writes `text` as a field, behind a `'` if a spreadsheet would run it
    /// as a formula (with `formula_guard`).
    fn text_field(&mut self, text: &str) {
        let encoding = self.options.encoding;
        if self.options.formula_guard && looks_like_formula(text) {
            self.field.clear();
            self.field.push(b'\'');
            self.field.extend_from_slice(text.as_bytes());
            self.records.field(encoding, &self.field);
        } else {
            self.records.field(encoding, text.as_bytes());
        }
    }

    /// With `unencodable` = error, names the first character the encoding
    /// cannot hold.
    fn check_encodable(&self, text: &str, at: impl FnOnce() -> String) -> Result<()> {
        match self.options.text_limit() {
            Some(limit) => limit
                .check(text)
                .map_err(|e| ExportError::invalid_row(format!("{}: {e}", at()))),
            None => Ok(()),
        }
    }
}

/// `text` with `?` for each character `encoding` cannot hold; `None` when it
/// holds them all.
fn replace_unencodable(encoding: &'static encoding_rs::Encoding, text: &str) -> Option<String> {
    if schema::first_lacked_by_gbk_readers(encoding, text).is_some() {
        let readable: String = text
            .chars()
            .map(|c| {
                if schema::gbk_readers_lack(encoding, c) {
                    '?'
                } else {
                    c
                }
            })
            .collect();
        return Some(replace_unencodable(encoding, &readable).unwrap_or(readable));
    }
    let mut encoder = encoding.new_encoder();
    let mut scratch = [0u8; 1024];
    let mut replaced: Option<String> = None;
    let (mut read, mut kept) = (0, 0);
    loop {
        let (result, n, _) =
            encoder.encode_from_utf8_without_replacement(&text[read..], &mut scratch, true);
        read += n;
        match result {
            encoding_rs::EncoderResult::InputEmpty => break,
            encoding_rs::EncoderResult::OutputFull => {}
            encoding_rs::EncoderResult::Unmappable(c) => {
                let out = replaced.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[kept..read - c.len_utf8()]);
                out.push('?');
                kept = read;
            }
        }
    }
    let mut out = replaced?;
    out.push_str(&text[kept..]);
    Some(out)
}

/// Whether no text form of a number, bool or date (`schema::write_text_form`)
/// can need quotes or re-encoding under these options, so that the writer
/// can skip checking each one (it was a tenth of its time). Such a form is
/// made of digits, `-` and `.`, the bool texts, and a date pattern's output:
/// digits, `AM`/`PM` in either case, and the pattern's other characters.
/// Only a delimiter or enclosure among those, or a non-ASCII character in
/// them under a partial encoding, makes the check needed.
fn plain_text_forms(options: &CsvOptions) -> bool {
    let style = &options.style;
    let literals = [
        style.true_text.as_str(),
        &style.false_text,
        style.date.as_str(),
        style.datetime.as_str(),
        style.time.as_str(),
    ];
    let may_appear = |b: u8| {
        b.is_ascii_digit()
            || b"-.AMPamp".contains(&b)
            || b == style.decimal_separator
            || literals.iter().any(|text| text.as_bytes().contains(&b))
    };
    let special = [options.delimiter, options.enclosure, b'\r', b'\n'];
    let ascii = literals.iter().all(|text| text.is_ascii());
    !special.into_iter().any(may_appear) && (ascii || options.encoding.partial().is_none())
}

/// Whether a spreadsheet would read the text as a formula. A plain signed
/// number (`-12.50`, `+1`) starts like one but is read as a number, so it is
/// left as it is: negative amounts given as text (PDO's `DECIMAL`) keep
/// their value, as defusedcsv also leaves them.
fn looks_like_formula(text: &str) -> bool {
    match text.as_bytes().split_first() {
        Some((b'=' | b'@' | b'\t' | b'\r', _)) => true,
        Some((b'+' | b'-', _)) => !is_signed_number(text),
        _ => false,
    }
}

/// What a column's text cells get beyond quoting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextRule {
    AsIs,
    /// `excel_text`, in a `string` column: `="…"` where a spreadsheet would
    /// convert the text.
    ExcelText,
    /// `decimal_separator` other than `.`, in other columns: numeric text
    /// (PDO's `DECIMAL`) gets the separator floats get, so that it still
    /// reads as a number.
    DecimalSeparator,
}

/// Whether a spreadsheet opening the CSV may turn this text into something
/// else: a number, date, time or currency has a digit (`00123`, `1,234`,
/// `$12`, `Jan 2024`, `2024-01-02T10:20`), a boolean is `TRUE` or `FALSE`.
/// Past 255 bytes it stays as it is: Excel's limit for text in a formula.
fn spreadsheet_would_convert(text: &str) -> bool {
    // A formula of several lines shows as its own text, `="…"` and all.
    text.len() <= 255
        && !text.contains(['\r', '\n'])
        && (text.bytes().any(|b| b.is_ascii_digit())
            || text.eq_ignore_ascii_case("true")
            || text.eq_ignore_ascii_case("false"))
}

/// A plain number, signed or not: `-12.50`, `+7`, `3`.
fn is_signed_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let unsigned = bytes
        .strip_prefix(b"-")
        .or_else(|| bytes.strip_prefix(b"+"))
        .unwrap_or(bytes);
    is_plain_number(unsigned)
}

/// `digits` or `digits.digits`.
fn is_plain_number(text: &[u8]) -> bool {
    let all_digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    match text.iter().position(|&b| b == b'.') {
        Some(point) => all_digits(&text[..point]) && all_digits(&text[point + 1..]),
        None => all_digits(text),
    }
}

impl FormatWriter for CsvWriter {
    fn begin_sheet(&mut self, _name: &str, columns: &[Column]) -> Result<()> {
        if self.sheets > 0 {
            return Err(ExportError::invalid_option(
                "a CSV file has one sheet; use format xlsx for several",
            ));
        }
        self.sheets = 1;
        let decimal_comma = self.options.style.decimal_separator != b'.';
        self.text_rules = columns
            .iter()
            .map(|c| match c.column_type {
                ColumnType::String if self.options.excel_text => TextRule::ExcelText,
                ColumnType::String => TextRule::AsIs,
                _ if decimal_comma => TextRule::DecimalSeparator,
                _ => TextRule::AsIs,
            })
            .collect();
        if self.options.header {
            // `ExportSpec` refuses such names first; this is for the writer
            // used on its own (the fuzz targets).
            for c in columns {
                self.check_encodable(&c.name, || format!("header \"{}\"", c.name))?;
            }
            // A header is text from the application too, perhaps a user's.
            for c in columns {
                self.text_field(&c.name);
            }
            self.records.end_record();
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        // Cells go from the arena straight into the record buffer, without
        // a row of decoded cells in between.
        let mut reader = batch.reader();
        // A batch made with this file's limit had each text checked as it
        // was added (on the producer's thread): not again here.
        let unchecked = batch.text_limit() != self.options.text_limit();
        while !reader.is_done() {
            self.rows_written += 1;
            for col in 0..batch.columns() {
                match reader.next_cell() {
                    Cell::Text(t) => {
                        if unchecked {
                            let at =
                                || format!("data row {}, column {}", self.rows_written, col + 1);
                            self.check_encodable(t, at)?;
                        }
                        let encoding = self.options.encoding;
                        let rule = self.text_rules[col];
                        if rule == TextRule::ExcelText && spreadsheet_would_convert(t) {
                            self.field.clear();
                            self.field.extend_from_slice(b"=\"");
                            for part in t.as_bytes().split_inclusive(|&b| b == b'"') {
                                self.field.extend_from_slice(part);
                                if part.ends_with(b"\"") {
                                    self.field.push(b'"');
                                }
                            }
                            self.field.push(b'"');
                            self.records.field(encoding, &self.field);
                        } else if rule == TextRule::DecimalSeparator && is_signed_number(t) {
                            self.field.clear();
                            self.field.extend(t.bytes().map(|b| match b {
                                b'.' => self.options.style.decimal_separator,
                                other => other,
                            }));
                            self.records.field(encoding, &self.field);
                        } else {
                            self.text_field(t);
                        }
                    }
                    Cell::Null => self
                        .records
                        .field(self.options.encoding, self.options.null_text.as_bytes()),
                    other => self.text_form_field(&other),
                }
            }
            self.records.end_record();
            self.drain(false)?;
        }
        Ok(())
    }

    fn written_so_far(&self) -> (u64, u32) {
        (self.sink.inner.get_ref().bytes(), self.sheets)
    }

    fn finish(self: Box<Self>) -> Result<WrittenFile> {
        let mut this = *self;
        this.drain(true)?;
        let path = this.path;
        let (buffered, bytes, sha256) = this
            .sink
            .into_inner()
            .finish()
            .map_err(|e| ExportError::io("cannot write", &path, e))?
            .into_parts();
        buffered
            .into_inner()
            .map_err(|e| ExportError::io("cannot write", &path, e.into_error()))?;
        Ok(WrittenFile {
            bytes,
            sha256,
            sheets: 1,
        })
    }
}

/// Re-encodes the UTF-8 the CSV writer produces. The writer may split a
/// character across two writes, so an incomplete tail waits for the next.
struct Transcoder<W> {
    inner: W,
    encoding: CsvEncoding,
    encoder: Option<encoding_rs::Encoder>,
    pending: Vec<u8>,
    encoded: Vec<u8>,
}

impl<W: Write> Transcoder<W> {
    fn new(inner: W, encoding: CsvEncoding) -> Self {
        let encoder = match encoding {
            CsvEncoding::Gbk => Some(encoding_rs::GBK.new_encoder()),
            CsvEncoding::Gb18030 => Some(encoding_rs::GB18030.new_encoder()),
            CsvEncoding::Utf8 | CsvEncoding::Utf16Le => None,
        };
        Self {
            inner,
            encoding,
            encoder,
            pending: Vec::new(),
            encoded: Vec::new(),
        }
    }

    fn into_inner(self) -> W {
        self.inner
    }

    fn encode(&mut self, text: &str) {
        self.encoded.clear();
        match &mut self.encoder {
            None => {
                for unit in text.encode_utf16() {
                    self.encoded.extend_from_slice(&unit.to_le_bytes());
                }
            }
            Some(encoder) => {
                let mut rest = text;
                let mut chunk = [0u8; 4096];
                loop {
                    let (result, read, written) =
                        encoder.encode_from_utf8_without_replacement(rest, &mut chunk, false);
                    self.encoded.extend_from_slice(&chunk[..written]);
                    rest = &rest[read..];
                    match result {
                        encoding_rs::EncoderResult::InputEmpty => break,
                        encoding_rs::EncoderResult::OutputFull => {}
                        // Not reached: `put_field` replaced such characters before quoting.
                        encoding_rs::EncoderResult::Unmappable(_) => self.encoded.push(b'?'),
                    }
                }
            }
        }
    }
}

impl<W: Write> Write for Transcoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.encoding == CsvEncoding::Utf8 {
            return self.inner.write(buf);
        }
        self.pending.extend_from_slice(buf);
        let complete = match std::str::from_utf8(&self.pending) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        };
        let text = std::str::from_utf8(&self.pending[..complete])
            .expect("checked above")
            .to_owned();
        self.pending.drain(..complete);
        self.encode(&text);
        self.inner.write_all(&self.encoded)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, LocalDateTime};

    fn write(options: CsvOptions, rows: &[Vec<Cell<'_>>]) -> (Vec<u8>, WrittenFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut w: Box<dyn FormatWriter> = Box::new(CsvWriter::create(&path, options).unwrap());
        let cols: Vec<Column> = (0..rows[0].len())
            .map(|i| Column::new(format!("c{i}"), ColumnType::Auto))
            .collect();
        w.begin_sheet("x", &cols).unwrap();
        let mut batch = RecordBatch::new(cols.len(), 0);
        for r in rows {
            r.iter().for_each(|c| batch.push_cell(c));
            batch.end_row();
        }
        w.write_batch(&batch).unwrap();
        let written = w.finish().unwrap();
        (std::fs::read(&path).unwrap(), written)
    }

    #[test]
    fn reads_back_with_a_csv_reader() {
        let dt = LocalDateTime::from_parts((2026, 11, 29), (8, 5, 0), 0);
        let rows = vec![
            vec![
                Cell::Text("张伟"),
                Cell::Text("a,\"b\"\nc"),
                Cell::Int(-7),
                Cell::Float(1e20),
            ],
            vec![
                Cell::Null,
                Cell::Bool(true),
                Cell::DateTime(dt),
                Cell::Date(dt),
            ],
        ];
        let (bytes, written) = write(CsvOptions::default(), &rows);
        assert!(bytes.starts_with(UTF8_BOM));
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        let mut reader = csv::ReaderBuilder::new().from_reader(&bytes[3..]);
        assert_eq!(reader.headers().unwrap(), vec!["c0", "c1", "c2", "c3"]);
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(
            records[0],
            vec!["张伟", "a,\"b\"\nc", "-7", "100000000000000000000"]
        );
        assert_eq!(
            records[1],
            vec!["", "TRUE", "2026-11-29 08:05:00", "2026-11-29"]
        );
    }

    #[test]
    fn a_file_never_begins_with_a_bare_id() {
        let bare = CsvOptions {
            bom: false,
            header: false,
            ..CsvOptions::default()
        };
        let rows = [
            vec![Cell::Text("ID-1"), Cell::Text("ID")],
            vec![Cell::Text("ID-2"), Cell::Text("x")],
        ];
        let (bytes, _) = write(bare.clone(), &rows);
        assert_eq!(bytes, b"\"ID-1\",ID\nID-2,x\n");
        let (bytes, _) = write(CsvOptions { bom: true, ..bare }, &rows);
        assert_eq!(&bytes[3..], b"ID-1,ID\nID-2,x\n", "after a BOM");
    }

    #[test]
    fn text_forms_are_quoted_when_the_dialect_needs_it() {
        assert!(plain_text_forms(&CsvOptions::default()));
        let dotted = CsvOptions {
            delimiter: b'.',
            bom: false,
            header: false,
            ..CsvOptions::default()
        };
        assert!(!plain_text_forms(&dotted));
        let (bytes, _) = write(
            dotted,
            &[vec![Cell::Float(1.5), Cell::Int(-2), Cell::Bool(true)]],
        );
        assert_eq!(bytes, b"\"1.5\".-2.TRUE\n");
        let wordy = CsvOptions {
            bom: false,
            header: false,
            style: TextStyle {
                true_text: "yes, really".into(),
                ..TextStyle::default()
            },
            ..CsvOptions::default()
        };
        assert!(!plain_text_forms(&wordy));
        let (bytes, _) = write(wordy, &[vec![Cell::Bool(true), Cell::Float(0.5)]]);
        assert_eq!(bytes, b"\"yes, really\",0.5\n");
    }

    #[test]
    fn dialect_options_apply() {
        let options = CsvOptions {
            delimiter: b';',
            enclosure: b'\'',
            bom: false,
            header: false,
            crlf: true,
            null_text: "NULL".into(),
            style: TextStyle {
                true_text: "1".into(),
                false_text: "0".into(),
                ..TextStyle::default()
            },
            ..CsvOptions::default()
        };
        let (bytes, _) = write(
            options,
            &[vec![Cell::Text("it's;x"), Cell::Null, Cell::Bool(false)]],
        );
        assert_eq!(bytes, b"'it''s;x';NULL;0\r\n");
    }

    fn write_with(options: CsvOptions, rows: &[Vec<Cell<'_>>]) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut w: Box<dyn FormatWriter> = Box::new(CsvWriter::create(&path, options)?);
        let cols: Vec<Column> = (0..rows[0].len())
            .map(|i| Column::new(format!("列{i}"), ColumnType::Auto))
            .collect();
        w.begin_sheet("x", &cols)?;
        let mut batch = RecordBatch::new(cols.len(), 0);
        for r in rows {
            r.iter().for_each(|c| batch.push_cell(c));
            batch.end_row();
        }
        w.write_batch(&batch)?;
        w.finish()?;
        Ok(std::fs::read(&path).unwrap())
    }

    fn with_encoding(encoding: CsvEncoding) -> CsvOptions {
        CsvOptions {
            encoding,
            ..CsvOptions::default()
        }
    }

    #[test]
    fn chinese_text_decodes_from_every_encoding() {
        // Enough rows that the CSV writer's buffer splits characters between writes.
        let rows: Vec<Vec<Cell<'_>>> = (0..50_000)
            .map(|_| vec![Cell::Text("张伟，欧阳娜娜")])
            .collect();
        let expected = format!("列0\n{}", "张伟，欧阳娜娜\n".repeat(50_000));
        for (encoding, decoder, bom) in [
            (CsvEncoding::Gbk, encoding_rs::GBK, &b""[..]),
            (CsvEncoding::Gb18030, encoding_rs::GB18030, &b""[..]),
            (
                CsvEncoding::Utf16Le,
                encoding_rs::UTF_16LE,
                &b"\xFF\xFE"[..],
            ),
        ] {
            let bytes = write_with(with_encoding(encoding), &rows).unwrap();
            assert!(bytes.starts_with(bom), "{encoding:?}");
            let (text, had_errors) = decoder.decode_without_bom_handling(&bytes[bom.len()..]);
            assert!(!had_errors, "{encoding:?}");
            assert_eq!(text, expected, "{encoding:?}");
        }
    }

    #[test]
    fn a_character_gbk_cannot_hold_is_named_or_replaced() {
        let rows = vec![vec![Cell::Int(1), Cell::Text("ok 😀")]];
        let err = write_with(with_encoding(CsvEncoding::Gbk), &rows).unwrap_err();
        assert!(
            err.message
                .contains("data row 1, column 2: character '😀' (U+1F600)"),
            "{err}"
        );
        let replaced = CsvOptions {
            replace_unencodable: true,
            ..with_encoding(CsvEncoding::Gbk)
        };
        let bytes = write_with(replaced, &rows).unwrap();
        assert!(
            bytes.ends_with(b"1,ok ?\n"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        let gb18030 = write_with(with_encoding(CsvEncoding::Gb18030), &rows).unwrap();
        assert_eq!(
            encoding_rs::GB18030.decode_without_bom_handling(&gb18030).0,
            "列0,列1\n1,ok 😀\n"
        );
    }

    #[test]
    fn the_one_character_gb18030_cannot_hold_is_named_not_replaced() {
        let rows = vec![vec![Cell::Text("a\u{E5E5}")]];
        let err = write_with(with_encoding(CsvEncoding::Gb18030), &rows).unwrap_err();
        assert!(
            err.message
                .contains("data row 1, column 1: character '\u{E5E5}' (U+E5E5) cannot be written in GB18030; use encoding UTF-8"),
            "{err}"
        );
        let replaced = CsvOptions {
            replace_unencodable: true,
            ..with_encoding(CsvEncoding::Gb18030)
        };
        assert!(write_with(replaced, &rows).unwrap().ends_with(b"a?\n"));
    }

    #[test]
    fn a_replaced_character_is_quoted_like_the_delimiter_it_becomes() {
        // Found by fuzzing (csv_cells): `?` was put in after quoting, so a
        // `?` delimiter split the field in two.
        let options = CsvOptions {
            delimiter: b'?',
            replace_unencodable: true,
            header: false,
            ..with_encoding(CsvEncoding::Gbk)
        };
        let rows = vec![vec![Cell::Text("😀"), Cell::Text("x")]];
        assert_eq!(write_with(options, &rows).unwrap(), b"\"?\"?x\n");
    }

    #[test]
    fn gzip_output_decompresses_to_the_csv() {
        use std::io::Read;
        let rows = vec![vec![Cell::Text("张伟"), Cell::Int(7)]];
        let gz = write_with(
            CsvOptions {
                gzip: true,
                ..CsvOptions::default()
            },
            &rows,
        )
        .unwrap();
        assert_eq!(&gz[..2], b"\x1f\x8b", "gzip magic");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "\u{FEFF}列0,列1\n张伟,7\n");
    }

    #[test]
    fn formulas_are_neutralised_unless_turned_off() {
        let rows = vec![vec![
            Cell::Text("=HYPERLINK(\"http://x\")"),
            Cell::Text("-5+A1"),
            Cell::Int(-5),
            Cell::Text("@SUM(A1)"),
            Cell::Text("plain"),
            Cell::Text("-12.50"),
        ]];
        let guarded = write_with(
            CsvOptions {
                bom: false,
                ..CsvOptions::default()
            },
            &rows,
        )
        .unwrap();
        let text = String::from_utf8(guarded).unwrap();
        assert!(
            text.ends_with("\"'=HYPERLINK(\"\"http://x\"\")\",'-5+A1,-5,'@SUM(A1),plain,-12.50\n"),
            "{text}"
        );
        let raw = CsvOptions {
            bom: false,
            formula_guard: false,
            ..CsvOptions::default()
        };
        let text = String::from_utf8(write_with(raw, &rows).unwrap()).unwrap();
        assert!(
            text.ends_with("\"=HYPERLINK(\"\"http://x\"\")\",-5+A1,-5,@SUM(A1),plain,-12.50\n"),
            "{text}"
        );
    }

    #[test]
    fn headers_are_guarded_as_cells_are() {
        let header = |formula_guard| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("h.csv");
            let options = CsvOptions {
                bom: false,
                formula_guard,
                ..CsvOptions::default()
            };
            let mut w: Box<dyn FormatWriter> = Box::new(CsvWriter::create(&path, options).unwrap());
            let cols: Vec<Column> = ["=1+1", "-1", "@x", "Amount"]
                .into_iter()
                .map(|name| Column::new(name.to_owned(), ColumnType::Auto))
                .collect();
            w.begin_sheet("x", &cols).unwrap();
            w.finish().unwrap();
            String::from_utf8(std::fs::read(&path).unwrap()).unwrap()
        };
        assert_eq!(
            header(true),
            "'=1+1,-1,'@x,Amount\n",
            "-1 is a plain number"
        );
        assert_eq!(header(false), "=1+1,-1,@x,Amount\n");
    }

    #[test]
    fn a_decimal_comma_is_quoted_where_it_is_the_delimiter() {
        let rows = vec![vec![
            Cell::Float(-1.5),
            Cell::Float(1e20),
            Cell::Int(7),
            Cell::Float(0.25),
            // PDO's DECIMAL text in an auto column reads as a number too.
            Cell::Text("-1234.50"),
            Cell::Text("v1.5"),
        ]];
        let comma = |delimiter| CsvOptions {
            bom: false,
            header: false,
            delimiter,
            style: TextStyle {
                decimal_separator: b',',
                ..TextStyle::default()
            },
            ..CsvOptions::default()
        };
        assert_eq!(
            write(comma(b';'), &rows).0,
            b"-1,5;100000000000000000000;7;0,25;-1234,50;v1.5\n"
        );
        assert_eq!(
            write(comma(b','), &rows).0,
            b"\"-1,5\",100000000000000000000,7,\"0,25\",\"-1234,50\",v1.5\n"
        );
    }

    #[test]
    fn excel_text_wraps_what_a_spreadsheet_would_convert_in_string_columns() {
        let texts = [
            "123456789012345678",
            " 00123",
            "-1.50",
            "1e5",
            "1,234",
            "12%",
            "2024-01-02",
            "12a",
            "=1+1",
            "e",
            "TRUE",
            "say \"1\"",
            "Room 301\nBuilding 5",
        ];
        let long = "1".repeat(256);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let options = CsvOptions {
            bom: false,
            header: false,
            excel_text: true,
            ..CsvOptions::default()
        };
        let mut w: Box<dyn FormatWriter> = Box::new(CsvWriter::create(&path, options).unwrap());
        let string = |n: usize| Column::new(format!("s{n}"), ColumnType::String);
        let mut columns: Vec<Column> = (0..texts.len() + 1).map(string).collect();
        columns.push(Column::new("auto", ColumnType::Auto));
        w.begin_sheet("x", &columns).unwrap();
        let mut batch = RecordBatch::new(columns.len(), 0);
        texts.iter().for_each(|t| batch.push_cell(&Cell::Text(t)));
        batch.push_cell(&Cell::Text(&long));
        batch.push_cell(&Cell::Text("1234.50"));
        batch.end_row();
        w.write_batch(&batch).unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let wrapped = |t: &str| format!("\"=\"\"{t}\"\"\"");
        let expected = [
            wrapped("123456789012345678"),
            wrapped(" 00123"),
            wrapped("-1.50"),
            wrapped("1e5"),
            wrapped("1,234"),
            wrapped("12%"),
            wrapped("2024-01-02"),
            wrapped("12a"),
            // Text in a formula's string: shown as it is, never run.
            wrapped("=1+1"),
            "e".to_owned(),
            wrapped("TRUE"),
            "\"=\"\"say \"\"\"\"1\"\"\"\"\"\"\"".to_owned(),
            // A formula of two lines shows as its text: quoted as it is.
            "\"Room 301\nBuilding 5\"".to_owned(),
            long.clone(),
            // An auto column's text (PDO's DECIMAL) stays a number.
            "1234.50".to_owned(),
        ];
        assert_eq!(text, expected.join(",") + "\n");
    }

    use sha2::Digest;
}
