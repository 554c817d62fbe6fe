//! Deterministic test data shared by the integration tests.
#![allow(dead_code, missing_docs, clippy::cast_possible_truncation)]

/// xorshift64*: reproducible pseudo-random bytes without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Memory-like data: random pages, zero pages, repeated pages and text.
pub fn vm_like(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let page = 4096;
    let text = b"The quick brown fox jumps over the lazy dog. DWCP migrates running VMs. ";
    let repeated = rng.bytes(page);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match rng.below(4) {
            0 => out.extend_from_slice(&rng.bytes(page)),
            1 => out.extend_from_slice(&[0u8; 4096]),
            2 => out.extend_from_slice(&repeated),
            _ => {
                for _ in 0..page / text.len() + 1 {
                    out.extend_from_slice(text);
                }
            }
        }
    }
    out.truncate(len);
    out
}
