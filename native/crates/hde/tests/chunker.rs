//! The streaming chunker against the fastcdc crate, and the content-defined property.
mod common;

use common::{vm_like, Rng};
use dwcp_hde::{Chunker, ChunkerParams, Normalization};
use fastcdc::v2020::{self, FastCDC};

fn small() -> ChunkerParams {
    ChunkerParams {
        min_size: 2048,
        avg_size: 8192,
        max_size: 65536,
        normalization: Normalization::Level1,
    }
}

fn reference(p: ChunkerParams, data: &[u8]) -> Vec<usize> {
    FastCDC::with_level(
        data,
        p.min_size,
        p.avg_size,
        p.max_size,
        v2020::Normalization::Level1,
    )
    .map(|c| c.length)
    .collect()
}

fn streamed(p: ChunkerParams, data: &[u8], rng: &mut Rng, max_piece: usize) -> Vec<usize> {
    let mut chunker = Chunker::new(p).expect("params");
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (rng.below(max_piece) + 1).min(rest.len());
        chunker
            .push(&rest[..n], |c| {
                out.push(c.len());
                Ok(())
            })
            .expect("push");
        rest = &rest[n..];
    }
    chunker
        .finish(|c| {
            out.push(c.len());
            Ok(())
        })
        .expect("finish");
    out
}

#[test]
fn whole_input_matches_fastcdc() {
    let data = Rng::new(7).bytes(3 << 20);
    for p in [small(), ChunkerParams::default()] {
        let ours = Chunker::chunk_lengths(p, &data).expect("chunk");
        assert_eq!(ours, reference(p, &data));
        assert_eq!(ours.iter().sum::<usize>(), data.len());
    }
}

#[test]
fn any_split_gives_the_same_chunks() {
    let mut rng = Rng::new(11);
    let data = vm_like(2 << 20, 3);
    let p = small();
    let whole = reference(p, &data);
    for max_piece in [1usize << 6, 1000, 9000, 70_000, 1 << 20] {
        assert_eq!(
            streamed(p, &data, &mut rng, max_piece),
            whole,
            "pieces up to {max_piece}"
        );
    }
}

#[test]
fn zeros_cut_at_max_size() {
    let p = small();
    let lens = Chunker::chunk_lengths(p, &vec![0u8; 300_000]).expect("chunk");
    assert!(
        lens[..lens.len() - 1].iter().all(|&l| l == p.max_size),
        "{lens:?}"
    );
}

#[test]
fn an_insertion_changes_only_nearby_chunks() {
    let p = small();
    let original = Rng::new(5).bytes(4 << 20);
    let mut edited = original.clone();
    edited.splice(1000..1000, b"inserted near the start".iter().copied());
    let a = Chunker::chunk_lengths(p, &original).expect("chunk");
    let b = Chunker::chunk_lengths(p, &edited).expect("chunk");
    // Boundaries as absolute offsets in the original coordinates.
    let ends = |lens: &[usize], shift: usize| {
        let mut at = 0usize;
        lens.iter()
            .map(|l| {
                at += l;
                at - shift.min(at)
            })
            .collect::<std::collections::HashSet<_>>()
    };
    let before = ends(&a, 0);
    let after = ends(&b, 23);
    let changed = before.symmetric_difference(&after).count();
    assert!(a.len() > 400);
    assert!(changed <= 4, "{changed} boundaries moved of {}", a.len());
}
