//! VXLAN (RFC 7348 section 5) and VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe-13).
//!
//! ```text
//! VXLAN (UDP 4789, or 8472 on Linux):
//! |R|R|R|R|I|R|R|R|                 Reserved                      |
//! |             VXLAN Network Identifier (VNI)    |   Reserved    |
//!
//! VXLAN-GPE (UDP 4790):
//! |R|R|Ver|I|P|B|O|            Reserved           | Next Protocol |
//! |             VXLAN Network Identifier (VNI)    |   Reserved    |
//! ```
//!
//! Both headers are 8 bytes, followed by the payload. VXLAN's payload is always Ethernet; the
//! GPE's is named by its Next Protocol field.

use crate::{Error, Result};

/// IANA's VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// IANA's VXLAN-GPE port.
pub const VXLAN_GPE_PORT: u16 = 4790;
/// The VXLAN port the Linux kernel uses by default (pre-IANA).
pub const LINUX_VXLAN_PORT: u16 = 8472;

/// Length of a VXLAN or VXLAN-GPE header.
pub const HEADER_LEN: usize = 8;

/// The I flag: the VNI is valid. Set by both VXLAN and VXLAN-GPE.
pub const FLAG_I: u8 = 0x08;
/// VXLAN-GPE's P flag: the Next Protocol field is present.
pub const GPE_FLAG_P: u8 = 0x04;
/// VXLAN-GPE's B flag: the packet carries ingress-replicated BUM traffic.
pub const GPE_FLAG_B: u8 = 0x02;
/// VXLAN-GPE's O flag: the packet is an OAM packet.
pub const GPE_FLAG_O: u8 = 0x01;
const GPE_VER: u8 = 0x30;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

mod field {
    use core::ops::Range;
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    /// VXLAN-GPE only; reserved in VXLAN.
    pub const NEXT_PROTOCOL: usize = 3;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: usize = 8;
}

fn get_vni(buf: &[u8]) -> u32 {
    let b = &buf[field::VNI];
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn put_vni(buf: &mut [u8], vni: u32) {
    buf[field::VNI].copy_from_slice(&(vni & MAX_VNI).to_be_bytes()[1..]);
}

fn check_len(buf: &[u8]) -> Result<()> {
    if buf.len() < HEADER_LEN {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

/// A view of a VXLAN header and the Ethernet frame after it. After
/// [`VxlanPacket::new_checked`] no accessor panics.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        check_len(self.buffer.as_ref())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw flags byte. Only I is defined; the other bits are reserved, and receivers ignore
    /// them (RFC 7348 section 5), as they do the reserved bytes, which have no accessor.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag. RFC 7348 section 5 requires it for a valid VNI; whether to drop a packet
    /// without it is the caller's decision.
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    pub fn vni(&self) -> u32 {
        get_vni(self.buffer.as_ref())
    }

    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Writes the VNI; only the low 24 bits are written.
    pub fn set_vni(&mut self, v: u32) {
        put_vni(self.buffer.as_mut(), v);
    }

    /// Zeroes the reserved bytes (not the reserved flag bits).
    pub fn clear_reserved(&mut self) {
        let buf = self.buffer.as_mut();
        buf[field::RESERVED1].fill(0);
        buf[field::RESERVED2] = 0;
    }
}

/// The high-level form of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// The flags byte as received. [`VxlanRepr::new`] sets [`FLAG_I`] only, as RFC 7348
    /// requires on transmission.
    pub flags: u8,
    pub vni: u32,
}

impl VxlanRepr {
    /// A header for `vni` with the I flag set.
    pub const fn new(vni: u32) -> Self {
        VxlanRepr { flags: FLAG_I, vni }
    }

    /// Never fails on a header of full length: reserved bits are ignored on receipt (RFC 7348
    /// section 5), and so is the I flag, which stays in `flags` for the caller to check.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> Result<Self> {
        packet.check_len()?;
        Ok(VxlanRepr {
            flags: packet.flags(),
            vni: packet.vni(),
        })
    }

    pub fn has_vni(&self) -> bool {
        self.flags & FLAG_I != 0
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes `flags` as given, the VNI, and zero reserved bytes. [`Error::Malformed`] if the VNI
    /// does not fit 24 bits, [`Error::Truncated`] if the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) -> Result<()> {
        if self.vni > MAX_VNI {
            return Err(Error::Malformed);
        }
        packet.check_len()?;
        packet.set_flags(self.flags);
        packet.clear_reserved();
        packet.set_vni(self.vni);
        Ok(())
    }
}

/// VXLAN-GPE next protocol values (draft-ietf-nvo3-vxlan-gpe section 3.1; MPLS is the value of
/// earlier revisions, which Linux uses). Conversion never fails: unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VxlanGpeProtocol {
    Ipv4,
    Ipv6,
    Ethernet,
    Nsh,
    Mpls,
    Unknown(u8),
}

