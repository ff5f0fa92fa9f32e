//! Export tasks: the handle a front end feeds ([`Export`]), the worker that
//! writes and stores the file, and task status.
//!
//! ```
//! use fluxo::config::{ExportSpec, OptionValue, Settings};
//! use fluxo::schema::{ColumnType, Value};
//! use fluxo::task::Export;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let settings = Settings::resolve(|key| match key {
//!     "local_dir" => Some(dir.path().join("out").display().to_string()),
//!     "work_dir" => Some(dir.path().join("work").display().to_string()),
//!     _ => None,
//! })
//! .unwrap();
//! let options = OptionValue::Map(vec![(
//!     "columns".into(),
//!     OptionValue::List(vec![OptionValue::Str("Id".into())]),
//! )]);
//! let spec = ExportSpec::from_options(&options, &settings).unwrap();
//! let mut export = Export::start(spec, &settings).unwrap();
//! let mut batch = export.new_batch();
//! batch.push(Value::Int(7), ColumnType::Auto).unwrap();
//! batch.end_row();
//! export.add(batch).unwrap();
//! let result = export.finish().unwrap();
//! assert_eq!(result.records, 1);
//! ```

pub mod manager;
pub mod queue;
pub mod registry;

pub mod idempotency;
pub mod metrics;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::batch::RecordBatch;
use crate::config::StorageKind;
use crate::config::{ExportSpec, Settings};
use crate::error::{ErrorKind, ExportError, Result};
use crate::schema::{Column, TextLimit};
use crate::storage::{self, local::LocalStore, ObjectMeta, Store, Watch};
use crate::writer::{self, Format};
use queue::{ByteQueue, Popped};
use registry::{now_ms, Owner, OwnerLock, StatusFiles, TaskState, TaskStatus};

/// What flows from the producer to the task's writer.
pub enum Message {
    Rows(RecordBatch),
    Sheet { name: String, columns: Vec<Column> },
}

impl Message {
    fn byte_size(&self) -> usize {
        match self {
            Self::Rows(b) => b.byte_size(),
            Self::Sheet { .. } => 0,
        }
    }
}

/// A finished export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOutcome {
    pub task_id: String,
    pub url: String,
    /// Object key (for local storage: the path inside the folder).
    pub key: String,
    pub path: Option<PathBuf>,
    pub filename: String,
    pub format: Format,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
    pub sheets: u32,
    pub duration_ms: u64,
}

/// State shared by the producer's handle and the worker.
struct Task {
    status: Mutex<TaskStatus>,
    files: StatusFiles,
    queue: ByteQueue<Message>,
    cancelled: AtomicBool,
    /// Why the producer aborted, when not a plain cancel (`Export::fail`).
    abort_reason: Mutex<Option<ExportError>>,
    outcome: Mutex<Option<Result<ExportOutcome>>>,
    finished: Condvar,
    last_saved: Mutex<Instant>,
    /// A change is waiting for [`SAVE_INTERVAL`] to pass before it is saved.
    unsaved: AtomicBool,
    /// Arenas of batches written, for the producer's next batches.
    written_arenas: Mutex<Vec<Vec<u8>>>,
    /// Released once the final status is saved.
    owner: Mutex<Option<OwnerLock>>,
    /// The thread that feeds this task and others ([`Export::start_on_this_thread`]).
    feeder: Option<std::thread::ThreadId>,
    /// The worker holds a host-wide slot for this task.
    holds_slot: AtomicBool,
    /// The producer may still add rows: not finished nor cancelled.
    taking_rows: AtomicBool,
    /// The process that runs the task. Read without a lock: a child of
    /// fork() may hold copies of mutexes some thread of its parent held.
    pid: u32,
    /// [`forks`] when the task was made: another count is a child's.
    forks: Option<u64>,
}

/// Children of fork() this process descends from, counted by a
/// `pthread_atfork` handler in each child; `None` if it could not be
/// registered. Telling a child from the process that runs a task then costs
/// an atomic read per row, where `getpid()` is a system call, 260–280 ns
/// here: a third of an `addRow()`.
fn forks() -> Option<u64> {
    static FORKS: AtomicU64 = AtomicU64::new(0);
    static COUNTED: OnceLock<bool> = OnceLock::new();
    extern "C" fn count_fork() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: registers a child handler only, which adds to an atomic: all a
    // handler may do between fork() and exec() in a multithreaded process.
    let counted =
        *COUNTED.get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(count_fork)) == 0 });
    counted.then(|| FORKS.load(Ordering::Relaxed))
}

