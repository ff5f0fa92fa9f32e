//! Task status: kept in memory by the process that runs the task and
//! persisted as small JSON files, so any process on the host can read it.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ExportError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Queued,
    Processing,
    Uploading,
    Completed,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Processing => "PROCESSING",
            Self::Uploading => "UPLOADING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub state: TaskState,
    pub format: String,
    pub filename: String,
    /// Data rows written so far.
    pub records: u64,
    pub total_rows: Option<u64>,
    pub bytes: u64,
    pub sheets: u32,
    pub url: Option<String>,
    pub path: Option<String>,
    pub sha256: Option<String>,
    pub error: Option<String>,
    /// What kind of error ended the task (`error_code` in gRPC answers).
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    /// The process that runs the task.
    pub owner_pid: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// `local`, `oss` or `s3`.
    #[serde(default)]
    pub storage: String,
    /// Object key once stored.
    #[serde(default)]
    pub key: Option<String>,
    /// Bytes sent to an object store so far.
    #[serde(default)]
    pub uploaded_bytes: u64,
}

impl TaskStatus {
    /// Ended longer than `retention` ago (0: kept for ever), by its last
    /// write: gone for `status()` even before the hourly prune (which goes
    /// by the file's modification time) has deleted its file.
    pub fn has_expired(&self, retention: Duration) -> bool {
        !retention.is_zero()
            && self.state.is_final()
            && u128::from(now_ms().saturating_sub(self.updated_ms)) > retention.as_millis()
    }

