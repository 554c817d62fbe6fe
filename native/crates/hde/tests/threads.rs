//! Encoding and decoding on several threads: the same stream, the same errors, as on one.
mod common;

use common::{vm_like, Rng};
use dwcp_hde::{
    ChunkId, Chunker, ChunkerParams, Codec, CodecLevel, Decoder, DecoderStats, Encoder,
    EncoderStats, HdeError,
};

/// VM-like content with repeats, some within a few chunks of each other (a REF inside the run
/// the decoder takes together) and some far apart.
fn repetitive(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let block = rng.bytes(300_000);
    let mut data = vm_like(len, seed);
    for _ in 0..6 {
        let at = rng.below(len - block.len());
        data[at..at + block.len()].copy_from_slice(&block);
    }
    data
}

fn encode(data: &[u8], threads: usize, present: &[ChunkId], seed: u64) -> (Vec<u8>, EncoderStats) {
    let mut enc =
        Encoder::new(ChunkerParams::default(), CodecLevel::fast(Codec::Zstd)).expect("encoder");
    enc.set_threads(threads).expect("threads");
    assert_eq!(enc.threads(), threads);
    enc.mark_present(present.iter().copied());
    let mut rng = Rng::new(seed);
    let mut wire = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(600_000)).min(rest.len());
        enc.push(&rest[..n], &mut wire).expect("push");
        rest = &rest[n..];
    }
    enc.finish(&mut wire).expect("finish");
    (wire, enc.stats())
}

fn decode(
    wire: &[u8],
    threads: usize,
    piece: usize,
) -> (Result<(), HdeError>, Vec<u8>, DecoderStats) {
    let mut dec = Decoder::in_memory();
    dec.set_threads(threads).expect("threads");
    let mut out = Vec::new();
    for part in wire.chunks(piece) {
        if let Err(e) = dec.push(part, &mut out) {
            return (Err(e), out, dec.stats());
        }
    }
    (dec.finish(), out, dec.stats())
}

#[test]
fn the_stream_is_the_same_at_any_thread_count() {
    let data = repetitive(12 << 20, 21);
    let present: Vec<ChunkId> = {
        let mut ids = Vec::new();
        let mut chunker = Chunker::new(ChunkerParams::default()).expect("chunker");
        chunker
            .push(&data[..3 << 20], |c| {
                ids.push(ChunkId::of(c));
                Ok(())
            })
            .expect("chunk");
        ids
    };
    let (one, one_stats) = encode(&data, 1, &present, 5);
    assert!(
        one_stats.dedup_chunks > one_stats.known_chunks,
        "{one_stats:?}"
    );
    assert!(one_stats.known_chunks > 0, "{one_stats:?}");
    for threads in [2, 4] {
        let (wire, stats) = encode(&data, threads, &present, 5);
        assert_eq!(stats, one_stats, "{threads} threads");
        assert!(wire == one, "{threads} threads: the stream differs");
        // Other write boundaries, same stream.
        let (other, _) = encode(&data, threads, &present, 99);
        assert!(
            other == one,
            "{threads} threads, other pieces: the stream differs"
        );
    }
}

#[test]
fn several_threads_decode_the_exact_stream() {
    let data = repetitive(12 << 20, 22);
    let (wire, _) = encode(&data, 1, &[], 6);
    let (ok, out, one) = decode(&wire, 1, 77_777);
    ok.expect("one thread");
    assert!(out == data);
    assert!(one.chunks_reused > 0, "{one:?}");
    for (threads, piece) in [(2, wire.len()), (4, 1 << 20), (3, 77_777)] {
        let (ok, out, stats) = decode(&wire, threads, piece);
        ok.expect("decode");
        assert!(out == data, "{threads} threads, pieces of {piece}");
        assert_eq!(stats, one, "{threads} threads");
    }
}

#[test]
fn a_corrupt_chunk_in_a_run_fails_as_on_one_thread() {
    let data = Rng::new(23).bytes(8 << 20);
    let (mut wire, _) = {
        let mut enc =
            Encoder::new(ChunkerParams::default(), CodecLevel::fast(Codec::None)).expect("encoder");
        let mut wire = Vec::new();
        enc.push(&data, &mut wire).expect("push");
        enc.finish(&mut wire).expect("finish");
        (wire, ())
    };
    let at = wire.len() * 3 / 5; // a stored payload, mid-stream
    wire[at] ^= 0x01;
    let (err, before, _) = decode(&wire, 1, wire.len());
    let err = err.expect_err("one thread must reject it");
    assert_eq!(err.code(), "ERR_HDE_CHUNK_CORRUPT");
    assert!(!before.is_empty() && before.len() < data.len() * 3 / 5);
    for threads in [2, 4] {
        let (e, out, _) = decode(&wire, threads, wire.len());
        let e = e.expect_err("must reject it");
        assert_eq!(e.code(), "ERR_HDE_CHUNK_CORRUPT", "{threads} threads");
        // What came out before the bad chunk is exactly what one thread gives, and true.
        assert!(
            out == before,
            "{threads} threads: {} bytes out, one thread {}",
            out.len(),
            before.len()
        );
        assert!(out == data[..out.len()]);
    }
}
