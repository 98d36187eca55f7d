//! Outer IP reassembly for fragmented tunnel packets (IPv4, RFC 791; IPv6, RFC 8200 section 4.5).
//!
//! Bounded in memory (bytes and datagrams held) and in time (a datagram whose fragments do not
//! all arrive within the timeout, measured with the packets' own timestamps, is dropped). When a
//! bound is hit, the oldest incomplete datagram is evicted. Overlapping fragments that disagree
//! drop the whole datagram (RFC 5722 for IPv6; the same policy for IPv4, against overlap
//! attacks); an exact duplicate of a fragment already held is ignored.
//!
//! The reassembled frame is the first fragment's layer 2 header, the IP header with the
//! fragmentation fields cleared (IPv4: MF and offset zero, length and checksum fixed; IPv6: the
//! Fragment header removed, payload length fixed), and the whole payload.

use std::collections::HashMap;
use vxspan_config::Reassembly;

/// Reassembly counters (per input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReasmStats {
    pub completed: u64,
    pub timeouts: u64,
    pub evictions: u64,
    pub overlaps: u64,
    pub too_big: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    v6: bool,
}

#[derive(Debug)]
struct Set {
    first_ts: u64,
    /// Layer 2 + unfragmentable IP part of the fragment with offset 0, once seen.
    head: Option<Vec<u8>>,
    /// For IPv6: offset in `head` of the "next header" byte that named the Fragment header.
    next_header_at: usize,
    /// The protocol of the fragmentable part (IPv6: the Fragment header's next header).
    proto: u8,
    payload: Vec<u8>,
    /// Received byte ranges of the payload, sorted, non-overlapping.
    ranges: Vec<(u32, u32)>,
    /// Payload length, once the last fragment (MF = 0) was seen.
    total: Option<u32>,
}

impl Set {
    fn held(&self) -> usize {
        self.payload.len() + self.head.as_ref().map_or(0, Vec::len)
    }

    fn complete(&self) -> bool {
        match (self.total, &self.head) {
            (Some(t), Some(_)) => self.ranges.len() == 1 && self.ranges[0] == (0, t),
            _ => false,
        }
    }
}

/// What one frame did to the reassembler.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not an IP fragment (or not of a protocol this reassembler takes): process as is.
    NotFragment,
    /// Held, waiting for the rest.
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

