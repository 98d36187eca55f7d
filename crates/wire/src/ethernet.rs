//! Ethernet II header (IEEE 802.3 clause 3.1.1, without the FCS, which NICs strip).

use crate::{Error, Result};

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl core::str::FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or(Error::Malformed)?;
            if p.len() != 2 {
                return Err(Error::Malformed);
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| Error::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed);
        }
        Ok(MacAddr(out))
    }
}

/// EtherType values (IEEE registry). Conversion never fails: unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Arp,
    /// 802.1Q customer tag.
    Vlan,
    /// 802.1ad service tag.
    QinQ,
    /// Pre-standard stacked tag used by some switches.
    Vlan9100,
    Ipv6,
    Mpls,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            0x9100 => EtherType::Vlan9100,
            0x86dd => EtherType::Ipv6,
            0x8847 => EtherType::Mpls,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Vlan9100 => 0x9100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Mpls => 0x8847,
            EtherType::Unknown(v) => v,
        }
    }
}

impl EtherType {
    /// True for the TPIDs vxspan treats as a VLAN tag (CONFIG.md section 1).
    pub fn is_vlan_tpid(self) -> bool {
        matches!(
            self,
            EtherType::Vlan | EtherType::QinQ | EtherType::Vlan9100
        )
    }
}

/// Source and destination MACs of the Ethernet header vxspan puts in front of a bare IP packet
/// (a raw-IP capture, or a tunnel whose payload is IP without Ethernet): locally administered
/// addresses spelling "vxsp", so such frames are recognisable in a capture.
pub const SYNTHETIC_SRC: MacAddr = MacAddr([0x02, 0x76, 0x78, 0x73, 0x70, 0x01]);
pub const SYNTHETIC_DST: MacAddr = MacAddr([0x02, 0x76, 0x78, 0x73, 0x70, 0x00]);

/// Whether `packet` starts with a whole, plausible IP header: IPv4 with IHL of at least 5, all
/// of its header present and a total length that covers the header; IPv6 with its 40 bytes
/// present. (The payload may be cut short by a capture's snap length.)
pub fn ip_header_ok(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            let total = packet
                .get(2..4)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            ihl >= 20 && packet.len() >= ihl && total >= ihl
        }
        Some(6) => packet.len() >= 40,
        _ => false,
    }
}

/// Whether `packet` is plausibly one whole IP packet, for payloads whose type is inferred from
/// the version nibble (MPLS): a whole header ([`ip_header_ok`]) whose declared length (IPv4
/// total length, IPv6 40 + payload length) is the packet's, or shorter where the packet is at
/// most 46 bytes (Ethernet padding of a minimum-size frame), or longer only if the capture was
/// `cut` short.
pub fn ip_plausible(packet: &[u8], cut: bool) -> bool {
    if !ip_header_ok(packet) {
        return false;
    }
    let declared = if packet[0] >> 4 == 4 {
        usize::from(u16::from_be_bytes([packet[2], packet[3]]))
    } else {
        40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
    };
    match declared.cmp(&packet.len()) {
        core::cmp::Ordering::Equal => true,
        core::cmp::Ordering::Less => packet.len() <= 46,
        core::cmp::Ordering::Greater => cut,
    }
}

/// Appends a synthetic Ethernet header for an IP packet to `out`: EtherType IPv4 or IPv6 from
/// the version nibble. Returns `false` (appending nothing) if `packet` is not IPv4 or IPv6.
/// (Tunnel termination also wants [`ip_header_ok`], so that it never builds a frame that is
/// malformed right behind the header it wrote; a raw-IP capture file keeps what it holds.)
pub fn synthesize_for_ip(packet: &[u8], out: &mut Vec<u8>) -> bool {
    let ethertype: u16 = match packet.first().map(|b| b >> 4) {
        Some(4) => 0x0800,
        Some(6) => 0x86dd,
        _ => return false,
    };
    out.extend_from_slice(&SYNTHETIC_DST.0);
    out.extend_from_slice(&SYNTHETIC_SRC.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
    true
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame. After [`EthernetFrame::new_checked`] no accessor panics.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }

    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }

    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]]).into()
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(t).to_be_bytes());
    }
}

/// The high-level form of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(EthernetRepr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) -> Result<()> {
        frame.check_len()?;
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    #[test]
    fn test_parse() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        assert_eq!(r.dst, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.src, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(r.ethertype, EtherType::Ipv4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_emit_round_trip() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let r = EthernetRepr::parse(&f).unwrap();
        let mut buf = [0u8; 18];
        buf[14..].copy_from_slice(&FRAME[14..]);
        let mut out = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        r.emit(&mut out).unwrap();
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn test_short() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..n]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn synthetic_header() {
        let mut out = Vec::new();
        let mut v4 = [0u8; 20];
        v4[..4].copy_from_slice(&[0x45, 0, 0, 20]);
        assert!(synthesize_for_ip(&v4, &mut out));
        assert_eq!(
            EthernetFrame::new_checked(&out[..]).unwrap().ethertype(),
            EtherType::Ipv4
        );
        out.clear();
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert!(synthesize_for_ip(&v6, &mut out));
        assert_eq!(&out[12..], &[0x86, 0xdd]);
        out.clear();
        assert!(!synthesize_for_ip(&[0x10], &mut out) && out.is_empty());
        assert!(!synthesize_for_ip(&[], &mut out));
        // Headers that are not whole.
        assert!(ip_header_ok(&v4) && ip_header_ok(&v6));
        assert!(!ip_header_ok(&v4[..19]));
        assert!(!ip_header_ok(&v6[..39]));
        let mut bad = v4;
        bad[0] = 0x40; // IHL 0 ("Bogus IP header length")
        assert!(!ip_header_ok(&bad));
        bad[0] = 0x46; // IHL 6: 24 bytes, 20 present
        assert!(!ip_header_ok(&bad));
        bad = v4;
        bad[3] = 19; // total length shorter than the header
        assert!(!ip_header_ok(&bad));
        // Plausibly one whole packet (for payloads typed by their first nibble).
        assert!(ip_plausible(&v4, false) && ip_plausible(&v6, false));
        let mut padded = v4.to_vec();
        padded.resize(46, 0); // Ethernet padding of a minimum-size frame
        assert!(ip_plausible(&padded, false));
        padded.resize(47, 0);
        assert!(!ip_plausible(&padded, false));
        let mut long = v4;
        long[3] = 200; // declares more than is there
        assert!(!ip_plausible(&long, false) && ip_plausible(&long, true));
    }

    #[test]
    fn ethertype_conversion_is_total() {
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
    }

    #[test]
    fn mac_parse_display() {
        let m: MacAddr = "44:44:44:44:44:4a".parse().unwrap();
        assert_eq!(m.to_string(), "44:44:44:44:44:4a");
        assert!("44:44:44:44:44".parse::<MacAddr>().is_err());
        assert!("44:44:44:44:44:44:44".parse::<MacAddr>().is_err());
        assert!("zz:44:44:44:44:44".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
    }
}
