//! The index of Kakao-style app keys (32 lowercase hex digits): an open-addressing table with
//! linear probing whose entries hold the key's bytes, the app's slot, the key's id and kind inline,
//! a line each. A lookup usually reads one cache line, where a `HashMap` reads its control bytes
//! and then its bucket, two misses for a key among many. A presented key is looked up as its 32
//! bytes, four words compared: neither parsed nor checked digit by digit (only keys of hex digits
//! are indexed, so any other text finds nothing). Callers only look keys up, never insert them, so
//! no caller can crowd a probe sequence.

use crate::model::{KeyId, KeyKind};
use crate::snapshot::KeyRef;

/// A key's 32 bytes as four little-endian words.
pub(crate) type RawKey = [u64; 4];

/// `text`'s bytes as a [`RawKey`], if it is 32 bytes long.
pub(crate) fn raw_key(text: &str) -> Option<RawKey> {
    let bytes: &[u8; 32] = text.as_bytes().try_into().ok()?;
    let (words, _) = bytes.as_chunks::<8>();
    Some([0, 1, 2, 3].map(|i| words.get(i).map_or(0, |w| u64::from_le_bytes(*w))))
}

/// A line each: an entry never straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Entry {
    key: RawKey,
    id: KeyId,
    slot: u32,
    /// `None`: the entry is free.
    kind: Option<KeyKind>,
}

const FREE: Entry = Entry { key: [0; 4], id: KeyId(0), slot: 0, kind: None };

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    /// A power of two long (or empty), at most half full.
    entries: Vec<Entry>,
    len: usize,
}

impl KeyTable {
    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    /// Where `key`'s probe sequence starts: from the high bits of a multiply of every word (keys
    /// a store imports may share all but their last digits).
    fn home(key: &RawKey, mask: usize) -> usize {
        let [a, b, c, d] = *key;
        let mixed = (a ^ b.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (c ^ d.rotate_left(32)).wrapping_mul(0x517c_c1b7_2722_0a95);
        (mixed >> 32) as usize & mask
    }

    /// The index holding `key`, if any.
    fn find(&self, key: &RawKey) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = Self::home(key, mask);
        loop {
            let e = &self.entries[i];
            e.kind?;
            if e.key == *key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub(crate) fn get(&self, key: &RawKey) -> Option<KeyRef> {
        let e = &self.entries[self.find(key)?];
        Some(KeyRef { slot: e.slot, key: e.id, kind: e.kind? })
    }

    /// Adds `key`, or points it at `r` if it is there already.
    pub(crate) fn insert(&mut self, key: RawKey, r: KeyRef) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = Self::home(&key, mask);
        while self.entries[i].kind.is_some() && self.entries[i].key != key {
            i = (i + 1) & mask;
        }
        if self.entries[i].kind.is_none() {
            self.len += 1;
        }
        self.entries[i] = Entry { key, id: r.key, slot: r.slot, kind: Some(r.kind) };
    }

    /// Removes `key`, moving back the entries after it that probed past it (no tombstones).
    pub(crate) fn remove(&mut self, key: &RawKey) {
        let Some(mut hole) = self.find(key) else { return };
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            if self.entries[j].kind.is_none() {
                break;
            }
            let home = Self::home(&self.entries[j].key, mask);
            // Entry j stays if its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.entries[hole] = self.entries[j];
                hole = j;
            }
        }
        self.entries[hole] = FREE;
        self.len -= 1;
    }

    /// Makes room for `additional` more keys without growing again.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = (self.len + additional) * 2;
        if needed > self.entries.len() {
            self.resize(needed.next_power_of_two().max(16));
        }
    }

    fn grow(&mut self) {
        self.resize((self.entries.len() * 2).max(16));
    }

    /// Moves every key into a table of `capacity` entries (a power of two).
    fn resize(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.entries, vec![FREE; capacity]);
        self.len = 0;
        for e in old {
            if let Some(kind) = e.kind {
                self.insert(e.key, KeyRef { slot: e.slot, key: e.id, kind });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A key of the test's small key space, spread over the four words.
    fn k(n: u128) -> RawKey {
        [n as u64, (n >> 64) as u64, (n as u64).rotate_left(7), 0]
    }

    fn r(n: u32) -> KeyRef {
        KeyRef { slot: n, key: KeyId(i64::from(n)), kind: KeyKind::RestApi }
    }

    #[test]
    fn agrees_with_a_hash_map_through_inserts_overwrites_and_removes() {
        let mut table = KeyTable::default();
        let mut model: HashMap<u128, u32> = HashMap::new();
        // A small key space, so that keys collide, repeat and are removed while others probed past them.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = u128::from(x % 300) << (x % 3 * 40);
            match x % 5 {
                0 | 1 => {
                    table.insert(k(key), r(step));
                    model.insert(key, step);
                }
                2 => {
                    table.remove(&k(key));
                    model.remove(&key);
                }
                _ => {}
            }
            assert_eq!(table.get(&k(key)).map(|e| e.slot), model.get(&key).copied(), "step {step}, key {key}");
            assert_eq!(table.len, model.len());
        }
        for (key, slot) in &model {
            assert_eq!(table.get(&k(*key)).map(|e| e.slot), Some(*slot));
        }
        assert!(table.get(&k(u128::MAX)).is_none());
    }

    #[test]
    fn reserving_room_keeps_every_key_and_grows_no_more() {
        let mut table = KeyTable::default();
        for n in 0..100u32 {
            table.insert(k(u128::from(n) * 7919), r(n));
        }
        table.reserve(1000);
        let capacity = table.entries.len();
        assert!(capacity.is_power_of_two() && capacity >= 2 * 1100, "{capacity}");
        for n in 100..1100u32 {
            table.insert(k(u128::from(n) * 7919), r(n));
        }
        assert_eq!(table.entries.len(), capacity, "no growth after reserving");
        assert!((0..1100u32).all(|n| table.get(&k(u128::from(n) * 7919)).map(|e| e.slot) == Some(n)));
    }

    #[test]
    fn a_key_is_its_32_bytes_and_nothing_shorter_or_longer() {
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            raw_key(key),
            Some([
                u64::from_le_bytes(*b"01234567"),
                u64::from_le_bytes(*b"89abcdef"),
                u64::from_le_bytes(*b"01234567"),
                u64::from_le_bytes(*b"89abcdef")
            ])
        );
        assert_eq!(raw_key(&key[1..]), None);
        assert_eq!(raw_key(&format!("{key}0")), None);
        assert_ne!(raw_key(&key.to_uppercase()), raw_key(key), "upper case is another key");
    }

    #[test]
    fn an_empty_table_finds_nothing() {
        let mut table = KeyTable::default();
        assert!(table.get(&k(7)).is_none());
        table.remove(&k(7));
        table.insert(k(7), r(1));
        table.remove(&k(7));
        assert!(table.get(&k(7)).is_none());
    }
}
