//! A content-addressed chunk store on disk, verified on read and bounded by an LRU byte budget.
//!
//! Layout: `<root>/chunks/<2 hex>/<64 hex>` holds one frame each; `<root>/tmp/` holds writes in
//! flight. A chunk file appears only by `rename` after its data is fsynced, so a crash mid-write
//! leaves at most a stray temp file, which the next `open` deletes. Writes on a hot path may defer
//! the fsyncs ([`ChunkStore::put_frame_unsynced`], then [`ChunkStore::sync_pending`]): a crash in
//! between can leave a renamed file that is empty or short, which every read's hash check catches
//! (the chunk is dropped and reported as corrupt, as any damaged file is).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame;
use crate::{ChunkId, CodecLevel, HdeError, Result};

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    tick: u64,
}

/// What a full verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreVerifyReport {
    /// Chunks read and hashed.
    pub checked: u64,
    /// Chunks whose content did not match their id; they have been removed.
    pub corrupt: Vec<ChunkId>,
}

/// The on-disk chunk store.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    budget_bytes: u64,
    level: CodecLevel,
    index: HashMap<ChunkId, Entry>,
    /// Recency order: tick → id. The smallest tick is the least recently used.
    lru: BTreeMap<u64, ChunkId>,
    next_tick: u64,
    size_bytes: u64,
    evicted: u64,
    /// Files renamed into place whose data and directory entries are not fsynced yet.
    unsynced: Vec<(PathBuf, PathBuf)>,
}