/// Writes `bytes` back to memory and drops them from every cache: the writer
/// does it to an arena it has read, before the producer fills it again. On
/// the project's machine (an AMD EPYC, producer and writer on two cores)
/// the producer otherwise took each line back from the writer's core, which
/// cost the PHP thread more than lines from memory: evicting them saved it
/// 5–10 ms of 0.24 s in the CSV benchmark (BENCHMARKS.md, thirteenth
/// round). A hint only: the bytes stay as they are.
fn evict_from_caches(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if !bytes.is_empty() && has_clflushopt() {
        const LINE: usize = 64;
        let first_line = bytes.as_ptr().addr() & !(LINE - 1);
        for line in (first_line..bytes.as_ptr().addr() + bytes.len()).step_by(LINE) {
            // SAFETY: `clflushopt` writes back and drops the cache line at
            // `line`. Each line holds a byte of `bytes` (the first one,
            // aligned down, is in the same page as `bytes[0]`), so it is
            // mapped; and it changes no memory, as caches are coherent.
            unsafe {
                std::arch::asm!(
                    "clflushopt [{}]",
                    in(reg) bytes.as_ptr().with_addr(line),
                    options(nostack, preserves_flags, readonly)
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Whether this CPU has `clflushopt` (CPUID leaf 7, EBX bit 23), which
/// `is_x86_feature_detected!` does not know.
#[cfg(target_arch = "x86_64")]
fn has_clflushopt() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    static HAS: OnceLock<bool> = OnceLock::new();
    // SAFETY: every x86-64 CPU has `cpuid`. Leaf 7 is asked only of a CPU
    // whose highest leaf (leaf 0's answer) is 7 or more: others answer with
    // another leaf's bits. (`unsafe` until Rust 1.91, and this crate builds
    // with 1.89.)
    #[allow(unused_unsafe)]
    let ask = || unsafe { __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 23) != 0 };
    *HAS.get_or_init(ask)
}

/// How often a running task rewrites its status file with progress.
const SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// When a change of a task's status reaches its file.
#[derive(Clone, Copy)]
enum Save {
    Now,
    /// Within [`SAVE_INTERVAL`]: progress, which changes with every batch.
    Soon,
    /// With the save that follows at once: a state that lasts a moment.
    /// Nothing saves it on its own; the caller saves next.
    WithNext,
}

impl Task {
    fn status(&self) -> std::sync::MutexGuard<'_, TaskStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the status, and saves it when `save` says. False if a save
    /// failed.
    fn update(&self, save: Save, change: impl FnOnce(&mut TaskStatus)) -> bool {
        {
            let mut s = self.status();
            change(&mut s);
            s.updated_ms = now_ms();
            let due = match save {
                Save::Now => true,
                Save::Soon => self.last_saved().elapsed() >= SAVE_INTERVAL,
                Save::WithNext => false,
            };
            if !due {
                self.unsaved.store(true, Ordering::Relaxed);
                return true;
            }
        }
        self.save()
    }

    fn last_saved(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.last_saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a change not saved yet may wait for the next one; `None`
    /// if every change is saved.
    fn unsaved_for_at_most(&self) -> Option<Duration> {
        self.unsaved
            .load(Ordering::Relaxed)
            .then(|| SAVE_INTERVAL.saturating_sub(self.last_saved().elapsed()))
    }

    /// Saves the status as it is now. False if it could not be written.
    fn save(&self) -> bool {
        self.unsaved.store(false, Ordering::Relaxed);
        *self.last_saved() = Instant::now();
        let snapshot = self.status().clone();
        self.files
            .save(&snapshot)
            .inspect_err(|e| {
                tracing::warn!(task_id = %snapshot.task_id, error = %e, "status file not written");
            })
            .is_ok()
    }

    /// Keeps the arena of a batch written for a batch to come. A new arena
    /// per batch, allocated by the producer and freed by the writer, cost
    /// the PHP thread page faults: freed at once, the memory went back to
    /// the system, and the next batch faulted it in again.
    fn keep_arena(&self, arena: Vec<u8>) {
        if arena.capacity() > SPARE_ARENA_KEPT {
            return;
        }
        // Before the lock, which the producer may be waiting for.
        evict_from_caches(&arena);
        let mut kept = self.written_arenas();
        if kept.len() < ARENAS_KEPT {
            kept.push(arena);
        }
    }

    /// Lets the kept arenas go once no batch comes to use them, so that an
    /// export's handle kept after it ended (a PHP object after `finish()`)
    /// does not hold them.
    fn let_kept_arenas_go(&self) {
        self.written_arenas().clear();
    }

    /// An arena [`Task::keep_arena`] kept, if any.
    fn kept_arena(&self) -> Option<Vec<u8>> {
        self.written_arenas().pop()
    }

    fn written_arenas(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.written_arenas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Option<Result<ExportOutcome>>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the task unless it has completed: the worker drops what is
    /// queued and ends it CANCELLED (FAILED with an `abort_reason`) with no
    /// file left. False once it has completed.
    fn cancel(&self) -> bool {
        if matches!(&*self.outcome(), Some(Ok(_))) {
            return false;
        }
        self.taking_rows.store(false, Ordering::SeqCst);
        self.cancelled.store(true, Ordering::SeqCst);
        self.queue.abort();
        true
    }

    /// Cancels with `reason` as the error the task ends with. The reason is
    /// read only once cancelled: a completed task (`cancel` false) ignores it.
    fn fail(&self, reason: ExportError) -> bool {
        *self.abort_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.cancel()
    }

    /// The abort error, if the task has been cancelled.
    fn check_cancelled(&self) -> Result<()> {
        if self.cancelled.load(Ordering::SeqCst) {
            Err(self.abort_error())
        } else {
            Ok(())
        }
    }

    /// The error an aborted task ends with: the producer's reason, else cancelled.
    fn abort_error(&self) -> ExportError {
        self.abort_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(ExportError::cancelled)
    }

    /// Whether this process runs the task: not so in a child of fork().
    fn runs_here(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Whether this is a child of fork() by the fork count ([`forks`]), an
    /// atomic read where [`Task::runs_here`] is a system call. A child made
    /// without fork()'s handlers (glibc's `_Fork()`, a raw system call) is
    /// not counted: only `runs_here` tells it, which every call that sends
    /// rows or waits makes.
    fn forked_away(&self) -> bool {
        match (self.forks, forks()) {
            (Some(then), Some(now)) => then != now,
            _ => !self.runs_here(),
        }
    }

    /// Waits up to `patience` for the worker to end the task, so that the
    /// status says how it ended once the caller returns. A stopped export
    /// ends within about 100 ms: an upload checks that often.
    fn wait_ended(&self, patience: Duration) {
        let _ended = self
            .finished
            .wait_timeout_while(self.outcome(), patience, |outcome| outcome.is_none())
            .unwrap_or_else(|p| p.into_inner());
    }

    fn wait_outcome(&self) -> Result<ExportOutcome> {
        self.wait_outcome_or_give_up(None)
            .expect("only a give_up test ends the wait early")
    }

    /// The outcome once there is one; `None` if `give_up` (tested every
    /// [`queue::GIVE_UP_POLL`] meanwhile) turned true first.
    fn wait_outcome_or_give_up(
        &self,
        give_up: Option<fn() -> bool>,
    ) -> Option<Result<ExportOutcome>> {
        let mut guard = self.outcome();
        loop {
            if let Some(result) = guard.as_ref() {
                return Some(result.clone());
            }
            guard = queue::wait_unless(&self.finished, guard, give_up)?;
        }
    }
}

/// Tasks of this process, for fresh status without reading files.
fn live_tasks() -> &'static Mutex<HashMap<String, Weak<Task>>> {
    static LIVE: OnceLock<Mutex<HashMap<String, Weak<Task>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// The status of a task of any process on this host; `None` if unknown, or
/// ended longer than `fluxo.status_retention` ago (its file may wait for the
/// next hourly prune).
pub fn status(settings: &Settings, task_id: &str) -> Result<Option<TaskStatus>> {
    // A UUID is the same in capitals; the files are named in lower case.
    let task_id = &task_id.to_ascii_lowercase();
    registry::check_task_id(task_id)?;
    // A child of fork() inherits its parent's tasks frozen: only the file
    // follows them.
    let live = live_tasks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(task_id)
        .and_then(Weak::upgrade)
        .filter(|task| task.runs_here());
    match live {
        Some(task) => Ok(Some(task.status().clone())),
        None => {
            let recorded = StatusFiles::new(&settings.work_dir).load(task_id)?;
            Ok(recorded.filter(|s| !s.has_expired(settings.status_retention)))
        }
    }
}

/// How long a producer that stops its export waits for the worker to end
/// it, so that the status it reads next is the final one.
const ENDING_AFTER_STOP: Duration = Duration::from_secs(2);

/// How long exports failed at exit get to stop: an upload notices within
/// 100 ms and aborts its multipart upload.
const STOPPING_AT_EXIT: Duration = Duration::from_secs(10);

/// Waits up to `timeout` for this process's running exports, so an async
/// export is not lost when a script ends. Those still running then are
/// failed with `reason`, and get [`STOPPING_AT_EXIT`] to stop: an upload
/// is aborted, where it used to be abandoned with its parts stored. The
/// number that were still running.
pub fn wait_for_running(timeout: Duration, reason: &str) -> usize {
    let running = manager::wait_idle(timeout);
    if running > 0 {
        let tasks: Vec<Arc<Task>> = live_tasks()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .filter(|t| t.runs_here())
            .collect();
        for task in tasks {
            task.fail(ExportError::export(reason));
        }
        manager::wait_idle(STOPPING_AT_EXIT);
    }
    running
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// `finish_async()` was called: no more rows; `finish()` waits.
    Closed,
    Finished,
    Cancelled,
}

/// See [`Export::give_up_when`]: the test, and the reason the export fails with.
type GiveUp = (fn() -> bool, &'static str);

/// One export as its producer sees it: add rows, then finish or cancel.
/// Dropping an unfinished export cancels it.
pub struct Export {
    task: Arc<Task>,
    task_id: String,
    columns: Vec<Column>,
    format: Format,
    replace_invalid_utf8: bool,
    text_limit: Option<TextLimit>,
    /// Sheets asked for so far (XLSX), and those they continue on, to
    /// refuse a name twice at once.
    sheet_names: Vec<String>,
    /// Rows the sheet being written got (XLSX): the last of `sheet_names`.
    sheet_rows: u64,
    rows: u64,
    /// Bytes of the last batch: the next one is made that big up front, so
    /// that filling it does not reallocate and copy.
    last_batch_bytes: usize,
    phase: Phase,
    give_up: Option<GiveUp>,
    /// Why the task ended if the export is dropped while still open.
    abandoned: &'static str,
    /// Rows of small batches (`addRow()`, a gRPC batch of a few rows) not
    /// yet sent: sending each on its own woke the writer for every row,
    /// 3–4 µs a row on the PHP thread. With when the first of them came.
    gathered: Option<(RecordBatch, Instant)>,
    /// The arena of the last small batch gathered, for the next one.
    spare_arena: Vec<u8>,
}

/// A batch smaller than this (a few rows) is gathered with the ones around
/// it. The gathered rows are sent once they reach [`GATHERED_SENT_AT`], or
/// when a batch comes [`GATHERED_AT_MOST`] after the first of them, and
/// before anything sent after them. Until then, the status's progress does
/// not count them.
const SMALL_BATCH: usize = 1 << 10;
const GATHERED_SENT_AT: usize = 64 << 10;
const GATHERED_AT_MOST: Duration = Duration::from_millis(200);
/// The largest spare arena kept: one grown for a big batch is let go.
const SPARE_ARENA_KEPT: usize = 256 << 10;
/// How many arenas of batches written are kept for the next ones: the
/// writer hands them back about as fast as the producer takes them.
const ARENAS_KEPT: usize = 4;

impl Export {
    /// Creates the task (status QUEUED) and hands it to a worker.
    pub fn start(spec: ExportSpec, settings: &Settings) -> Result<Self> {
        Self::start_fed_by(spec, settings, None)
    }

    /// Like [`Export::start`], for a front end whose one thread feeds every
    /// export it starts (PHP's request thread). That thread blocks in
    /// [`Export::add`] on a QUEUED export whose buffer is full; when the
    /// exports holding the slots are its own and still take rows, no slot
    /// would ever be freed. So this export runs past
    /// `fluxo.max_concurrent_tasks` while another export of the same thread
    /// holds a slot and takes rows: the thread's exports run one producer's
    /// rows between them.
    pub fn start_on_this_thread(spec: ExportSpec, settings: &Settings) -> Result<Self> {
        Self::start_fed_by(spec, settings, Some(std::thread::current().id()))
    }

    fn start_fed_by(
        spec: ExportSpec,
        settings: &Settings,
        feeder: Option<std::thread::ThreadId>,
    ) -> Result<Self> {
        crate::telemetry::init(settings);
        // A folder or store that cannot work fails now, not after every row is written.
        let local_dir = spec.local_dir.as_ref().unwrap_or(&settings.local_dir);
        if spec.storage == StorageKind::Local || settings.upload.keep_local {
            storage::local::writable(local_dir)?;
        } else {
            std::fs::create_dir_all(local_dir)
                .map_err(|e| ExportError::io("cannot create the export folder", local_dir, e))?;
        }
        let store = storage::open(spec.storage, settings, local_dir, spec.url_expires)?;
        sweep_spool(settings);
        let files = StatusFiles::new(&settings.work_dir);
        let retention = settings.status_retention;
        if files.prune_due(retention) {
            // A folder of past statuses takes a while to list: not on the
            // time of the export that happens to start first in the hour.
            let files = files.clone();
            let decided = std::time::SystemTime::now();
            let _ = std::thread::Builder::new()
                .name("fluxo-prune".into())
                .spawn(move || files.prune_expired(retention, decided));
        }
        let task_id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let status = TaskStatus {
            task_id: task_id.clone(),
            state: TaskState::Queued,
            format: spec.format.extension().into(),
            filename: spec.filename_for(&task_id),
            records: 0,
            total_rows: spec.total_rows,
            bytes: 0,
            sheets: 0,
            url: None,
            path: None,
            sha256: None,
            error: None,
            error_kind: None,
            owner_pid: std::process::id(),
            created_ms: now,
            updated_ms: now,
            storage: spec.storage.name().into(),
            key: None,
            uploaded_bytes: 0,
        };
        let owner = files.lock_owner(&task_id)?;
        files.save(&status)?;
        let task = Arc::new(Task {
            status: Mutex::new(status),
            files,
            queue: ByteQueue::new(settings.buffer_size),
            cancelled: AtomicBool::new(false),
            abort_reason: Mutex::new(None),
            outcome: Mutex::new(None),
            finished: Condvar::new(),
            last_saved: Mutex::new(Instant::now()),
            unsaved: AtomicBool::new(false),
            written_arenas: Mutex::new(Vec::new()),
            owner: Mutex::new(Some(owner)),
            feeder,
            holds_slot: AtomicBool::new(false),
            taking_rows: AtomicBool::new(true),
            pid: std::process::id(),
            forks: forks(),
        });
        live_tasks()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.clone(), Arc::downgrade(&task));
        let export = Self {
            task: task.clone(),
            task_id,
            columns: spec.columns.clone(),
            format: spec.format,
            replace_invalid_utf8: spec.replace_invalid_utf8,
            text_limit: spec.text_limit(),
            sheet_names: vec![spec.sheet.clone()],
            sheet_rows: 0,
            rows: 0,
            last_batch_bytes: 0,
            phase: Phase::Open,
            give_up: None,
            abandoned: "the export was abandoned before it was finished",
            gathered: None,
            spare_arena: Vec::new(),
        };
        let settings = settings.clone();
        manager::submit(move || run(task, spec, settings, store));
        Ok(export)
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Columns of the sheet being written: what a row must match.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Data rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// An empty batch shaped for the current columns.
    pub fn new_batch(&mut self) -> RecordBatch {
        let arena = match std::mem::take(&mut self.spare_arena) {
            spare if spare.capacity() > 0 => spare,
            _ => self.task.kept_arena().unwrap_or_default(),
        };
        // A new arena has room for an eighth more than the last batch. One
        // used before is not grown for that room while the last batch fits:
        // `reserve` would double it, and the arenas kept grew batch by batch
        // (2 MB more peak RSS at 5M rows).
        let capacity = if arena.capacity() > 0 && arena.capacity() >= self.last_batch_bytes {
            0
        } else {
            (self.last_batch_bytes + self.last_batch_bytes / 8).max(64 * 1024)
        };
        let batch = RecordBatch::new_in(arena, self.columns.len(), capacity)
            .with_text_limit(self.text_limit);
        if self.replace_invalid_utf8 {
            batch.replacing_invalid_utf8()
        } else {
            batch
        }
    }

    /// Refuses a call from a child of fork(): no thread of the child runs
    /// the task, so its rows would go nowhere and its outcome never come.
    fn ensure_here(&self) -> Result<()> {
        if self.task.runs_here() {
            return Ok(());
        }
        Err(self.belongs_elsewhere())
    }

    fn belongs_elsewhere(&self) -> ExportError {
        ExportError::export(format!(
            "export {} belongs to process {}: a child of fork() cannot use it",
            self.task_id, self.task.pid
        ))
    }

    fn ensure_open(&self) -> Result<()> {
        self.ensure_here()?;
        self.ensure_taking_rows()
    }

    /// [`Export::ensure_open`] for the calls made per row (rows gathered
    /// into a batch): a child is told by the fork count, without the
    /// system call ([`Task::forked_away`]).
    fn ensure_open_per_row(&self) -> Result<()> {
        if self.task.forked_away() {
            return Err(self.belongs_elsewhere());
        }
        self.ensure_taking_rows()
    }

    fn ensure_taking_rows(&self) -> Result<()> {
        match self.phase {
            Phase::Open => Ok(()),
            // An export that stopped on an error says so again, not that it finished.
            Phase::Finished => Err(match &*self.task.outcome() {
                Some(Err(e)) => ExportError::new(
                    e.kind,
                    format!("export {} failed: {}", self.task_id, e.message),
                ),
                _ => ExportError::export(format!("export {} is already finished", self.task_id)),
            }),
            Phase::Closed => Err(ExportError::export(format!(
                "export {} is already finished: finishAsync() was called (finish() waits for its file)",
                self.task_id
            ))),
            Phase::Cancelled => Err(ExportError::cancelled()),
        }
    }

    fn send(&mut self, message: Message) -> Result<()> {
        self.ensure_open()?;
        let bytes = message.byte_size();
        match self
            .task
            .queue
            .push(message, bytes, self.give_up.map(|(test, _)| test))
        {
            Ok(()) => Ok(()),
            Err(queue::Refused::GaveUp) => Err(self.give_up_now()),
            Err(queue::Refused::Aborted) => Err(self.worker_stopped()),
        }
    }

    /// The worker stopped early: its outcome says why.
    fn worker_stopped(&mut self) -> ExportError {
        self.phase = Phase::Finished;
        self.task
            .wait_outcome()
            .err()
            .unwrap_or_else(|| ExportError::export("the export ended before all rows were written"))
    }

    /// Makes the producer stop waiting (for room in the queue, for the
    /// outcome) once `test` is true, and fail the export with `reason`: a
    /// PHP script whose time limit ran out must get back to PHP, which then
    /// ends it, instead of being killed inside the wait.
    pub fn give_up_when(&mut self, test: fn() -> bool, reason: &'static str) {
        self.give_up = Some((test, reason));
    }

    /// What the status says (CANCELLED) if this export is dropped while
    /// still open: a front end names what that means for its callers.
    pub fn when_abandoned(&mut self, reason: &'static str) {
        self.abandoned = reason;
    }

    fn give_up_reason(&self) -> &'static str {
        self.give_up.map_or("gave up waiting", |(_, reason)| reason)
    }

    fn give_up_now(&mut self) -> ExportError {
        let error = ExportError::export(format!(
            "export {} stopped: {}",
            self.task_id,
            self.give_up_reason()
        ));
        self.task.fail(error.clone());
        // Briefly: PHP kills a script hard_timeout (2 s) after its time
        // limit, shutdown functions included.
        self.task.wait_ended(ENDING_AFTER_STOP / 4);
        self.phase = Phase::Cancelled;
        error
    }

    /// Queues a batch for the writer; blocks while `fluxo.buffer_size` bytes
    /// are already waiting. Returns the running row count.
    pub fn add(&mut self, batch: RecordBatch) -> Result<u64> {
        let rows = batch.rows() as u64;
        if batch.columns() != self.columns.len() {
            return Err(ExportError::invalid_row(format!(
                "batch rows have {} cells, the sheet has {} columns",
                batch.columns(),
                self.columns.len()
            )));
        }
        if rows == 0 {
            self.ensure_open()?;
        } else if batch.byte_size() < SMALL_BATCH && batch.text_limit() == self.text_limit {
            self.ensure_open_per_row()?;
            // What sending would have told: the export failed meanwhile.
            if self.task.queue.is_aborted() {
                return Err(self.worker_stopped());
            }
            let text_limit = self.text_limit;
            let (gathered, since) = self.gathered.get_or_insert_with(|| {
                let arena = self.task.kept_arena().unwrap_or_default();
                let rows =
                    RecordBatch::new_in(arena, batch.columns(), GATHERED_SENT_AT + SMALL_BATCH);
                (rows.with_text_limit(text_limit), Instant::now())
            });
            gathered.append(&batch);
            let due =
                gathered.byte_size() >= GATHERED_SENT_AT || since.elapsed() >= GATHERED_AT_MOST;
            let arena = batch.into_arena();
            if arena.capacity() <= SPARE_ARENA_KEPT {
                self.spare_arena = arena;
            }
            if due {
                self.send_gathered()?;
            }
        } else {
            self.send_gathered()?;
            self.last_batch_bytes = batch.byte_size();
            self.send(Message::Rows(batch))?;
        }
        self.rows += rows;
        self.sheet_rows += rows;
        Ok(self.rows)
    }

    /// Sends the rows of small batches gathered so far, ahead of anything
    /// sent after them.
    fn send_gathered(&mut self) -> Result<()> {
        match self.gathered.take() {
            Some((gathered, _)) => self.send(Message::Rows(gathered)),
            None => Ok(()),
        }
    }

    /// Starts another sheet (XLSX only); `columns` default to the current ones.
    pub fn start_sheet(&mut self, name: &str, columns: Option<Vec<Column>>) -> Result<()> {
        self.ensure_open()?;
        if self.format != Format::Xlsx {
            return Err(ExportError::invalid_option(
                "sheet(): a CSV file has one sheet; use format xlsx for several",
            ));
        }
        let columns = columns.unwrap_or_else(|| self.columns.clone());
        let mut taken = self.sheet_names.clone();
        let current = self.sheet_names.last().expect("the first sheet is named");
        crate::writer::xlsx::add_overflow_names(current, self.sheet_rows, &mut taken);
        crate::writer::xlsx::check_new_sheet(
            name,
            columns.len(),
            taken.iter().map(String::as_str),
        )?;
        self.send_gathered()?;
        self.send(Message::Sheet {
            name: name.to_owned(),
            columns: columns.clone(),
        })?;
        self.columns = columns;
        taken.push(name.to_owned());
        self.sheet_names = taken;
        self.sheet_rows = 0;
        Ok(())
    }

    /// No more rows: the task completes in the background.
    pub fn finish_async(&mut self) -> Result<String> {
        self.ensure_open()?;
        // Without waiting for room, as `finishAsync()` never waited: a
        // failed export says so in its outcome and status, as before.
        if let Some((gathered, _)) = self.gathered.take() {
            let bytes = gathered.byte_size();
            let _ = self
                .task
                .queue
                .push_without_waiting(Message::Rows(gathered), bytes);
        }
        self.phase = Phase::Closed;
        self.task.taking_rows.store(false, Ordering::SeqCst);
        self.task.queue.close();
        Ok(self.task_id.clone())
    }

    /// No more rows: waits for the file and returns where it is; after
    /// [`Export::finish_async`], waits for that file.
    pub fn finish(&mut self) -> Result<ExportOutcome> {
        self.ensure_here()?;
        let in_background = self.phase == Phase::Closed;
        if !in_background {
            self.finish_async()?;
        }
        self.phase = Phase::Finished;
        match self
            .task
            .wait_outcome_or_give_up(self.give_up.map(|(test, _)| test))
        {
            Some(outcome) => outcome,
            // finish_async() promised the file: it is still made.
            None if in_background => Err(ExportError::export(format!(
                "stopped waiting for export {}: {}; it goes on in the background",
                self.task_id,
                self.give_up_reason()
            ))),
            None => Err(self.give_up_now()),
        }
    }

    /// Abandons the export: no file is left. Does nothing once the task has
    /// completed. Returns at once: the worker ends the task within about
    /// 100 ms.
    pub fn cancel(&mut self) {
        if self.phase != Phase::Cancelled && self.task.cancel() {
            self.phase = Phase::Cancelled;
        }
    }

    /// [`Export::cancel`], returning once the status says CANCELLED (or
    /// after [`ENDING_AFTER_STOP`], if no worker thread was free to start
    /// the task): a script that reads the status next sees how it ended.
    pub fn cancel_and_wait(&mut self) {
        let open = self.phase != Phase::Cancelled;
        self.cancel();
        // A child of fork() has no worker to wait for.
        if open && self.phase == Phase::Cancelled && self.task.runs_here() {
            self.task.wait_ended(ENDING_AFTER_STOP);
        }
    }

    /// A handle that cancels this export from another thread, while its
    /// producer waits in [`Export::finish`]: a gRPC client that goes away
    /// after its last batch. An upload in progress is stopped and aborted.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.task.clone())
    }
}

/// See [`Export::canceller`].
pub struct Canceller(Arc<Task>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Cancels like [`Export::fail`]: the task ends FAILED with `reason`.
    pub fn fail(&self, reason: ExportError) {
        self.0.fail(reason);
    }
}

impl Export {
    /// Abandons the export like [`Export::cancel`], but the task ends FAILED
    /// with `reason` (a front end's protocol or data error). No file is left.
    pub fn fail(&mut self, reason: ExportError) {
        if self.phase != Phase::Cancelled && self.task.fail(reason) {
            self.phase = Phase::Cancelled;
        }
    }
}

/// States of the tasks this process runs now with status files in
/// `work_dir` (for gauges and queue limits): exports that share a work dir
/// share its slots and its queue.
pub fn live_states(work_dir: &std::path::Path) -> Vec<TaskState> {
    let files = StatusFiles::new(work_dir);
    live_tasks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .filter(|t| t.files == files)
        .map(|t| t.status().state)
        .collect()
}

impl Drop for Export {
    fn drop(&mut self) {
        // In a child of fork() the parent's export is not this process's to
        // cancel, and its locks may be copies held for ever.
        if self.phase == Phase::Open && self.task.runs_here() {
            self.task
                .fail(ExportError::new(ErrorKind::Cancelled, self.abandoned));
        }
    }
}

/// The slot a running task holds, if it needed one.
struct SlotHeld<'a> {
    task: &'a Task,
    _slot: Option<manager::Slot>,
}

impl Drop for SlotHeld<'_> {
    fn drop(&mut self) {
        self.task.holds_slot.store(false, Ordering::SeqCst);
    }
}

/// Whether another task of this task's feeding thread holds a slot and
/// takes rows: then that thread may be blocked on this task's full queue,
/// and the slot would never be freed ([`Export::start_on_this_thread`]).
fn sibling_feeds_a_slot(task: &Task) -> bool {
    let Some(feeder) = task.feeder else {
        return false;
    };
    live_tasks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .any(|other| {
            !std::ptr::eq(Arc::as_ptr(&other), task)
                && other.feeder == Some(feeder)
                && other.holds_slot.load(Ordering::SeqCst)
                && other.taking_rows.load(Ordering::SeqCst)
        })
}

/// Waits for a host-wide slot while the task is QUEUED.
fn wait_for_slot<'a>(task: &'a Task, settings: &Settings) -> Result<SlotHeld<'a>> {
    let started = Instant::now();
    loop {
        task.check_cancelled()?;
        let slot = manager::try_acquire_slot(&settings.work_dir, settings.max_concurrent_tasks);
        if matches!(slot, Ok(None)) && sibling_feeds_a_slot(task) {
            return Ok(SlotHeld { task, _slot: None });
        }
        match slot {
            Ok(Some(slot)) => {
                task.holds_slot.store(true, Ordering::SeqCst);
                return Ok(SlotHeld {
                    task,
                    _slot: Some(slot),
                });
            }
            Ok(None) if started.elapsed() < settings.queue_timeout => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) => {
                return Err(ExportError::busy(format!(
                    "waited {} s for a free export slot (fluxo.max_concurrent_tasks = {}); \
                     raise fluxo.queue_timeout or the limit",
                    settings.queue_timeout.as_secs(),
                    settings.max_concurrent_tasks
                )))
            }
            Err(e) => {
                return Err(ExportError::io(
                    "cannot take an export slot in",
                    &settings.work_dir,
                    e,
                ))
            }
        }
    }
}

