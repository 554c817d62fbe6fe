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
