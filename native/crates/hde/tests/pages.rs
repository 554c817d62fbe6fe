//! The page-aware encoder (format 2): exact round trips on QEMU-like, garbled and non-QEMU
//! input, units that do not depend on write() boundaries, repeat streams with a HELD list, and
//! typed errors for every corruption of the wire.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use common::Rng;
use dwcp_hde::split::{PageSplitter, Unit, PAGE_SIZE};
use dwcp_hde::{
    ChunkCache, ChunkId, ChunkerParams, Codec, CodecLevel, Decoder, Encoder, HdeError,
    MemoryChunks, Split,
};

/// Page contents: a page of this kind, so the stream has repeats, text-like and random pages.
fn page(rng: &mut Rng, kind: usize) -> Vec<u8> {
    match kind {
        0 => vec![0u8; PAGE_SIZE],
        1 => b"kernel text ".repeat(PAGE_SIZE / 12 + 1)[..PAGE_SIZE].to_vec(),
        _ => rng.bytes(PAGE_SIZE),
    }
}

/// A stream shaped like QEMU's precopy: file header and device state QEMU writes before RAM,
/// then RAM sections of page and zero records ended by EOS, with device state between them.
/// `pages[i]` is the content of page `i` (address `i * 4096`).
fn qemu_like(pages: &[Vec<u8>], device: &[u8]) -> (Vec<u8>, usize) {
    let mut s = b"QEVM\0\0\0\x03".to_vec();
    s.extend_from_slice(device);
    let mut page_records = 0;
    for (part, range) in [(0..pages.len() / 2), (pages.len() / 2..pages.len())]
        .into_iter()
        .enumerate()
    {
        s.extend_from_slice(&[0x02, 0, 0, 0, 2]); // QEMU_VM_SECTION_PART, section id
        for (n, i) in range.enumerate() {
            let addr = (i as u64) * PAGE_SIZE as u64;
            let zero = pages[i].iter().all(|&b| b == 0);
            let mut flags = if zero { 0x02 } else { 0x08 };
            if n > 0 {
                flags |= 0x20;
            }
            s.extend_from_slice(&(addr | flags).to_be_bytes());
            if n == 0 {
                s.push(6);
                s.extend_from_slice(b"pc.ram");
            }
            if zero {
                s.push(0);
            } else {
                s.extend_from_slice(&pages[i]);
                page_records += 1;
            }
        }
        s.extend_from_slice(&0x10u64.to_be_bytes()); // EOS
        s.extend_from_slice(&[0x7e, 0, 0, 0, 2]); // section footer
        s.extend_from_slice(&device[..device.len().min(300 + part * 5000)]);
    }
    s.push(0x00); // QEMU_VM_EOF
    (s, page_records)
}

fn image(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| page(rng, [0, 1, 2, 2, 2][i % 5])).collect()
}

fn units(data: &[u8], split_at: &[usize]) -> Vec<(u8, Vec<u8>)> {
    let mut s = PageSplitter::new(ChunkerParams::default()).unwrap();
    let mut out = Vec::new();
    let mut record = |u: Unit<'_>| {
        let tag = match u {
            Unit::Literal(_) => 0,
            Unit::Page(..) => 1,
            Unit::Chunk(_) => 2,
        };
        out.push((tag, u.bytes().to_vec()));
        Ok(())
    };
    let mut from = 0;
    for &at in split_at {
        s.push(&data[from..at], &mut record).unwrap();
        from = at;
    }
    s.push(&data[from..], &mut record).unwrap();
    s.finish(&mut record).unwrap();
    out
}

fn encode(data: &[u8], present: Vec<ChunkId>) -> (Vec<u8>, Encoder) {
    let mut e = Encoder::with_split(
        ChunkerParams::default(),
        CodecLevel::fast(Codec::Zstd),
        Split::Pages,
    )
    .unwrap();
    e.mark_present(present);
    let mut out = Vec::new();
    for piece in data.chunks(100_003) {
        e.push(piece, &mut out).unwrap();
    }
    e.finish(&mut out).unwrap();
    (out, e)
}

fn decode_with(
    cache: Box<dyn ChunkCache>,
    held: Vec<ChunkId>,
    wire: &[u8],
) -> Result<Vec<u8>, HdeError> {
    let mut d = Decoder::new(cache);
    d.set_held(held);
    let mut out = Vec::new();
    for piece in wire.chunks(7_777) {
        d.push(piece, &mut out)?;
    }
    d.finish()?;
    Ok(out)
}

