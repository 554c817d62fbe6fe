//! The threads an encoder or decoder may spread its per-chunk work over.
//!
//! Cutting chunks and ordering records stay on the caller's thread (FastCDC is a sequential
//! scan, and dedup decides by first occurrence). What is independent per chunk, BLAKE3 and
//! compression on the way out, decompression and verification on the way in, runs on a rayon
//! pool owned by the encoder or decoder. Results come back in input order, so a stream's
//! bytes never depend on the thread count.

use rayon::prelude::*;

use crate::{HdeError, Result};

/// Most threads one encoder or decoder takes.
pub const MAX_THREADS: usize = 64;

/// One thread (no pool), or a pool of several.
#[derive(Default)]
pub struct Workers {
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads())
            .finish()
    }
}

impl Workers {
    /// `threads` workers: 1 runs everything on the caller's thread.
    pub fn new(threads: usize) -> Result<Self> {
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(HdeError::param(
                "threads",
                format!("{threads} is outside 1..={MAX_THREADS}"),
            ));
        }
        if threads == 1 {
            return Ok(Workers::default());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dwcp-hde-{i}"))
            .build()
            .map_err(|e| HdeError::param("threads", format!("no pool of {threads}: {e}")))?;
        Ok(Workers { pool: Some(pool) })
    }

    /// The default for a pipeline stage: the host's cores, at most 8.
    pub fn available() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }

    /// The thread count.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(1, rayon::ThreadPool::current_num_threads)
    }

    /// `f` over `items`, results in the order of `items`.
    pub fn map<T, R, F>(&self, items: &[T], f: F) -> Vec<R>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync + Send,
    {
        match &self.pool {
            Some(pool) if items.len() > 1 => pool.install(|| items.par_iter().map(f).collect()),
            _ => items.iter().map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order_at_any_thread_count() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [1, 2, 7] {
            let workers = Workers::new(threads).expect("workers");
            assert_eq!(workers.threads(), threads);
            let squares = workers.map(&items, |i| i * i);
            assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_thread_count_out_of_range_is_a_parameter_error() {
        for threads in [0, MAX_THREADS + 1] {
            let err = Workers::new(threads).expect_err("out of range");
            assert_eq!(err.code(), "ERR_HDE_INVALID_PARAM", "{err}");
        }
    }
}
