//! Broker features with state: de-duplication and rate limiting (balancing is
//! [`crate::rendezvous`]). Both are timed by the packets' own timestamps, so replay tests them deterministically.

use vxspan_config::{Dedup, RateLimit};
use vxspan_wire::{EtherType, L2Info};

/// The de-duplication key of a frame: a hash of the IP packet with TTL / hop limit and the IPv4
/// header checksum masked (they change hop by hop), so copies taken at two SPAN points, or with
/// different VLAN tags or tunnel headers, match. A frame that is not IP is keyed on everything
/// after its VLAN tags. Keyed (see [`crate::hashkey`]).
pub fn dedup_key(key: &crate::hashkey::HashKey, frame: &[u8], l2: &L2Info) -> u64 {
    let l3 = frame.get(l2.l3_offset..).unwrap_or(&[]);
    let mut h = key.dedup_hasher();
    match l2.ethertype {
        EtherType::Ipv4 if l3.len() >= 20 && l3[0] >> 4 == 4 => {
            let total = usize::from(u16::from_be_bytes([l3[2], l3[3]])).clamp(20, l3.len());
            h.update(&l3[..8]);
            h.update(&[0, l3[9], 0, 0]);
            h.update(&l3[12..total]);
        }
        EtherType::Ipv6 if l3.len() >= 40 && l3[0] >> 4 == 6 => {
            let total = (40 + usize::from(u16::from_be_bytes([l3[4], l3[5]]))).min(l3.len());
            h.update(&l3[..7]);
            h.update(&[0]);
            h.update(&l3[8..total]);
        }
        _ => {
            h.update(&u16::from(l2.ethertype).to_be_bytes());
            h.update(l3);
        }
    }
    h.digest()
}

/// A fixed-size table of recently seen packets.
pub struct DedupTable {
    window_ns: u64,
    /// (key, time seen + 1); time 0 marks an empty slot.
    slots: Vec<(u64, u64)>,
    pub evictions: u64,
}

impl DedupTable {
    pub fn new(cfg: Dedup) -> Self {
        DedupTable {
            window_ns: cfg.window_ns,
            slots: vec![(0, 0); cfg.table_size],
            evictions: 0,
        }
    }

    /// Whether `key` was seen within the window before `now`; if not, remembers it.
    pub fn seen(&mut self, key: u64, now: u64) -> bool {
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[(key as usize) & mask];
        let live = slot.1 != 0 && now.saturating_sub(slot.1 - 1) <= self.window_ns;
        if live && slot.0 == key {
            return true;
        }
        if live {
            self.evictions += 1;
        }
        *slot = (key, now + 1);
        false
    }
}

/// A byte token bucket, filled at the output's rate by the packets' timestamps.
pub struct TokenBucket {
    /// Tokens in byte-nanoseconds (bytes x 1e9), so integer arithmetic loses nothing.
    tokens: u128,
    cap: u128,
    rate: u128,
    last: u64,
    started: bool,
}

impl TokenBucket {
    pub fn new(cfg: RateLimit) -> Self {
        let cap = u128::from(cfg.burst_bytes) * 1_000_000_000;
        TokenBucket {
            tokens: cap,
            cap,
            rate: u128::from(cfg.bytes_per_sec),
            last: 0,
            started: false,
        }
    }

    /// Takes `bytes` at time `now` if the bucket holds them.
    pub fn take(&mut self, bytes: usize, now: u64) -> bool {
        if self.started && now > self.last {
            self.tokens = (self.tokens + u128::from(now - self.last) * self.rate).min(self.cap);
        }
        if !self.started || now > self.last {
            self.last = now;
            self.started = true;
        }
        let need = bytes as u128 * 1_000_000_000;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_window_and_evictions() {
        let mut t = DedupTable::new(Dedup {
            window_ns: 1_000_000,
            table_size: 1024,
        });
        assert!(!t.seen(42, 10));
        assert!(t.seen(42, 500_000));
        assert!(
            t.seen(42, 1_000_010),
            "still inside the window counted from the first sighting"
        );
        assert!(
            !t.seen(42, 1_000_011),
            "outside the window: passes, and is remembered again"
        );
        // A different key in the same slot within the window evicts.
        assert!(!t.seen(42 + 1024, 1_000_012));
        assert_eq!(t.evictions, 1);
    }

    #[test]
    fn token_bucket_by_packet_time() {
        // 1000 bytes/s, burst 100 bytes: 100 bytes at once, then 1 byte per ms.
        let mut b = TokenBucket::new(RateLimit {
            bytes_per_sec: 1000,
            burst_bytes: 100,
        });
        assert!(b.take(100, 0));
        assert!(!b.take(1, 0));
        assert!(!b.take(10, 9_000_000));
        assert!(b.take(10, 10_000_000));
        assert!(b.take(100, 1_000_000_000));
        assert!(!b.take(1, 1_000_000_000));
    }
}
