//! Local folder storage: the default, no setup needed.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::{ObjectMeta, Store, StoredObject, Watch};
use crate::config::StorageKind;
use crate::error::{ExportError, Result};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The target path of `key`; a key that would leave the root is refused.
    fn target(&self, key: &str) -> Result<PathBuf> {
        let relative = Path::new(key);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)));
        if key.is_empty() || escapes {
            return Err(ExportError::invalid_option(format!(
                "storage key \"{key}\" must be a relative path without \"..\""
            )));
        }
        Ok(self.root.join(relative))
    }
}

/// Creates `dir`, then writes and removes a probe file in it, named for
/// this probe alone: probes at once (a kubelet and a load balancer, two
/// containers that are both pid 1 on one volume) removed each other's file.
pub fn writable(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| ExportError::io("cannot create the folder", dir, e))?;
    let probe = dir.join(format!(".probe-{}", uuid::Uuid::new_v4()));
    fs::write(&probe, b"ok")
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| ExportError::io("cannot write in", dir, e))
}

pub fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(byte as char)
            }
            other => url.push_str(&format!("%{other:02X}")),
        }
    }
    url
}

/// Waits until the file and its name are on disk: a URL handed out must not
/// lead to an empty or half-written file after a power cut. The writers
/// started the writeback as they wrote (`writer::OutputFile`), so this waits
/// for the last few megabytes only.
fn make_durable(file: &Path) -> std::io::Result<()> {
    fs::File::open(file)?.sync_all()?;
    match file.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

impl Store for LocalStore {
    fn kind(&self) -> StorageKind {
        StorageKind::Local
    }

    fn put_file(
        &self,
        spool: &Path,
        key: &str,
        _meta: &ObjectMeta,
        watch: &Watch<'_>,
    ) -> Result<StoredObject> {
        let target = self.target(key)?;
        let dir = target.parent().expect("a key has a file name");
        fs::create_dir_all(dir).map_err(|e| ExportError::io("cannot create folder", dir, e))?;
        if let Err(err) = fs::rename(spool, &target) {
            if err.raw_os_error() != Some(libc::EXDEV) {
                return Err(ExportError::io("cannot move the file to", &target, err));
            }
            // Another filesystem: copy beside the target, then rename, so the
            // target never exists half-written. The copy takes a while for
            // a big file: reporting its start shows the task as uploading.
            (watch.progress)(0);
            let partial = target.with_extension("part");
            fs::copy(spool, &partial)
                .and_then(|_| fs::rename(&partial, &target))
                .map_err(|e| {
                    let _ = fs::remove_file(&partial);
                    ExportError::io("cannot copy the file to", &target, e)
                })?;
            let _ = fs::remove_file(spool);
        }
        make_durable(&target).map_err(|e| ExportError::io("cannot write", &target, e))?;
        Ok(StoredObject {
            url: file_url(&target),
            path: Some(target),
            key: key.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_the_spool_file_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("x.part");
        fs::write(&spool, b"data").unwrap();
        let store = LocalStore::new(dir.path().join("out"));
        let meta = ObjectMeta::new("text/csv", "报表 1.csv", "00");
        let obj = store
            .put_file(&spool, "2026/11/29/t/报表 1.csv", &meta, &Watch::NONE)
            .unwrap();
        let path = obj.path.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"data");
        assert!(!spool.exists());
        assert!(
            obj.url.starts_with("file:///") && obj.url.ends_with("/t/%E6%8A%A5%E8%A1%A8%201.csv")
        );
    }

    /// A move reports nothing; a copy to another filesystem (here /dev/shm,
    /// where that is one) reports its start.
    #[test]
    fn a_copy_to_another_filesystem_reports_its_start() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let device = |path: &Path| fs::metadata(path).map(|m| m.dev()).ok();
        let mut roots = vec![(dir.path().join("out"), vec![])];
        if device(Path::new("/dev/shm")).is_some_and(|shm| Some(shm) != device(dir.path())) {
            roots.push((tempfile::tempdir_in("/dev/shm").unwrap().keep(), vec![0]));
        }
        let meta = ObjectMeta::new("text/csv", "a.csv", "00");
        for (root, expected) in roots {
            let spool = dir.path().join("x.part");
            fs::write(&spool, b"data").unwrap();
            let reported = std::sync::Mutex::new(Vec::new());
            let watch = Watch {
                progress: &|sent| reported.lock().unwrap().push(sent),
                stopped: &|| false,
            };
            let obj = LocalStore::new(&root)
                .put_file(&spool, "t/a.csv", &meta, &watch)
                .unwrap();
            assert_eq!(fs::read(obj.path.unwrap()).unwrap(), b"data");
            assert_eq!(*reported.lock().unwrap(), expected, "{}", root.display());
            let _ = fs::remove_dir_all(root);
        }
    }

    #[test]
    fn keys_cannot_escape_the_root() {
        let store = LocalStore::new("/tmp/root");
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(store.target(key).is_err(), "{key}");
        }
    }
}
