//! The extension's logs through `tracing` (JSON lines, or text with
//! `fluxo.log_format = text`), set up once per process on first use.

use std::fs::OpenOptions;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// Installs the log subscriber (stderr, or `fluxo.log_file`) at
/// `fluxo.log_level`, in `fluxo.log_format`. Later calls do nothing.
pub fn init(settings: &Settings) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = EnvFilter::try_new(format!("fluxo={}", settings.log_level))
            .unwrap_or_else(|_| EnvFilter::new("fluxo=warn"));
        // No colours: stderr is PHP-FPM's error log more often than a terminal.
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
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
        let builder = builder.with_writer(match file {
            Some(f) => BoxMakeWriter::new(Mutex::new(f)),
            None => BoxMakeWriter::new(std::io::stderr),
        });
        // Another subscriber may already be set (a host application's): keep it.
        let _ = if settings.server.log_format == "text" {
            builder.try_init()
        } else {
            builder
                .json()
                .flatten_event(true)
                // An export's lines carry its task id as span.task_id.
                .with_current_span(true)
                .with_span_list(false)
                .try_init()
        };
    });
}
