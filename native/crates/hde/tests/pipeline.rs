//! Encoder and decoder end to end: exact rebuild, dedup, and rejection of bad streams.
mod common;

use common::{vm_like, Rng};
use dwcp_hde::wire::STREAM_HEADER;
use dwcp_hde::{ChunkStore, ChunkerParams, Codec, CodecLevel, Decoder, Encoder, HdeError};

fn encode(data: &[u8], codec: Codec) -> (Vec<u8>, dwcp_hde::EncoderStats) {
    let mut enc = Encoder::new(ChunkerParams::default(), CodecLevel::fast(codec)).expect("encoder");
    let mut wire = Vec::new();
    for piece in data.chunks(1_000_000) {
        enc.push(piece, &mut wire).expect("push");
    }
    enc.finish(&mut wire).expect("finish");
    (wire, enc.stats())
}

fn decode(wire: &[u8]) -> Result<Vec<u8>, HdeError> {
    let mut dec = Decoder::in_memory();
    let mut out = Vec::new();
    for piece in wire.chunks(77_777) {
        dec.push(piece, &mut out)?;
    }
    dec.finish()?;
    Ok(out)
}

#[test]
fn every_codec_rebuilds_the_exact_stream() {
    let data = vm_like(8 << 20, 1);
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd, Codec::Deflate] {
        let (wire, stats) = encode(&data, codec);
        assert_eq!(decode(&wire).expect("decode"), data, "{codec:?}");
        assert_eq!(stats.bytes_in, data.len() as u64);
        assert_eq!(stats.bytes_out, wire.len() as u64);
        if codec != Codec::None {
            assert!(
                wire.len() < data.len() / 2,
                "{codec:?}: {} of {}",
                wire.len(),
                data.len()
            );
        }
    }
}

#[test]
fn repeated_content_goes_out_once() {
    let block = Rng::new(9).bytes(4 << 20);
    let data = [block.clone(), block.clone(), block].concat();
    let (wire, stats) = encode(&data, Codec::Zstd);
    assert!(stats.dedup_bytes > 7 << 20, "{stats:?}");
    assert!(
        wire.len() < (5 << 20),
        "random block sent more than once: {}",
        wire.len()
    );
    assert_eq!(decode(&wire).expect("decode"), data);
}

#[test]
fn chunks_the_receiver_holds_are_not_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = Rng::new(3).bytes(6 << 20);
    let (first, _) = encode(&data, Codec::Lz4);
    let mut store =
        ChunkStore::open(dir.path(), 1 << 30, CodecLevel::fast(Codec::Lz4)).expect("open");
    {
        let mut dec = Decoder::new(Box::new(
            ChunkStore::open(dir.path(), 1 << 30, CodecLevel::fast(Codec::Lz4)).expect("open"),
        ));
        let mut out = Vec::new();
        dec.push(&first, &mut out).expect("decode into store");
        dec.finish().expect("finish");
        assert_eq!(out, data);
    }
    store = ChunkStore::open(
        store.root().to_path_buf(),
        1 << 30,
        CodecLevel::fast(Codec::Lz4),
    )
    .expect("reopen");
    let mut enc =
        Encoder::new(ChunkerParams::default(), CodecLevel::fast(Codec::Lz4)).expect("encoder");
    enc.mark_present(store.ids().copied());
    let mut wire = Vec::new();
    enc.push(&data, &mut wire).expect("push");
    enc.finish(&mut wire).expect("finish");
    assert_eq!(enc.stats().dedup_bytes, data.len() as u64);
    assert_eq!(enc.stats().known_bytes, data.len() as u64);
    assert!(
        wire.len() < 10_000,
        "second send should be refs only: {}",
        wire.len()
    );
    let mut dec = Decoder::new(Box::new(store));
    let mut out = Vec::new();
    dec.push(&wire, &mut out).expect("decode refs");
    dec.finish().expect("finish");
    assert_eq!(out, data);
}

#[test]
fn a_flipped_bit_on_the_wire_is_a_corrupt_chunk() {
    let data = Rng::new(4).bytes(1 << 20);
    let (mut wire, _) = encode(&data, Codec::None);
    let at = wire.len() / 2; // inside a stored payload
    wire[at] ^= 0x10;
    let err = decode(&wire).expect_err("must be rejected");
    assert!(matches!(err, HdeError::ChunkCorrupt { .. }), "{err:?}");
    assert_eq!(err.code(), "ERR_HDE_CHUNK_CORRUPT");
}

#[test]
fn truncated_and_malformed_streams_are_typed_errors() {
    let data = vm_like(1 << 20, 8);
    let (wire, _) = encode(&data, Codec::Zstd);
    let cut = decode(&wire[..wire.len() - 5]).expect_err("truncated");
    assert!(matches!(cut, HdeError::Truncated { .. }), "{cut:?}");
    let mut bad_header = wire.clone();
    bad_header[0] = b'X';
    assert!(matches!(
        decode(&bad_header),
        Err(HdeError::Malformed { .. })
    ));
    let mut bad_tag = wire.clone();
    bad_tag[STREAM_HEADER.len()] = 0x7f;
    assert!(matches!(decode(&bad_tag), Err(HdeError::Malformed { .. })));
    let mut trailing = wire.clone();
    trailing.push(1);
    assert!(decode(&trailing).is_err());
    let mut enc =
        Encoder::new(ChunkerParams::default(), CodecLevel::fast(Codec::Zstd)).expect("encoder");
    let mut out = Vec::new();
    enc.finish(&mut out).expect("empty stream");
    assert!(matches!(
        enc.push(b"late", &mut out),
        Err(HdeError::Finished(_))
    ));
    assert_eq!(
        decode(&out).expect("empty stream decodes"),
        Vec::<u8>::new()
    );
}

#[test]
fn a_ref_to_an_unknown_chunk_is_missing() {
    let mut wire = STREAM_HEADER.to_vec();
    dwcp_hde::wire::write_ref(&mut wire, &dwcp_hde::ChunkId::of(b"nobody has this"), 15)
        .expect("ref");
    assert!(matches!(decode(&wire), Err(HdeError::MissingChunk(_))));
}
