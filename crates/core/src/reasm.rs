//! Outer IP reassembly for fragmented tunnel packets (IPv4, RFC 791; IPv6, RFC 8200 section 4.5).
//!
//! Written for hostile input: every fragment comes from whoever can put frames on a mirrored port.
//!
//! - **Key.** A datagram is identified by everything that must agree between its fragments:
//!   the outer tag stack (TPID and VID of every tag, up to [`vxspan_wire::vlan::MAX_TAGS`]), the
//!   IP version, source, destination, protocol and identification. The input is implied: each
//!   input has its own reassembler. Fragments that differ in any of these belong to different
//!   datagrams (an untagged and a priority-tagged fragment never meet).
//! - **One set of offsets.** The reassembled frame is built from the first fragment's own bytes
//!   and patched at the offsets read from that same fragment (its layer 3 offset, its IPv6 next
//!   header byte), never from the fragment that happens to complete the datagram.
//! - **Duplicates.** A fragment whose bytes lie wholly inside ranges already received and agree
//!   with them (the same frame mirrored at two SPAN points) is counted in `duplicates` and
//!   ignored. One that overlaps and disagrees, or overlaps only in part, drops the datagram
//!   (RFC 5722 for IPv6; the same policy for IPv4, against overlap attacks), counted in
//!   `overlaps`. A datagram whose reassembled length would pass 65,535 is dropped as `too_big`.
//! - **Memory.** A fragment's bytes are held in a buffer of its own size rounded up to a power of
//!   two (at least 64 bytes), taken from a pool of freed buffers; `max_bytes` bounds the
//!   buffers held by incomplete datagrams and, separately, the pool. At most
//!   [`MAX_FRAGMENTS`] fragments per datagram. After warming up, reassembly allocates nothing.
//! - **Time.** Datagrams sit in a list in arrival order. A datagram whose first fragment is older
//!   than the timeout (the packets' own timestamps) is dropped from the head of that list
//!   (`timeouts`); when `max_datagrams` or `max_bytes` is reached, the oldest datagram is evicted
//!   (`evictions`). Both are O(1) per datagram: no scan of the table.
//!
//! The reassembled frame is the first fragment's layer 2 header, its IP header with the
//! fragmentation fields cleared (IPv4: MF and offset zero, length and checksum fixed; IPv6: the
//! Fragment header removed, payload length fixed), and the whole payload.

use crate::hashkey::HashKey;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use vxspan_config::Reassembly;

/// Fragments held per datagram at most (a 64 KiB datagram cut at a 1,280-byte MTU has 52; a
/// tunnel packet over a 1,500-byte path has 2). The fragment past it drops its datagram, counted
/// as `too_big`. It bounds the per-datagram bookkeeping a slot keeps for reuse (64 x 32 bytes).
pub const MAX_FRAGMENTS: usize = 64;

/// Reassembly counters (per input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasmStats {
    pub completed: u64,
    pub timeouts: u64,
    pub evictions: u64,
    pub overlaps: u64,
    pub too_big: u64,
    /// Fragments whose bytes had all been received already (and agreed): ignored.
    #[serde(default)]
    pub duplicates: u64,
}

impl ReasmStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ReasmStats) {
        self.completed += other.completed;
        self.timeouts += other.timeouts;
        self.evictions += other.evictions;
        self.overlaps += other.overlaps;
        self.too_big += other.too_big;
        self.duplicates += other.duplicates;
    }
}

/// The outer tag stack as keyed: `TPID << 16 | VID` per tag, outermost first.
type Tags = [u32; vxspan_wire::vlan::MAX_TAGS];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    tags: Tags,
    n_tags: u8,
    v6: bool,
    proto: u8,
    id: u32,
    src: [u8; 16],
    dst: [u8; 16],
    /// The keyed hash of the fields above ([`Key::hashed`]); what the index hashes by.
    hash: u64,
}

/// Bytes of a key as hashed.
const KEY_BYTES: usize = 4 * vxspan_wire::vlan::MAX_TAGS + 3 + 4 + 32;

impl Key {
    /// The key with its hash set: XXH3 under the process's secret ([`HashKey`]) over the fields
    /// packed into one block, so a sender cannot aim fragments at one bucket, at the cost of one
    /// short hash per fragment (the derived `Hash`, SipHash field by field, three times per
    /// fragment, was a third of a fragment's cost).
    fn hashed(mut self, key: &HashKey) -> Key {
        let mut b = [0u8; KEY_BYTES];
        for (o, t) in b.chunks_exact_mut(4).zip(self.tags) {
            o.copy_from_slice(&t.to_le_bytes());
        }
        let at = 4 * vxspan_wire::vlan::MAX_TAGS;
        b[at] = self.n_tags;
        b[at + 1] = u8::from(self.v6);
        b[at + 2] = self.proto;
        b[at + 3..at + 7].copy_from_slice(&self.id.to_le_bytes());
        b[at + 7..at + 23].copy_from_slice(&self.src);
        b[at + 23..].copy_from_slice(&self.dst);
        self.hash = key.short(&b);
        self
    }
}

