//! A fast, non-keyed hasher (FxHash's word-at-a-time mix) for the snapshot's and router's maps,
//! whose keys are chosen by permgate or the operator (key values, app ids, catalog ids, path
//! literals), never inserted by callers: a caller only looks up, so it cannot flood a map with
//! colliding keys.
//! Maps keyed by caller input keep the standard, randomly keyed hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Clone, Copy, Default)]
pub struct Fast(u64);

/// FxHash's multiplier: one rotate, xor and multiply per 8-byte word.
const K: u64 = 0x517c_c1b7_2722_0a95;

impl Fast {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

/// [`Fast`]'s hash of `bytes` alone (no terminator, as a `str` key's hash has).
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fast::default();
    h.write(bytes);
    h.0
}

impl Hasher for Fast {
    fn finish(&self) -> u64 {
        self.0
    }

    /// A word at a time in place: the last word is the last eight bytes, overlapping the one
    /// before (no copy of a short tail), then the length.
    fn write(&mut self, bytes: &[u8]) {
        let (words, _) = bytes.as_chunks::<8>();
        for w in words {
            self.add(u64::from_le_bytes(*w));
        }
        let last = match bytes.last_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => bytes.iter().fold(0, |w, &b| (w << 8) | u64::from(b)),
        };
        self.add(last);
        self.add(bytes.len() as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_i64(&mut self, n: i64) {
        self.add(n.cast_unsigned());
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fast>>;
