//! Where finished files go. One trait for every backend: a local folder, or
//! an object store (OSS, S3).

pub mod local;
mod multipart;
pub mod object;
pub mod signed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Settings, StorageKind};
use crate::error::{ErrorKind, ExportError, Result};

/// A stored file and how to fetch it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Download URL: `file://` for local storage, a signed URL for stores.
    pub url: String,
    /// Local path, when the file is on this host.
    pub path: Option<PathBuf>,
    pub key: String,
}

/// What an uploaded object carries besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: &'static str,
    pub content_disposition: String,
    pub sha256: String,
}

impl ObjectMeta {
    pub fn new(content_type: &'static str, filename: &str, sha256: &str) -> Self {
        Self {
            content_type,
            content_disposition: content_disposition(filename),
            sha256: sha256.to_owned(),
        }
    }
}

/// What the export asks of an upload as it goes.
pub struct Watch<'a> {
    /// Called with the bytes sent so far.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Whether the export was cancelled or failed meanwhile (a gRPC
    /// server's grace period ran out): the upload stops, and a multipart
    /// upload is aborted.
    pub stopped: &'a (dyn Fn() -> bool + Sync),
}

impl Watch<'static> {
    /// For a store that is quick (a rename) or a caller that never stops.
    pub const NONE: Self = Self {
        progress: &|_| {},
        stopped: &|| false,
    };
}

pub trait Store: Send + Sync {
    /// Stores the finished spool file under `key`, reporting bytes sent.
    /// A local store moves the file; an object store uploads a copy.
    fn put_file(
        &self,
        spool: &Path,
        key: &str,
        meta: &ObjectMeta,
        watch: &Watch<'_>,
    ) -> Result<StoredObject>;

    fn kind(&self) -> StorageKind;

    /// Whether the store answers (the server's `/health/ready`). A local
    /// folder needs no request.
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// The store an export goes to.
pub fn open(
    kind: StorageKind,
    settings: &Settings,
    local_dir: &Path,
    url_expires: Option<Duration>,
) -> Result<Box<dyn Store>> {
    let expires = url_expires.unwrap_or(settings.upload.url_expires);
    Ok(match kind {
        StorageKind::Local => Box::new(local::LocalStore::new(local_dir)),
        StorageKind::Oss => Box::new(
            object::ObjectStore::oss(&settings.oss, &settings.upload)?.with_url_expires(expires),
        ),
        StorageKind::S3 => Box::new(
            object::ObjectStore::s3(&settings.s3, &settings.upload)?.with_url_expires(expires),
        ),
    })
}

/// `{prefix/}{YYYY}/{MM}/{DD}/{task_id}/{filename}` (UTC date): unique per
/// export, so two exports with the same filename never overwrite each other.
pub fn object_key(prefix: &str, unix_seconds: i64, task_id: &str, filename: &str) -> String {
    let day = crate::schema::LocalDateTime {
        seconds: unix_seconds,
        nanos: 0,
    };
    let (y, m, d, ..) = day.parts();
    let dated = format!("{y:04}/{m:02}/{d:02}/{task_id}/{filename}");
    if prefix.is_empty() {
        dated
    } else {
        format!("{prefix}/{dated}")
    }
}

/// `attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266 /
/// RFC 5987), so every browser saves the file under its real name.
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encode(filename, b"!#$&+-.^_`|~");
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `text` with each byte but ASCII letters, digits and `keep` as `%XX`.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || keep.contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn storage_error(what: &str, err: impl std::fmt::Display) -> ExportError {
    ExportError::new(ErrorKind::Storage, format!("{what}: {err}"))
}

/// An error and its causes: reqwest names a refused connection only there.
fn with_causes(err: &dyn std::error::Error) -> String {
    format!("{err}{}", causes(err.source()))
}

/// `: cause` for `first` and each cause below it.
fn causes(first: Option<&dyn std::error::Error>) -> String {
    let mut text = String::new();
    let mut cause = first;
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_dated_and_unique_per_task() {
        // 2026-11-29T10:00:00Z
        let key = super::object_key("exports", 1_795_946_400, "t1", "a.csv");
        assert_eq!(key, "exports/2026/11/29/t1/a.csv");
        assert_eq!(
            super::object_key("", 0, "t", "b.xlsx"),
            "1970/01/01/t/b.xlsx"
        );
    }

    #[test]
    fn content_disposition_carries_the_utf8_name() {
        assert_eq!(
            super::content_disposition("订单 11.csv"),
            "attachment; filename=\"__ 11.csv\"; filename*=UTF-8''%E8%AE%A2%E5%8D%95%2011.csv"
        );
        assert_eq!(
            super::content_disposition("a\"b.csv"),
            "attachment; filename=\"a_b.csv\"; filename*=UTF-8''a%22b.csv"
        );
    }
}
