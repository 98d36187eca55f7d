//! GRE: RFC 2784 with the key and sequence number fields of RFC 2890, and the enhanced GRE of
//! RFC 2637 (version 1, PPTP's data channel) far enough to find its payload.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C|R|K|S|s|Recur|A| Flags | Ver |         Protocol Type         |
//! |      Checksum (if C)          |       Reserved1 (if C)        |
//! |                           Key (if K)                          |
//! |                    Sequence Number (if S)                     |
//! |            Acknowledgment Number (if A, version 1)            |
//! ```
//!
//! The routing field of RFC 1701 (R bit) is not supported: its length is only known by walking
//! the source route entries, and RFC 2784 dropped it. A header with R set is
//! [`Error::Malformed`]. The strict source route bit and the recursion control
//! field, which do not change the header length, are accepted, exposed and never emitted, as
//! Linux does; strictly, RFC 2784 section 2.3 lets only an RFC 1701 receiver accept them.

use crate::{Error, Result};

/// GRE protocol types (EtherType values, RFC 2784 section 2.4) vxspan cares about.
pub mod protocol {
    /// Transparent Ethernet bridging: an Ethernet frame without FCS.
    pub const TEB: u16 = 0x6558;
    /// ERSPAN type I (4-byte GRE header, no S bit) and type II (S bit set); see [`crate::erspan`].
    pub const ERSPAN_I_II: u16 = 0x88be;
    pub const ERSPAN_III: u16 = 0x22eb;
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const MPLS: u16 = 0x8847;
    /// PPP, carried by enhanced GRE (RFC 2637).
    pub const PPP: u16 = 0x880b;
}

/// The GRE protocol types of [`protocol`] as an enum. Conversion never fails: unknown values are
/// kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GreProtocol {
    Teb,
    /// 0x88be: ERSPAN type I or II.
    ErspanTypeII,
    /// 0x22eb.
    ErspanTypeIII,
    Ipv4,
    Ipv6,
    Mpls,
    Ppp,
    Unknown(u16),
}

impl From<u16> for GreProtocol {
    fn from(v: u16) -> Self {
        match v {
            protocol::TEB => GreProtocol::Teb,
            protocol::ERSPAN_I_II => GreProtocol::ErspanTypeII,
            protocol::ERSPAN_III => GreProtocol::ErspanTypeIII,
            protocol::IPV4 => GreProtocol::Ipv4,
            protocol::IPV6 => GreProtocol::Ipv6,
            protocol::MPLS => GreProtocol::Mpls,
            protocol::PPP => GreProtocol::Ppp,
            other => GreProtocol::Unknown(other),
        }
    }
}

