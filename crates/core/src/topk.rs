//! Counters keyed by what a packet says (a VNI, a GRE key, an ERSPAN session), bounded.
//!
//! A sender chooses these ids: 200,000 GRE keys would otherwise be 200,000 counters, in memory
//! and in every stats reply. [`TopTable`] keeps the ids the configuration names (pinned, always
//! listed) plus at most `capacity` others: the busiest, by the space-saving algorithm (Metwally,
//! Agrawal, El Abbadi, 2005). When a new id arrives and the table is full, the entry with the
//! smallest rank is evicted and its counts are added to `other`; the newcomer's rank starts at
//! the evicted rank plus one, so a heavy hitter that arrives late still gets in, but its
//! *counters* start at zero (an id that was evicted and returns restarts its counter; what it
//! had is in `other`). Nothing is lost: the entries plus `other` are every frame counted.
//! The unpinned entries sit in a binary min-heap by rank, so finding the one to evict is O(1)
//! and a count or a replacement costs O(log capacity): a flood of new ids never scans the table.
//!
//! How many distinct ids were folded into `other` is estimated with a HyperLogLog of 1,024
//! registers (standard error 1.04 / sqrt(1024), about 3.3 %; the small-range correction makes
//! it exact-ish below a few thousand). Tables from several workers merge: entries by id, `other`
//! summed, sketches by register maximum, then trimmed back to `capacity`.
//!
//! No crate does both: the sketch crates (`hyperloglogplus`, `streaming_algorithms`) allocate
//! per insert or carry generic machinery the packet path does not want; this is 150 lines.

use std::collections::HashMap;
use std::hash::Hash;

/// Registers of the distinct-id sketch (2^10).
const HLL_BITS: u32 = 10;
const HLL_M: usize = 1 << HLL_BITS;

/// A HyperLogLog sketch (Flajolet et al., 2007) with 1,024 one-byte registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    regs: Box<[u8; HLL_M]>,
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            regs: Box::new([0; HLL_M]),
        }
    }
}

impl Hll {
    /// Adds an item by its 64-bit hash.
    pub fn insert_hash(&mut self, h: u64) {
        let idx = (h >> (64 - HLL_BITS)) as usize;
        let rest = h << HLL_BITS;
        let rank = (rest.leading_zeros() + 1).min(64 - HLL_BITS + 1) as u8;
        if self.regs[idx] < rank {
            self.regs[idx] = rank;
        }
    }

    pub fn merge(&mut self, o: &Hll) {
        for (a, b) in self.regs.iter_mut().zip(o.regs.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// The estimated number of distinct items.
    pub fn estimate(&self) -> u64 {
        let m = HLL_M as f64;
        let sum: f64 = self.regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let zeros = self.regs.iter().filter(|&&r| r == 0).count();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln() // linear counting for small sets
        } else {
            raw
        };
        e.round() as u64
    }
}

/// Packets and bytes of one id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, o: Count) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry<K> {
    key: K,
    count: Count,
    /// Space-saving rank: `count.packets` plus what the entry it replaced had.
    rank: u64,
    pinned: bool,
}

/// The bounded table (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopTable<K: Copy + Eq + Hash> {
    capacity: usize,
    index: HashMap<K, usize>,
    entries: Vec<Entry<K>>,
    /// Unpinned entries (indices into `entries`) as a min-heap by rank.
    heap: Vec<usize>,
    /// Each entry's place in `heap` (`NOT_IN_HEAP` for pinned ones).
    pos: Vec<usize>,
    other: Count,
    folded: Hll,
}

const NOT_IN_HEAP: usize = usize::MAX;

fn hash_of<K: Hash>(k: &K) -> u64 {
    use std::hash::Hasher;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    k.hash(&mut h);
    h.finish()
}

impl<K: Copy + Eq + Hash> TopTable<K> {
    /// A table listing `pinned` always and at most `capacity` other ids.
    pub fn new(capacity: usize, pinned: impl IntoIterator<Item = K>) -> Self {
        let mut t = TopTable {
            capacity,
            index: HashMap::new(),
            entries: Vec::new(),
            heap: Vec::new(),
            pos: Vec::new(),
            other: Count::default(),
            folded: Hll::default(),
        };
        for k in pinned {
            if !t.index.contains_key(&k) {
                t.index.insert(k, t.entries.len());
                t.entries.push(Entry {
                    key: k,
                    count: Count::default(),
                    rank: 0,
                    pinned: true,
                });
                t.pos.push(NOT_IN_HEAP);
            }
        }
        t.index.reserve(capacity);
        t.entries.reserve(capacity);
        t.heap.reserve(capacity);
        t.pos.reserve(capacity);
        t
    }