fn parse_v4(frame: &[u8], l3: usize) -> Option<Frag> {
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
        src,
        dst,
        id: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
        proto: ip[9],
        v6: false,
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

fn parse_v6(frame: &[u8], l3: usize) -> Option<Frag> {
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
                    src,
                    dst,
                    id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    proto: f[0],
                    v6: true,
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

/// One input's reassembly state.
pub struct Reassembler {
    cfg: Reassembly,
    sets: HashMap<Key, Set>,
    held: usize,
    last_expiry: u64,
    out: Vec<u8>,
    pub stats: ReasmStats,
}

impl Reassembler {
    pub fn new(cfg: Reassembly) -> Self {
        Reassembler {
            cfg,
            sets: HashMap::new(),
            held: 0,
            last_expiry: 0,
            out: Vec::new(),
            stats: ReasmStats::default(),
        }
    }

    /// The frame completed by the last [`Outcome::Complete`].
    pub fn frame(&self) -> &[u8] {
        &self.out
    }

    /// Incomplete datagrams held.
    pub fn pending(&self) -> usize {
        self.sets.len()
    }

    fn timeout_ns(&self) -> u64 {
        u64::from(self.cfg.timeout_ms) * 1_000_000
    }

    fn expire(&mut self, now: u64) {
        let t = self.timeout_ns();
        if now.saturating_sub(self.last_expiry) < t / 4 && self.last_expiry != 0 {
            return;
        }
        self.last_expiry = now;
        let before = self.sets.len();
        let mut freed = 0;
        self.sets.retain(|_, s| {
            let keep = now.saturating_sub(s.first_ts) <= t;
            if !keep {
                freed += s.held();
            }
            keep
        });
        self.held -= freed;
        self.stats.timeouts += (before - self.sets.len()) as u64;
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self
            .sets
            .iter()
            .min_by_key(|(_, s)| s.first_ts)
            .map(|(k, _)| *k)
        {
            if let Some(s) = self.sets.remove(&k) {
                self.held -= s.held();
                self.stats.evictions += 1;
            }
        }
    }

    fn drop_set(&mut self, key: &Key) {
        if let Some(s) = self.sets.remove(key) {
            self.held -= s.held();
        }
    }

    /// Offers a frame whose IP header starts at `l3` (IPv4 if `v6` is false). `now` is the
    /// frame's timestamp.
    pub fn push(&mut self, frame: &[u8], l3: usize, v6: bool, now: u64) -> Outcome {
        let parsed = if v6 {
            parse_v6(frame, l3)
        } else {
            parse_v4(frame, l3)
        };
        let Some(f) = parsed else {
            return Outcome::NotFragment;
        };
        if !wanted(f.key.proto) {
            return Outcome::NotFragment;
        }
        self.expire(now);
        let data = &frame[f.payload_at..f.payload_end];
        let start = f.offset;
        let end = start + data.len() as u32;
        // Non-final fragments carry multiples of 8 bytes; nothing may end past 65535.
        if (f.more && !data.len().is_multiple_of(8)) || end > 65_535 || data.is_empty() {
            self.stats.too_big += u64::from(end > 65_535);
            self.drop_set(&f.key);
            return Outcome::Dropped;
        }
        if !self.sets.contains_key(&f.key) {
            while self.sets.len() >= self.cfg.max_datagrams as usize
                || (self.held + data.len() > self.cfg.max_bytes as usize && !self.sets.is_empty())
            {
                self.evict_oldest();
            }
            self.sets.insert(
                f.key,
                Set {
                    first_ts: now,
                    head: None,
                    next_header_at: 0,
                    proto: f.key.proto,
                    payload: Vec::new(),
                    ranges: Vec::new(),
                    total: None,
                },
            );
        } else {
            while self.held + data.len() > self.cfg.max_bytes as usize && self.sets.len() > 1 {
                // Evict others first; never the set being filled.
                let k = self
                    .sets
                    .iter()
                    .filter(|(k, _)| **k != f.key)
                    .min_by_key(|(_, s)| s.first_ts)
                    .map(|(k, _)| *k);
                match k {
                    Some(k) => {
                        let s = self.sets.remove(&k).expect("present");
                        self.held -= s.held();
                        self.stats.evictions += 1;
                    }
                    None => break,
                }
            }
        }
        if self.held + data.len() > self.cfg.max_bytes as usize {
            self.stats.too_big += 1;
            self.drop_set(&f.key);
            return Outcome::Dropped;
        }
        let set = self.sets.get_mut(&f.key).expect("inserted above");
        // Overlaps: an exact duplicate is ignored, anything else drops the datagram.
        for &(a, b) in &set.ranges {
            if start < b && a < end {
                let same = (a, b) == (start, end)
                    && set.payload.get(start as usize..end as usize) == Some(data);
                if same {
                    return Outcome::Held;
                }
                self.stats.overlaps += 1;
                self.drop_set(&f.key);
                return Outcome::Dropped;
            }
        }
        if !f.more {
            if set.total.is_some_and(|t| t != end) || set.ranges.iter().any(|&(_, b)| b > end) {
                self.stats.overlaps += 1;
                self.drop_set(&f.key);
                return Outcome::Dropped;
            }
            set.total = Some(end);
        } else if set.total.is_some_and(|t| end > t) {
            self.stats.overlaps += 1;
            self.drop_set(&f.key);
            return Outcome::Dropped;
        }
        let before = set.held();
        if set.payload.len() < end as usize {
            set.payload.resize(end as usize, 0);
        }
        set.payload[start as usize..end as usize].copy_from_slice(data);
        if start == 0 {
            set.head = Some(frame[..f.head_end].to_vec());
            set.next_header_at = f.next_header_at;
        }
        let pos = set.ranges.partition_point(|&(a, _)| a < start);
        set.ranges.insert(pos, (start, end));
        // Merge touching ranges.
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(set.ranges.len());
        for &(a, b) in &set.ranges {
            match merged.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => merged.push((a, b)),
            }
        }
        set.ranges = merged;
        let grown = set.held() - before;
        self.held += grown;
        if !set.complete() {
            return Outcome::Held;
        }
        let set = self.sets.remove(&f.key).expect("present");
        self.held -= set.held();
        self.stats.completed += 1;
        let head = set.head.expect("complete sets have a head");
        self.out.clear();
        self.out.extend_from_slice(&head);
        self.out.extend_from_slice(&set.payload);
        let ip = l3;
        if v6 {
            // The byte that named the Fragment header now names what the Fragment header named.
            self.out[set.next_header_at] = set.proto;
            let plen = (self.out.len() - ip - 40) as u16;
            self.out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
        } else {
            let ihl = usize::from(self.out[ip] & 0x0f) * 4;
            let total = (self.out.len() - ip) as u16;
            self.out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            self.out[ip + 6] &= 0x40; // keep DF, clear MF and the offset
            self.out[ip + 7] = 0;
            self.out[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let sum = checksum(&self.out[ip..ip + ihl]);
            self.out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        }
        Outcome::Complete
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
mod tests {
    use super::*;
    use vxspan_wire::etherparse::PacketBuilder;

    fn udp_frame(payload_len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(1000, 4789)
            .write(&mut f, &payload)
            .unwrap();
        f
    }

    /// Splits an IPv4 frame into fragments of `size` payload bytes (a multiple of 8).
    fn fragment_v4(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
        let l3 = 14;
        let ihl = usize::from(frame[l3] & 0xf) * 4;
        let payload = &frame[l3 + ihl..];
        payload
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = frame[..l3 + ihl].to_vec();
                f.extend_from_slice(chunk);
                let total = (ihl + chunk.len()) as u16;
                f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
                let more = (i + 1) * size < payload.len();
                let off = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
                f[l3 + 6..l3 + 8].copy_from_slice(&off.to_be_bytes());
                f[l3 + 4..l3 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
                f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
                let sum = checksum(&f[l3..l3 + ihl]);
                f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
                f
            })
            .collect()
    }

    fn cfg() -> Reassembly {
        Reassembly {
            timeout_ms: 100,
            max_bytes: 1 << 20,
            max_datagrams: 4,
        }
    }

    fn expected(orig: &[u8]) -> Vec<u8> {
        // The original with id 0x4242 and the checksum recomputed.
        let mut e = orig.to_vec();
        e[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
        e[20] = 0; // the fragments were sent without DF
        e[24..26].copy_from_slice(&[0, 0]);
        let sum = checksum(&e[14..34]);
        e[24..26].copy_from_slice(&sum.to_be_bytes());
        e
    }

    #[test]
    fn v4_in_order_and_reversed() {
        let orig = udp_frame(3000);
        let frags = fragment_v4(&orig, 1200);
        assert_eq!(frags.len(), 3);
        for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0]] {
            let mut r = Reassembler::new(cfg());
            for (n, &i) in order.iter().enumerate() {
                let o = r.push(&frags[i], 14, false, 10);
                if n < 2 {
                    assert_eq!(o, Outcome::Held);
                } else {
                    assert_eq!(o, Outcome::Complete);
                }
            }
            assert!(r.frame() == expected(&orig), "reassembled frame differs");
            assert_eq!(r.pending(), 0);
            assert_eq!(r.stats.completed, 1);
        }
    }

    /// Found by the decap fuzz target: a Fragment header inside the frame but past the IPv6
    /// payload length (trailing bytes after the packet) is not a fragment, and no panic.
    #[test]
    fn v6_fragment_header_past_payload_length() {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&4u16.to_be_bytes()); // payload length 4 < the 8-byte header
        ip[6] = 44; // next header: Fragment
        f.extend_from_slice(&ip);
        // A Fragment header (UDP, offset 8, more fragments) and trailing bytes after it.
        f.extend_from_slice(&[17, 0, 0, 9, 0, 0, 0, 1]);
        f.extend_from_slice(&[0u8; 32]);
        let mut r = Reassembler::new(cfg());
        assert_eq!(r.push(&f, 14, true, 0), Outcome::NotFragment);
    }

    #[test]
    fn not_fragments_pass() {
        let mut r = Reassembler::new(cfg());
        assert_eq!(r.push(&udp_frame(100), 14, false, 0), Outcome::NotFragment);
    }

    #[test]
    fn duplicates_overlaps_timeouts_and_bounds() {
        let orig = udp_frame(3000);
        let frags = fragment_v4(&orig, 1200);
        let mut r = Reassembler::new(cfg());
        assert_eq!(r.push(&frags[0], 14, false, 0), Outcome::Held);
        assert_eq!(
            r.push(&frags[0], 14, false, 1),
            Outcome::Held,
            "exact duplicate ignored"
        );
        let mut bad = frags[1].clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert_eq!(r.push(&bad, 14, false, 2), Outcome::Held);
        assert_eq!(
            r.push(&frags[1], 14, false, 3),
            Outcome::Dropped,
            "disagreeing overlap"
        );
        assert_eq!(r.stats.overlaps, 1);
        assert_eq!(r.pending(), 0);

        // Timeout by packet time.
        assert_eq!(r.push(&frags[0], 14, false, 1_000_000_000), Outcome::Held);
        assert_eq!(r.push(&frags[1], 14, false, 1_200_000_000), Outcome::Held);
        assert_eq!(r.stats.timeouts, 1);
        assert_eq!(r.pending(), 1);

        // More datagrams than allowed: the oldest is evicted.
        let mut r = Reassembler::new(cfg());
        for id in 0..6u16 {
            let mut f = frags[0].clone();
            f[18..20].copy_from_slice(&id.to_be_bytes());
            assert_eq!(r.push(&f, 14, false, u64::from(id)), Outcome::Held);
        }
        assert_eq!(r.pending(), 4);
        assert_eq!(r.stats.evictions, 2);
    }

    #[test]
    fn v6_fragment_header_removed() {
        let payload: Vec<u8> = (0..2000).map(|i| (i * 7) as u8).collect();
        let mut whole = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(1000, 6081)
            .write(&mut whole, &payload)
            .unwrap();
        let body = &whole[54..]; // UDP header + payload
        let mut frags = Vec::new();
        for (i, chunk) in body.chunks(1000).enumerate() {
            let mut f = whole[..54].to_vec();
            f[20] = 44; // next header: Fragment
            let more = (i + 1) * 1000 < body.len();
            let off = ((i * 1000 / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[17, 0]);
            f.extend_from_slice(&off.to_be_bytes());
            f.extend_from_slice(&7u32.to_be_bytes());
            f.extend_from_slice(chunk);
            let plen = (8 + chunk.len()) as u16;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            frags.push(f);
        }
        let mut r = Reassembler::new(cfg());
        let n = frags.len();
        for (i, f) in frags.iter().enumerate().rev() {
            let o = r.push(f, 14, true, 5);
            assert_eq!(
                o,
                if i == 0 {
                    Outcome::Complete
                } else {
                    Outcome::Held
                },
                "{i} of {n}"
            );
        }
        assert!(r.frame() == &whole[..], "reassembled frame differs");
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example bytes.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