/// Removes a failed export's spool file, or keeps it for
/// `fluxo.temp_retention` when the upload failed (the file is complete and
/// may be worth inspecting).
fn discard_spool(spool: &std::path::Path, keep_for_retention: bool) {
    if keep_for_retention {
        let mut kept = spool.as_os_str().to_owned();
        kept.push(".failed");
        if std::fs::rename(spool, &kept).is_ok() {
            return;
        }
    }
    let _ = std::fs::remove_file(spool);
}

/// Cleans `{work_dir}/spool`: ends the tasks whose process died before
/// they finished (their status is saved FAILED with the reason, their spool
/// files are deleted) and deletes failed uploads' files older than
/// `fluxo.temp_retention`. Returns the ids of the tasks it ended. Runs when
/// a server starts and when any export starts; it reads the spool folder
/// only, which holds unfinished work, not the status of every past task.
pub fn sweep_spool(settings: &Settings) -> Vec<String> {
    let dir = settings.work_dir.join("spool");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let files = StatusFiles::new(&settings.work_dir);
    let mut ended = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "failed") {
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| !registry::is_younger(t, settings.upload.temp_retention));
            if expired {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        // Spool files are named `{task_id}.…`.
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.split('.').next()) else {
            continue;
        };
        if ended.iter().any(|e| e == id) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        // On NFS a process may take its own lock again: its live tasks are
        // known without one.
        let own_live = live_tasks()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|t| t.strong_count() > 0);
        if own_live {
            continue;
        }
        let Ok(Some((mut status, Owner::Gone(lock)))) = files.load_with_owner(id) else {
            continue;
        };
        registry::mark_orphan_failed(&mut status);
        status.updated_ms = now_ms();
        if let Err(e) = files.save(&status) {
            tracing::warn!(task_id = %id, error = %e, "orphaned task's status not saved");
        }
        let _ = std::fs::remove_file(&path);
        if let Some(lock) = lock {
            lock.release();
        }
        tracing::warn!(task_id = %id, owner_pid = status.owner_pid, "the process of a task died: task FAILED, spool file removed");
        ended.push(id.to_owned());
    }
    ended
}