    /// Percent done, 0–100: 100 once completed, 99 at most before. Writing
    /// counts by `total_rows`; an upload to an object store takes the last
    /// tenth, by bytes sent.
    pub fn progress(&self) -> u8 {
        let writing_share = if self.storage == "local" || self.storage.is_empty() {
            100
        } else {
            90
        };
        let percent = match (self.state, self.total_rows) {
            (TaskState::Completed, _) => return 100,
            (TaskState::Uploading, _) if writing_share < 100 => {
                writing_share
                    + self.uploaded_bytes.saturating_mul(100 - writing_share) / self.bytes.max(1)
            }
            (_, Some(total)) if total > 0 => self.records.saturating_mul(writing_share) / total,
            _ => 0,
        };
        percent.min(99) as u8
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Task ids are UUIDs; anything else is refused before it touches a path.
pub fn check_task_id(id: &str) -> Result<()> {
    match uuid::Uuid::try_parse(id) {
        Ok(u) if u.hyphenated().to_string() == id => Ok(()),
        _ => Err(ExportError::invalid_option(format!(
            "task id \"{}\" is malformed: expected a UUID such as 0193a5b2-7c1e-7d4f-9a6b-3c2d1e0f4a5b",
            id.escape_debug()
        ))),
    }
}

/// Held by the process that runs a task from the task's creation until its
/// final status is saved: an exclusive flock on `{work_dir}/tasks/{id}.lock`.
/// The kernel drops it when that process dies, however it dies. Unlike a
/// pid, it cannot be mistaken for another process: a reused pid, a restarted
/// container's pid 1, or a process in another pid namespace or container
/// that shares the work dir.
pub struct OwnerLock {
    _file: File,
    path: PathBuf,
}

impl OwnerLock {
    /// Ends the lock and deletes its file: for a task whose final status is
    /// saved.
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether a task's process still has it.
pub enum Owner {
    /// It runs the task, or the task is final.
    Present,
    /// It is gone before the task finished. Its lock, now taken by the
    /// caller, so that no one else ends the task at the same time; `None`
    /// for a status file of a version without owner locks.
    Gone(Option<OwnerLock>),
}

/// Turns an orphaned task's status into FAILED with the reason.
pub fn mark_orphan_failed(status: &mut TaskStatus) {
    status.state = TaskState::Failed;
    status.error = Some(format!(
        "process {} that ran the export exited before it finished",
        status.owner_pid
    ));
}

/// Whether a process exists (signal 0 only checks).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the
    // pid exists and may be signalled. No memory is passed.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// How often a work dir is searched for expired statuses (see
/// [`StatusFiles::prune_due`]).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Whether `at` is less than `age` ago (a time in the future is).
pub(super) fn is_younger(at: SystemTime, age: Duration) -> bool {
    at.elapsed().map_or(true, |elapsed| elapsed < age)
}

/// Writes `bytes` to `temp`, then renames it to `target`: a reader sees the
/// old file or the new one, never part of one. No `temp` is left on failure.
pub(super) fn write_atomically(temp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let written = File::create(temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(temp, target));
    if written.is_err() {
        let _ = fs::remove_file(temp);
    }
    written
}

/// Status files under `{work_dir}/tasks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusFiles {
    dir: PathBuf,
}

impl StatusFiles {
    pub fn new(work_dir: &Path) -> Self {
        Self {
            dir: work_dir.join("tasks"),
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes the status atomically (temp file, then rename).
    pub fn save(&self, status: &TaskStatus) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| ExportError::io("cannot create folder", &self.dir, e))?;
        let target = self.path(&status.task_id);
        let temp = self
            .dir
            .join(format!(".{}.{}.tmp", status.task_id, std::process::id()));
        let json = serde_json::to_vec(status).expect("a status always serializes");
        #[cfg(test)]
        tests::SAVED
            .lock()
            .unwrap()
            .push((status.task_id.clone(), status.state));
        write_atomically(&temp, &target, &json)
            .map_err(|e| ExportError::io("cannot write status file", &target, e))
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.lock"))
    }

    /// Takes the [`OwnerLock`] of a new task, before its first status is saved.
    pub fn lock_owner(&self, id: &str) -> Result<OwnerLock> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| ExportError::io("cannot create folder", &self.dir, e))?;
        let path = self.lock_path(id);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ExportError::io("cannot create", &path, e))?;
        file.try_lock()
            .map_err(|e| ExportError::io("cannot lock", &path, e.into()))?;
        Ok(OwnerLock { _file: file, path })
    }

    /// The status of `id`, or `None` if no such task is known. A task whose
    /// owner process is gone before it finished is reported FAILED.
    pub fn load(&self, id: &str) -> Result<Option<TaskStatus>> {
        Ok(self.load_with_owner(id)?.map(|(mut status, owner)| {
            if let Owner::Gone(_) = owner {
                mark_orphan_failed(&mut status);
            }
            status
        }))
    }

    /// The status of `id` as its file says, and whether its process still
    /// has it.
    pub fn load_with_owner(&self, id: &str) -> Result<Option<(TaskStatus, Owner)>> {
        let Some(status) = self.load_recorded(id)? else {
            return Ok(None);
        };
        if status.state.is_final() {
            return Ok(Some((status, Owner::Present)));
        }
        let path = self.lock_path(id);
        let lock = match File::open(&path) {
            Ok(file) => match file.try_lock() {
                Ok(()) => Some(OwnerLock { _file: file, path }),
                Err(TryLockError::WouldBlock) => return Ok(Some((status, Owner::Present))),
                Err(TryLockError::Error(e)) => {
                    return Err(ExportError::io("cannot check the lock", &path, e))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ExportError::io("cannot open", &path, e)),
        };
        // The owner saves the final status before it lets go of the lock:
        // read again, or a task that has just finished would look orphaned.
        let status = self.load_recorded(id)?.unwrap_or(status);
        let gone = !status.state.is_final() && (lock.is_some() || !process_alive(status.owner_pid));
        Ok(Some(if gone {
            (status, Owner::Gone(lock))
        } else {
            (status, Owner::Present)
        }))
    }

    /// Whether this process should look for expired statuses now: a
    /// retention is set and no process has looked within the last
    /// [`PRUNE_INTERVAL`] (`tasks/.pruned` records when; touching it claims
    /// the turn). Listing every past task on every export would grow with
    /// the history.
    pub fn prune_due(&self, retention: Duration) -> bool {
        let marker = self.dir.join(".pruned");
        let due = fs::metadata(&marker)
            .and_then(|m| m.modified())
            .map_or(true, |at| !is_younger(at, PRUNE_INTERVAL));
        due && !retention.is_zero()
            && File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&marker)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .is_ok()
    }

    /// Deletes what tasks that ended more than `retention` ago left here:
    /// final statuses (by the file's last write, which was the final
    /// status) with their lock files, lock files without a status that no
    /// process holds (a task whose first save failed), and temp files of
    /// saves that crashed; and QUEUED statuses whose process is gone: no
    /// spool file was made for the spool sweep to find them by. Other
    /// statuses that are not final are left alone: the spool sweep tells a
    /// dead owner from a live one and ends the task. A file changed after
    /// `decided` (when the prune was due) is left for the next one: the
    /// listing runs on a thread that may start late. Returns how many
    /// statuses it deleted.
    pub fn prune_expired(&self, retention: Duration, decided: SystemTime) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut deleted = 0;
        for entry in entries.flatten() {
            let expired = entry.metadata().is_ok_and(|m| {
                m.modified().is_ok_and(|at| !is_younger(at, retention))
                    && changed_at(&m).is_some_and(|at| at <= decided)
            });
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|_| expired) else {
                continue;
            };
            if let Some(id) = name.strip_suffix(".json") {
                let ended = self.load_with_owner(id).is_ok_and(|s| {
                    s.is_some_and(|(s, owner)| {
                        s.state.is_final()
                            || (s.state == TaskState::Queued && matches!(owner, Owner::Gone(_)))
                    })
                });
                if ended && fs::remove_file(entry.path()).is_ok() {
                    let _ = fs::remove_file(self.lock_path(id));
                    deleted += 1;
                }
            } else if let Some(id) = name.strip_suffix(".lock") {
                // Lock files are never reused: a free one without a status
                // belongs to no task.
                let free = File::open(entry.path()).is_ok_and(|f| f.try_lock().is_ok());
                if free && !self.path(id).exists() {
                    let _ = fs::remove_file(entry.path());
                }
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        deleted
    }

    /// The status of `id` as its file says, without the liveness check.
    pub fn load_recorded(&self, id: &str) -> Result<Option<TaskStatus>> {
        check_task_id(id)?;
        let path = self.path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ExportError::io("cannot read status file", &path, e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ExportError::export(format!("status file {} is damaged: {e}", path.display()))
        })
    }
}