fn decode(wire: &[u8]) -> Result<Vec<u8>, HdeError> {
    decode_with(Box::new(MemoryChunks::default()), Vec::new(), wire)
}

#[test]
fn a_qemu_like_stream_splits_into_its_pages_and_round_trips() {
    let mut rng = Rng::new(1);
    let device = rng.bytes(40_000);
    let (data, page_records) = qemu_like(&image(&mut rng, 300), &device);
    let u = units(&data, &[]);
    assert_eq!(u.iter().map(|(_, b)| b.len()).sum::<usize>(), data.len());
    assert_eq!(u.iter().filter(|(t, _)| *t == 1).count(), page_records);
    let (wire, e) = encode(&data, Vec::new());
    assert_eq!(&wire[..4], b"HDE\x02");
    assert_eq!(decode(&wire).unwrap(), data);
    // The 60 text pages are one page repeated: it goes out in full once.
    assert_eq!(e.stats().dedup_chunks, 59, "{:?}", e.stats());
}

#[test]
fn units_do_not_depend_on_write_boundaries() {
    let mut rng = Rng::new(2);
    let device = rng.bytes(3000);
    let (data, _) = qemu_like(&image(&mut rng, 200), &device);
    let whole = units(&data, &[]);
    // Every split point across the first records, and a window around a mid-stream page.
    let mid = data.len() / 2;
    for at in (1..2 * PAGE_SIZE + 64).chain(mid..mid + PAGE_SIZE + 16) {
        assert!(units(&data, &[at]) == whole, "split at {at}");
    }
    let many: Vec<usize> = (1..data.len()).step_by(4093).collect();
    assert!(units(&data, &many) == whole);
}

#[test]
fn garbled_and_foreign_input_round_trips_exactly() {
    let mut rng = Rng::new(3);
    let device = rng.bytes(10_000);
    let (mut data, _) = qemu_like(&image(&mut rng, 120), &device);
    let mut cases = vec![
        Vec::new(),
        vec![0x28],
        rng.bytes(3 << 20),                // not QEMU at all
        data[..data.len() - 100].to_vec(), // a page record cut short
    ];
    // Unknown flags, an idstr of length 0, a word with high bits set, in the middle of pages.
    for (at, bytes) in [
        (20_000usize, [0u8, 0, 0, 0, 0, 0, 0x0f, 0xff]),
        (60_000, [0, 0, 0, 0, 0, 0, 0x10, 0x08]),
        (90_000, [0xff; 8]),
    ] {
        data[at..at + 8].copy_from_slice(&bytes);
    }
    cases.push(data);
    // Page-record lookalikes in random data.
    let mut fake = rng.bytes(1 << 20);
    for at in (0..fake.len() - 8).step_by(4104) {
        fake[at..at + 8].copy_from_slice(&0x28u64.to_be_bytes());
    }
    cases.push(fake);
    for (i, case) in cases.iter().enumerate() {
        let (wire, _) = encode(case, Vec::new());
        assert!(decode(&wire).unwrap() == *case, "case {i}");
    }
}

#[test]
fn a_repeat_stream_refers_to_the_held_image_in_runs() {
    let mut rng = Rng::new(4);
    let device = rng.bytes(20_000);
    let mut pages = image(&mut rng, 600);
    let (first, _) = qemu_like(&pages, &device);
    for i in (7..600).step_by(40) {
        pages[i] = rng.bytes(PAGE_SIZE); // 15 pages rewritten
    }
    let (second, _) = qemu_like(&pages, &device);

    let mut store = MemoryChunks::default();
    let (w1, e1) = encode(&first, Vec::new());
    let mut d = Decoder::new(Box::new(std::mem::take(&mut store)));
    let mut out = Vec::new();
    d.push(&w1, &mut out).unwrap();
    d.finish().unwrap();
    assert!(out == first);

    let held = e1.held_ids();
    let (w2, e2) = encode(&second, held.clone());
    assert_eq!(e2.held(), &held[..]);
    // 15 new pages of random data, the rest runs of references: far below one ref per page.
    assert!(w2.len() < 15 * PAGE_SIZE + 30_000, "{} bytes", w2.len());

    // The decoder needs the first stream's chunks and the same HELD list.
    let cache = SharedChunks::default();
    assert!(decode_with(Box::new(cache.clone()), Vec::new(), &w1).unwrap() == first);
    assert!(decode_with(Box::new(cache.clone()), held.clone(), &w2).unwrap() == second);
    let mut wrong = held.clone();
    wrong.swap(0, 1);
    let err = decode_with(Box::new(cache.clone()), wrong, &w2).unwrap_err();
    assert_eq!(err.code(), "ERR_HDE_STREAM_MISMATCH");
    let err = decode_with(Box::new(MemoryChunks::default()), held, &w2).unwrap_err();
    assert_eq!(err.code(), "ERR_HDE_MISSING_CHUNK");
}

