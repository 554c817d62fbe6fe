//! A chunk store shared by its owner (who exports inventories) and the sinks that fill it.

use std::sync::{Arc, Mutex, MutexGuard};

use dwcp_hde::{ChunkCache, ChunkId, ChunkStore, HdeError};

use crate::inventory;

/// One open [`ChunkStore`] behind a lock. A store directory must be opened once per process
/// (two indexes over the same files would evict each other's chunks), so every sink of a node
/// shares this handle instead of opening the directory itself.
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<Mutex<ChunkStore>>);

impl SharedStore {
    /// Shares a store that is already open.
    pub fn new(store: ChunkStore) -> Self {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Uses a store that someone else (the addon's `ChunkStore`) already shares.
    pub fn from_arc(store: Arc<Mutex<ChunkStore>>) -> Self {
        SharedStore(store)
    }

    /// Exclusive access. A poisoned lock means a decoder panicked mid-write: refuse the store.
    pub fn lock(&self) -> dwcp_hde::Result<MutexGuard<'_, ChunkStore>> {
        self.0
            .lock()
            .map_err(|_| HdeError::Finished("chunk store (after an internal panic)"))
    }

    /// The store's [inventory](crate::inventory), to send to a migration's source.
    pub fn inventory(&self) -> dwcp_hde::Result<Vec<u8>> {
        Ok(inventory::encode(self.lock()?.ids()))
    }
}

impl ChunkCache for SharedStore {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> dwcp_hde::Result<bool> {
        self.lock()?.fetch(id, out)
    }

    /// Written without fsyncs on the decode path: a per-chunk fsync (2–3 ms here) would keep the
    /// guest paused while a migration's last chunks arrive. The sink syncs them all once QEMU has
    /// its stream ([`flush`](ChunkCache::flush)).
    fn keep(&mut self, id: &ChunkId, _raw: &[u8], frame: &[u8]) -> dwcp_hde::Result<()> {
        self.lock()?.put_frame_unsynced(id, frame).map(|_| ())
    }

    fn flush(&mut self) -> dwcp_hde::Result<()> {
        self.lock()?.sync_pending()
    }
}
