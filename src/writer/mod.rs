//! Format writers: rows in, a finished file out. They know nothing of where
//! the file goes afterwards.

pub mod csv;
pub mod xlsx;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::batch::RecordBatch;
use crate::error::{ExportError, Result};
use crate::schema::Column;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "xlsx" | "excel" => Some(Self::Xlsx),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// What a writer made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub bytes: u64,
    pub sha256: String,
    pub sheets: u32,
}

/// One output file being written, sheet by sheet, batch by batch.
pub trait FormatWriter: Send {
    /// Starts a sheet (the first one too) and writes its header.
    fn begin_sheet(&mut self, name: &str, columns: &[Column]) -> Result<()>;
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Completes the file.
    fn finish(self: Box<Self>) -> Result<WrittenFile>;
}

/// Passes bytes through to `inner` while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// (inner writer, byte count, hex SHA-256)
    pub fn into_parts(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 and size of a file on disk.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(|e| ExportError::io("cannot read", path, e))?;
    let mut hasher = HashingWriter::new(io::sink());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ExportError::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.write_all(&buf[..n]).expect("a sink never fails");
    }
    let (_, bytes, sha256) = hasher.into_parts();
    Ok((bytes, sha256))
}

/// Opens the writer for `format` on the spool file `path`.
pub fn open(
    format: Format,
    path: &Path,
    csv: &csv::CsvOptions,
    xlsx: &xlsx::XlsxOptions,
) -> Result<Box<dyn FormatWriter>> {
    Ok(match format {
        Format::Csv => Box::new(csv::CsvWriter::create(path, csv.clone())?),
        Format::Xlsx => Box::new(xlsx::XlsxWriter::new(path, xlsx.clone())?),
    })
}
