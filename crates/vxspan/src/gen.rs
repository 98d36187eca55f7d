//! A deterministic synthetic traffic mix, for the demo and the benchmarks.
//!
//! Frames are built with etherparse and tagged with the wire layer's VLAN emitters; the same
//! seed always gives the same frames (a 64-bit xorshift generator), and each frame records
//! what it is so tests can keep their own bookkeeping.

use std::io;
use std::path::Path;
use vxspan_core::wire::etherparse::PacketBuilder;
use vxspan_core::wire::vlan::push_tag;
use vxspan_core::wire::{EtherType, VlanTag};

/// The first timestamp of a generated capture (2023-11-14T22:13:20Z), in nanoseconds.
pub const START_NS: u64 = 1_700_000_000_000_000_000;

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How a generated frame is tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagging {
    Untagged,
    /// An 802.1Q tag with VID 0 and a PCP.
    Priority,
    /// One 802.1Q tag.
    Dot1q(u16),
    /// An 802.1ad S-tag (outer) over an 802.1Q C-tag.
    QinQ(u16, u16),
    /// A 0x9100 tag over an 802.1Q tag.
    Tag9100(u16, u16),
}

impl Tagging {
    /// The VLAN selector the frame falls under (0 = untagged).
    pub fn outer_vid(self) -> u16 {
        match self {
            Tagging::Untagged | Tagging::Priority => 0,
            Tagging::Dot1q(v) | Tagging::QinQ(v, _) | Tagging::Tag9100(v, _) => v,
        }
    }
}

/// One generated frame.
pub struct Frame {
    pub data: Vec<u8>,
    pub ts: u64,
    pub tagging: Tagging,
}

/// Generates `count` frames.
pub fn frames(count: u64, seed: u64, max_vlan: u16) -> impl Iterator<Item = Frame> {
    let mut rng = Rng::new(seed);
    let max_vlan = max_vlan.clamp(1, 4094);
    let mut ts = START_NS;
    (0..count).map(move |i| {
        ts += 1_000 + rng.below(1_000);
        let vid = |rng: &mut Rng| 1 + rng.below(u64::from(max_vlan)) as u16;
        let tagging = match rng.below(100) {
            0..=19 => Tagging::Untagged,
            20..=24 => Tagging::Priority,
            25..=79 => Tagging::Dot1q(vid(&mut rng)),
            80..=91 => Tagging::QinQ(vid(&mut rng), vid(&mut rng)),
            _ => Tagging::Tag9100(vid(&mut rng), vid(&mut rng)),
        };
        let data = build(&mut rng, i, tagging);
        Frame { data, ts, tagging }
    })
}

fn build(rng: &mut Rng, i: u64, tagging: Tagging) -> Vec<u8> {
    let host = |r: &mut Rng| {
        [
            198,
            18 + r.below(2) as u8,
            r.below(256) as u8,
            1 + r.below(254) as u8,
        ]
    };
    let src_mac = [0x02, 0, 0, 0, (i >> 8) as u8 & 0x0f, rng.below(256) as u8];
    let dst_mac = [0x02, 0, 0, 1, 0, rng.below(256) as u8];
    let payload_len = rng.below(200) as usize;
    let payload: Vec<u8> = (0..payload_len).map(|j| (i as usize + j) as u8).collect();
    let mut plain = Vec::with_capacity(payload_len + 80);
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let sport = 1024 + rng.below(60000) as u16;
    // Ports whose dissectors accept arbitrary payloads, so tshark reads generated frames cleanly.
    let dport = [80, 443, 22, 8080, 5001][rng.below(5) as usize];
    let written = match rng.below(10) {
        0..=3 => eth
            .ipv4(host(rng), host(rng), 64)
            .tcp(sport, dport, i as u32, 65535)
            .write(&mut plain, &payload),
        4..=6 => eth
            .ipv4(host(rng), host(rng), 64)
            .udp(sport, dport)
            .write(&mut plain, &payload),
        7 => eth
            .ipv4(host(rng), host(rng), 64)
            .icmpv4_echo_request(1, i as u16)
            .write(&mut plain, &payload),
        8 => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = rng.below(256) as u8;
            let mut b = a;
            b[15] = rng.below(256) as u8;
            eth.ipv6(a, b, 64)
                .udp(sport, dport)
                .write(&mut plain, &payload)
        }
        _ => {
            // ARP request, padded to the Ethernet minimum.
            plain.extend_from_slice(&[0xff; 6]);
            plain.extend_from_slice(&src_mac);
            plain.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            plain.extend_from_slice(&src_mac);
            plain.extend_from_slice(&host(rng));
            plain.extend_from_slice(&[0; 6]);
            plain.extend_from_slice(&host(rng));
            plain.resize(60, 0);
            Ok(())
        }
    };
    debug_assert!(written.is_ok());
    let pcp = rng.below(8) as u8;
    let tags: Vec<VlanTag> = match tagging {
        Tagging::Untagged => vec![],
        Tagging::Priority => vec![VlanTag::new(EtherType::Vlan, pcp.max(1), false, 0)],
        Tagging::Dot1q(v) => vec![VlanTag::new(EtherType::Vlan, pcp, false, v)],
        Tagging::QinQ(o, inner) => vec![
            VlanTag::new(EtherType::QinQ, pcp, false, o),
            VlanTag::new(EtherType::Vlan, 0, false, inner),
        ],
        Tagging::Tag9100(o, inner) => vec![
            VlanTag::new(EtherType::Vlan9100, pcp, false, o),
            VlanTag::new(EtherType::Vlan, 0, false, inner),
        ],
    };
    // Push the inner tag first, so the outer one ends up outermost.
    let mut frame = plain;
    for tag in tags.iter().rev() {
        let mut out = Vec::with_capacity(frame.len() + 4);
        if push_tag(&frame, *tag, &mut out).is_ok() {
            frame = out;
        }
    }
    frame
}

/// Writes a generated capture; returns the number of frames.
pub fn write(path: &Path, count: u64, seed: u64, max_vlan: u16) -> anyhow::Result<u64> {
    let mut w = vxspan_io::pcap::Writer::replace(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut n = 0;
    for f in frames(count, seed, max_vlan) {
        w.write(&f.data, f.data.len() as u32, f.ts)?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxspan_core::wire::L2Info;

    #[test]
    fn deterministic_and_well_formed() {
        let a: Vec<Vec<u8>> = frames(500, 7, 20).map(|f| f.data).collect();
        let b: Vec<Vec<u8>> = frames(500, 7, 20).map(|f| f.data).collect();
        assert_eq!(a, b);
        for f in frames(2000, 3, 20) {
            let l2 = L2Info::parse(&f.data).unwrap();
            assert_eq!(l2.outer_vid(), f.tagging.outer_vid());
            assert!(f.ts > START_NS);
        }
    }
}
