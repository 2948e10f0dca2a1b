//! [`IdMap`]: the hash map the core keys by integer ids (jobs), with a cheap, well-mixed hasher
//! ([`IdHasher`], SplitMix64's finalizer). Such maps serve lookups only: no decision iterates one,
//! so their order can never make the core nondeterministic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A cheap, well-mixed hasher for integer ids (SplitMix64's finalizer). Lookups only.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A `HashMap` keyed by ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    #[test]
    fn id_hasher_spreads_one_off_ids() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<IdHasher>::default();
        let low: std::collections::BTreeSet<u64> = (0..1024u64)
            .map(|d| b.hash_one(JobId(d << 24)) & 1023)
            .collect();
        assert!(low.len() > 600, "poor spread: {}", low.len());
    }
}