impl From<GreProtocol> for u16 {
    fn from(v: GreProtocol) -> u16 {
        match v {
            GreProtocol::Teb => protocol::TEB,
            GreProtocol::ErspanTypeII => protocol::ERSPAN_I_II,
            GreProtocol::ErspanTypeIII => protocol::ERSPAN_III,
            GreProtocol::Ipv4 => protocol::IPV4,
            GreProtocol::Ipv6 => protocol::IPV6,
            GreProtocol::Mpls => protocol::MPLS,
            GreProtocol::Ppp => protocol::PPP,
            GreProtocol::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;
    pub const FLAGS: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
    /// The first optional field.
    pub const OPTIONAL: usize = 4;
    /// Length of each optional word (checksum + reserved1, key, sequence, acknowledgment).
    pub const WORD: usize = 4;

    pub const C: u16 = 0x8000;
    pub const R: u16 = 0x4000;
    pub const K: u16 = 0x2000;
    pub const S: u16 = 0x1000;
    pub const STRICT: u16 = 0x0800;
    pub const RECUR: u16 = 0x0700;
    pub const A: u16 = 0x0080;
    pub const VER: u16 = 0x0007;
}

/// Length of the mandatory part of a GRE header (flags, version, protocol type).
pub const MIN_HEADER_LEN: usize = field::OPTIONAL;

/// The one's complement checksum of RFC 1071 over `data` (an odd last byte is padded with zero).
fn internet_checksum(data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn read_u32(buf: &[u8], off: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// A view of a GRE packet: header, then payload to the end of the buffer.
///
/// After [`GrePacket::new_checked`] no accessor panics. The optional-field getters return `None`
/// when their presence bit is clear, and read through bounds-checked slices, so they stay
/// panic-free even if a flag setter later changes the layout.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Fails with [`Error::Truncated`] if the buffer is shorter than the header its flags
    /// announce, and with [`Error::Malformed`] if the header length cannot be known: R bit set
    /// (see the module documentation) or a version other than 0 and 1 (RFC 2784 section 2.3.1
    /// allows only 0; RFC 2637 defines 1).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.routing_present() || self.version() > 1 {
            return Err(Error::Malformed);
        }
        if len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn checksum_present(&self) -> bool {
        self.flags() & field::C != 0
    }

    pub fn routing_present(&self) -> bool {
        self.flags() & field::R != 0
    }

    pub fn key_present(&self) -> bool {
        self.flags() & field::K != 0
    }

    pub fn sequence_present(&self) -> bool {
        self.flags() & field::S != 0
    }

    /// The strict source route bit of RFC 1701; meaningless without routing, ignored.
    pub fn strict_source_route(&self) -> bool {
        self.flags() & field::STRICT != 0
    }

    /// The recursion control field of RFC 1701 (3 bits), ignored.
    pub fn recursion_control(&self) -> u8 {
        ((self.flags() & field::RECUR) >> 8) as u8
    }

    /// The acknowledgment-present bit. It exists in version 1 only (RFC 2637 section 4.1); in
    /// version 0 the same bit is reserved and ignored on receipt (RFC 2784 section 2.3), so this
    /// returns `false`.
    pub fn ack_present(&self) -> bool {
        self.version() == 1 && self.flags() & field::A != 0
    }

    pub fn version(&self) -> u8 {
        (self.flags() & field::VER) as u8
    }

    pub fn protocol_type(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn key_offset(&self) -> usize {
        field::OPTIONAL + usize::from(self.checksum_present()) * field::WORD
    }

    fn sequence_offset(&self) -> usize {
        self.key_offset() + usize::from(self.key_present()) * field::WORD
    }

    fn ack_offset(&self) -> usize {
        self.sequence_offset() + usize::from(self.sequence_present()) * field::WORD
    }

    /// The header length the flags announce: 4 bytes, plus 4 for each of C, K, S and, in
    /// version 1, A.
    pub fn header_len(&self) -> usize {
        self.ack_offset() + usize::from(self.ack_present()) * field::WORD
    }

    pub fn checksum(&self) -> Option<u16> {
        if !self.checksum_present() {
            return None;
        }
        let b = self
            .buffer
            .as_ref()
            .get(field::OPTIONAL..field::OPTIONAL + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// The key. In version 1 it holds the payload length (high 16 bits) and the call ID (low 16
    /// bits), RFC 2637 section 4.1.
    pub fn key(&self) -> Option<u32> {
        if !self.key_present() {
            return None;
        }
        read_u32(self.buffer.as_ref(), self.key_offset())
    }

    pub fn sequence_number(&self) -> Option<u32> {
        if !self.sequence_present() {
            return None;
        }
        read_u32(self.buffer.as_ref(), self.sequence_offset())
    }

    /// The acknowledgment number (version 1 only).
    pub fn ack_number(&self) -> Option<u32> {
        if !self.ack_present() {
            return None;
        }
        read_u32(self.buffer.as_ref(), self.ack_offset())
    }

    /// Everything after the header, to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// True if C is clear, or if the checksum over the whole buffer (header and payload, RFC
    /// 2784 section 2.5) is correct. The buffer must therefore end where the GRE packet ends
    /// (outer IP payload length), without link-layer padding.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || internet_checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    fn set_flags(&mut self, flags: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&flags.to_be_bytes());
    }

    fn set_flag(&mut self, bit: u16, on: bool) {
        let f = self.flags();
        self.set_flags(if on { f | bit } else { f & !bit });
    }

    /// Changing a presence bit moves the fields after it: set the flags first, then the fields.
    pub fn set_checksum_present(&mut self, on: bool) {
        self.set_flag(field::C, on);
    }

    pub fn set_key_present(&mut self, on: bool) {
        self.set_flag(field::K, on);
    }

    pub fn set_sequence_present(&mut self, on: bool) {
        self.set_flag(field::S, on);
    }

    /// Sets the A bit (meaningful in version 1 only).
    pub fn set_ack_present(&mut self, on: bool) {
        self.set_flag(field::A, on);
    }

    /// Sets the version; only the low 3 bits are written.
    pub fn set_version(&mut self, v: u8) {
        let f = self.flags();
        self.set_flags((f & !field::VER) | (u16::from(v) & field::VER));
    }

    pub fn set_protocol_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&v.to_be_bytes());
    }

    fn write_word(&mut self, present: bool, off: usize, v: u32) -> Result<()> {
        if !present {
            return Err(Error::Malformed);
        }
        let out = self
            .buffer
            .as_mut()
            .get_mut(off..off + field::WORD)
            .ok_or(Error::Truncated)?;
        out.copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// Writes the checksum and a zero Reserved1. [`Error::Malformed`] if C is clear,
    /// [`Error::Truncated`] if the buffer is too short for the header the flags announce.
    pub fn set_checksum(&mut self, v: u16) -> Result<()> {
        self.write_word(self.checksum_present(), field::OPTIONAL, u32::from(v) << 16)
    }

    /// Writes the key; errors as [`GrePacket::set_checksum`].
    pub fn set_key(&mut self, v: u32) -> Result<()> {
        self.write_word(self.key_present(), self.key_offset(), v)
    }

    /// Writes the sequence number; errors as [`GrePacket::set_checksum`].
    pub fn set_sequence_number(&mut self, v: u32) -> Result<()> {
        self.write_word(self.sequence_present(), self.sequence_offset(), v)
    }

    /// Writes the acknowledgment number; errors as [`GrePacket::set_checksum`] (and
    /// [`Error::Malformed`] in version 0).
    pub fn set_ack_number(&mut self, v: u32) -> Result<()> {
        self.write_word(self.ack_present(), self.ack_offset(), v)
    }

    /// Computes and writes the checksum over the whole buffer (see
    /// [`GrePacket::verify_checksum`]). Does nothing if C is clear.
    pub fn fill_checksum(&mut self) -> Result<()> {
        if !self.checksum_present() {
            return Ok(());
        }
        self.set_checksum(0)?;
        let sum = internet_checksum(self.buffer.as_ref());
        self.set_checksum(sum)
    }
}

/// The high-level form of a GRE header.
///
/// `version` is 0 (RFC 2784 / RFC 2890) or 1 (RFC 2637): in version 1 the key is mandatory, the
/// checksum absent, and `ack` may be present; in version 0 `ack` is always `None`. Headers that
/// break these rules are [`Error::Malformed`] both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreRepr {
    /// On emit, the checksum is computed over the header and the payload.
    pub checksum_present: bool,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
    /// Acknowledgment number, version 1 only.
    pub ack: Option<u32>,
    pub version: u8,
    pub protocol: u16,
}

impl GreRepr {
    /// Parses the header. The checksum is not verified: see [`GrePacket::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<Self> {
        packet.check_len()?;
        let repr = GreRepr {
            checksum_present: packet.checksum_present(),
            key: packet.key(),
            sequence: packet.sequence_number(),
            ack: packet.ack_number(),
            version: packet.version(),
            protocol: packet.protocol_type(),
        };
        repr.validate()?;
        Ok(repr)
    }

    fn validate(&self) -> Result<()> {
        match self.version {
            0 if self.ack.is_none() => Ok(()),
            // RFC 2637 section 4.1: C clear, K set.
            1 if !self.checksum_present && self.key.is_some() => Ok(()),
            _ => Err(Error::Malformed),
        }
    }

    pub const fn header_len(&self) -> usize {
        MIN_HEADER_LEN
            + field::WORD
                * (self.checksum_present as usize
                    + self.key.is_some() as usize
                    + self.sequence.is_some() as usize
                    + self.ack.is_some() as usize)
    }

    /// Writes the header into the start of `packet`, whose buffer holds the header space followed
    /// by the payload and ends where the payload ends. When `checksum_present` is set the payload
    /// must already be in place: the checksum covers the whole buffer. Fails with
    /// [`Error::Truncated`] if the buffer is shorter than [`GreRepr::header_len`], and
    /// [`Error::Malformed`] if the repr breaks the version rules above.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut GrePacket<T>) -> Result<()> {
        self.validate()?;
        if packet.buffer.as_ref().len() < self.header_len() {
            return Err(Error::Truncated);
        }
        let mut flags = u16::from(self.version);
        for (on, bit) in [
            (self.checksum_present, field::C),
            (self.key.is_some(), field::K),
            (self.sequence.is_some(), field::S),
            (self.ack.is_some(), field::A),
        ] {
            if on {
                flags |= bit;
            }
        }
        packet.set_flags(flags);
        packet.set_protocol_type(self.protocol);
        if self.checksum_present {
            packet.set_checksum(0)?;
        }
        if let Some(k) = self.key {
            packet.set_key(k)?;
        }
        if let Some(s) = self.sequence {
            packet.set_sequence_number(s)?;
        }
        if let Some(a) = self.ack {
            packet.set_ack_number(a)?;
        }
        packet.fill_checksum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorShift;

    // tcpdump-erspan-type-ii-1.pcap frame 1, bytes 34..50: GRE with S (seq 171), ERSPAN II, then
    // the first bytes of the ERSPAN header. Oracle: gre_proto 0x88be, no key.
    static ERSPAN_II_GRE: [u8; 12] = [
        0x10, 0x00, 0x88, 0xbe, 0x00, 0x00, 0x00, 0xab, // GRE
        0x11, 0x56, 0xc2, 0x9a, // ERSPAN
    ];

    // tcpdump-various_gre.pcap frame 11, bytes 38..82: GRE with K (key 0x28), protocol 0x8909
    // (Cisco metadata), carrying IPv4 and a GRE keepalive. Oracle: gre_proto 0x8909, gre_key
    // 0x00000028.
    static KEYED: [u8; 44] = [
        0x20, 0x00, 0x89, 0x09, 0x00, 0x00, 0x00, 0x28, // GRE
        0x08, 0x00, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x45, 0xc0, 0x00, 0x1c, 0x00, 0xa3, 0x00,
        0x00, 0xff, 0x2f, 0x24, 0xeb, 0x0a, 0xac, 0x40, 0x06, 0x0a, 0xac, 0x40, 0x07, 0x20, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x28,
    ];

    // tcpdump-various_gre.pcap frame 12, bytes 38..46: a keepalive (protocol 0, key 0x28, no
    // payload). Oracle: gre_proto 0x0000, gre_key 0x00000028.
    static KEEPALIVE: [u8; 8] = [0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28];

    // tcpdump-erspan-type-i-1.pcap frame 1, bytes 34..42: ERSPAN type I, a bare 4-byte GRE header
    // with protocol 0x88be and no S bit, then the mirrored Ethernet frame. Oracle: erspan-I.
    static ERSPAN_I_GRE: [u8; 8] = [0x00, 0x00, 0x88, 0xbe, 0x00, 0x11, 0x5c, 0x3d];

    // zeek-gre-pptp.pcap frame 1, bytes 78..98: enhanced GRE (version 1) with K, S and A:
    // payload length 103, call ID 6016, sequence 430001, ack 539254, then PPP. Oracle:
    // gre_proto 0x880b.
    static PPTP_ACK: [u8; 20] = [
        0x30, 0x81, 0x88, 0x0b, 0x00, 0x67, 0x17, 0x80, 0x00, 0x06, 0x8f, 0xb1, 0x00, 0x08, 0x3a,
        0x76, // GRE
        0xff, 0x03, 0x00, 0x21, // PPP
    ];

    // zeek-gre-pptp.pcap frame 2, bytes 78..94: version 1 with K and S, no A: payload length
    // 178, call ID 17, sequence 539320.
    static PPTP: [u8; 16] = [
        0x30, 0x01, 0x88, 0x0b, 0x00, 0xb2, 0x00, 0x11, 0x00, 0x08, 0x3a, 0xb8, // GRE
        0xff, 0x03, 0x00, 0x21, // PPP
    ];

    // tcpdump-gre-heapoverflow-2.pcap frame 2, bytes 34..48 (snapped): C and R set (flags
    // 0xc030), a fuzzed header with routing.
    static ROUTING: [u8; 14] = [
        0xc0, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30,
    ];

    // tcpdump-erspan-type-iii-pb-1.pcap frame 1, bytes 58..79: fuzzed, S plus the strict source
    // route bit and recursion control 5 (flags 0x1d00); tshark decodes it. Oracle: 0x22eb.
    static STRICT_RECUR: [u8; 8] = [0x1d, 0x00, 0x22, 0xeb, 0xff, 0x28, 0x01, 0x01];

    // sv-decode-too-small.pcap frame 4, bytes 34..36: IPv4 protocol 47 with a 2-byte payload.
    static TOO_SMALL: [u8; 2] = [0x00, 0x00];

    #[test]
    fn test_parse() {
        let p = GrePacket::new_checked(&ERSPAN_II_GRE[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            GreRepr {
                checksum_present: false,
                key: None,
                sequence: Some(171),
                ack: None,
                version: 0,
                protocol: protocol::ERSPAN_I_II,
            }
        );
        assert_eq!(p.header_len(), 8);
        assert_eq!(p.payload(), &[0x11, 0x56, 0xc2, 0x9a]);
        assert!(p.verify_checksum());

        let p = GrePacket::new_checked(&KEYED[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!((r.protocol, r.key, r.sequence), (0x8909, Some(0x28), None));
        assert_eq!(p.payload(), &KEYED[8..]);
        assert_eq!(38 + p.header_len(), 46); // oracle inner_offset
                                             // The payload ends with the inner keepalive's GRE header.
        let inner = GrePacket::new_checked(&KEYED[36..]).unwrap();
        assert_eq!(GreRepr::parse(&inner).unwrap().key, Some(0x28));

        let p = GrePacket::new_checked(&KEEPALIVE[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!((r.protocol, r.key), (0, Some(0x28)));
        assert!(p.payload().is_empty());

        // ERSPAN type I: protocol 0x88be without S; telling it from type II is the caller's job.
        let p = GrePacket::new_checked(&ERSPAN_I_GRE[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!((r.protocol, r.sequence), (protocol::ERSPAN_I_II, None));
        assert_eq!(34 + r.header_len(), 38); // oracle inner_offset
        assert_eq!(GreProtocol::from(r.protocol), GreProtocol::ErspanTypeII);

        let p = GrePacket::new_checked(&STRICT_RECUR[..]).unwrap();
        assert!(p.strict_source_route());
        assert_eq!(p.recursion_control(), 5);
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!(
            (r.protocol, r.sequence),
            (protocol::ERSPAN_III, Some(0xff280101))
        );
    }

    #[test]
    fn test_parse_version_1() {
        let p = GrePacket::new_checked(&PPTP_ACK[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            GreRepr {
                checksum_present: false,
                key: Some((103 << 16) | 6016),
                sequence: Some(430001),
                ack: Some(539254),
                version: 1,
                protocol: protocol::PPP,
            }
        );
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.payload(), &[0xff, 0x03, 0x00, 0x21]);
        // Oracle inner_offset: PPP starts at frame offset 94 (frame 1) and 90 (frame 2).
        assert_eq!(78 + p.header_len(), 94);

        let p = GrePacket::new_checked(&PPTP[..]).unwrap();
        let r = GreRepr::parse(&p).unwrap();
        assert_eq!(
            (r.key, r.sequence, r.ack),
            (Some((178 << 16) | 17), Some(539320), None)
        );
        assert_eq!(78 + p.header_len(), 90);

        // The A bit is reserved in version 0: it adds nothing to the header.
        let mut v0 = PPTP_ACK;
        v0[1] = 0x80;
        let p = GrePacket::new_checked(&v0[..]).unwrap();
        assert!(!p.ack_present());
        assert_eq!(p.header_len(), 12);
        assert_eq!(GreRepr::parse(&p).unwrap().ack, None);

        // Version 1 without K, or with C, is malformed (RFC 2637 section 4.1).
        let mut no_key = PPTP;
        no_key[0] = 0x10;
        assert_eq!(
            GreRepr::parse(&GrePacket::new_unchecked(&no_key[..])),
            Err(Error::Malformed)
        );
        let mut csum = PPTP;
        csum[0] = 0xb0;
        assert_eq!(
            GreRepr::parse(&GrePacket::new_unchecked(&csum[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn test_malformed() {
        assert_eq!(
            GrePacket::new_checked(&ROUTING[..]).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(
            GrePacket::new_checked(&TOO_SMALL[..]).unwrap_err(),
            Error::Truncated
        );
        for ver in 2..8u8 {
            let mut b = KEEPALIVE;
            b[1] = ver;
            assert_eq!(
                GrePacket::new_checked(&b[..]).unwrap_err(),
                Error::Malformed
            );
        }
    }

    #[test]
    fn test_emit() {
        for frame in [
            &ERSPAN_II_GRE[..],
            &KEYED,
            &KEEPALIVE,
            &ERSPAN_I_GRE,
            &PPTP_ACK,
            &PPTP,
        ] {
            let r = GreRepr::parse(&GrePacket::new_checked(frame).unwrap()).unwrap();
            let mut buf = frame.to_vec();
            buf[..r.header_len()].fill(0xee);
            r.emit(&mut GrePacket::new_unchecked(&mut buf[..])).unwrap();
            assert_eq!(buf, frame);
        }
        // The flags GreRepr does not carry are emitted as zero.
        let r = GreRepr::parse(&GrePacket::new_checked(&STRICT_RECUR[..]).unwrap()).unwrap();
        let mut buf = [0xffu8; 8];
        r.emit(&mut GrePacket::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, [0x10, 0x00, 0x22, 0xeb, 0xff, 0x28, 0x01, 0x01]);
    }

    #[test]
    fn test_emit_checksum() {
        // The KEYED packet re-originated with C, K and S (sequence 7). The expected checksum was
        // computed independently (Python, RFC 1071).
        let r = GreRepr {
            checksum_present: true,
            key: Some(0x28),
            sequence: Some(7),
            ack: None,
            version: 0,
            protocol: 0x8909,
        };
        assert_eq!(r.header_len(), 16);
        let mut buf = vec![0u8; 16];
        buf.extend_from_slice(&KEYED[8..]);
        let mut p = GrePacket::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        assert_eq!(
            &buf[..16],
            &[
                0xb0, 0x00, 0x89, 0x09, 0x9d, 0x9c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00,
                0x00, 0x07
            ]
        );
        let p = GrePacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), Some(0x9d9c));
        assert_eq!(GreRepr::parse(&p).unwrap(), r);
        assert_eq!(p.payload(), &KEYED[8..]);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(
                !GrePacket::new_unchecked(&bad[..]).verify_checksum(),
                "byte {i}"
            );
        }
        // Odd payload length: the last byte is padded.
        let mut odd = vec![0u8; 16];
        odd.extend_from_slice(&KEYED[8..43]);
        r.emit(&mut GrePacket::new_unchecked(&mut odd[..])).unwrap();
        assert!(GrePacket::new_checked(&odd[..]).unwrap().verify_checksum());
    }

    #[test]
    fn test_emit_errors() {
        let mut buf = [0u8; 32];
        let v1_no_key = GreRepr {
            checksum_present: false,
            key: None,
            sequence: None,
            ack: None,
            version: 1,
            protocol: protocol::PPP,
        };
        let mut p = GrePacket::new_unchecked(&mut buf[..]);
        assert_eq!(v1_no_key.emit(&mut p), Err(Error::Malformed));
        let v0_ack = GreRepr {
            version: 0,
            key: Some(1),
            ack: Some(1),
            ..v1_no_key
        };
        assert_eq!(v0_ack.emit(&mut p), Err(Error::Malformed));
        let v2 = GreRepr {
            version: 2,
            ..v1_no_key
        };
        assert_eq!(v2.emit(&mut p), Err(Error::Malformed));
        let ok = GreRepr {
            checksum_present: true,
            key: Some(1),
            sequence: Some(2),
            ack: None,
            version: 0,
            protocol: protocol::TEB,
        };
        for n in 0..ok.header_len() {
            let mut p = GrePacket::new_unchecked(&mut buf[..n]);
            assert_eq!(ok.emit(&mut p), Err(Error::Truncated), "len {n}");
        }
        // Optional-field setters refuse fields whose presence bit is clear.
        let mut b = KEEPALIVE;
        let mut p = GrePacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.set_sequence_number(1), Err(Error::Malformed));
        assert_eq!(p.set_ack_number(1), Err(Error::Malformed));
        // Turning S on without room for it: the setter reports it instead of panicking.
        p.set_sequence_present(true);
        assert_eq!(p.set_sequence_number(1), Err(Error::Truncated));
        assert_eq!(p.sequence_number(), None);
        assert_eq!(p.check_len(), Err(Error::Truncated));
    }

    #[test]
    fn test_truncated() {
        for frame in [
            &ERSPAN_II_GRE[..8],
            &KEYED[..8],
            &PPTP_ACK[..16],
            &PPTP[..12],
        ] {
            for n in 0..frame.len() {
                let p = GrePacket::new_unchecked(&frame[..n]);
                assert_eq!(p.check_len(), Err(Error::Truncated), "len {n}");
                assert_eq!(GreRepr::parse(&p), Err(Error::Truncated), "len {n}");
            }
        }
    }

    #[test]
    fn test_random_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 40];
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = (rng.next_u64() % 41) as usize;
            rng.fill(&mut buf[..len]);
            // Bias towards the valid versions so the accessors get exercised.
            if len >= 2 && rng.next_u64() & 1 == 0 {
                buf[0] &= !0x40;
                buf[1] &= 0xf9;
            }
            let Ok(p) = GrePacket::new_checked(&buf[..len]) else {
                continue;
            };
            let _ = (p.checksum(), p.key(), p.sequence_number(), p.ack_number());
            let _ = (p.payload(), p.verify_checksum(), p.strict_source_route());
            if let Ok(r) = GreRepr::parse(&p) {
                parsed += 1;
                assert!(r.header_len() <= len);
                let mut out = [0u8; 40];
                r.emit(&mut GrePacket::new_unchecked(&mut out[..len]))
                    .unwrap();
            }
        }
        assert!(parsed > 1000, "only {parsed} parsed");
    }

    #[test]
    fn protocol_conversion_is_total() {
        for v in 0..=u16::MAX {
            assert_eq!(u16::from(GreProtocol::from(v)), v);
        }
    }
}
