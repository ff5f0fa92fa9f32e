//! The PHP extension `fluxo`: thin wrappers that translate PHP values to the
//! core types and core errors to `Fluxo\*Exception`s.

mod convert;
mod module;
#[cfg(feature = "server")]
mod server;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ext_php_rs::exception::PhpException;
use ext_php_rs::prelude::*;
use ext_php_rs::types::ZendHashTable;
use ext_php_rs::zend::{BailoutGuard, ClassEntry};

use crate::config::{self, ExportSpec, Settings};
use crate::error::{ErrorKind, ExportError};
use crate::task::{self, registry, Export, ExportOutcome};

pub(crate) const EXPORT_EXCEPTION: &str = "Fluxo\\ExportException";
const INVALID_ROW_EXCEPTION: &str = "Fluxo\\InvalidRowException";
const INVALID_OPTION_EXCEPTION: &str = "Fluxo\\InvalidOptionException";
const STORAGE_EXCEPTION: &str = "Fluxo\\StorageException";

/// The exception class for an error kind.
fn exception(err: ExportError) -> PhpException {
    let class = match err.kind {
        ErrorKind::InvalidRow => INVALID_ROW_EXCEPTION,
        ErrorKind::InvalidOption => INVALID_OPTION_EXCEPTION,
        ErrorKind::Storage => STORAGE_EXCEPTION,
        ErrorKind::Cancelled | ErrorKind::Busy | ErrorKind::Export => EXPORT_EXCEPTION,
    };
    // A message quoting a NUL byte (a column name, a key) cannot be made a
    // PHP exception's message: PHP would throw a plain `Error` instead.
    let message = err.message.replace('\0', "\\0");
    match ClassEntry::try_find(class) {
        Some(ce) => PhpException::new(message, 0, ce),
        None => PhpException::from_message(message),
    }
}

/// Runs a method body; a Rust panic becomes a `Fluxo\ExportException`
/// instead of crossing into PHP.
fn guarded<T>(body: impl FnOnce() -> Result<T, ExportError>) -> PhpResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result.map_err(exception),
        Err(panic) => Err(exception(ExportError::from_panic(
            panic.as_ref(),
            "the fluxo extension",
        ))),
    }
}

/// Test hook: with `FLUXO_TEST_PANIC` in the environment, `new Exporter()`
/// panics inside [`guarded`]. It is how `php-tests/PanicTest.php` proves, on
/// the shipped .so, that a Rust panic reaches PHP as `Fluxo\ExportException`
/// and leaves the process working; no other input can make a method panic on
/// purpose. Read once per export, in the constructor, never on the row path;
/// an environment variable rather than a `fluxo.*` setting, so no php.ini or
/// config file can turn it on.
fn panic_if_asked() {
    if std::env::var_os("FLUXO_TEST_PANIC").is_some() {
        panic!("FLUXO_TEST_PANIC is set");
    }
}

/// Whether PHP's time limit (`max_execution_time`) has run out. PHP then
/// only sets this flag for the running code to see, and kills the process
/// `hard_timeout` seconds of CPU later (exit 124, the FPM worker and every
/// export in it gone) if the thread has not got back to PHP by then. On a
/// non-thread-safe build the limit counts the CPU of every thread,
/// Fluxo's writers too.
fn time_limit_reached() -> bool {
    let globals = ext_php_rs::zend::ExecutorGlobals::get();
    // SAFETY: `timed_out` is a field of the executor globals, alive for the
    // whole process; PHP's SIGPROF handler sets it from whichever thread the
    // signal lands on, hence a volatile read of a bool that is 0 or 1.
    unsafe { std::ptr::read_volatile(&raw const globals.timed_out.value) }
}

/// Settings from php.ini (`fluxo.*`), overridden by `FLUXO_*` variables.
fn current_settings() -> Result<Settings, ExportError> {
    let ini = ext_php_rs::zend::ExecutorGlobals::get().ini_values();
    let settings = Settings::resolve(|key| ini.get(&format!("fluxo.{key}")).cloned().flatten())?;
    module::remember_shutdown_timeout(settings.shutdown_timeout);
    Ok(settings)
}

