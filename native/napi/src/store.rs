//! `ChunkStore`: the on-disk chunk store, shareable with decoders.

use std::sync::{Arc, Mutex};

use dwcp_hde::{ChunkCache, ChunkId, ChunkStore, CodecLevel};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::error::{guard, to_napi};
use crate::exclusive::lock_core;
use crate::options::{byte_count, BindingCodecOptions};

/// The result of a full verification.
#[napi(object)]
pub struct BindingStoreVerifyReport {
    pub checked: f64,
    /// Hex ids of corrupt chunks, which have been removed.
    pub corrupt: Vec<String>,
}

/// A content-addressed chunk store on disk, bounded by an LRU byte budget.
#[napi(js_name = "ChunkStore")]
pub struct BindingChunkStore {
    pub(crate) inner: Arc<Mutex<ChunkStore>>,
}

#[napi]
impl BindingChunkStore {
    /// Opens or creates the store in `dir`; chunks are compressed with `codec` on disk.
    #[napi(factory, catch_unwind)]
    pub fn open(
        dir: String,
        budget_bytes: f64,
        codec: Option<BindingCodecOptions>,
    ) -> napi::Result<Self> {
        let store = guard(|| {
            let budget = byte_count("budgetBytes", budget_bytes)?;
            ChunkStore::open(
                dir,
                budget,
                CodecLevel::try_from(codec.unwrap_or_default())?,
            )
        })?;
        Ok(BindingChunkStore {
            inner: Arc::new(Mutex::new(store)),
        })
    }

    /// Stores a chunk; returns its hex id.
    #[napi(catch_unwind)]
    pub fn put(&self, data: Buffer) -> napi::Result<String> {
        guard(|| Ok(lock_core(&self.inner)?.put(&data)?.0.to_hex()))
    }

    /// Reads a chunk, verified against its id; `null` if absent. Corruption is an
    /// `ERR_HDE_CHUNK_CORRUPT` error and the chunk is dropped.
    #[napi(catch_unwind)]
    pub fn get(&self, id: String) -> napi::Result<Option<Buffer>> {
        guard(|| {
            let id = ChunkId::from_hex(&id)?;
            Ok(lock_core(&self.inner)?.get(&id)?.map(Buffer::from))
        })
    }

    #[napi(catch_unwind)]
    pub fn contains(&self, id: String) -> napi::Result<bool> {
        guard(|| Ok(lock_core(&self.inner)?.contains(&ChunkId::from_hex(&id)?)))
    }

    #[napi(catch_unwind)]
    pub fn remove(&self, id: String) -> napi::Result<bool> {
        guard(|| lock_core(&self.inner)?.remove(&ChunkId::from_hex(&id)?))
    }

    /// Hex ids of every chunk held (what a receiver announces in a have/want exchange).
    #[napi]
    pub fn ids(&self) -> napi::Result<Vec<String>> {
        let store = lock_core(&self.inner).map_err(to_napi)?;
        Ok(store.ids().map(ChunkId::to_hex).collect())
    }

    /// Every id held as an inventory for a migration source (`MigrationSource`'s `inventory`):
    /// the 32-byte ids, sorted and concatenated. Far smaller than `ids()` and never hex.
    #[napi]
    pub fn inventory(&self) -> napi::Result<Buffer> {
        let store = lock_core(&self.inner).map_err(to_napi)?;
        Ok(dwcp_pipeline::inventory::encode(store.ids()).into())
    }

    #[napi(getter)]
    pub fn count(&self) -> napi::Result<u32> {
        let n = lock_core(&self.inner).map_err(to_napi)?.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    #[napi(getter)]
    #[allow(clippy::cast_precision_loss)]
    pub fn size_bytes(&self) -> napi::Result<f64> {
        Ok(lock_core(&self.inner).map_err(to_napi)?.size_bytes() as f64)
    }

    #[napi(getter)]
    #[allow(clippy::cast_precision_loss)]
    pub fn evicted(&self) -> napi::Result<f64> {
        Ok(lock_core(&self.inner).map_err(to_napi)?.evicted() as f64)
    }

    /// Reads and hashes every chunk, dropping the corrupt ones.
    #[napi(catch_unwind)]
    #[allow(clippy::cast_precision_loss)]
    pub fn verify_all(&self) -> napi::Result<BindingStoreVerifyReport> {
        let report = guard(|| lock_core(&self.inner)?.verify_all())?;
        Ok(BindingStoreVerifyReport {
            checked: report.checked as f64,
            corrupt: report.corrupt.iter().map(ChunkId::to_hex).collect(),
        })
    }
}

/// Lets a decoder write into a store that JS also holds.
pub(crate) struct SharedStore(pub Arc<Mutex<ChunkStore>>);

impl ChunkCache for SharedStore {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> dwcp_hde::Result<bool> {
        lock_core(&self.0)?.fetch(id, out)
    }

    fn keep(&mut self, id: &ChunkId, raw: &[u8], frame: &[u8]) -> dwcp_hde::Result<()> {
        lock_core(&self.0)?.keep(id, raw, frame)
    }
}
