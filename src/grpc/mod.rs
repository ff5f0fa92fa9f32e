//! The gRPC binding (feature `server`): `ExportService` over tonic. It only
//! translates: metadata to an [`ExportSpec`](crate::config::ExportSpec),
//! `DataBatch`es to [`RecordBatch`](crate::batch::RecordBatch)es, task status
//! to responses. All export work is the core's [`Export`](crate::task::Export).

pub mod cancel;
pub mod convert;
pub mod logs;
pub mod server;
pub mod service;

/// Generated from `proto/export.proto`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("export");
}

pub use server::{BoundServer, Server};
pub use service::{auth_interceptor, ExportGrpc, Shared};
