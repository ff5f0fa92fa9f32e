//! JSON logs through `tracing`, set up once per process on first use.

use std::fs::OpenOptions;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// Installs the JSON log subscriber (stderr, or `fluxo.log_file`) at
/// `fluxo.log_level`. Later calls do nothing.
pub fn init(settings: &Settings) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = EnvFilter::try_new(format!("fluxo={}", settings.log_level))
            .unwrap_or_else(|_| EnvFilter::new("fluxo=warn"));
        let builder = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter);
        // A log file that cannot be opened must not fail the export: say so
        // once on stderr (PHP-FPM's error log) and log there instead.
        let file = settings.log_file.as_ref().and_then(|p| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .inspect_err(|e| {
                    eprintln!(
                        "fluxo: cannot write fluxo.log_file {}: {e}; logging to stderr",
                        p.display()
                    )
                })
                .ok()
        });
        // Another subscriber may already be set (a host application's): keep it.
        let _ = match file {
            Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
    });
}