/// The index's hasher: it is keyed by the keys' hashes ([`Key::hashed`]), which it passes on.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// One fragment's bytes, at `start..start + data.len()` of the payload.
#[derive(Debug)]
struct Piece {
    start: u32,
    data: Vec<u8>,
}

impl Piece {
    fn end(&self) -> u32 {
        self.start + self.data.len() as u32
    }
}

const NIL: u32 = u32::MAX;

/// One incomplete datagram. Slots are reused: their vectors keep their capacity.
#[derive(Debug)]
struct Slot {
    key: Key,
    first_ts: u64,
    /// Arrival-order list (older: `prev`, newer: `next`).
    prev: u32,
    next: u32,
    /// Layer 2 + unfragmentable IP part of the fragment with offset 0 (empty until it came).
    head: Vec<u8>,
    /// In `head`: where the IP header starts, and (IPv6) the byte that names the Fragment header.
    l3: usize,
    next_header_at: usize,
    /// Received fragments, sorted by offset, not overlapping.
    pieces: Vec<Piece>,
    /// Payload length, once the last fragment (MF = 0) was seen.
    total: Option<u32>,
    /// Bytes of the payload received.
    have: u32,
    /// Buffer bytes held (pool classes), as counted against `max_bytes`.
    held: usize,
}

/// Buffers by size class (64 bytes to 128 KiB, powers of two), kept for reuse.
#[derive(Debug, Default)]
struct Pool {
    classes: [Vec<Vec<u8>>; POOL_CLASSES],
    bytes: usize,
}

const POOL_CLASSES: usize = 12;
const MIN_BUF: usize = 64;

/// The capacity a buffer for `len` bytes gets.
fn class_size(len: usize) -> usize {
    len.max(MIN_BUF).next_power_of_two()
}

fn class_of(cap: usize) -> Option<usize> {
    let c = cap.trailing_zeros() as usize;
    (cap.is_power_of_two() && (6..6 + POOL_CLASSES).contains(&c)).then(|| c - 6)
}

impl Pool {
    fn take(&mut self, data: &[u8]) -> Vec<u8> {
        let size = class_size(data.len());
        let mut v = match class_of(size).and_then(|c| self.classes[c].pop()) {
            Some(v) => {
                self.bytes -= v.capacity();
                v
            }
            None => Vec::with_capacity(size),
        };
        v.extend_from_slice(data);
        v
    }

    fn give(&mut self, mut v: Vec<u8>, limit: usize) {
        let cap = v.capacity();
        if let Some(c) = class_of(cap) {
            if self.bytes + cap <= limit {
                v.clear();
                self.bytes += cap;
                self.classes[c].push(v);
            }
        }
    }
}

/// What one frame did to the reassembler.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not an IP fragment (or not of a protocol this reassembler takes): process as is.
    NotFragment,
    /// Held, waiting for the rest (or a duplicate of bytes already held).
    Held,
    /// This frame completed a datagram: [`Reassembler::frame`] holds the whole frame.
    Complete,
    /// The fragment was refused (malformed, overlapping, too big); its datagram is dropped.
    Dropped,
}

/// A fragment's facts, read from its IP header.
struct Frag {
    key: Key,
    /// Offset of the first payload byte in the frame.
    payload_at: usize,
    payload_end: usize,
    offset: u32,
    more: bool,
    /// Offset of the byte naming the Fragment header (IPv6) in the frame.
    next_header_at: usize,
    /// Where the Fragment header starts (IPv6) or the IP header ends (IPv4), in the frame.
    head_end: usize,
}

/// IP protocols whose fragments are reassembled: GRE, UDP, IP-in-IP, IPv6-in-IP, MPLS-in-IP.
fn wanted(proto: u8) -> bool {
    matches!(proto, 47 | 17 | 4 | 41 | 137)
}