/// Writes and stores one export: runs on a pool thread.
fn run(task: Arc<Task>, spec: ExportSpec, settings: Settings, store: Box<dyn Store>) {
    let started = Instant::now();
    let task_id = task.status().task_id.clone();
    let spool = settings
        .work_dir
        .join("spool")
        .join(format!("{task_id}.{}", spec.format.extension()));
    // The lines logged while it runs (an upload's retries) name the task.
    // At ERROR, the span is on whenever any of fluxo's lines are: an INFO
    // span is filtered out at the default level, warn.
    let span = tracing::error_span!("export", task_id = %task_id);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        span.in_scope(|| write_and_store(&task, &spec, &settings, &spool, store.as_ref()))
    }))
    .unwrap_or_else(|panic| Err(ExportError::from_panic(panic.as_ref(), "the export worker")));
    task.let_kept_arenas_go();
    let result = result.map(|mut outcome| {
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        outcome
    });
    let saved = match &result {
        Ok(o) => {
            tracing::info!(task_id = %task_id, records = o.records, bytes = o.bytes, duration_ms = o.duration_ms, "export completed");
            task.update(Save::Now, |s| {
                s.state = TaskState::Completed;
                s.records = o.records;
                s.bytes = o.bytes;
                s.sheets = o.sheets;
                s.url = Some(o.url.clone());
                s.key = Some(o.key.clone());
                s.path = o.path.as_ref().map(|p| p.display().to_string());
                s.sha256 = Some(o.sha256.clone());
            })
        }
        Err(e) => {
            discard_spool(
                &spool,
                e.kind == ErrorKind::Storage && store.kind() != StorageKind::Local,
            );
            let cancelled = e.kind == ErrorKind::Cancelled;
            if cancelled {
                tracing::info!(task_id = %task_id, reason = %e, "export cancelled");
            } else {
                tracing::warn!(task_id = %task_id, error = %e, "export failed");
            }
            task.update(Save::Now, |s| {
                s.state = if cancelled {
                    TaskState::Cancelled
                } else {
                    TaskState::Failed
                };
                s.error = Some(e.message.clone());
                s.error_kind = Some(e.kind);
            })
        }
    };
    metrics::task_ended(
        &result
            .as_ref()
            .map(|o| (o.bytes, Duration::from_millis(o.duration_ms)))
            .map_err(Clone::clone),
    );
    if saved {
        // Out of the live list before the outcome is known: whoever asks
        // once `finish()` has returned reads the final status file, as any
        // other process does.
        end_ownership(&task, &task_id);
    }
    *task.outcome() = Some(result);
    task.finished.notify_all();
    // A producer blocked on a full queue must learn that the task ended.
    task.queue.abort();
    if !saved {
        save_final_status_late(&task, &task_id);
    }
}

