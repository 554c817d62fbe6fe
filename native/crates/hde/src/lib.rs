//! Hierarchical Delta Encoding (HDE): the data-reduction core of DWCP.
//!
//! A byte stream is cut into content-defined chunks ([`Chunker`], FastCDC 2020), each named by
//! its BLAKE3 hash ([`ChunkId`]). The [`Encoder`] sends only chunks the receiver lacks, each
//! compressed into a self-describing [`frame`]; the [`Decoder`] verifies every chunk and rebuilds
//! the exact stream. A [`ChunkStore`] keeps chunks on disk across migrations.
//!
//! Everything here is sans-IO except the chunk store: callers feed bytes and get bytes back.

pub mod batch;
mod chunk_id;
mod chunker;
pub mod codec;
mod decoder;
mod encoder;
mod error;
pub mod frame;
mod governor;
mod params;
pub mod split;
mod store;
pub mod wire;
mod workers;

pub use chunk_id::ChunkId;
pub use chunker::{Chunker, Cut};
pub use codec::{Codec, CodecLevel};
pub use decoder::{ChunkCache, Decoder, DecoderStats, MemoryChunks};
pub use encoder::{Encoder, EncoderStats, Split};
pub use error::{HdeError, Result};
pub use governor::{CodecGovernor, LevelChange, GOVERNOR_INTERVAL};
pub use params::{ChunkerParams, Normalization};
pub use store::{ChunkStore, StoreVerifyReport};
pub use workers::{Workers, MAX_THREADS};
