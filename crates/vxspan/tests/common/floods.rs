//! Frames for key floods: tunnels with many ids, every VLAN (issue #15).

use vxspan_core::wire::etherparse::{IpNumber, Ipv4Header, PacketBuilder};

/// A small UDP frame to carry inside tunnels.
pub fn inner() -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([198, 18, 9, 1], [198, 18, 9, 2], 64)
        .udp(1, 2)
        .write(&mut f, &[0u8; 8])
        .unwrap();
    f
}

/// Ethernet / IPv4 / `ip_payload` with IP protocol `proto`.
pub fn over_ip(proto: IpNumber, ip_payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut h = Ipv4Header::new(
        ip_payload.len() as u16,
        64,
        proto,
        [198, 18, 0, 1],
        [198, 18, 0, 2],
    )
    .unwrap();
    h.header_checksum = h.calc_header_checksum();
    f.extend_from_slice(&h.to_bytes());
    f.extend_from_slice(ip_payload);
    f
}

pub fn gre_key(key: u32, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x20, 0x00, 0x65, 0x58]; // K, transparent Ethernet bridging
    g.extend_from_slice(&key.to_be_bytes());
    g.extend_from_slice(inner);
    over_ip(IpNumber::GRE, &g)
}

pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(5000, 4789)
        .write(&mut f, &v)
        .unwrap();
    f
}

pub fn erspan2(session: u32, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1]; // S, ERSPAN II, sequence 1
    g.extend_from_slice(&(0x1000_0000 | session).to_be_bytes()); // version 1, VLAN 0
    g.extend_from_slice(&[0, 0, 0, 0]);
    g.extend_from_slice(inner);
    over_ip(IpNumber::GRE, &g)
}

/// Every VID once (and an untagged frame).
pub fn every_vlan() -> Vec<Vec<u8>> {
    let base = inner();
    (0..4096u16)
        .map(|vid| {
            if vid == 0 {
                return base.clone();
            }
            let mut f = base[..12].to_vec();
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&vid.to_be_bytes());
            f.extend_from_slice(&base[12..]);
            f
        })
        .collect()
}

/// 200,000 GRE keys, 200,000 VNIs, 1,024 ERSPAN sessions, and one GRE key 5,000 times.
pub fn key_flood() -> Vec<Vec<u8>> {
    let i = inner();
    let mut flood = Vec::new();
    for k in 0..200_000u32 {
        flood.push(gre_key(k, &i));
        flood.push(vxlan(k + 1000, &i));
    }
    for s in 0..1024 {
        flood.push(erspan2(s, &i));
    }
    for _ in 0..5000 {
        flood.push(gre_key(999_999_999, &i));
    }
    flood
}