/// How long a final status that could not be written (a full disk) is
/// tried again.
const FINAL_SAVE_PATIENCE: Duration = Duration::from_secs(600);

/// The final status could not be written: until it is, the task stays in
/// the live list, so that this process answers with it, and keeps its
/// owner lock, so that other processes read it as still running rather
/// than as dead. Tries again every second for [`FINAL_SAVE_PATIENCE`].
fn save_final_status_late(task: &Task, task_id: &str) {
    tracing::error!(task_id = %task_id, "the final status could not be written to fluxo.work_dir; trying again");
    let started = Instant::now();
    while started.elapsed() < FINAL_SAVE_PATIENCE {
        std::thread::sleep(Duration::from_secs(1));
        if task.save() {
            break;
        }
    }
    end_ownership(task, task_id);
}

/// The task is no longer this process's to answer for: its file says.
fn end_ownership(task: &Task, task_id: &str) {
    if let Some(owner) = task.owner.lock().unwrap_or_else(|p| p.into_inner()).take() {
        owner.release();
    }
    live_tasks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(task_id);
}

/// With `fluxo.public_base_url` and `fluxo.download_secret` set, a local
/// file's URL is an HMAC-signed one served by the server.
fn signed_local_url(
    settings: &Settings,
    spec: &ExportSpec,
    store: &dyn Store,
    key: &str,
) -> Option<String> {
    let server = &settings.server;
    // The server serves files from fluxo.local_dir only.
    let own_dir = spec
        .local_dir
        .as_ref()
        .is_none_or(|d| *d == settings.local_dir);
    if store.kind() != StorageKind::Local
        || !own_dir
        || server.public_base_url.is_empty()
        || server.download_secret.is_empty()
    {
        return None;
    }
    let ttl = spec.url_expires.unwrap_or(settings.upload.url_expires);
    let expires = now_ms() / 1000 + ttl.as_secs();
    Some(storage::signed::sign_url(
        &server.public_base_url,
        server.download_secret.expose().as_bytes(),
        key,
        expires,
    ))
}

