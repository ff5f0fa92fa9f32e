//! Fluxo Export: a fast, constant-memory CSV/XLSX export engine.
//!
//! Rows enter as [`batch::RecordBatch`]es (one arena per batch), flow through
//! a byte-bounded queue to a worker that writes them with a
//! [`writer::FormatWriter`], and the finished file is handed to a
//! [`storage::Store`]. [`task`] ties it together; `php` (feature `php`) is
//! the PHP extension on top.

// An `unsafe` block without a `// SAFETY:` comment fails `make lint`: each
// must say why it is sound, so a reviewer can check that argument.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod batch;
pub mod config;
pub mod error;
pub mod ini;
pub mod schema;
pub mod storage;
pub mod task;
pub mod telemetry;
pub mod writer;

#[cfg(feature = "php")]
pub mod php;

#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod http;

pub use error::{ErrorKind, ExportError};