/// The tag stack between the MAC addresses and `l3` (None if it is not a whole number of tags
/// or deeper than the key holds).
fn tag_stack(frame: &[u8], l3: usize) -> Option<(Tags, u8)> {
    let tags = frame.get(12..l3.checked_sub(2)?)?;
    if tags.len() % 4 != 0 || tags.len() / 4 > vxspan_wire::vlan::MAX_TAGS {
        return None;
    }
    let mut out = [0u32; vxspan_wire::vlan::MAX_TAGS];
    for (o, t) in out.iter_mut().zip(tags.chunks_exact(4)) {
        *o = u32::from(u16::from_be_bytes([t[0], t[1]])) << 16
            | u32::from(u16::from_be_bytes([t[2], t[3]]) & 0x0fff);
    }
    Some((out, (tags.len() / 4) as u8))
}

fn parse_v4(frame: &[u8], l3: usize, tags: (Tags, u8)) -> Option<Frag> {
    let ip = frame.get(l3..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let flags_off = u16::from_be_bytes([ip[6], ip[7]]);
    let more = flags_off & 0x2000 != 0;
    let offset = u32::from(flags_off & 0x1fff) * 8;
    if !more && offset == 0 {
        return None;
    }
    if total < ihl || total > ip.len() {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src[..4].copy_from_slice(&ip[12..16]);
    dst[..4].copy_from_slice(&ip[16..20]);
    let key = Key {
        tags: tags.0,
        n_tags: tags.1,
        v6: false,
        proto: ip[9],
        id: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
        src,
        dst,
        hash: 0,
    };
    Some(Frag {
        key,
        payload_at: l3 + ihl,
        payload_end: l3 + total,
        offset,
        more,
        next_header_at: l3 + 9,
        head_end: l3 + ihl,
    })
}

fn parse_v6(frame: &[u8], l3: usize, tags: (Tags, u8)) -> Option<Frag> {
    let ip = frame.get(l3..)?;
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let end = 40 + plen;
    if plen == 0 || end > ip.len() {
        return None;
    }
    // Walk Hop-by-Hop (0), Routing (43), Destination Options (60) to the Fragment header (44).
    let mut nh_at = 6;
    let mut at = 40;
    for _ in 0..8 {
        match ip[nh_at] {
            44 => {
                // The Fragment header must lie inside the payload length, not only the frame.
                if at + 8 > end {
                    return None;
                }
                let f = ip.get(at..at + 8)?;
                let off_flags = u16::from_be_bytes([f[2], f[3]]);
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&ip[8..24]);
                dst.copy_from_slice(&ip[24..40]);
                let key = Key {
                    tags: tags.0,
                    n_tags: tags.1,
                    v6: true,
                    proto: f[0],
                    id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    src,
                    dst,
                    hash: 0,
                };
                let more = off_flags & 1 != 0;
                let offset = u32::from(off_flags >> 3) * 8;
                if !more && offset == 0 {
                    return None; // an atomic fragment (RFC 6946): nothing to reassemble
                }
                return Some(Frag {
                    key,
                    payload_at: l3 + at + 8,
                    payload_end: l3 + end,
                    offset,
                    more,
                    next_header_at: l3 + nh_at,
                    head_end: l3 + at,
                });
            }
            0 | 43 | 60 => {
                let h = ip.get(at..at + 2)?;
                nh_at = at;
                at += (usize::from(h[1]) + 1) * 8;
                if at > end {
                    return None;
                }
            }
            _ => return None,
        }
    }
    None
}

/// How a new fragment relates to what its datagram holds.
enum Fit {
    /// No overlap: insert at this index of `pieces`.
    New(usize),
    /// Wholly inside received bytes, and equal to them.
    Duplicate,
    /// Overlaps and disagrees, or overlaps in part.
    Conflict,
}

fn fit(pieces: &[Piece], start: u32, data: &[u8]) -> Fit {
    let end = start + data.len() as u32;
    // The first piece that ends after `start`.
    let first = pieces.partition_point(|p| p.end() <= start);
    let mut at = start;
    let mut i = first;
    while let Some(p) = pieces.get(i) {
        if p.start >= end {
            break;
        }
        if p.start > at {
            return Fit::Conflict; // a gap inside the new fragment: a partial overlap
        }
        let to = p.end().min(end);
        let theirs = &p.data[(at - p.start) as usize..(to - p.start) as usize];
        if theirs != &data[(at - start) as usize..(to - start) as usize] {
            return Fit::Conflict;
        }
        at = to;
        i += 1;
    }
    match (i == first, at >= end) {
        (true, _) => Fit::New(first),
        (false, true) => Fit::Duplicate,
        (false, false) => Fit::Conflict,
    }
}

/// One input's reassembly state.
pub struct Reassembler {
    cfg: Reassembly,
    key: HashKey,
    /// Slot by key hash: 16 bytes an entry, so a full table of 16,384 datagrams stays in cache
    /// (the keys themselves are in the slots). Two keys of one hash, a 2^-64 chance per pair
    /// under a secret key, cannot both be held: the newer evicts the older.
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Oldest and newest datagram of the arrival-order list.
    oldest: u32,
    newest: u32,
    /// Buffer bytes held by incomplete datagrams.
    held: usize,
    pool: Pool,
    out: Vec<u8>,
    pub stats: ReasmStats,
}

impl Reassembler {
    /// A reassembler hashing its keys under `key` (the plan's [`HashKey`]).
    pub fn new(cfg: Reassembly, key: HashKey) -> Self {
        Reassembler {
            cfg,
            key,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            oldest: NIL,
            newest: NIL,
            held: 0,
            pool: Pool::default(),
            out: Vec::new(),
            stats: ReasmStats::default(),
        }
    }

    /// The key the index hashes with.
    pub fn hash_key(&self) -> &HashKey {
        &self.key
    }

    /// The frame completed by the last [`Outcome::Complete`].
    pub fn frame(&self) -> &[u8] {
        &self.out
    }

    /// Incomplete datagrams held.
    pub fn pending(&self) -> usize {
        self.index.len()
    }

    /// Buffer bytes held by incomplete datagrams (at most `max_bytes`).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    fn max_bytes(&self) -> usize {
        self.cfg.max_bytes as usize
    }

    fn unlink(&mut self, s: u32) {
        let (prev, next) = (self.slots[s as usize].prev, self.slots[s as usize].next);
        match prev {
            NIL => self.oldest = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.newest = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    /// Forgets datagram `s`: its buffers go back to the pool, its slot to the free list.
    fn release(&mut self, s: u32) {
        self.unlink(s);
        let limit = self.max_bytes();
        let slot = &mut self.slots[s as usize];
        self.index.remove(&slot.key.hash);
        self.held -= slot.held;
        slot.held = 0;
        for p in slot.pieces.drain(..) {
            self.pool.give(p.data, limit);
        }
        self.pool.give(std::mem::take(&mut slot.head), limit);
        self.free.push(s);
    }

    fn expire(&mut self, now: u64) {
        let t = u64::from(self.cfg.timeout_ms) * 1_000_000;
        while self.oldest != NIL
            && now.saturating_sub(self.slots[self.oldest as usize].first_ts) > t
        {
            self.release(self.oldest);
            self.stats.timeouts += 1;
        }
    }

    /// Evicts the oldest datagram other than `keep`; false if there is none.
    fn evict(&mut self, keep: u32) -> bool {
        let victim = match self.oldest {
            NIL => return false,
            o if o == keep => self.slots[o as usize].next,
            o => o,
        };
        if victim == NIL {
            return false;
        }
        self.release(victim);
        self.stats.evictions += 1;
        true
    }

    /// The slot of `key`, made (at the newest end of the list) if it is new.
    /// The slot holding `key`'s datagram, if one is held.
    fn find(&self, key: &Key) -> Option<u32> {
        let s = *self.index.get(&key.hash)?;
        (self.slots[s as usize].key == *key).then_some(s)
    }

    fn slot_for(&mut self, key: Key, now: u64) -> u32 {
        if let Some(&s) = self.index.get(&key.hash) {
            if self.slots[s as usize].key == key {
                return s;
            }
            self.release(s); // another key of the same hash
            self.stats.evictions += 1;
        }
        while self.index.len() >= self.cfg.max_datagrams.max(1) as usize && self.evict(NIL) {}
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    key,
                    first_ts: now,
                    prev: NIL,
                    next: NIL,
                    head: Vec::new(),
                    l3: 0,
                    next_header_at: 0,
                    pieces: Vec::new(),
                    total: None,
                    have: 0,
                    held: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let newest = self.newest;
        let slot = &mut self.slots[s as usize];
        slot.key = key;
        slot.first_ts = now;
        slot.prev = newest;
        slot.next = NIL;
        slot.total = None;
        slot.have = 0;
        match newest {
            NIL => self.oldest = s,
            n => self.slots[n as usize].next = s,
        }
        self.newest = s;
        self.index.insert(key.hash, s);
        s
    }

    /// Drops datagram `s` for a reason already counted.
    fn refuse(&mut self, s: u32) -> Outcome {
        self.release(s);
        Outcome::Dropped
    }

    /// Offers a frame whose IP header starts at `l3` (IPv4 if `v6` is false). `now` is the
    /// frame's timestamp.
    pub fn push(&mut self, frame: &[u8], l3: usize, v6: bool, now: u64) -> Outcome {
        let Some(tags) = tag_stack(frame, l3) else {
            return Outcome::NotFragment;
        };
        let parsed = if v6 {
            parse_v6(frame, l3, tags)
        } else {
            parse_v4(frame, l3, tags)
        };
        let Some(mut f) = parsed else {
            return Outcome::NotFragment;
        };
        if !wanted(f.key.proto) {
            return Outcome::NotFragment;
        }
        f.key = f.key.hashed(&self.key);
        self.expire(now);
        let data = &frame[f.payload_at..f.payload_end];
        let start = f.offset;
        let end = start + data.len() as u32;
        // Non-final fragments carry multiples of 8 bytes; nothing may end past 65535. Such a
        // fragment drops its datagram if one is held, and never makes one.
        if (f.more && !data.len().is_multiple_of(8)) || end > 65_535 || data.is_empty() {
            self.stats.too_big += u64::from(end > 65_535);
            if let Some(s) = self.find(&f.key) {
                self.release(s);
            }
            return Outcome::Dropped;
        }
        let s = self.slot_for(f.key, now);
        let slot = &self.slots[s as usize];
        let at = match fit(&slot.pieces, start, data) {
            Fit::Duplicate => {
                self.stats.duplicates += 1;
                return Outcome::Held;
            }
            Fit::Conflict => {
                self.stats.overlaps += 1;
                return self.refuse(s);
            }
            Fit::New(at) => at,
        };
        // The last fragment fixes the length: nothing may lie past it, before or after.
        let past_end = match (f.more, slot.total) {
            (false, Some(t)) => t != end,
            (false, None) => slot.pieces.last().is_some_and(|p| p.end() > end),
            (true, Some(t)) => end > t,
            (true, None) => false,
        };
        if past_end {
            self.stats.overlaps += 1;
            return self.refuse(s);
        }
        // The reassembled IP datagram must fit its 16-bit length field: IPv4 counts its header,
        // IPv6 the extension headers before the Fragment header.
        let unfrag = f.head_end - l3 - if v6 { 40 } else { 0 };
        let head_unfrag = if slot.head.is_empty() {
            None
        } else {
            Some(slot.head.len() - slot.l3 - if v6 { 40 } else { 0 })
        };
        let longest = slot.total.unwrap_or(end).max(end) as usize;
        if longest + head_unfrag.unwrap_or(unfrag) > 65_535 || slot.pieces.len() >= MAX_FRAGMENTS {
            self.stats.too_big += 1;
            return self.refuse(s);
        }
        let cost = class_size(data.len())
            + if start == 0 {
                class_size(f.head_end)
            } else {
                0
            };
        while self.held + cost > self.max_bytes() {
            if !self.evict(s) {
                self.stats.too_big += 1;
                return self.refuse(s);
            }
        }
        let piece = Piece {
            start,
            data: self.pool.take(data),
        };
        let head = (start == 0).then(|| self.pool.take(&frame[..f.head_end]));
        let slot = &mut self.slots[s as usize];
        slot.pieces.insert(at, piece);
        slot.have += data.len() as u32;
        if !f.more {
            slot.total = Some(end);
        }
        if let Some(head) = head {
            slot.head = head;
            slot.l3 = l3;
            slot.next_header_at = f.next_header_at;
        }
        slot.held += cost;
        self.held += cost;
        if slot.head.is_empty() || slot.total != Some(slot.have) {
            return Outcome::Held;
        }
        self.assemble(s);
        self.release(s);
        self.stats.completed += 1;
        Outcome::Complete
    }

    /// Builds the whole frame of complete datagram `s` in `out`, from its first fragment's bytes
    /// and offsets alone.
    fn assemble(&mut self, s: u32) {
        let slot = &self.slots[s as usize];
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(&slot.head);
        for p in &slot.pieces {
            out.extend_from_slice(&p.data);
        }
        let ip = slot.l3;
        // Both lengths were checked against 65,535 when the fragments were taken.
        if slot.key.v6 {
            // The byte that named the Fragment header now names what the Fragment header named.
            out[slot.next_header_at] = slot.key.proto;
            let plen = (out.len() - ip - 40) as u16;
            out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let ihl = usize::from(out[ip] & 0x0f) * 4;
            let total = (out.len() - ip) as u16;
            out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            out[ip + 6] &= 0x40; // keep DF, clear MF and the offset
            out[ip + 7] = 0;
            out[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let sum = checksum(&out[ip..ip + ihl]);
            out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
