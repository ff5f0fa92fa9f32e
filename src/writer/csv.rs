//! CSV through BurntSushi's `csv` crate. Dialect: see [`CsvOptions`] and
//! `schema::write_text_form` for how each value type is shown.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use csv::{QuoteStyle, Terminator, WriterBuilder};

use super::{FormatWriter, HashingWriter, WrittenFile};
use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::{self, Cell, Column};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub enclosure: u8,
    /// Start with a UTF-8 BOM, so Excel reads Chinese text correctly.
    pub bom: bool,
    pub header: bool,
    /// `\r\n` line endings instead of `\n`.
    pub crlf: bool,
    pub null_text: String,
    pub true_text: String,
    pub false_text: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            enclosure: b'"',
            bom: true,
            header: true,
            crlf: false,
            null_text: String::new(),
            true_text: "TRUE".into(),
            false_text: "FALSE".into(),
        }
    }
}

pub struct CsvWriter {
    out: csv::Writer<HashingWriter<BufWriter<File>>>,
    options: CsvOptions,
    path: PathBuf,
    field: Vec<u8>,
    sheets: u32,
}

impl CsvWriter {
    pub fn create(path: &Path, options: CsvOptions) -> Result<Self> {
        let file = File::create(path).map_err(|e| ExportError::io("cannot create", path, e))?;
        let mut sink = HashingWriter::new(BufWriter::with_capacity(1 << 17, file));
        if options.bom {
            sink.write_all(UTF8_BOM)
                .map_err(|e| ExportError::io("cannot write", path, e))?;
        }
        let out = WriterBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.enclosure)
            .quote_style(QuoteStyle::Necessary)
            .terminator(if options.crlf {
                Terminator::CRLF
            } else {
                Terminator::Any(b'\n')
            })
            .buffer_capacity(1 << 16)
            .from_writer(sink);
        Ok(Self {
            out,
            options,
            path: path.to_path_buf(),
            field: Vec::with_capacity(64),
            sheets: 0,
        })
    }

    fn io_error(&self, err: csv::Error) -> ExportError {
        ExportError::new(
            crate::error::ErrorKind::Storage,
            format!("cannot write {}: {err}", self.path.display()),
        )
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
        if self.options.header {
            let names = columns.iter().map(|c| c.name.as_bytes());
            self.out.write_record(names).map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut reader = batch.reader();
        let mut row = Vec::with_capacity(batch.columns());
        let bools = (
            self.options.true_text.as_str(),
            self.options.false_text.as_str(),
        );
        while reader.next_row(&mut row) {
            for cell in &row {
                let result = match cell {
                    Cell::Text(t) => self.out.write_field(t),
                    Cell::Null => self.out.write_field(&self.options.null_text),
                    other => {
                        self.field.clear();
                        schema::write_text_form(other, bools, &mut self.field);
                        self.out.write_field(&self.field)
                    }
                };
                result.map_err(|e| self.io_error(e))?;
            }
            self.out
                .write_record(None::<&[u8]>)
                .map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<WrittenFile> {
        let path = self.path.clone();
        let sink = self
            .out
            .into_inner()
            .map_err(|e| ExportError::io("cannot write", &path, e.into_error()))?;
        let (buffered, bytes, sha256) = sink.into_parts();
        let file = buffered
            .into_inner()
            .map_err(|e| ExportError::io("cannot write", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ExportError::io("cannot write", &path, e))?;
        Ok(WrittenFile {
            bytes,
            sha256,
            sheets: 1,
        })
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
    fn dialect_options_apply() {
        let options = CsvOptions {
            delimiter: b';',
            enclosure: b'\'',
            bom: false,
            header: false,
            crlf: true,
            null_text: "NULL".into(),
            true_text: "1".into(),
            false_text: "0".into(),
        };
        let (bytes, _) = write(
            options,
            &[vec![Cell::Text("it's;x"), Cell::Null, Cell::Bool(false)]],
        );
        assert_eq!(bytes, b"'it''s;x';NULL;0\r\n");
    }

    use sha2::Digest;
}
