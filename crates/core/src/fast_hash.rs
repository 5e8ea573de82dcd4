//! A fast, non-keyed hasher (FNV-1a over 64 bits) for the snapshot's and router's maps, whose keys
//! are chosen by permgate or the operator (key values, app ids, path literals), never inserted by
//! callers. Maps keyed by caller input keep the standard, randomly keyed hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // One multiply-mix for integer keys instead of eight byte rounds.
        self.0 = (self.0 ^ n).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n.cast_unsigned());
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;
