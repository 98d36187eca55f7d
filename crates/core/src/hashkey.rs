//! The secret key of the hashes a sender could otherwise steer (issue #15): the flow hash that
//! picks a balanced output and decides flow sampling, and the de-duplication key.
//!
//! Unkeyed, a sender who knows the hash can choose flows that all land on one tool of a
//! balanced farm, that are always (or never) sampled, or packets that collide in the dedup
//! table. With a key the sender does not know, none of that can be aimed. The flow hash is
//! SipHash-1-3 (the `siphasher` crate; the keyed hash std's `HashMap` uses) over the symmetric
//! 5-tuple; the dedup key, which hashes whole packets at line rate, is XXH3 with a 192-byte secret
//! expanded from the key by SipHash (fast, keyed, though not a PRF: it makes collisions
//! unaimable, which is what the table needs).
//!
//! `vxspan run` takes the key from `management.hash_key_file` (instances that must agree, such
//! as two brokers balancing one farm, share the file), or draws one at start. `vxspan replay`
//! uses [`HashKey::REPLAY`] unless `--hash-key` is given, so its outputs are reproducible.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// Bytes of a key.
pub const KEY_LEN: usize = vxspan_config::HASH_KEY_LEN;
const SECRET_LEN: usize = 192;

#[derive(Clone, PartialEq, Eq)]
pub struct HashKey {
    key: [u8; KEY_LEN],
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)") // never printed
    }
}

impl HashKey {
    /// The fixed key of `vxspan replay`: the 16 ASCII bytes `vxspan-replay-k1`.
    pub const REPLAY_BYTES: [u8; KEY_LEN] = *b"vxspan-replay-k1";

    pub fn replay() -> HashKey {
        HashKey::new(Self::REPLAY_BYTES)
    }

    pub fn new(key: [u8; KEY_LEN]) -> HashKey {
        let mut secret = [0u8; SECRET_LEN];
        for (i, chunk) in secret.chunks_exact_mut(8).enumerate() {
            let mut h = SipHasher13::new_with_key(&key);
            h.write(b"vxspan xxh3 secret");
            h.write_u64(i as u64);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        HashKey { key, secret }
    }

    /// A key written as 32 hexadecimal digits (surrounding white space ignored).
    pub fn parse_hex(text: &str) -> Result<HashKey, String> {
        vxspan_config::parse_hash_key(text).map(HashKey::new)
    }

    /// The keyed hash of a flow key's bytes.
    #[inline]
    pub fn flow(&self, bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(bytes);
        h.finish()
    }

    /// The key as SipHash's two words (little-endian halves), for the XDP program's copy of
    /// [`HashKey::flow`].
    pub fn sip_words(&self) -> (u64, u64) {
        let (a, b) = self.key.split_at(8);
        (
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        )
    }

    /// XXH3 of a short key under the secret (reassembly's datagram index).
    #[inline]
    pub fn short(&self, bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_secret(bytes, &self.secret)
    }

    /// A streaming hasher for de-duplication keys.
    #[inline]
    pub fn dedup_hasher(&self) -> xxhash_rust::xxh3::Xxh3 {
        xxhash_rust::xxh3::Xxh3::with_secret(self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_every_hash_and_the_replay_key_is_fixed() {
        let a = HashKey::replay();
        let b = HashKey::new([7; KEY_LEN]);
        assert_eq!(a.flow(b"flow"), HashKey::replay().flow(b"flow"));
        assert_ne!(a.flow(b"flow"), b.flow(b"flow"));
        let d = |k: &HashKey| {
            let mut h = k.dedup_hasher();
            h.update(b"a packet");
            h.digest()
        };
        assert_ne!(d(&a), d(&b));
        assert_eq!(d(&a), d(&HashKey::replay()));
        // The documented replay key, in hex, is what `--hash-key` takes.
        let hex: String = HashKey::REPLAY_BYTES
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(HashKey::parse_hex(&hex).unwrap(), a);
        assert!(HashKey::parse_hex("00").is_err());
        assert!(HashKey::parse_hex(&"g".repeat(32)).is_err());
    }
}