#[test]
fn with_the_previous_image_a_page_that_changed_a_little_costs_a_delta() {
    let mut rng = Rng::new(6);
    let device = rng.bytes(8_000);
    let mut pages = image(&mut rng, 400);
    let (first, _) = qemu_like(&pages, &device);
    for i in (2..400).step_by(5) {
        pages[i][100..108].copy_from_slice(b"changed!"); // 80 random pages, 8 bytes each
    }
    let (second, _) = qemu_like(&pages, &device);
    let (w1, e1) = encode(&first, Vec::new());
    let held = e1.held_ids();
    let without = encode(&second, held.clone()).0;
    let mut e2 = Encoder::with_split(
        ChunkerParams::default(),
        CodecLevel::fast(Codec::Zstd),
        Split::Pages,
    )
    .unwrap();
    e2.mark_present(held.clone());
    e2.set_reference(&first).unwrap();
    let mut w2 = Vec::new();
    e2.push(&second, &mut w2).unwrap();
    e2.finish(&mut w2).unwrap();
    assert_eq!(e2.stats().delta_units, 80, "{:?}", e2.stats());
    assert!(
        w2.len() * 10 < without.len(),
        "{} vs {}",
        w2.len(),
        without.len()
    );

    let cache = SharedChunks::default();
    assert!(decode_with(Box::new(cache.clone()), Vec::new(), &w1).unwrap() == first);
    assert!(decode_with(Box::new(cache.clone()), held.clone(), &w2).unwrap() == second);
    for at in (4..w2.len()).step_by(7) {
        let mut bad = w2.clone();
        bad[at] ^= 0x04;
        assert!(
            decode_with(Box::new(cache.clone()), held.clone(), &bad).is_err(),
            "flip at {at}"
        );
    }
    // CDC mode has no pages to delta.
    let mut cdc = Encoder::new(ChunkerParams::default(), CodecLevel::fast(Codec::Zstd)).unwrap();
    assert_eq!(
        cdc.set_reference(&first).unwrap_err().code(),
        "ERR_HDE_INVALID_PARAM"
    );
}

#[test]
fn every_corruption_of_the_wire_is_a_typed_error() {
    let mut rng = Rng::new(5);
    let device = rng.bytes(5000);
    let (data, _) = qemu_like(&image(&mut rng, 40), &device);
    let (wire, _) = encode(&data, Vec::new());
    let known = [
        "ERR_HDE_UNKNOWN_CODEC",
        "ERR_HDE_TRUNCATED",
        "ERR_HDE_MALFORMED",
        "ERR_HDE_CHUNK_CORRUPT",
        "ERR_HDE_MISSING_CHUNK",
        "ERR_HDE_STREAM_MISMATCH",
        "ERR_HDE_CODEC",
    ];
    for at in (0..wire.len())
        .step_by(53)
        .chain(wire.len() - 80..wire.len())
    {
        let mut bad = wire.clone();
        bad[at] ^= 0x41;
        let err = decode(&bad).unwrap_err();
        assert!(known.contains(&err.code()), "flip at {at}: {err}");
    }
    for cut in (0..wire.len()).step_by(211) {
        let err = decode(&wire[..cut]).unwrap_err();
        assert_eq!(err.code(), "ERR_HDE_TRUNCATED", "cut at {cut}: {err}");
    }
    // A format 2 record in a format 1 stream, and the other way round.
    let mut mixed = b"HDE\x01".to_vec();
    mixed.extend_from_slice(&wire[4..]);
    assert_eq!(decode(&mixed).unwrap_err().code(), "ERR_HDE_MALFORMED");
}

/// A cache two decoders share, as a destination's chunk store is shared by its migrations.
#[derive(Clone, Default)]
struct SharedChunks(std::sync::Arc<std::sync::Mutex<MemoryChunks>>);

impl ChunkCache for SharedChunks {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> dwcp_hde::Result<bool> {
        self.0.lock().unwrap().fetch(id, out)
    }
    fn keep(&mut self, id: &ChunkId, raw: &[u8], frame: &[u8]) -> dwcp_hde::Result<()> {
        self.0.lock().unwrap().keep(id, raw, frame)
    }
}