impl From<u8> for VxlanGpeProtocol {
    fn from(v: u8) -> Self {
        match v {
            1 => VxlanGpeProtocol::Ipv4,
            2 => VxlanGpeProtocol::Ipv6,
            3 => VxlanGpeProtocol::Ethernet,
            4 => VxlanGpeProtocol::Nsh,
            5 => VxlanGpeProtocol::Mpls,
            other => VxlanGpeProtocol::Unknown(other),
        }
    }
}

impl From<VxlanGpeProtocol> for u8 {
    fn from(v: VxlanGpeProtocol) -> u8 {
        match v {
            VxlanGpeProtocol::Ipv4 => 1,
            VxlanGpeProtocol::Ipv6 => 2,
            VxlanGpeProtocol::Ethernet => 3,
            VxlanGpeProtocol::Nsh => 4,
            VxlanGpeProtocol::Mpls => 5,
            VxlanGpeProtocol::Unknown(v) => v,
        }
    }
}

/// A view of a VXLAN-GPE header and its payload. After [`VxlanGpePacket::new_checked`] no
/// accessor panics.
#[derive(Debug, Clone)]
pub struct VxlanGpePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanGpePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanGpePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        check_len(self.buffer.as_ref())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The version (2 bits).
    pub fn version(&self) -> u8 {
        (self.flags() & GPE_VER) >> 4
    }

    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The P flag.
    pub fn has_next_protocol(&self) -> bool {
        self.flags() & GPE_FLAG_P != 0
    }

    /// The B flag.
    pub fn bum(&self) -> bool {
        self.flags() & GPE_FLAG_B != 0
    }

    /// The O flag.
    pub fn oam(&self) -> bool {
        self.flags() & GPE_FLAG_O != 0
    }

    /// The Next Protocol field, read whatever P says.
    pub fn next_protocol(&self) -> VxlanGpeProtocol {
        self.buffer.as_ref()[field::NEXT_PROTOCOL].into()
    }

    pub fn vni(&self) -> u32 {
        get_vni(self.buffer.as_ref())
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanGpePacket<T> {
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    pub fn set_next_protocol(&mut self, v: VxlanGpeProtocol) {
        self.buffer.as_mut()[field::NEXT_PROTOCOL] = v.into();
    }

    /// Writes the VNI; only the low 24 bits are written.
    pub fn set_vni(&mut self, v: u32) {
        put_vni(self.buffer.as_mut(), v);
    }

    /// Zeroes the reserved bytes (not Next Protocol, not the reserved flag bits).
    pub fn clear_reserved(&mut self) {
        let buf = self.buffer.as_mut();
        buf[field::RESERVED1.start..field::NEXT_PROTOCOL].fill(0);
        buf[field::RESERVED2] = 0;
    }
}

/// The high-level form of a VXLAN-GPE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanGpeRepr {
    pub vni: u32,
    pub next_protocol: VxlanGpeProtocol,
    pub oam: bool,
    pub bum: bool,
}