/// When a file's inode last changed: a write, or setting its times.
fn changed_at(meta: &fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let seconds = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A pid no process has: Linux's are below 2^22. Spawning a process to
    /// get a dead pid instead made the lock tests flaky: a child forked while
    /// another test held an owner lock kept it locked until its exec.
    const NO_PROCESS: u32 = 1 << 30;

    /// The task id and state of every status saved by this test binary, in
    /// order.
    pub(crate) static SAVED: std::sync::Mutex<Vec<(String, TaskState)>> =
        std::sync::Mutex::new(Vec::new());

    /// A status as a running export saves it, for tests here and in `task`.
    pub(crate) fn status(id: &str, state: TaskState, pid: u32) -> TaskStatus {
        TaskStatus {
            task_id: id.into(),
            state,
            format: "csv".into(),
            filename: "a.csv".into(),
            records: 50,
            total_rows: Some(200),
            bytes: 0,
            sheets: 0,
            url: None,
            path: None,
            sha256: None,
            error: None,
            error_kind: None,
            owner_pid: pid,
            created_ms: now_ms(),
            updated_ms: now_ms(),
            storage: "local".into(),
            key: None,
            uploaded_bytes: 0,
        }
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let id = uuid::Uuid::now_v7().to_string();
        let s = status(&id, TaskState::Processing, std::process::id());
        files.save(&s).unwrap();
        assert_eq!(files.load(&id).unwrap(), Some(s.clone()));
        assert_eq!(s.progress(), 25);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("tasks")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn unknown_and_malformed_ids() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        assert_eq!(files.load(&uuid::Uuid::now_v7().to_string()).unwrap(), None);
        for bad in [
            "../../etc/passwd",
            "",
            "0193A5B2-7C1E-7D4F-9A6B-3C2D1E0F4A5B",
            "x",
        ] {
            assert!(
                files.load(bad).unwrap_err().message.contains("malformed"),
                "{bad}"
            );
        }
    }

    #[test]
    fn expired_statuses_of_ended_tasks_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let week = Duration::from_secs(7 * 86_400);
        let age = |path: PathBuf, ago: Duration| {
            let file = File::options().write(true).open(path).unwrap();
            file.set_modified(SystemTime::now() - ago).unwrap();
        };
        let me = std::process::id();
        let mut ids = Vec::new();
        let mut locks = Vec::new();
        for (state, ago, locked) in [
            (TaskState::Completed, week * 2, false),     // deleted
            (TaskState::Failed, week + week / 7, false), // deleted
            (TaskState::Cancelled, week * 2, false),     // deleted
            (TaskState::Completed, week / 2, false),     // too recent
            (TaskState::Processing, week * 2, true),     // still running
            (TaskState::Processing, week * 2, false),    // owner gone: the spool sweep's
            (TaskState::Queued, week * 2, false),        // owner gone, no spool file: deleted
            (TaskState::Queued, week * 2, true),         // still waiting
        ] {
            let id = uuid::Uuid::now_v7().to_string();
            let lock = files.lock_owner(&id).unwrap();
            files.save(&status(&id, state, me)).unwrap();
            age(files.path(&id), ago);
            if locked {
                locks.push(lock);
            }
            ids.push(id);
        }
        // A lock whose task never saved a status, a crashed save's temp
        // file, and a fresh lock of a task about to save its first status.
        let (lost, starting) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        drop(files.lock_owner(&lost).unwrap());
        age(files.lock_path(&lost), week * 2);
        let temp = dir.path().join(format!("tasks/.{lost}.1.tmp"));
        fs::write(&temp, b"{").unwrap();
        age(temp.clone(), week * 2);
        let _starting = files.lock_owner(&starting).unwrap();

        // Made old after the prune was due: left for the next one.
        let decided = SystemTime::now();
        let late = uuid::Uuid::now_v7().to_string();
        files
            .save(&status(&late, TaskState::Completed, me))
            .unwrap();
        age(files.path(&late), week * 2);
        assert_eq!(files.prune_expired(week, decided), 4);
        assert!(
            files.path(&late).exists(),
            "changed after the prune was due"
        );
        assert_eq!(files.prune_expired(week, SystemTime::now()), 1);
        let kept: Vec<bool> = ids.iter().map(|id| files.path(id).exists()).collect();
        assert_eq!(kept, [false, false, false, true, true, true, false, true]);
        assert!(
            !files.lock_path(&ids[6]).exists(),
            "the dead QUEUED task's lock goes too"
        );
        assert!(!files.lock_path(&ids[0]).exists(), "its lock file goes too");
        assert!(files.lock_path(&ids[4]).exists());
        assert!(!files.lock_path(&lost).exists() && !temp.exists());
        assert!(files.lock_path(&starting).exists());
        drop(locks);
    }

    #[test]
    fn one_process_an_hour_looks_for_expired_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let week = Duration::from_secs(7 * 86_400);
        files.save(&status("x", TaskState::Completed, 1)).unwrap();
        assert!(!files.prune_due(Duration::ZERO), "zero keeps every status");
        assert!(files.prune_due(week));
        assert!(!files.prune_due(week), "within the hour");
        let marker = File::options()
            .write(true)
            .open(dir.path().join("tasks/.pruned"))
            .unwrap();
        marker
            .set_modified(SystemTime::now() - PRUNE_INTERVAL)
            .unwrap();
        assert!(files.prune_due(week));
    }

    /// Status files of versions without owner locks: the pid decides.
    #[test]
    fn a_dead_owner_means_failed() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let dead_pid = NO_PROCESS;
        let id = uuid::Uuid::now_v7().to_string();
        files
            .save(&status(&id, TaskState::Processing, dead_pid))
            .unwrap();
        let loaded = files.load(&id).unwrap().unwrap();
        assert_eq!(loaded.state, TaskState::Failed);
        assert!(loaded.error.unwrap().contains(&dead_pid.to_string()));
    }

    #[test]
    fn a_free_owner_lock_means_failed_even_if_the_pid_lives() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let id = uuid::Uuid::now_v7().to_string();
        let lock = files.lock_owner(&id).unwrap();
        // This pid, as a server restarted as pid 1 of a container sees its
        // own pid in the status file of its previous run.
        files
            .save(&status(&id, TaskState::Processing, std::process::id()))
            .unwrap();
        assert_eq!(
            files.load(&id).unwrap().unwrap().state,
            TaskState::Processing
        );
        drop(lock); // what the kernel does when the owner dies
        let loaded = files.load(&id).unwrap().unwrap();
        assert_eq!(loaded.state, TaskState::Failed);
        assert_eq!(
            files.load_recorded(&id).unwrap().unwrap().state,
            TaskState::Processing,
            "reading changes nothing"
        );
        assert!(dir.path().join(format!("tasks/{id}.lock")).exists());
        assert_eq!(files.load(&id).unwrap().unwrap().state, TaskState::Failed);
    }

    #[test]
    fn a_held_owner_lock_means_running_whatever_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let files = StatusFiles::new(dir.path());
        let pid_elsewhere = NO_PROCESS;
        let id = uuid::Uuid::now_v7().to_string();
        // The owner's pid means nothing here, as for a process in another
        // pid namespace that shares the work dir.
        let lock = files.lock_owner(&id).unwrap();
        files
            .save(&status(&id, TaskState::Processing, pid_elsewhere))
            .unwrap();
        assert_eq!(
            files.load(&id).unwrap().unwrap().state,
            TaskState::Processing
        );
        let mut done = status(&id, TaskState::Completed, pid_elsewhere);
        done.records = 200;
        files.save(&done).unwrap();
        lock.release();
        assert!(!dir.path().join(format!("tasks/{id}.lock")).exists());
        assert_eq!(files.load(&id).unwrap(), Some(done));
    }

    #[test]
    fn progress_is_capped_until_completed() {
        let mut s = status("x", TaskState::Processing, 1);
        s.records = 200;
        assert_eq!(s.progress(), 99);
        s.state = TaskState::Completed;
        assert_eq!(s.progress(), 100);
        s.total_rows = None;
        s.state = TaskState::Processing;
        assert_eq!(s.progress(), 0);
        // An upload to a store takes the last tenth.
        s.storage = "s3".into();
        s.total_rows = Some(200);
        s.records = 100;
        assert_eq!(s.progress(), 45);
        s.state = TaskState::Uploading;
        s.bytes = 1000;
        s.uploaded_bytes = 500;
        assert_eq!(s.progress(), 95);
    }
}