impl ChunkStore {
    /// Opens (or creates) the store at `root`, deletes interrupted writes, indexes what is
    /// there (oldest file first in LRU order) and evicts down to `budget_bytes`.
    pub fn open(root: impl Into<PathBuf>, budget_bytes: u64, level: CodecLevel) -> Result<Self> {
        let root = root.into();
        if budget_bytes == 0 {
            return Err(HdeError::param("budgetBytes", "must be greater than 0"));
        }
        let tmp = root.join("tmp");
        let chunks = root.join("chunks");
        for dir in [&tmp, &chunks] {
            fs::create_dir_all(dir).map_err(|e| HdeError::io(dir, e))?;
        }
        for stray in read_dir(&tmp)? {
            fs::remove_file(&stray).map_err(|e| HdeError::io(&stray, e))?;
        }
        let mut found = Vec::new();
        for fan in read_dir(&chunks)? {
            for path in read_dir(&fan)? {
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| ChunkId::from_hex(n).ok())
                else {
                    continue; // not ours; leave it alone
                };
                let meta = fs::metadata(&path).map_err(|e| HdeError::io(&path, e))?;
                let modified = meta.modified().map_err(|e| HdeError::io(&path, e))?;
                found.push((modified, id, meta.len()));
            }
        }
        found.sort();
        let mut store = ChunkStore {
            root,
            budget_bytes,
            level,
            index: HashMap::with_capacity(found.len()),
            lru: BTreeMap::new(),
            next_tick: 0,
            size_bytes: 0,
            evicted: 0,
            unsynced: Vec::new(),
        };
        for (_, id, size) in found {
            store.track(id, size);
        }
        store.evict_to_budget(None)?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of chunk files on disk (compressed frames).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The byte budget that eviction keeps to.
    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Chunks evicted since open.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether `id` is held. Does not count as a use for LRU.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.index.contains_key(id)
    }

    /// Every id held, in no particular order (for a have/want exchange).
    pub fn ids(&self) -> impl Iterator<Item = &ChunkId> {
        self.index.keys()
    }

    /// Stores `raw`, naming it by its hash. Returns the id and whether it was new.
    pub fn put(&mut self, raw: &[u8]) -> Result<(ChunkId, bool)> {
        let id = ChunkId::of(raw);
        if self.touch(&id) {
            return Ok((id, false));
        }
        let mut frame_bytes = Vec::with_capacity(raw.len() / 2 + frame::HEADER_LEN);
        frame::encode_into(raw, self.level, &mut frame_bytes)?;
        self.write(&id, &frame_bytes, true)?;
        Ok((id, true))
    }

    /// Stores an already compressed frame whose content the caller has verified against `id`.
    pub fn put_frame(&mut self, id: &ChunkId, frame_bytes: &[u8]) -> Result<bool> {
        if self.touch(id) {
            return Ok(false);
        }
        frame::parse_header(frame_bytes)?;
        self.write(id, frame_bytes, true)?;
        Ok(true)
    }

    /// Like [`put_frame`](Self::put_frame), but the fsyncs wait for [`sync_pending`](Self::sync_pending):
    /// for a decoder feeding a live migration, where a per-chunk fsync would hold the guest paused.
    pub fn put_frame_unsynced(&mut self, id: &ChunkId, frame_bytes: &[u8]) -> Result<bool> {
        if self.touch(id) {
            return Ok(false);
        }
        frame::parse_header(frame_bytes)?;
        self.write(id, frame_bytes, false)?;
        Ok(true)
    }

    /// Fsyncs every file written unsynced, then each directory they were renamed into, once.
    ///
    /// The fsyncs run on up to [`SYNC_THREADS`] threads: a migration's end waits for them, and
    /// the filesystem commits concurrent fsyncs together (500 files of 30 kB on this machine's
    /// disk: 149 ms one after another, 42 ms on 16 threads).
    pub fn sync_pending(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.unsynced);
        let per_thread = pending.len().div_ceil(SYNC_THREADS).max(1);
        let synced: Vec<Result<Vec<PathBuf>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = pending
                .chunks(per_thread)
                .map(|files| scope.spawn(move || sync_files(files)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or(Err(HdeError::Finished(
                        "chunk store sync (a thread panicked)",
                    )))
                })
                .collect()
        });
        let mut dirs = std::collections::BTreeSet::new();
        for fans in synced {
            dirs.extend(fans?);
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Files written unsynced and not yet synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// Reads chunk `id` into `out`, verifying its hash. `Ok(false)` if absent. A corrupt
    /// chunk is removed (so it can be fetched again) and reported as [`HdeError::ChunkCorrupt`].
    pub fn get_into(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> Result<bool> {
        if !self.touch(id) {
            return Ok(false);
        }
        let path = self.path_of(id);
        let bytes = fs::read(&path).map_err(|e| HdeError::io(&path, e))?;
        let checked = frame::decode_into(&bytes, out).and_then(|_| id.verify(out));
        if let Err(e) = checked {
            self.remove(id)?;
            return Err(match e {
                HdeError::ChunkCorrupt { .. } => e,
                _ => HdeError::ChunkCorrupt {
                    id: *id,
                    actual: ChunkId::of(&bytes),
                },
            });
        }
        Ok(true)
    }

    /// Reads chunk `id`, verified; `None` if absent.
    pub fn get(&mut self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.get_into(id, &mut out)?.then_some(out))
    }

    /// Deletes chunk `id` if held. Returns whether it was.
    pub fn remove(&mut self, id: &ChunkId) -> Result<bool> {
        let Some(entry) = self.index.remove(id) else {
            return Ok(false);
        };
        self.lru.remove(&entry.tick);
        self.size_bytes -= entry.size;
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(HdeError::io(&path, e)),
        }
    }

    /// Reads and hashes every chunk, removing the corrupt ones.
    pub fn verify_all(&mut self) -> Result<StoreVerifyReport> {
        let ids: Vec<ChunkId> = self.index.keys().copied().collect();
        let mut report = StoreVerifyReport::default();
        let mut buf = Vec::new();
        for id in ids {
            report.checked += 1;
            match self.get_into(&id, &mut buf) {
                Ok(_) => {}
                Err(HdeError::ChunkCorrupt { .. }) => report.corrupt.push(id),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    /// Marks `id` as just used; `false` if it is not held.
    fn touch(&mut self, id: &ChunkId) -> bool {
        let tick = self.next_tick;
        let Some(entry) = self.index.get_mut(id) else {
            return false;
        };
        self.lru.remove(&entry.tick);
        entry.tick = tick;
        self.lru.insert(tick, *id);
        self.next_tick += 1;
        true
    }

    fn track(&mut self, id: ChunkId, size: u64) {
        let tick = self.next_tick;
        self.next_tick += 1;
        self.index.insert(id, Entry { size, tick });
        self.lru.insert(tick, id);
        self.size_bytes += size;
    }

    fn write(&mut self, id: &ChunkId, frame_bytes: &[u8], sync: bool) -> Result<()> {
        let path = self.path_of(id);
        let fan = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let tmp = self.root.join("tmp").join(format!(
            "{}.{}.{}",
            id.to_hex(),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = File::create(&tmp).map_err(|e| HdeError::io(&tmp, e))?;
        file.write_all(frame_bytes)
            .map_err(|e| HdeError::io(&tmp, e))?;
        if sync {
            file.sync_all().map_err(|e| HdeError::io(&tmp, e))?;
        }
        drop(file);
        if !fan.exists() {
            fs::create_dir_all(&fan).map_err(|e| HdeError::io(&fan, e))?;
            sync_dir(&self.root.join("chunks"))?;
        }
        fs::rename(&tmp, &path).map_err(|e| HdeError::io(&path, e))?;
        if sync {
            sync_dir(&fan)?;
        } else {
            self.unsynced.push((path, fan));
        }
        self.track(*id, frame_bytes.len() as u64);
        self.evict_to_budget(Some(id))
    }

    /// Evicts least recently used chunks until the store fits its budget, sparing `keep`.
    fn evict_to_budget(&mut self, keep: Option<&ChunkId>) -> Result<()> {
        while self.size_bytes > self.budget_bytes {
            let victim = self.lru.values().find(|v| Some(*v) != keep).copied();
            let Some(victim) = victim else {
                break;
            };
            self.remove(&victim)?;
            self.evicted += 1;
        }
        Ok(())
    }
}

/// Threads [`ChunkStore::sync_pending`] fsyncs on.
pub const SYNC_THREADS: usize = 16;

/// Fsyncs each file, returning the directories of those still there.
fn sync_files(files: &[(PathBuf, PathBuf)]) -> Result<Vec<PathBuf>> {
    let mut fans = Vec::with_capacity(files.len());
    for (path, fan) in files {
        match File::open(path) {
            Ok(file) => file.sync_all().map_err(|e| HdeError::io(path, e))?,
            // Evicted or removed since: nothing to make durable.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HdeError::io(path, e)),
        }
        fans.push(fan.clone());
    }
    Ok(fans)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| HdeError::io(dir, e))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| HdeError::io(dir, e))?;
    entries
        .map(|e| e.map(|e| e.path()).map_err(|e| HdeError::io(dir, e)))
        .collect()
}
