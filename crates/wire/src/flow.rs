//! The flow key: what sampling and load balancing hash on.
//!
//! For IP packets it is the 5-tuple (addresses, protocol and, for TCP / UDP / SCTP, ports). IP
//! fragments are keyed on addresses and protocol only, so every fragment of a datagram gets the
//! same key whether or not it carries the transport header. Frames that are not IP are keyed on
//! their MAC addresses and EtherType.

use crate::ethernet::EtherType;
use crate::etherparse::{LaxIpPayloadSlice, LaxIpSlice};
use crate::vlan::L2Info;

/// A flow key. Addresses are 16 bytes; IPv4 and MAC addresses are stored left-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The IP protocol number, or 0 for non-IP frames.
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// The EtherType of the payload (after the VLAN tags).
    pub ethertype: u16,
}

fn ports(payload: &LaxIpPayloadSlice<'_>) -> (u16, u16) {
    // TCP (6), UDP (17), UDP-Lite (136) and SCTP (132) all start with source and destination port.
    match (payload.ip_number.0, payload.fragmented, payload.payload) {
        (6 | 17 | 132 | 136, false, [a, b, c, d, ..]) => {
            (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))
        }
        _ => (0, 0),
    }
}

impl FlowKey {
    /// Extracts the key of `frame`, whose layer 2 was already parsed into `l2`. Never fails:
    /// a frame whose IP header cannot be read is keyed on layer 2.
    pub fn extract(frame: &[u8], l2: &L2Info) -> FlowKey {
        let mut key = FlowKey {
            ethertype: u16::from(l2.ethertype),
            ..FlowKey::default()
        };
        let l3 = frame.get(l2.l3_offset..).unwrap_or(&[]);
        if matches!(l2.ethertype, EtherType::Ipv4 | EtherType::Ipv6) {
            if let Ok((ip, _)) = LaxIpSlice::from_slice(l3) {
                match &ip {
                    LaxIpSlice::Ipv4(v4) => {
                        key.src[..4].copy_from_slice(&v4.header().source());
                        key.dst[..4].copy_from_slice(&v4.header().destination());
                    }
                    LaxIpSlice::Ipv6(v6) => {
                        key.src = v6.header().source();
                        key.dst = v6.header().destination();
                    }
                }
                let payload = ip.payload();
                key.proto = payload.ip_number.0;
                (key.src_port, key.dst_port) = ports(payload);
                return key;
            }
        }
        if let (Some(dst), Some(src)) = (frame.get(0..6), frame.get(6..12)) {
            key.dst[..6].copy_from_slice(dst);
            key.src[..6].copy_from_slice(src);
        }
        key
    }

    /// The same key for both directions of a flow: the lower (address, port) endpoint first.
    pub fn symmetric(&self) -> FlowKey {
        if (self.src, self.src_port) <= (self.dst, self.dst_port) {
            *self
        } else {
            FlowKey {
                src: self.dst,
                dst: self.src,
                src_port: self.dst_port,
                dst_port: self.src_port,
                ..*self
            }
        }
    }

    /// The key as bytes, for hashing.
    pub fn to_bytes(&self) -> [u8; 39] {
        let mut b = [0u8; 39];
        b[..16].copy_from_slice(&self.src);
        b[16..32].copy_from_slice(&self.dst);
        b[32] = self.proto;
        b[33..35].copy_from_slice(&self.src_port.to_be_bytes());
        b[35..37].copy_from_slice(&self.dst_port.to_be_bytes());
        b[37..39].copy_from_slice(&self.ethertype.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etherparse::PacketBuilder;

    fn udp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .single_vlan(10.try_into().unwrap())
            .ipv4(src, dst, 64)
            .udp(sp, dp);
        let mut out = Vec::new();
        b.write(&mut out, &[1, 2, 3]).unwrap();
        out
    }

    #[test]
    fn udp_key_and_symmetry() {
        let a = udp4([198, 18, 0, 1], [198, 18, 0, 2], 1000, 53);
        let b = udp4([198, 18, 0, 2], [198, 18, 0, 1], 53, 1000);
        let ka = FlowKey::extract(&a, &L2Info::parse(&a).unwrap());
        let kb = FlowKey::extract(&b, &L2Info::parse(&b).unwrap());
        assert_eq!(ka.proto, 17);
        assert_eq!((ka.src_port, ka.dst_port), (1000, 53));
        assert_eq!(&ka.src[..4], &[198, 18, 0, 1]);
        assert_ne!(ka, kb);
        assert_eq!(ka.symmetric(), kb.symmetric());
    }

    #[test]
    fn non_ip_uses_macs() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06, 0, 1]);
        let k = FlowKey::extract(&f, &L2Info::parse(&f).unwrap());
        assert_eq!(k.proto, 0);
        assert_eq!(&k.src[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(k.ethertype, 0x0806);
    }

    #[test]
    fn garbage_ip_falls_back_to_l2() {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0]);
        let k = FlowKey::extract(&f, &L2Info::parse(&f).unwrap());
        assert_eq!(k.proto, 0);
        assert_eq!(k.ethertype, 0x0800);
    }
}
