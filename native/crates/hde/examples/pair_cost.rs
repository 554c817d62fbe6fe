//! Wire cost of a repeat migration: encodes FIRST, then SECOND with FIRST's units held by the
//! receiver, for each split mode, and decodes both through one shared cache to check the bytes.
//! Usage: cargo run --release -p dwcp-hde --example pair_cost -- FIRST SECOND [ZSTD_LEVEL]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dwcp_hde::{
    ChunkCache, ChunkId, ChunkerParams, Codec, CodecLevel, Decoder, Encoder, Normalization, Split,
};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<HashMap<ChunkId, Vec<u8>>>>);

impl ChunkCache for Shared {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> dwcp_hde::Result<bool> {
        let map = self.0.lock().unwrap();
        let Some(raw) = map.get(id) else {
            return Ok(false);
        };
        out.clear();
        out.extend_from_slice(raw);
        Ok(true)
    }
    fn keep(&mut self, id: &ChunkId, raw: &[u8], _frame: &[u8]) -> dwcp_hde::Result<()> {
        self.0
            .lock()
            .unwrap()
            .entry(*id)
            .or_insert_with(|| raw.to_vec());
        Ok(())
    }
}

fn encode(enc: &mut Encoder, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(256 * 1024) {
        enc.push(piece, &mut out).unwrap();
    }
    enc.finish(&mut out).unwrap();
    out
}

fn decode(cache: &Shared, wire: &[u8], held: Vec<ChunkId>) -> Vec<u8> {
    let mut dec = Decoder::new(Box::new(cache.clone()));
    dec.set_held(held);
    let mut out = Vec::new();
    for piece in wire.chunks(100_000) {
        dec.push(piece, &mut out).unwrap();
    }
    dec.finish().unwrap();
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let first = std::fs::read(&args[1]).unwrap();
    let second = std::fs::read(&args[2]).unwrap();
    let level: i32 = args.get(3).map_or(3, |s| s.parse().unwrap());
    let level = CodecLevel::new(Codec::Zstd, level).unwrap();
    let small = ChunkerParams {
        min_size: 2048,
        avg_size: 4096,
        max_size: 16384,
        normalization: Normalization::Level1,
    };
    let modes = [
        ("cdc 16/64/256 KiB", ChunkerParams::default(), Split::Cdc),
        ("cdc 2/4/16 KiB", small, Split::Cdc),
        ("pages", ChunkerParams::default(), Split::Pages),
        (
            "pages + previous image",
            ChunkerParams::default(),
            Split::Pages,
        ),
    ];
    for (name, params, split) in modes {
        let t = Instant::now();
        let mut e1 = Encoder::with_split(params, level, split).unwrap();
        let w1 = encode(&mut e1, &first);
        let mut e2 = Encoder::with_split(params, level, split).unwrap();
        let held = e1.held_ids();
        e2.mark_present(held.clone());
        if name.contains("previous") {
            e2.set_reference(&first).unwrap();
        }
        let w2 = encode(&mut e2, &second);
        let secs = t.elapsed().as_secs_f64();
        let cache = Shared::default();
        assert!(
            decode(&cache, &w1, Vec::new()) == first,
            "{name}: first stream differs"
        );
        let held = if split == Split::Pages {
            held
        } else {
            Vec::new()
        };
        assert!(
            decode(&cache, &w2, held) == second,
            "{name}: second stream differs"
        );
        let s = e2.stats();
        println!(
            "{name}: first {} B, second {} B (units {}, held {}, deltas {}, literal {} B, new raw {} B, frames {} B), encode {secs:.2} s, round trip ok",
            w1.len(),
            w2.len(),
            s.chunks,
            s.known_chunks,
            s.delta_units,
            s.literal_bytes,
            s.sent_raw_bytes,
            s.sent_frame_bytes
        );
    }
}
