//! Module registration: ini entries, exception classes, `php --ri fluxo`,
//! and the bounded wait for running exports at process exit.

use std::ffi::CString;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::prelude::*;
use ext_php_rs::zend::{ce, ClassEntry, IniEntryDef, ModuleEntry};
use ext_php_rs::{info_table_end, info_table_row, info_table_start};

use super::{ExportResult, Exporter, TaskStatus, EXPORT_EXCEPTION};
use crate::config::KEYS;

/// The shutdown wait of the last settings read in this process (seconds).
static SHUTDOWN_TIMEOUT: AtomicU64 = AtomicU64::new(300);

pub(super) fn remember_shutdown_timeout(timeout: Duration) {
    SHUTDOWN_TIMEOUT.store(timeout.as_secs(), Ordering::Relaxed);
}

fn leak_cstr(s: &str) -> &'static std::ffi::CStr {
    Box::leak(
        CString::new(s)
            .expect("ini names and defaults have no NUL byte")
            .into_boxed_c_str(),
    )
}

/// Registers `fluxo.*` ini entries from the one key table in `config`. The
/// engine keeps the table for the life of the process, so it is leaked once.
fn register_ini(module_number: i32) {
    let defs: Vec<IniEntryDef> = KEYS
        .iter()
        .map(|(key, default, _)| {
            IniEntryDef::new(
                leak_cstr(&format!("fluxo.{key}")),
                leak_cstr(default),
                IniEntryPermission::All,
            )
        })
        .chain(std::iter::once(IniEntryDef::end()))
        .collect();
    IniEntryDef::register(Box::leak(defs.into_boxed_slice()), module_number);
}

/// `Fluxo\ExportException`, set by its registration callback.
static EXPORT_EXCEPTION_CE: AtomicPtr<ClassEntry> = AtomicPtr::new(std::ptr::null_mut());

fn export_exception() -> &'static ClassEntry {
    let ce = EXPORT_EXCEPTION_CE.load(Ordering::Acquire);
    // SAFETY: the pointer is the engine's class entry for ExportException,
    // stored during MINIT before any subclass registers; the engine keeps
    // class entries alive until module shutdown. Null is checked.
    unsafe { ce.as_ref() }.expect("ExportException is registered before its subclasses")
}

/// Exceptions PHP code can construct and extend: plain subclasses of
/// `\Exception`, so they keep its constructor.
fn register_exceptions() -> ext_php_rs::error::Result<()> {
    ClassBuilder::new(EXPORT_EXCEPTION)
        .extends((ce::exception, "Exception"))
        .registration(|ce, _| EXPORT_EXCEPTION_CE.store(ce, Ordering::Release))
        .register()?;
    for name in [
        "Fluxo\\InvalidRowException",
        "Fluxo\\InvalidOptionException",
        "Fluxo\\StorageException",
    ] {
        ClassBuilder::new(name)
            .extends((export_exception, EXPORT_EXCEPTION))
            .registration(|_, _| {})
            .register()?;
    }
    Ok(())
}

/// MINIT: registrations only. No threads here: PHP-FPM forks after this.
fn startup(_ty: i32, module_number: i32) -> i32 {
    // A panic here would abort PHP: report failure instead.
    let ok = catch_unwind(|| {
        register_ini(module_number);
        register_exceptions().is_ok()
    });
    if ok.unwrap_or(false) {
        0
    } else {
        -1
    }
}

/// MSHUTDOWN: a CLI script that called finishAsync() and ended still gets
/// its file; the wait is bounded by `fluxo.shutdown_timeout`.
extern "C" fn shutdown(_ty: i32, _module_number: i32) -> i32 {
    let _ = catch_unwind(|| {
        let timeout = Duration::from_secs(SHUTDOWN_TIMEOUT.load(Ordering::Relaxed));
        let reason = format!(
            "the PHP process ended before the export finished (fluxo.shutdown_timeout = {} s)",
            timeout.as_secs()
        );
        let left = crate::task::wait_for_running(timeout, &reason);
        if left > 0 {
            eprintln!(
                "fluxo: {left} export(s) still running after fluxo.shutdown_timeout: failed, their uploads aborted"
            );
        }
    });
    0
}

extern "C" fn info(_module: *mut ModuleEntry) {
    let _ = catch_unwind(|| {
        info_table_start!();
        info_table_row!("fluxo", "enabled");
        info_table_row!("version", env!("CARGO_PKG_VERSION"));
        match super::current_settings() {
            Ok(settings) => {
                for (key, value) in settings.describe() {
                    info_table_row!(format!("fluxo.{key}"), value);
                }
            }
            Err(e) => info_table_row!("settings", format!("invalid: {e}")),
        }
        info_table_end!();
    });
}

#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    let module = module
        .name("fluxo")
        .class::<Exporter>()
        .class::<ExportResult>()
        .class::<TaskStatus>()
        .shutdown_function(shutdown)
        .info_function(info);
    #[cfg(feature = "server")]
    let module = module.class::<super::server::Server>();
    module
}
