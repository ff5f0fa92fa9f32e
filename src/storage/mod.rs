//! Where finished files go. One trait for every backend.

pub mod local;

use std::path::{Path, PathBuf};

use crate::error::Result;

/// A stored file and how to fetch it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Download URL (`file://` for local storage).
    pub url: String,
    /// Local path, when the file is on this host.
    pub path: Option<PathBuf>,
    pub key: String,
}

pub trait Store: Send + Sync {
    /// Moves the finished spool file to `key`. The spool file is consumed.
    fn put_file(&self, spool: &Path, key: &str) -> Result<StoredObject>;
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
}