impl VxlanGpeRepr {
    /// [`Error::Malformed`] on a version other than 0 (the draft: a receiver MUST drop a
    /// version it does not support) and on a clear I flag (the draft requires I; without a
    /// valid VNI there is nothing to deliver). A clear P flag is read as an Ethernet payload,
    /// the meaning the earlier revisions gave it (a plain RFC 7348 payload), so `next_protocol`
    /// is [`VxlanGpeProtocol::Ethernet`]. Reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanGpePacket<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != 0 || !packet.has_vni() {
            return Err(Error::Malformed);
        }
        Ok(VxlanGpeRepr {
            vni: packet.vni(),
            next_protocol: if packet.has_next_protocol() {
                packet.next_protocol()
            } else {
                VxlanGpeProtocol::Ethernet
            },
            oam: packet.oam(),
            bum: packet.bum(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes version 0 with I and P set, B and O as given, zero reserved fields.
    /// [`Error::Malformed`] if the VNI does not fit 24 bits, [`Error::Truncated`] if the buffer
    /// is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanGpePacket<T>) -> Result<()> {
        if self.vni > MAX_VNI {
            return Err(Error::Malformed);
        }
        packet.check_len()?;
        let mut flags = FLAG_I | GPE_FLAG_P;
        if self.bum {
            flags |= GPE_FLAG_B;
        }
        if self.oam {
            flags |= GPE_FLAG_O;
        }
        packet.set_flags(flags);
        packet.clear_reserved();
        packet.set_next_protocol(self.next_protocol);
        packet.set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorShift;

    // tcpdump-vxlan.pcap frame 1, bytes 42..54: VXLAN, then the inner Ethernet destination.
    // Oracle: UDP port 4789, VNI 100, inner Ethernet at offset 50.
    static VXLAN_F1: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, // VXLAN
        0x00, 0x30, 0x88, 0x01, // Ethernet
    ];

    // sv-vxlan-non-zero-reserved-fields.pcap frames 1 and 2, bytes 42..50: every reserved field
    // non-zero (flags 0xff, reserved 0x01d1f2 / 0x01d1f3, last byte 0 / 1). Oracle: VNI 11.
    static RESERVED_F1: [u8; 8] = [0xff, 0x01, 0xd1, 0xf2, 0x00, 0x00, 0x0b, 0x00];
    static RESERVED_F2: [u8; 8] = [0xff, 0x01, 0xd1, 0xf3, 0x00, 0x00, 0x0b, 0x01];

    // zeek-vxlan-triple-v2.pcap frame 1, bytes 42..50: GPE-style flags (0x0c) and next protocol
    // 3 sent to port 4789, so read as plain VXLAN. Oracle: VNI 1.
    static TRIPLE: [u8; 8] = [0x0c, 0x00, 0x00, 0x03, 0x00, 0x00, 0x01, 0x00];

    // tcpdump-nsh-over-vxlan-gpe.pcap frame 1, bytes 42..54: VXLAN-GPE (UDP 4790) with I and P,
    // next protocol NSH, then the NSH base header. Oracle: VNI 16777215, inner NSH.
    static GPE_NSH: [u8; 12] = [
        0x0c, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0x00, // VXLAN-GPE
        0x30, 0x06, 0x02, 0x01, // NSH
    ];

    #[test]
    fn test_parse() {
        let p = VxlanPacket::new_checked(&VXLAN_F1[..]).unwrap();
        assert!(p.has_vni());
        assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr::new(100)));
        assert_eq!(p.payload(), &[0x00, 0x30, 0x88, 0x01]);
        // Oracle inner_offset: the inner frame starts at frame offset 50.
        assert_eq!(42 + VXLAN_F1.len() - p.payload().len(), 50);

        for bytes in [&RESERVED_F1, &RESERVED_F2] {
            let p = VxlanPacket::new_checked(&bytes[..]).unwrap();
            let r = VxlanRepr::parse(&p).unwrap();
            assert_eq!((r.vni, r.flags, r.has_vni()), (11, 0xff, true));
        }

        let r = VxlanRepr::parse(&VxlanPacket::new_checked(&TRIPLE[..]).unwrap()).unwrap();
        assert_eq!((r.vni, r.has_vni()), (1, true));

        // Without I the VNI is still readable; the caller decides.
        let no_i = [0u8, 0, 0, 0, 0, 0, 5, 0];
        let r = VxlanRepr::parse(&VxlanPacket::new_checked(&no_i[..]).unwrap()).unwrap();
        assert_eq!((r.vni, r.has_vni()), (5, false));
    }

    #[test]
    fn test_parse_gpe() {
        let p = VxlanGpePacket::new_checked(&GPE_NSH[..]).unwrap();
        assert_eq!(
            (p.version(), p.has_next_protocol(), p.bum(), p.oam()),
            (0, true, false, false)
        );
        assert_eq!(
            VxlanGpeRepr::parse(&p),
            Ok(VxlanGpeRepr {
                vni: 16777215,
                next_protocol: VxlanGpeProtocol::Nsh,
                oam: false,
                bum: false,
            })
        );
        assert_eq!(p.payload(), &[0x30, 0x06, 0x02, 0x01]);

        // The triple-VXLAN header read as GPE: next protocol Ethernet.
        let r = VxlanGpeRepr::parse(&VxlanGpePacket::new_checked(&TRIPLE[..]).unwrap());
        assert_eq!(r.unwrap().next_protocol, VxlanGpeProtocol::Ethernet);

        // P clear: Ethernet, whatever byte 3 holds.
        let mut no_p = GPE_NSH;
        no_p[0] = FLAG_I;
        let r = VxlanGpeRepr::parse(&VxlanGpePacket::new_checked(&no_p[..]).unwrap());
        assert_eq!(r.unwrap().next_protocol, VxlanGpeProtocol::Ethernet);

        // Unknown version, or no I: dropped.
        for flags in [0x1c, 0x2c, 0x3c, 0x04] {
            let mut b = GPE_NSH;
            b[0] = flags;
            let p = VxlanGpePacket::new_checked(&b[..]).unwrap();
            assert_eq!(VxlanGpeRepr::parse(&p), Err(Error::Malformed), "{flags:#x}");
        }
        // Reserved bits are ignored.
        let mut b = GPE_NSH;
        b[0] |= 0xc0;
        b[1] = 0xaa;
        b[7] = 0x55;
        let p = VxlanGpePacket::new_checked(&b[..]).unwrap();
        assert_eq!(VxlanGpeRepr::parse(&p).unwrap().vni, 0xffffff);
    }

    #[test]
    fn test_emit() {
        let mut buf = [0xeeu8; 12];
        buf[8..].copy_from_slice(&VXLAN_F1[8..]);
        VxlanRepr::new(100)
            .emit(&mut VxlanPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, VXLAN_F1);

        // Reserved bytes are cleared, the flags byte written as given.
        let r = VxlanRepr::parse(&VxlanPacket::new_checked(&RESERVED_F1[..]).unwrap()).unwrap();
        let mut buf = [0xeeu8; 8];
        r.emit(&mut VxlanPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, [0xff, 0, 0, 0, 0, 0, 0x0b, 0]);
        VxlanRepr::new(r.vni)
            .emit(&mut VxlanPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, [0x08, 0, 0, 0, 0, 0, 0x0b, 0]);

        let r = VxlanGpeRepr::parse(&VxlanGpePacket::new_checked(&GPE_NSH[..]).unwrap()).unwrap();
        let mut buf = [0xeeu8; 12];
        buf[8..].copy_from_slice(&GPE_NSH[8..]);
        r.emit(&mut VxlanGpePacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, GPE_NSH);

        let r = VxlanGpeRepr {
            vni: 0x123456,
            next_protocol: VxlanGpeProtocol::Unknown(0x80),
            oam: true,
            bum: true,
        };
        let mut buf = [0xeeu8; 8];
        r.emit(&mut VxlanGpePacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, [0x0f, 0, 0, 0x80, 0x12, 0x34, 0x56, 0]);
        let back = VxlanGpeRepr::parse(&VxlanGpePacket::new_checked(&buf[..]).unwrap());
        assert_eq!(back, Ok(r));
    }

    #[test]
    fn test_emit_errors() {
        let mut buf = [0u8; 8];
        assert_eq!(
            VxlanRepr::new(MAX_VNI + 1).emit(&mut VxlanPacket::new_unchecked(&mut buf[..])),
            Err(Error::Malformed)
        );
        let gpe = VxlanGpeRepr {
            vni: 1 << 24,
            next_protocol: VxlanGpeProtocol::Ipv4,
            oam: false,
            bum: false,
        };
        assert_eq!(
            gpe.emit(&mut VxlanGpePacket::new_unchecked(&mut buf[..])),
            Err(Error::Malformed)
        );
        assert_eq!(buf, [0; 8]);
        for n in 0..HEADER_LEN {
            let mut p = VxlanPacket::new_unchecked(&mut buf[..n]);
            assert_eq!(VxlanRepr::new(1).emit(&mut p), Err(Error::Truncated));
            let mut p = VxlanGpePacket::new_unchecked(&mut buf[..n]);
            let ok = VxlanGpeRepr { vni: 1, ..gpe };
            assert_eq!(ok.emit(&mut p), Err(Error::Truncated));
        }
        // The setter masks.
        let mut p = VxlanPacket::new_unchecked(&mut buf[..]);
        p.set_vni(0x1234_5678);
        assert_eq!(p.vni(), 0x34_5678);
        assert_eq!(buf[7], 0);
    }

    #[test]
    fn test_truncated() {
        for bytes in [&VXLAN_F1[..8], &RESERVED_F1, &GPE_NSH[..8]] {
            for n in 0..HEADER_LEN {
                let b = &bytes[..n];
                assert_eq!(
                    VxlanRepr::parse(&VxlanPacket::new_unchecked(b)),
                    Err(Error::Truncated)
                );
                assert_eq!(
                    VxlanGpeRepr::parse(&VxlanGpePacket::new_unchecked(b)),
                    Err(Error::Truncated)
                );
            }
        }
    }

    #[test]
    fn test_random_never_panics() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut buf = [0u8; 16];
        let mut gpe_ok = 0;
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 17) as usize;
            rng.fill(&mut buf[..len]);
            if let Ok(p) = VxlanPacket::new_checked(&buf[..len]) {
                let r = VxlanRepr::parse(&p).unwrap();
                assert_eq!((r.flags, r.vni), (p.flags(), p.vni()));
                let _ = p.payload();
            }
            if let Ok(p) = VxlanGpePacket::new_checked(&buf[..len]) {
                let _ = (p.bum(), p.oam(), p.next_protocol(), p.payload());
                if let Ok(r) = VxlanGpeRepr::parse(&p) {
                    gpe_ok += 1;
                    let mut out = [0u8; 8];
                    r.emit(&mut VxlanGpePacket::new_unchecked(&mut out[..]))
                        .unwrap();
                    let back = VxlanGpeRepr::parse(&VxlanGpePacket::new_unchecked(&out[..]));
                    assert_eq!(back, Ok(r));
                }
            }
        }
        assert!(gpe_ok > 500, "{gpe_ok}");
    }

    #[test]
    fn next_protocol_conversion_is_total() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(VxlanGpeProtocol::from(v)), v);
        }
    }
}