/// `Fluxo\Exporter`: one export, fed with rows from PHP.
#[php_class]
#[php(name = "Fluxo\\Exporter")]
pub struct Exporter {
    export: Export,
    /// The `timezone` option: where date objects and timestamps are shown.
    timezone: convert::ExportZone,
}

thread_local! {
    /// The exporters reading rows on this thread, by address. PHP code that
    /// runs during a read (a cell's `__toString()`, a date object's methods)
    /// must not call them: a row it added would land before the batch being
    /// read, a sheet it started would take that batch.
    static READING_ROWS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks an exporter as reading rows until dropped.
struct ReadingRows(usize);

impl ReadingRows {
    fn start(exporter: &Exporter) -> Self {
        let at = exporter.address();
        READING_ROWS.with_borrow_mut(|reading| reading.push(at));
        Self(at)
    }
}

impl Drop for ReadingRows {
    fn drop(&mut self) {
        READING_ROWS.with_borrow_mut(|reading| reading.retain(|&at| at != self.0));
    }
}

impl Exporter {
    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Refuses `method` while this exporter reads rows (see [`READING_ROWS`]).
    fn ensure_not_reading(&self, method: &str) -> Result<(), ExportError> {
        if READING_ROWS.with_borrow(|reading| reading.contains(&self.address())) {
            return Err(ExportError::export(format!(
                "Exporter::{method}() was called while this exporter was reading rows, from a \
                 cell's __toString() or date object: call it after addBatch() or addRow() returns"
            )));
        }
        Ok(())
    }

    fn add<'a>(
        &mut self,
        method: &str,
        rows: impl Iterator<Item = &'a ext_php_rs::types::Zval>,
    ) -> Result<i64, ExportError> {
        self.ensure_not_reading(method)?;
        // Dropped even if a fatal error in PHP code run during the read (a
        // cell's `__toString()` out of memory or time) makes PHP jump back
        // over these frames: the mark would stay, the batch's memory leak.
        let reading = BailoutGuard::new(ReadingRows::start(self));
        let mut batch = BailoutGuard::new(self.export.new_batch());
        let read = convert::batch(rows, self.export.columns(), &mut batch, &self.timezone);
        drop(reading);
        read?;
        self.export.add(batch.into_inner()).map(|n| n as i64)
    }
}

#[php_impl]
impl Exporter {
    pub fn __construct(options: &ZendHashTable) -> PhpResult<Self> {
        guarded(|| {
            panic_if_asked();
            // `$exporter->__construct()` from a cell would replace, and
            // free, the exporter whose rows are being read.
            if READING_ROWS.with_borrow(|reading| !reading.is_empty()) {
                return Err(ExportError::export(
                    "Exporter::__construct() was called while an exporter was reading rows, from \
                     a cell's __toString() or date object: make exporters before addBatch() or \
                     addRow(), or after it returns",
                ));
            }
            let settings = current_settings()?;
            let options = convert::options(options);
            let spec = ExportSpec::from_options(&options, &settings)?;
            if let Some(zone) = &spec.timezone {
                convert::ExportZone::check(zone)?;
            }
            let spec_timezone = spec.timezone.clone();
            let mut export = Export::start_on_this_thread(spec, &settings)?;
            export.give_up_when(
                time_limit_reached,
                "the script's time limit (max_execution_time) ran out while it waited",
            );
            export.when_abandoned(
                "the Exporter was freed before finish() or cancel(): the script ended, threw, \
                 or ran out of time or memory before it finished the export",
            );
            Ok(Self {
                timezone: convert::ExportZone::new(spec_timezone),
                export,
            })
        })
    }

    /// The id of this export's task (for `Exporter::status()`).
    pub fn task_id(&self) -> String {
        self.export.task_id().to_owned()
    }

    /// Adds a list of rows; returns the running row count.
    pub fn add_batch(&mut self, rows: &ZendHashTable) -> PhpResult<i64> {
        guarded(|| match convert::list_values(rows) {
            Some(rows) => self.add("addBatch", rows.iter()),
            None => self.add("addBatch", rows.values()),
        })
    }

