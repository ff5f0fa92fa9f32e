//! `request_id` → task id for `fluxo.idempotency_ttl`: a client that retries
//! a request gets the task it already started instead of a second export,
//! after a server restart too. Each entry is a file in `{work_dir}/requests`
//! named by the SHA-256 of the request id (any text makes a safe name) and
//! holding the task id; its age is the file's.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::registry::{check_task_id, write_atomically, PRUNE_INTERVAL};

/// Whether an entry written at `at` is `ttl` old (one dated in the future
/// only when `ttl` is zero).
fn has_expired(at: SystemTime, ttl: Duration) -> bool {
    at.elapsed().unwrap_or_default() >= ttl
}

pub struct IdempotencyMap {
    dir: PathBuf,
    /// When expired entries were last removed.
    pruned: Mutex<Option<Instant>>,
}

impl IdempotencyMap {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            dir: work_dir.join("requests"),
            pruned: Mutex::new(None),
        }
    }

    fn path(&self, request_id: &str) -> PathBuf {
        self.dir
            .join(hex::encode(Sha256::digest(request_id.as_bytes())))
    }

    /// The task remembered for `request_id`, if younger than `ttl`.
    pub fn get(&self, request_id: &str, ttl: Duration) -> Option<String> {
        let path = self.path(request_id);
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        if has_expired(modified, ttl) {
            let _ = fs::remove_file(&path);
            return None;
        }
        // A damaged entry is no entry: the retry starts a new export.
        let task_id = fs::read_to_string(&path).ok()?;
        check_task_id(&task_id).ok()?;
        Some(task_id)
    }

    /// Remembers `task_id` for `request_id`, replacing an older entry; and
    /// removes the entries older than `ttl` if that was last done
    /// [`PRUNE_INTERVAL`] ago or more: most ids are never asked for again.
    pub fn insert(&self, request_id: &str, task_id: &str, ttl: Duration) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let temp = self.dir.join(format!(".{task_id}.tmp"));
        write_atomically(&temp, &self.path(request_id), task_id.as_bytes())?;
        let due = self
            .pruned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL);
        if due {
            self.prune(ttl);
        }
        Ok(())
    }

    /// Removes the entries older than `ttl`: a server does when it starts,
    /// and then hourly as it remembers more.
    pub fn prune(&self, ttl: Duration) {
        *self.pruned.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| has_expired(t, ttl));
            if expired {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_outlive_the_process_until_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let task = uuid::Uuid::now_v7().to_string();
        let minute = Duration::from_secs(60);
        IdempotencyMap::new(dir.path())
            .insert("orders/2026-11 ../x", &task, minute)
            .unwrap();
        // A new map on the same folder: a restarted server.
        let map = IdempotencyMap::new(dir.path());
        assert_eq!(map.get("orders/2026-11 ../x", minute), Some(task.clone()));
        assert_eq!(map.get("other", minute), None);
        map.prune(minute);
        assert_eq!(
            map.get("orders/2026-11 ../x", minute),
            Some(task),
            "young: kept"
        );
        assert_eq!(map.get("orders/2026-11 ../x", Duration::ZERO), None);
        assert_eq!(
            map.get("orders/2026-11 ../x", minute),
            None,
            "expired: removed"
        );

        map.insert("r", "not a task id", minute).unwrap();
        assert_eq!(map.get("r", minute), None, "a damaged entry");
        map.prune(Duration::ZERO);
        assert_eq!(
            fs::read_dir(dir.path().join("requests")).unwrap().count(),
            0
        );
    }

    #[test]
    fn remembering_a_request_removes_expired_entries_once_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let map = IdempotencyMap::new(dir.path());
        let task = || uuid::Uuid::now_v7().to_string();
        let entries = || fs::read_dir(dir.path().join("requests")).unwrap().count();
        map.insert("a", &task(), Duration::ZERO).unwrap();
        assert_eq!(entries(), 0, "the first insert prunes: nothing is young");
        map.insert("b", &task(), Duration::ZERO).unwrap();
        assert_eq!(entries(), 1, "the next prune is an hour away");
    }
}
