//! The on-disk chunk store: verification, atomic writes, restart and LRU eviction.
mod common;

use std::fs;

use common::Rng;
use dwcp_hde::{ChunkId, ChunkStore, Codec, CodecLevel, HdeError};

fn level() -> CodecLevel {
    CodecLevel::fast(Codec::Zstd)
}

fn chunk_path(root: &std::path::Path, id: &ChunkId) -> std::path::PathBuf {
    let hex = id.to_hex();
    root.join("chunks").join(&hex[..2]).join(hex)
}

#[test]
fn put_get_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(1);
    let chunks: Vec<Vec<u8>> = (0..20).map(|i| rng.bytes(1000 + i * 100)).collect();
    let ids: Vec<ChunkId> = {
        let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("open");
        let ids = chunks
            .iter()
            .map(|c| store.put(c).expect("put").0)
            .collect();
        assert!(
            !store.put(&chunks[0]).expect("put again").1,
            "second put is not new"
        );
        ids
    };
    let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("reopen");
    assert_eq!(store.len(), chunks.len());
    for (id, raw) in ids.iter().zip(&chunks) {
        assert_eq!(store.get(id).expect("get").as_deref(), Some(raw.as_slice()));
    }
    assert_eq!(store.get(&ChunkId::of(b"absent")).expect("get"), None);
}

#[test]
fn a_flipped_bit_on_disk_is_detected_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store =
        ChunkStore::open(dir.path(), 1 << 30, CodecLevel::fast(Codec::None)).expect("open");
    let (id, _) = store.put(&Rng::new(2).bytes(5000)).expect("put");
    let path = chunk_path(dir.path(), &id);
    let mut bytes = fs::read(&path).expect("read");
    bytes[100] ^= 1;
    fs::write(&path, bytes).expect("write");
    let err = store.get(&id).expect_err("corrupt");
    assert!(matches!(err, HdeError::ChunkCorrupt { .. }), "{err:?}");
    assert!(
        !store.contains(&id),
        "corrupt chunk must be dropped so it is fetched again"
    );
    let (id2, _) = store.put(&Rng::new(3).bytes(5000)).expect("put");
    fs::write(chunk_path(dir.path(), &id2), b"garbage").expect("write");
    let report = store.verify_all().expect("verify");
    assert_eq!(report.corrupt, vec![id2]);
}

#[test]
fn interrupted_writes_are_cleaned_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(ChunkStore::open(dir.path(), 1 << 30, level()).expect("open"));
    let stray = dir.path().join("tmp").join("deadbeef.1.1");
    fs::write(&stray, b"half a chunk").expect("write");
    let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("reopen");
    assert!(!stray.exists());
    assert_eq!(store.verify_all().expect("verify").checked, 0);
}

#[test]
fn eviction_keeps_the_budget_and_drops_the_least_recently_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(4);
    let mut store =
        ChunkStore::open(dir.path(), 60_000, CodecLevel::fast(Codec::None)).expect("open");
    let first = store.put(&rng.bytes(10_000)).expect("put").0;
    let second = store.put(&rng.bytes(10_000)).expect("put").0;
    for _ in 0..3 {
        store.put(&rng.bytes(10_000)).expect("put");
    }
    store.get(&first).expect("use the first chunk");
    store.put(&rng.bytes(10_000)).expect("put over budget");
    assert!(store.size_bytes() <= 60_000, "{}", store.size_bytes());
    assert!(store.contains(&first), "recently used chunk was evicted");
    assert!(
        !store.contains(&second),
        "least recently used chunk survived"
    );
    assert_eq!(store.evicted(), 1);
    let reopened = ChunkStore::open(dir.path(), 25_000, level()).expect("reopen smaller");
    assert!(reopened.size_bytes() <= 25_000);
    assert!(matches!(
        ChunkStore::open(dir.path(), 0, level()),
        Err(HdeError::InvalidParam {
            field: "budgetBytes",
            ..
        })
    ));
}

#[test]
fn unsynced_writes_are_readable_at_once_and_synced_together_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new(7);
    let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("open");
    let raws: Vec<Vec<u8>> = (0..5).map(|_| rng.bytes(4000)).collect();
    let mut ids = Vec::new();
    for raw in &raws {
        let mut frame = Vec::new();
        dwcp_hde::frame::encode_into(raw, level(), &mut frame).expect("frame");
        let id = ChunkId::of(raw);
        assert!(store.put_frame_unsynced(&id, &frame).expect("put"));
        ids.push(id);
    }
    assert_eq!(store.unsynced(), 5);
    // One was evicted before the sync: syncing skips it.
    assert!(store.remove(&ids[0]).expect("remove"));
    for (id, raw) in ids.iter().zip(&raws).skip(1) {
        assert_eq!(store.get(id).expect("get").as_deref(), Some(raw.as_slice()));
    }
    store.sync_pending().expect("sync");
    assert_eq!(store.unsynced(), 0);
    drop(store);
    let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("reopen");
    assert_eq!(store.len(), 4);
    assert_eq!(
        store.get(&ids[4]).expect("get").as_deref(),
        Some(raws[4].as_slice())
    );
}

#[test]
fn an_unsynced_chunk_cut_short_by_a_crash_is_caught_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = Rng::new(8).bytes(4000);
    let id = ChunkId::of(&raw);
    {
        let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("open");
        let mut frame = Vec::new();
        dwcp_hde::frame::encode_into(&raw, level(), &mut frame).expect("frame");
        store.put_frame_unsynced(&id, &frame).expect("put");
    }
    // What a power loss can leave of a renamed but unsynced file: an empty one.
    fs::write(chunk_path(dir.path(), &id), b"").expect("truncate");
    let mut store = ChunkStore::open(dir.path(), 1 << 30, level()).expect("reopen");
    assert!(
        store.get(&id).is_err(),
        "a cut-short chunk is an error, never content"
    );
    assert_eq!(store.get(&id).expect("get after removal"), None);
}