    fn rank_at(&self, h: usize) -> u64 {
        self.entries[self.heap[h]].rank
    }

    fn swap_heap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a]] = a;
        self.pos[self.heap[b]] = b;
    }

    /// Restores the heap below place `h` after its rank grew.
    fn sift_down(&mut self, mut h: usize) {
        loop {
            let (l, r) = (2 * h + 1, 2 * h + 2);
            let mut m = h;
            if l < self.heap.len() && self.rank_at(l) < self.rank_at(m) {
                m = l;
            }
            if r < self.heap.len() && self.rank_at(r) < self.rank_at(m) {
                m = r;
            }
            if m == h {
                return;
            }
            self.swap_heap(h, m);
            h = m;
        }
    }

    /// Restores the heap above place `h` (a new entry at the end).
    fn sift_up(&mut self, mut h: usize) {
        while h > 0 && self.rank_at((h - 1) / 2) > self.rank_at(h) {
            self.swap_heap(h, (h - 1) / 2);
            h = (h - 1) / 2;
        }
    }

    /// Appends an unpinned entry.
    fn push_unpinned(&mut self, e: Entry<K>) {
        let i = self.entries.len();
        self.index.insert(e.key, i);
        self.entries.push(e);
        self.pos.push(self.heap.len());
        self.heap.push(i);
        self.sift_up(self.heap.len() - 1);
    }

    /// Counts `c` under `key`.
    pub fn add(&mut self, key: K, c: Count) {
        if let Some(&i) = self.index.get(&key) {
            let e = &mut self.entries[i];
            e.count.add(c);
            e.rank += c.packets;
            if self.pos[i] != NOT_IN_HEAP {
                self.sift_down(self.pos[i]);
            }
            return;
        }
        if self.heap.len() < self.capacity {
            self.push_unpinned(Entry {
                key,
                count: c,
                rank: c.packets,
                pinned: false,
            });
            return;
        }
        // Full: replace the unpinned entry of the smallest rank (the heap's root).
        let Some(&i) = self.heap.first() else {
            self.fold(key, c); // capacity 0: everything unnamed is `other`
            return;
        };
        let old = self.entries[i].clone();
        self.fold(old.key, old.count);
        self.index.remove(&old.key);
        self.index.insert(key, i);
        self.entries[i] = Entry {
            key,
            count: c,
            rank: old.rank + c.packets,
            pinned: false,
        };
        self.sift_down(0);
    }

    fn fold(&mut self, key: K, c: Count) {
        self.other.add(c);
        self.folded.insert_hash(hash_of(&key));
    }

    /// Adds another worker's table for the same plan, then trims to `capacity`.
    pub fn merge(&mut self, o: &TopTable<K>) {
        self.other.add(o.other);
        self.folded.merge(&o.folded);
        let mut merged = std::mem::take(&mut self.entries);
        for e in &o.entries {
            match self.index.get(&e.key) {
                Some(&i) => {
                    merged[i].count.add(e.count);
                    merged[i].rank += e.rank;
                }
                None => {
                    self.index.insert(e.key, merged.len());
                    merged.push(e.clone());
                }
            }
        }
        // Rebuild: pinned entries as they are, the unpinned ones by rank, the smallest folded
        // until `capacity` remain.
        let (pinned, mut rest): (Vec<_>, Vec<_>) = merged.into_iter().partition(|e| e.pinned);
        rest.sort_by_key(|e| std::cmp::Reverse(e.rank));
        for e in rest.drain(self.capacity.min(rest.len())..) {
            self.fold(e.key, e.count);
        }
        self.index.clear();
        self.heap.clear();
        self.pos.clear();
        for e in pinned {
            self.index.insert(e.key, self.entries.len());
            self.entries.push(e);
            self.pos.push(NOT_IN_HEAP);
        }
        for e in rest {
            self.push_unpinned(e);
        }
    }

    /// The listed ids and their counts (pinned ones too, at zero).
    pub fn entries(&self) -> impl Iterator<Item = (K, Count)> + '_ {
        self.entries.iter().map(|e| (e.key, e.count))
    }

    /// What was folded: the counts, and the estimated number of distinct ids.
    pub fn other(&self) -> (Count, u64) {
        (self.other, self.folded.estimate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &u32) -> u64 {
        hash_of(k)
    }

    fn one() -> Count {
        Count {
            packets: 1,
            bytes: 100,
        }
    }

    fn total(t: &TopTable<u32>) -> u64 {
        t.entries().map(|(_, c)| c.packets).sum::<u64>() + t.other().0.packets
    }

    #[test]
    fn a_flood_stays_bounded_and_nothing_is_lost() {
        let mut t = TopTable::new(16, [7u32, 8]);
        for i in 0..200_000u32 {
            t.add(1_000_000 + i, one());
            if i % 4 == 0 {
                t.add(42, one()); // a heavy hitter among the flood
            }
        }
        assert_eq!(t.entries().count(), 18);
        assert_eq!(total(&t), 250_000);
        let listed: Vec<u32> = t.entries().map(|(k, _)| k).collect();
        assert!(listed.contains(&7) && listed.contains(&8) && listed.contains(&42));
        let est = t.other().1 as f64;
        assert!((est - 200_000.0).abs() / 200_000.0 < 0.1, "{est}");
    }

    #[test]
    fn a_late_heavy_hitter_gets_in_and_restarts_at_zero() {
        let mut t = TopTable::new(2, []);
        for k in [1u32, 2] {
            for _ in 0..10 {
                t.add(k, one());
            }
        }
        for _ in 0..30 {
            t.add(3, one());
        }
        let e: Vec<(u32, u64)> = t.entries().map(|(k, c)| (k, c.packets)).collect();
        assert!(e.contains(&(3, 30)) || e.contains(&(3, 29)), "{e:?}");
        assert_eq!(total(&t), 50);
    }

    #[test]
    fn merge_keeps_totals_and_capacity() {
        let mut a = TopTable::new(4, [100u32]);
        let mut b = TopTable::new(4, [100u32]);
        for i in 0..50u32 {
            a.add(i, one());
            b.add(i + 25, one());
        }
        b.add(100, one());
        a.merge(&b);
        assert_eq!(a.entries().count(), 5);
        assert_eq!(total(&a), 101);
        assert!(a.entries().any(|(k, c)| k == 100 && c.packets == 1));
    }

    /// The heap invariant, the place map, and that every unpinned entry is in the heap once.
    fn check(t: &TopTable<u32>) {
        let unpinned = t.entries.iter().filter(|e| !e.pinned).count();
        assert_eq!(t.heap.len(), unpinned);
        assert!(unpinned <= t.capacity);
        for (h, &i) in t.heap.iter().enumerate() {
            assert_eq!(t.pos[i], h);
            assert!(!t.entries[i].pinned);
            if h > 0 {
                assert!(t.rank_at((h - 1) / 2) <= t.rank_at(h));
            }
        }
        for (k, &i) in &t.index {
            assert_eq!(t.entries[i].key, *k);
        }
        assert_eq!(t.index.len(), t.entries.len());
    }

    #[test]
    fn eviction_takes_a_smallest_rank_and_the_heap_holds() {
        let mut rng = vxspan_wire::XorShift(0x1234_5678_9abc_def1);
        for round in 0..40u64 {
            let cap = (round % 9) as usize;
            let mut t = TopTable::new(cap, [1000u32, 1001]);
            let mut want = 0;
            for _ in 0..500 {
                let key = (rng.below(if round % 2 == 0 { 12 } else { 400 })) as u32 + 995;
                let c = Count {
                    packets: 1 + rng.below(3),
                    bytes: 1,
                };
                want += c.packets;
                let full = t.heap.len() == cap && !t.index.contains_key(&key);
                let min = t.heap.first().map(|&i| t.entries[i].rank);
                t.add(key, c);
                if let (true, Some(min)) = (full, min) {
                    let i = t.index[&key];
                    assert_eq!(
                        t.entries[i].rank,
                        min + c.packets,
                        "the victim had the least rank"
                    );
                }
                check(&t);
                assert_eq!(total(&t), want);
            }
            let mut other = TopTable::new(cap, [1000u32]);
            for k in 0..50u32 {
                other.add(k * 7, one());
            }
            t.merge(&other);
            check(&t);
            assert_eq!(total(&t), want + 50);
        }
    }

    #[test]
    fn small_sets_are_estimated_closely() {
        let mut s = Hll::default();
        for i in 0..1000u32 {
            s.insert_hash(h(&i));
        }
        let e = s.estimate();
        assert!((950..=1050).contains(&e), "{e}");
        assert_eq!(Hll::default().estimate(), 0);
    }
}