    /// Adds one row; returns the running row count.
    pub fn add_row(&mut self, row: &ext_php_rs::types::Zval) -> PhpResult<i64> {
        guarded(|| self.add("addRow", std::iter::once(row)))
    }

    /// XLSX: starts another sheet; columns default to the current ones.
    pub fn sheet(&mut self, name: String, columns: Option<&ZendHashTable>) -> PhpResult<()> {
        guarded(|| {
            self.ensure_not_reading("sheet")?;
            let columns = match columns {
                Some(c) => Some(config::parse_columns(&convert::options(c))?),
                None => None,
            };
            self.export.start_sheet(&name, columns)
        })
    }

    /// Waits for the file and returns where it is.
    pub fn finish(&mut self) -> PhpResult<ExportResult> {
        guarded(|| {
            self.ensure_not_reading("finish")?;
            self.export.finish().map(ExportResult::from)
        })
    }

    /// Returns the task id at once; the file is completed in the background.
    pub fn finish_async(&mut self) -> PhpResult<String> {
        guarded(|| {
            self.ensure_not_reading("finishAsync")?;
            self.export.finish_async()
        })
    }

    /// Abandons the export: no file is left.
    pub fn cancel(&mut self) -> PhpResult<()> {
        guarded(|| {
            self.ensure_not_reading("cancel")?;
            self.export.cancel_and_wait();
            Ok(())
        })
    }

    /// Status of any task on this host; null for an unknown id.
    pub fn status(task_id: String) -> PhpResult<Option<TaskStatus>> {
        guarded(|| {
            let settings = current_settings()?;
            Ok(task::status(&settings, &task_id)?.map(TaskStatus::from))
        })
    }
}

/// `Fluxo\ExportResult`: a finished export.
#[php_class]
#[php(name = "Fluxo\\ExportResult")]
pub struct ExportResult {
    #[php(prop)]
    task_id: String,
    #[php(prop)]
    url: String,
    #[php(prop)]
    key: String,
    #[php(prop)]
    path: Option<String>,
    #[php(prop)]
    filename: String,
    #[php(prop)]
    format: String,
    #[php(prop)]
    records: i64,
    #[php(prop)]
    bytes: i64,
    #[php(prop)]
    sha256: String,
    #[php(prop)]
    duration_ms: i64,
    #[php(prop)]
    sheets: i64,
}

impl From<ExportOutcome> for ExportResult {
    fn from(o: ExportOutcome) -> Self {
        Self {
            task_id: o.task_id,
            url: o.url,
            key: o.key,
            path: o.path.map(|p| p.display().to_string()),
            filename: o.filename,
            format: o.format.extension().to_owned(),
            records: o.records as i64,
            bytes: o.bytes as i64,
            sha256: o.sha256,
            duration_ms: o.duration_ms as i64,
            sheets: i64::from(o.sheets),
        }
    }
}

/// `Fluxo\TaskStatus`: a task's state, readable from any process on the host.
#[php_class]
#[php(name = "Fluxo\\TaskStatus")]
pub struct TaskStatus {
    #[php(prop)]
    task_id: String,
    #[php(prop)]
    state: String,
    #[php(prop)]
    progress: i64,
    #[php(prop)]
    records: i64,
    #[php(prop)]
    total_rows: Option<i64>,
    #[php(prop)]
    bytes: i64,
    #[php(prop)]
    sheets: i64,
    #[php(prop)]
    url: Option<String>,
    #[php(prop)]
    key: Option<String>,
    #[php(prop)]
    path: Option<String>,
    #[php(prop)]
    sha256: Option<String>,
    #[php(prop)]
    error: Option<String>,
}

impl From<registry::TaskStatus> for TaskStatus {
    fn from(s: registry::TaskStatus) -> Self {
        Self {
            progress: i64::from(s.progress()),
            state: s.state.name().to_owned(),
            records: s.records as i64,
            total_rows: s.total_rows.map(|n| n as i64),
            bytes: s.bytes as i64,
            sheets: i64::from(s.sheets),
            task_id: s.task_id,
            url: s.url,
            key: s.key,
            path: s.path,
            sha256: s.sha256,
            error: s.error,
        }
    }
}
