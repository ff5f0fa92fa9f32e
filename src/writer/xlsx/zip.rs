//! The zip container of an XLSX file, written front to back in one pass:
//! every entry's size and CRC are known before its data is copied in, so
//! there are no data descriptors and no seeking back. Entries or offsets past
//! 4 GiB get Zip64 fields, which Excel reads.

use std::io::{self, Read, Write};

use flate2::{Compress, Compression};

use super::deflate::{deflate_piece, Summary};

/// 1980-01-01 00:00, the zip epoch: a fixed time keeps files reproducible.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;
const DEFLATE: u16 = 8;
const MAX_32: u64 = 0xFFFF_FFFF;

struct Entry {
    name: String,
    summary: Summary,
    offset: u64,
}

pub struct ZipWriter<W> {
    out: W,
    offset: u64,
    entries: Vec<Entry>,
    /// Where the current entry's data must end.
    data_end: u64,
    /// Sizes and offsets from here on are written as Zip64 (lowered in tests).
    zip64_from: u64,
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            offset: 0,
            entries: Vec::new(),
            data_end: 0,
            zip64_from: MAX_32,
        }
    }

    /// Adds a small part, deflated in memory.
    pub fn add(&mut self, name: &str, content: &[u8], level: u8) -> io::Result<()> {
        let mut compressed = Vec::new();
        let summary = deflate_piece(
            &mut Compress::new(Compression::new(level.into()), false),
            content,
            true,
            &mut compressed,
        );
        self.begin_entry(name, &summary)?;
        self.write_data(&compressed)
    }

    /// Writes the local header of an entry whose deflated data (described by
    /// `summary`) the caller then writes with `write_data`/`copy_data`.
    pub fn begin_entry(&mut self, name: &str, summary: &Summary) -> io::Result<()> {
        self.check_data_complete()?;
        let zip64 = self.is_zip64(summary);
        let mut header = Vec::with_capacity(64 + name.len());
        put32(&mut header, 0x0403_4b50);
        put16(&mut header, if zip64 { 45 } else { 20 });
        put16(&mut header, 0); // flags
        put16(&mut header, DEFLATE);
        put16(&mut header, DOS_TIME);
        put16(&mut header, DOS_DATE);
        put32(&mut header, summary.crc32());
        if zip64 {
            put32(&mut header, MAX_32 as u32);
            put32(&mut header, MAX_32 as u32);
        } else {
            put32(&mut header, summary.compressed_len as u32);
            put32(&mut header, summary.raw_len as u32);
        }
        put16(&mut header, name.len() as u16);
        put16(&mut header, if zip64 { 20 } else { 0 });
        header.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut header, 1);
            put16(&mut header, 16);
            put64(&mut header, summary.raw_len);
            put64(&mut header, summary.compressed_len);
        }
        self.entries.push(Entry {
            name: name.to_owned(),
            summary: summary.clone(),
            offset: self.offset,
        });
        self.write_raw(&header)?;
        self.data_end = self.offset + summary.compressed_len;
        Ok(())
    }

    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_raw(data)
    }

    pub fn copy_data(&mut self, data: &mut impl Read) -> io::Result<()> {
        let copied = io::copy(data, &mut self.out)?;
        self.offset += copied;
        Ok(())
    }

    /// Writes the central directory and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check_data_complete()?;
        let directory_offset = self.offset;
        let mut directory = Vec::new();
        for entry in &self.entries {
            let summary = &entry.summary;
            let sizes64 = self.is_zip64(summary);
            let offset64 = entry.offset >= self.zip64_from;
            let mut extra = Vec::new();
            if sizes64 {
                put64(&mut extra, summary.raw_len);
                put64(&mut extra, summary.compressed_len);
            }
            if offset64 {
                put64(&mut extra, entry.offset);
            }
            put32(&mut directory, 0x0201_4b50);
            put16(&mut directory, 45); // made by: zip spec 4.5, MS-DOS attributes
            put16(&mut directory, if sizes64 || offset64 { 45 } else { 20 });
            put16(&mut directory, 0);
            put16(&mut directory, DEFLATE);
            put16(&mut directory, DOS_TIME);
            put16(&mut directory, DOS_DATE);
            put32(&mut directory, summary.crc32());
            let (compressed, raw) = if sizes64 {
                (MAX_32, MAX_32)
            } else {
                (summary.compressed_len, summary.raw_len)
            };
            put32(&mut directory, compressed as u32);
            put32(&mut directory, raw as u32);
            put16(&mut directory, entry.name.len() as u16);
            put16(
                &mut directory,
                if extra.is_empty() {
                    0
                } else {
                    extra.len() as u16 + 4
                },
            );
            put16(&mut directory, 0); // comment
            put16(&mut directory, 0); // disk
            put16(&mut directory, 0); // internal attributes
            put32(&mut directory, 0); // external attributes
            put32(&mut directory, entry.offset.min(MAX_32) as u32);
            directory.extend_from_slice(entry.name.as_bytes());
            if !extra.is_empty() {
                put16(&mut directory, 1);
                put16(&mut directory, extra.len() as u16);
                directory.extend_from_slice(&extra);
            }
        }
        let directory_len = directory.len() as u64;
        let count = self.entries.len() as u64;
        if directory_offset >= self.zip64_from
            || self.entries.iter().any(|e| self.is_zip64(&e.summary))
        {
            let record_offset = directory_offset + directory_len;
            put32(&mut directory, 0x0606_4b50);
            put64(&mut directory, 44); // size of the rest of this record
            put16(&mut directory, 45);
            put16(&mut directory, 45);
            put32(&mut directory, 0);
            put32(&mut directory, 0);
            put64(&mut directory, count);
            put64(&mut directory, count);
            put64(&mut directory, directory_len);
            put64(&mut directory, directory_offset);
            put32(&mut directory, 0x0706_4b50);
            put32(&mut directory, 0);
            put64(&mut directory, record_offset);
            put32(&mut directory, 1);
        }
        put32(&mut directory, 0x0605_4b50);
        put16(&mut directory, 0);
        put16(&mut directory, 0);
        put16(&mut directory, count as u16);
        put16(&mut directory, count as u16);
        put32(&mut directory, directory_len.min(MAX_32) as u32);
        let offset = if directory_offset >= self.zip64_from {
            MAX_32
        } else {
            directory_offset
        };
        put32(&mut directory, offset as u32);
        put16(&mut directory, 0);
        self.write_raw(&directory)?;
        Ok(self.out)
    }

    fn is_zip64(&self, summary: &Summary) -> bool {
        summary.raw_len >= self.zip64_from || summary.compressed_len >= self.zip64_from
    }

    fn check_data_complete(&self) -> io::Result<()> {
        if self.offset == self.data_end {
            return Ok(());
        }
        let name = self.entries.last().map_or("", |e| e.name.as_str());
        Err(io::Error::other(format!(
            "zip entry {name}: its data ends at byte {}, its header says {}",
            self.offset, self.data_end
        )))
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_back(bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        let mut archive = ::zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut file = archive.by_index(i).unwrap();
                let mut content = Vec::new();
                file.read_to_end(&mut content).unwrap();
                (file.name().to_owned(), content)
            })
            .collect()
    }

    fn sample(zip64_from: u64) -> Vec<u8> {
        let mut zip = ZipWriter::new(Vec::new());
        zip.zip64_from = zip64_from;
        zip.add("a.xml", b"<a>first</a>", 6).unwrap();
        zip.add("dir/b.xml", &b"<b/>".repeat(1000), 1).unwrap();
        zip.finish().unwrap()
    }

    #[test]
    fn an_independent_reader_gets_every_entry_back() {
        for zip64_from in [MAX_32, 10] {
            let entries = read_back(sample(zip64_from));
            assert_eq!(
                entries[0],
                ("a.xml".to_owned(), b"<a>first</a>".to_vec()),
                "zip64 from {zip64_from}"
            );
            assert_eq!(entries[1].0, "dir/b.xml");
            assert_eq!(entries[1].1, b"<b/>".repeat(1000));
        }
        assert_ne!(
            sample(MAX_32),
            sample(10),
            "the Zip64 variant writes Zip64 records"
        );
    }

    #[test]
    fn data_shorter_than_its_header_is_an_error() {
        let mut zip = ZipWriter::new(Vec::new());
        let mut compressed = Vec::new();
        let summary = deflate_piece(
            &mut Compress::new(Compression::new(1), false),
            b"hello",
            true,
            &mut compressed,
        );
        zip.begin_entry("x", &summary).unwrap();
        zip.write_data(&compressed[1..]).unwrap();
        assert!(zip.finish().is_err());
    }
}
