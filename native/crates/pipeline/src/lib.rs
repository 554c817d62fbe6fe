//! The native migration data path: QEMU's migration stream goes through HDE and AMST without
//! ever leaving Rust.
//!
//! ```text
//! source QEMU ──unix──▶ MigrationSource ──HDE──▶ AMST (N × mTLS) ──▶ MigrationSink ──unix──▶ destination QEMU
//!   migrate unix:P       reads, encodes                                  decodes, verifies     migrate-incoming unix:Q
//! ```
//!
//! Each side is a few stages joined by small bounded channels, so memory stays bounded and a slow
//! link slows QEMU down: AMST stops taking bytes, the encoder stops, the source stops reading its
//! unix socket, and QEMU's writes block. The destination tells the source which chunks it holds
//! with an [`inventory`]; the source's encoder then sends those as references.

mod error;
pub mod inventory;
mod sink;
mod source;
mod stage;
mod store;

pub use error::{PipelineError, Result};
pub use sink::{MigrationSink, SinkOptions, SinkReport, SinkStats};
pub use source::{MigrationSource, SourceOptions, SourceReport, SourceStats, DEFAULT_SEND_BUFFER};
pub use store::SharedStore;