fn write_and_store(
    task: &Task,
    spec: &ExportSpec,
    settings: &Settings,
    spool: &std::path::Path,
    store: &dyn Store,
) -> Result<ExportOutcome> {
    let _slot = wait_for_slot(task, settings)?;
    task.update(Save::Now, |s| s.state = TaskState::Processing);
    let spool_dir = spool.parent().expect("spool file is in a folder");
    std::fs::create_dir_all(spool_dir)
        .map_err(|e| ExportError::io("cannot create folder", spool_dir, e))?;

    let mut writer = writer::open(spec.format, spool, &spec.csv, &spec.xlsx)?;
    writer.begin_sheet(&spec.sheet, &spec.columns)?;
    let mut records = 0u64;
    loop {
        // Progress is saved at most every SAVE_INTERVAL (saving whenever the
        // writer had caught up saved after almost every batch: a file
        // written and renamed per 1,000 rows), and a producer that pauses (a
        // slow query) finds it saved one interval after the last save at
        // most.
        let message = match task.queue.pop_within(task.unsaved_for_at_most()) {
            Popped::Item(message) => message,
            Popped::Nothing => {
                task.save();
                continue;
            }
            Popped::Ended => break,
        };
        match message {
            Message::Rows(batch) => {
                writer.write_batch(&batch)?;
                records += batch.rows() as u64;
                metrics::add_records(batch.rows() as u64);
                let (bytes, sheets) = writer.written_so_far();
                task.update(Save::Soon, |s| {
                    s.records = records;
                    s.bytes = bytes;
                    s.sheets = sheets;
                });
                task.keep_arena(batch.into_arena());
            }
            Message::Sheet { name, columns } => writer.begin_sheet(&name, &columns)?,
        }
    }
    task.check_cancelled()?;
    let written = writer.finish()?;
    // A producer that went away while the file was being finished.
    task.check_cancelled()?;
    let object_store = store.kind() != StorageKind::Local;
    // Local storage moves the file in a millisecond or two and saves the
    // outcome right after: saving this state as well took 0.3–0.6 ms of the
    // 2–2.5 ms that finish() waits for the writer (strace, BENCHMARKS.md).
    // A copy to another filesystem, which takes longer, reports its start
    // (`LocalStore::put_file`), and that is saved at once.
    let uploading = if object_store {
        Save::Now
    } else {
        Save::WithNext
    };
    task.update(uploading, |s| {
        s.state = TaskState::Uploading;
        s.records = records;
        s.bytes = written.bytes;
    });

    let (task_id, filename) = {
        let s = task.status();
        (s.task_id.clone(), s.filename.clone())
    };
    let key = storage::object_key(
        &settings.key_prefix,
        (now_ms() / 1000) as i64,
        &task_id,
        &filename,
    );
    let meta = ObjectMeta::new(spec.content_type(), &filename, &written.sha256);
    let report_save = if object_store { Save::Soon } else { Save::Now };
    let report = |sent: u64| {
        task.update(report_save, |s| s.uploaded_bytes = sent);
    };
    // With keep_local the local copy is made first and uploaded from: a
    // copy that fails then fails the export before any object exists.
    let kept = if object_store && settings.upload.keep_local {
        let local = LocalStore::new(spec.local_dir.as_ref().unwrap_or(&settings.local_dir));
        local.put_file(spool, &key, &meta, &Watch::NONE)?.path
    } else {
        None
    };
    let upload_started = Instant::now();
    let watch = Watch {
        progress: &report,
        stopped: &|| task.check_cancelled().is_err(),
    };
    let mut stored = match store.put_file(kept.as_deref().unwrap_or(spool), &key, &meta, &watch) {
        Ok(stored) => stored,
        Err(e) => {
            // Stopped by the producer: the export ends as it said.
            let e = task.check_cancelled().err().unwrap_or(e);
            // Back to the spool, where a failed upload's file is kept for
            // fluxo.temp_retention; no local result of a failed export.
            if let Some(path) = &kept {
                if std::fs::rename(path, spool).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                // The task's own folder, empty now (a folder of its key).
                if let Some(folder) = path.parent() {
                    let _ = std::fs::remove_dir(folder);
                }
            }
            return Err(e);
        }
    };
    metrics::observe_upload(upload_started.elapsed());
    if let Some(url) = signed_local_url(settings, spec, store, &stored.key) {
        stored.url = url;
    }
    if object_store {
        match kept {
            Some(path) => stored.path = Some(path),
            None => {
                let _ = std::fs::remove_file(spool);
            }
        }
    }
    Ok(ExportOutcome {
        task_id,
        url: stored.url,
        key: stored.key,
        path: stored.path,
        filename,
        format: spec.format,
        records,
        bytes: written.bytes,
        sha256: written.sha256,
        sheets: written.sheets,
        duration_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_sweep_ends_orphans_and_spares_live_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve_with_env(
            |key| (key == "work_dir").then(|| dir.path().display().to_string()),
            |_| None,
        )
        .unwrap();
        let files = StatusFiles::new(dir.path());
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let (orphan, live) = (
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
        );
        // Both name this pid; the orphan's process let go of its lock, as
        // a killed server restarted with the same pid finds it.
        drop(files.lock_owner(&orphan).unwrap());
        let _running = files.lock_owner(&live).unwrap();
        for id in [&orphan, &live] {
            files
                .save(&registry::tests::status(
                    id,
                    TaskState::Processing,
                    std::process::id(),
                ))
                .unwrap();
        }
        for name in [format!("{orphan}.csv"), format!("{live}.xlsx")] {
            std::fs::write(spool.join(name), b"rows").unwrap();
        }

        assert_eq!(sweep_spool(&settings), vec![orphan.clone()]);
        assert!(!spool.join(format!("{orphan}.csv")).exists());
        assert!(!dir.path().join(format!("tasks/{orphan}.lock")).exists());
        assert!(spool.join(format!("{live}.xlsx")).exists());
        let ended = files.load_recorded(&orphan).unwrap().unwrap();
        assert_eq!(ended.state, TaskState::Failed, "saved, not only reported");
        assert!(ended
            .error
            .unwrap()
            .contains(&format!("process {}", std::process::id())));
        assert_eq!(
            files.load(&live).unwrap().unwrap().state,
            TaskState::Processing
        );
        assert!(sweep_spool(&settings).is_empty(), "nothing left to end");
    }

    #[test]
    fn the_spool_sweep_deletes_failed_uploads_past_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve_with_env(
            |key| match key {
                "work_dir" => Some(dir.path().display().to_string()),
                "temp_retention" => Some("3600".into()),
                _ => None,
            },
            |_| None,
        )
        .unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let dated = |name: &str, age: Duration| {
            let path = spool.join(name);
            let file = std::fs::File::create(&path).unwrap();
            file.set_modified(std::time::SystemTime::now() - age)
                .unwrap();
            path
        };
        let expired = dated("a.csv.failed", Duration::from_secs(3601));
        let kept = dated("b.csv.failed", Duration::from_secs(3500));

        assert!(sweep_spool(&settings).is_empty(), "no task ended");
        assert!(!expired.exists(), "older than fluxo.temp_retention");
        assert!(kept.exists(), "within fluxo.temp_retention");
    }

    fn one_slot_settings(dir: &std::path::Path) -> Settings {
        Settings::resolve_with_env(
            |key| match key {
                "work_dir" => Some(dir.join("work").display().to_string()),
                "local_dir" => Some(dir.join("out").display().to_string()),
                "max_concurrent_tasks" => Some("1".into()),
                "queue_timeout" => Some("1".into()),
                "buffer_size" => Some("65536".into()),
                _ => None,
            },
            |_| None,
        )
        .unwrap()
    }

    fn one_column_spec(settings: &Settings) -> ExportSpec {
        let options = crate::config::OptionValue::Map(vec![(
            "columns".into(),
            crate::config::OptionValue::List(vec![crate::config::OptionValue::Str("n".into())]),
        )]);
        ExportSpec::from_options(&options, settings).unwrap()
    }

    /// Feeds `exports` in turn, a batch of 1,000 rows each, 50 times: far
    /// more than one export's buffer holds.
    fn feed_in_turn(exports: &mut [Export]) -> Result<()> {
        for round in 0..50 {
            for export in exports.iter_mut() {
                let mut batch = export.new_batch();
                for n in 0..1000 {
                    let value = crate::schema::Value::Int(round * 1000 + n);
                    batch.push(value, crate::schema::ColumnType::Auto).unwrap();
                    batch.end_row();
                }
                export.add(batch)?;
            }
        }
        Ok(())
    }

    /// A full disk as the export ends: the final status cannot be written.
    /// This process still answers with it, and the file gets it once it can
    /// be written; it used to stay UPLOADING for as long as the process ran.
    #[test]
    fn a_final_status_that_cannot_be_written_is_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut export = Export::start(one_column_spec(&settings), &settings).unwrap();
        let id = export.task_id().to_owned();
        feed_in_turn(std::slice::from_mut(&mut export)).unwrap();
        // The status file's name taken by a folder: a save cannot land.
        let file = settings.work_dir.join(format!("tasks/{id}.json"));
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir_all(file.join("in-the-way")).unwrap();

        assert_eq!(export.finish().unwrap().records, 50_000);
        let answered = status(&settings, &id).unwrap().unwrap();
        assert_eq!(
            answered.state,
            TaskState::Completed,
            "this process answers with it"
        );

        std::fs::remove_dir_all(&file).unwrap();
        let files = StatusFiles::new(&settings.work_dir);
        let mut recorded = None;
        for _ in 0..100 {
            recorded = files.load(&id).unwrap().map(|s| s.state);
            if recorded == Some(TaskState::Completed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            recorded,
            Some(TaskState::Completed),
            "written once it could be"
        );
    }

    #[test]
    fn one_thread_feeding_more_exports_than_slots_does_not_wait_for_itself() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut exports: Vec<Export> = (0..3)
            .map(|_| Export::start_on_this_thread(one_column_spec(&settings), &settings).unwrap())
            .collect();
        feed_in_turn(&mut exports).unwrap();
        for mut export in exports {
            assert_eq!(export.finish().unwrap().records, 50_000);
            let shouted = status(&settings, &export.task_id().to_uppercase()).unwrap();
            assert_eq!(
                shouted.unwrap().state,
                TaskState::Completed,
                "a UUID in capitals"
            );
        }
    }

    #[test]
    fn a_running_export_shows_the_bytes_written_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        for format in [Format::Csv, Format::Xlsx] {
            let mut spec = one_column_spec(&settings);
            spec.format = format;
            let mut export = Export::start(spec, &settings).unwrap();
            // XLSX: 100,000 rows make several 512 KiB pieces of sheet XML
            // to deflate, more than are ever in flight, so some are written.
            let feeds = if format == Format::Xlsx { 2 } else { 1 };
            for _ in 0..feeds {
                feed_in_turn(std::slice::from_mut(&mut export)).unwrap();
            }
            let id = export.task_id().to_owned();
            let caught_up = (0..1000)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    status(&settings, &id).unwrap().unwrap()
                })
                .find(|s| s.records == feeds * 50_000)
                .expect("the writer takes every row");
            assert_eq!(caught_up.state, TaskState::Processing, "{format:?}");
            assert_eq!(caught_up.sheets, 1, "{format:?}");
            let done = export.finish().unwrap();
            // 50,000 numbers make 290 KB of CSV, less its last record
            // buffer (128 KB); XLSX counts the compressed pieces written,
            // not the ones in flight.
            let least = match format {
                Format::Csv => done.bytes / 2,
                Format::Xlsx => 1,
            };
            assert!(
                (least..=done.bytes).contains(&caught_up.bytes),
                "{format:?}: {} of {} bytes",
                caught_up.bytes,
                done.bytes
            );
        }
    }

    /// A one-column export with one slot in `dir`, given 10,000 numbers:
    /// its settings, itself and its task id.
    fn given_ten_thousand_numbers(dir: &std::path::Path) -> (Settings, Export, String) {
        let settings = one_slot_settings(dir);
        let mut export = Export::start(one_column_spec(&settings), &settings).unwrap();
        let id = export.task_id().to_owned();
        let batch = ten_thousand_numbers(&mut export, 0);
        export.add(batch).unwrap();
        (settings, export, id)
    }

    /// 10,000 numbers from `first` on, 90 KB: a batch sent at once, not
    /// gathered.
    fn ten_thousand_numbers(export: &mut Export, first: i64) -> RecordBatch {
        let mut batch = export.new_batch();
        for n in first..first + 10_000 {
            let value = crate::schema::Value::Int(n);
            batch.push(value, crate::schema::ColumnType::Auto).unwrap();
            batch.end_row();
        }
        batch
    }

    /// Whether `done` turns true within `patience`, asked every 10 ms.
    fn within(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
        let step = Duration::from_millis(10);
        (0..patience.as_millis() / step.as_millis()).any(|_| {
            std::thread::sleep(step);
            done()
        })
    }

    /// A writer that catches up with its producer after every batch saves
    /// the progress at most every SAVE_INTERVAL, not after every batch.
    #[test]
    fn progress_is_saved_at_most_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut export = Export::start(one_column_spec(&settings), &settings).unwrap();
        let id = export.task_id().to_owned();
        let started = Instant::now();
        for round in 0..100 {
            let batch = ten_thousand_numbers(&mut export, round * 10_000);
            export.add(batch).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        assert_eq!(export.finish().unwrap().records, 1_000_000);
        let took = started.elapsed();
        let saves = saved_states(&id).len();
        // Queued, processing, completed, and the progress.
        let most = 3 + took.as_millis().div_ceil(SAVE_INTERVAL.as_millis()) as usize;
        assert!(saves <= most, "{saves} saves in {took:?}");
    }

    /// The states of task `id` saved so far, in order.
    fn saved_states(id: &str) -> Vec<TaskState> {
        let saved = registry::tests::SAVED.lock().unwrap();
        saved
            .iter()
            .filter(|(task, _)| task == id)
            .map(|(_, state)| *state)
            .collect()
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn clflushopt_is_found_where_linux_finds_it() {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap();
        let listed = flags.split_whitespace().any(|flag| flag == "clflushopt");
        assert_eq!(has_clflushopt(), listed);
    }

    #[test]
    fn an_arena_evicted_from_the_caches_keeps_its_bytes() {
        let arena: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let before = arena.clone();
        evict_from_caches(&arena[3..]);
        evict_from_caches(&arena[..0]);
        evict_from_caches(&[]);
        assert_eq!(arena, before);
    }

    /// Local storage moves the file at once and saves the outcome right
    /// after: no status file is written for the moment in between.
    #[test]
    fn a_local_export_saves_no_uploading_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut export, id) = given_ten_thousand_numbers(dir.path());
        assert_eq!(export.finish().unwrap().records, 10_000);
        let states = saved_states(&id);
        assert!(!states.contains(&TaskState::Uploading), "{states:?}");
        assert_eq!(states.last(), Some(&TaskState::Completed), "{states:?}");
    }

    /// Progress not saved when the producer pauses reaches the status file
    /// (what other processes read) within an interval, with no batch after it.
    #[test]
    fn an_idle_producers_progress_reaches_the_status_file() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, mut export, id) = given_ten_thousand_numbers(dir.path());
        let file = StatusFiles::new(&settings.work_dir);
        let saved = within(Duration::from_secs(5), || {
            file.load(&id).unwrap().is_some_and(|s| s.records == 10_000)
        });
        assert!(
            saved,
            "the file shows the rows written while the producer pauses"
        );
        assert_eq!(export.finish().unwrap().records, 10_000);
    }

    /// The arena of a batch written goes back to the producer's next batch,
    /// a few at most, none grown past SPARE_ARENA_KEPT.
    #[test]
    fn arenas_of_batches_written_are_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, mut export, id) = given_ten_thousand_numbers(dir.path());
        let written = within(Duration::from_secs(5), || {
            export.task.written_arenas.lock().unwrap().len() == 1
        });
        assert!(written, "the arena comes back once the batch is written");
        let _next = export.new_batch();
        assert!(
            export.task.kept_arena().is_none(),
            "taken by the next batch"
        );
        // Just big enough for the last batch (10,000 cells of 9 bytes): used
        // as it is, not doubled for the room a new arena has.
        export.task.keep_arena(Vec::with_capacity(90_000));
        assert_eq!(export.new_batch().into_arena().capacity(), 90_000);
        assert_eq!(status(&settings, &id).unwrap().unwrap().records, 10_000);

        for capacity in [SPARE_ARENA_KEPT + 1, 1024, 1024, 1024, 1024, 1024] {
            export.task.keep_arena(Vec::with_capacity(capacity));
        }
        let kept: Vec<usize> = std::iter::from_fn(|| export.task.kept_arena())
            .map(|arena| arena.capacity())
            .collect();
        assert_eq!(kept, [1024; ARENAS_KEPT]);
        export.task.keep_arena(Vec::with_capacity(1024));
        assert_eq!(export.finish().unwrap().records, 10_000);
        assert!(
            export.task.kept_arena().is_none(),
            "let go once no batch comes"
        );
    }

    /// A batch of one row (`addRow()`'s kind).
    fn one_row(export: &mut Export) -> RecordBatch {
        let mut row = export.new_batch();
        let value = crate::schema::Value::Int(7);
        row.push(value, crate::schema::ColumnType::Auto).unwrap();
        row.end_row();
        row
    }

    /// Rows gathered 0.2 s and more ago go to the writer with the next
    /// batch: a slow producer's progress shows without waiting for 64 KB.
    #[test]
    fn gathered_rows_are_sent_once_they_have_waited() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut export = Export::start(one_column_spec(&settings), &settings).unwrap();
        let id = export.task_id().to_owned();
        let written = || status(&settings, &id).unwrap().unwrap().records;
        let row = one_row(&mut export);
        export.add(row).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(written(), 0, "one row, gathered");
        let row = one_row(&mut export);
        export.add(row).unwrap();
        let shown = within(Duration::from_secs(2), || written() == 2);
        assert!(
            shown,
            "both rows sent with the second, 0.6 s after the first"
        );
        assert_eq!(export.finish().unwrap().records, 2);
    }

    /// Rows gathered when the export has failed (no slot came free) do not
    /// change what finish_async() does: it returns the task id, and the
    /// outcome says why the export failed.
    #[test]
    fn finish_async_takes_gathered_rows_of_a_failed_export_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut holder = Export::start(one_column_spec(&settings), &settings).unwrap();
        feed_in_turn(std::slice::from_mut(&mut holder)).unwrap();
        let mut late = Export::start(one_column_spec(&settings), &settings).unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        // The task failed meanwhile: adding says so, as sending would.
        let row = one_row(&mut late);
        assert_eq!(late.add(row).unwrap_err().kind, ErrorKind::Busy);
        let mut late = Export::start(one_column_spec(&settings), &settings).unwrap();
        let row = one_row(&mut late);
        late.add(row).unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        let id = late.task_id().to_owned();
        assert_eq!(late.finish_async().unwrap(), id);
        assert_eq!(late.finish().unwrap_err().kind, ErrorKind::Busy);
        assert_eq!(holder.finish().unwrap().records, 50_000);
    }

    #[test]
    fn exports_fed_by_their_own_threads_wait_for_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let settings = one_slot_settings(dir.path());
        let mut exports: Vec<Export> = (0..2)
            .map(|_| Export::start(one_column_spec(&settings), &settings).unwrap())
            .collect();
        let err = feed_in_turn(&mut exports).unwrap_err();
        assert!(
            err.message.contains("waited 1 s for a free export slot"),
            "{}",
            err.message
        );
        assert_eq!(err.kind, ErrorKind::Busy);
        // Whichever took the slot completes; the other says again why it failed.
        let mut failed = exports.iter_mut().filter_map(|e| {
            let id = e.task_id().to_owned();
            e.finish().err().map(|again| (id, again))
        });
        let (id, again) = failed.next().expect("one export failed");
        assert!(failed.next().is_none(), "the other one completes");
        assert!(
            again
                .message
                .starts_with(&format!("export {id} failed: waited 1 s")),
            "{}",
            again.message
        );
    }
}
