//! ERSPAN headers (draft-foschiano-erspan-03), carried in GRE.
//!
//! ```text
//! Type II (GRE protocol 0x88be, GRE S bit set), 8 bytes:
//! |  Ver  |          VLAN         | COS | En|T|    Session ID     |
//! |      Reserved         |                 Index                 |
//!
//! Type III (GRE protocol 0x22eb), 12 bytes, + 8 if O is set:
//! |  Ver  |          VLAN         | COS |BSO|T|    Session ID     |
//! |                          Timestamp                            |
//! |             SGT               |P|    FT   |   Hw ID   |D|Gra|O|
//! | Platf ID  |           Platform Specific Info (58 bits)        |
//! |                 Platform Specific Info (cont.)                |
//! ```
//!
//! Type I has no ERSPAN header: the mirrored frame follows a 4-byte GRE header with protocol
//! 0x88be (the draft's type I). Whether a 0x88be payload is type I or type II therefore depends on
//! the GRE header (the S bit, as Linux decides), and that decision is the caller's: this module
//! only reads headers it is told are there.
//!
//! Out-of-range values on emit (VLAN above 4095, session above 1023, and so on) are rejected
//! with [`Error::Malformed`] rather than masked: a silently truncated session ID or VLAN would
//! deliver mirrored traffic to the wrong analyser. The low-level `set_*` setters mask to the
//! field width.

use crate::{Error, Result};

/// The version field of a type II header.
pub const VERSION_II: u8 = 1;
/// The version field of a type III header.
pub const VERSION_III: u8 = 2;
/// Length of a type II header.
pub const TYPE_II_HEADER_LEN: usize = 8;
/// Length of a type III header without its platform-specific subheader.
pub const TYPE_III_HEADER_LEN: usize = 12;
/// Length of the type III platform-specific subheader (present when O is set).
pub const PLATFORM_SUBHEADER_LEN: usize = 8;

/// Largest values of the narrow fields.
pub const MAX_VLAN: u16 = 0x0fff;
pub const MAX_SESSION_ID: u16 = 0x03ff;
pub const MAX_INDEX: u32 = 0x000f_ffff;
pub const MAX_PLATFORM_ID: u8 = 0x3f;
pub const MAX_PLATFORM_INFO: u64 = (1 << 58) - 1;

mod field {
    use core::ops::Range;
    /// Ver (4) | VLAN (12), both types.
    pub const VER_VLAN: Range<usize> = 0..2;
    /// COS (3) | En or BSO (2) | T (1) | Session ID (10), both types.
    pub const COS_SESSION: Range<usize> = 2..4;
    /// Type II: Reserved (12) | Index (20).
    pub const INDEX: Range<usize> = 4..8;
    /// Type III.
    pub const TIMESTAMP: Range<usize> = 4..8;
    pub const SGT: Range<usize> = 8..10;
    /// P (1) | FT (5) | Hw ID (6) | D (1) | Gra (2) | O (1).
    pub const FLAGS: Range<usize> = 10..12;
    /// Platf ID (6) | Platform Specific Info (58).
    pub const PLATFORM: Range<usize> = 12..20;
}

fn get_u16(buf: &[u8], r: core::ops::Range<usize>) -> u16 {
    let b = &buf[r];
    u16::from_be_bytes([b[0], b[1]])
}

fn get_u32(buf: &[u8], r: core::ops::Range<usize>) -> u32 {
    let b = &buf[r];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Replaces the bits of `mask` (shifted by `shift`) in the 16-bit word at `r`.
fn put_bits16(buf: &mut [u8], r: core::ops::Range<usize>, shift: u32, mask: u16, v: u16) {
    let w = (get_u16(buf, r.clone()) & !(mask << shift)) | ((v & mask) << shift);
    buf[r].copy_from_slice(&w.to_be_bytes());
}

/// Accessors of the first four bytes, common to both types.
macro_rules! common_accessors {
    () => {
        pub fn version(&self) -> u8 {
            self.buffer.as_ref()[field::VER_VLAN.start] >> 4
        }

        /// The VLAN of the mirrored frame's source port (12 bits).
        pub fn vlan(&self) -> u16 {
            get_u16(self.buffer.as_ref(), field::VER_VLAN) & MAX_VLAN
        }

        /// Class of service of the mirrored frame (3 bits).
        pub fn cos(&self) -> u8 {
            (get_u16(self.buffer.as_ref(), field::COS_SESSION) >> 13) as u8
        }

        /// The T bit: the mirrored frame was truncated to fit the ERSPAN packet.
        pub fn truncated(&self) -> bool {
            get_u16(self.buffer.as_ref(), field::COS_SESSION) & 0x0400 != 0
        }

        /// The session ID (10 bits).
        pub fn session_id(&self) -> u16 {
            get_u16(self.buffer.as_ref(), field::COS_SESSION) & MAX_SESSION_ID
        }
    };
}

/// Setters of the first four bytes, common to both types. They mask to the field width.
macro_rules! common_setters {
    () => {
        pub fn set_version(&mut self, v: u8) {
            put_bits16(self.buffer.as_mut(), field::VER_VLAN, 12, 0xf, u16::from(v));
        }

        pub fn set_vlan(&mut self, v: u16) {
            put_bits16(self.buffer.as_mut(), field::VER_VLAN, 0, MAX_VLAN, v);
        }

        pub fn set_cos(&mut self, v: u8) {
            put_bits16(
                self.buffer.as_mut(),
                field::COS_SESSION,
                13,
                0x7,
                u16::from(v),
            );
        }

        pub fn set_truncated(&mut self, v: bool) {
            put_bits16(
                self.buffer.as_mut(),
                field::COS_SESSION,
                10,
                1,
                u16::from(v),
            );
        }

        pub fn set_session_id(&mut self, v: u16) {
            put_bits16(
                self.buffer.as_mut(),
                field::COS_SESSION,
                0,
                MAX_SESSION_ID,
                v,
            );
        }
    };
}

/// A view of an ERSPAN type II header and the mirrored frame after it. After
/// [`ErspanIIPacket::new_checked`] no accessor panics.
#[derive(Debug, Clone)]
pub struct ErspanIIPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ErspanIIPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ErspanIIPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < TYPE_II_HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    common_accessors!();

    /// The En field (2 bits): how the mirrored frame was encapsulated on the source port. 0
    /// untagged, 1 ISL, 2 802.1Q, 3 VLAN tag preserved in the frame.
    pub fn encap(&self) -> u8 {
        ((get_u16(self.buffer.as_ref(), field::COS_SESSION) >> 11) & 0x3) as u8
    }

    /// The port index (20 bits) of the mirrored port.
    pub fn index(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::INDEX) & MAX_INDEX
    }

    pub const fn header_len(&self) -> usize {
        TYPE_II_HEADER_LEN
    }

    /// The mirrored frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[TYPE_II_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ErspanIIPacket<T> {
    common_setters!();

    pub fn set_encap(&mut self, v: u8) {
        put_bits16(
            self.buffer.as_mut(),
            field::COS_SESSION,
            11,
            0x3,
            u16::from(v),
        );
    }

    /// Writes the index and clears the 12 reserved bits before it.
    pub fn set_index(&mut self, v: u32) {
        self.buffer.as_mut()[field::INDEX].copy_from_slice(&(v & MAX_INDEX).to_be_bytes());
    }
}

/// A view of an ERSPAN type III header (and its platform-specific subheader when O is set) and
/// the mirrored frame after it. After [`ErspanIIIPacket::new_checked`] no accessor panics.
#[derive(Debug, Clone)]
pub struct ErspanIIIPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// The type III platform-specific subheader: a 6-bit platform ID and 58 bits whose meaning
/// depends on it (for platform ID 3, Wireshark reads a port ID and the upper 32 bits of the
/// timestamp). Kept raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErspanPlatform {
    pub id: u8,
    /// The low 58 bits of the subheader.
    pub info: u64,
}

impl<T: AsRef<[u8]>> ErspanIIIPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ErspanIIIPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] if the buffer is shorter than 12 bytes, or than 20 when O is set.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < TYPE_III_HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    common_accessors!();

    /// The BSO field (2 bits): bad / short / oversized frame indication.
    pub fn bso(&self) -> u8 {
        ((get_u16(self.buffer.as_ref(), field::COS_SESSION) >> 11) & 0x3) as u8
    }

    /// The timestamp, in units set by [`ErspanIIIPacket::granularity`] (low 32 bits).
    pub fn timestamp(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::TIMESTAMP)
    }

    /// The security group tag.
    pub fn sgt(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SGT)
    }

    fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The P bit.
    pub fn p(&self) -> bool {
        self.flags() & 0x8000 != 0
    }

    /// The frame type FT (5 bits): 0 Ethernet, 2 IP; any other value leaves
    /// the payload's format unknown.
    pub fn frame_type(&self) -> u8 {
        ((self.flags() >> 10) & 0x1f) as u8
    }

    /// The hardware (engine) ID, 6 bits.
    pub fn hw_id(&self) -> u8 {
        ((self.flags() >> 4) & 0x3f) as u8
    }

    /// The D bit: `false` for ingress, `true` for egress traffic.
    pub fn direction(&self) -> bool {
        self.flags() & 0x0008 != 0
    }

    /// Timestamp granularity (2 bits): 0 100 µs, 1 100 ns, 2 IEEE 1588, 3 platform-specific.
    pub fn granularity(&self) -> u8 {
        ((self.flags() >> 1) & 0x3) as u8
    }

    /// The O bit: the platform-specific subheader follows.
    pub fn has_platform_subheader(&self) -> bool {
        self.flags() & 0x0001 != 0
    }

    /// The platform-specific subheader, if O is set.
    pub fn platform(&self) -> Option<ErspanPlatform> {
        if !self.has_platform_subheader() {
            return None;
        }
        let b: [u8; 8] = self.buffer.as_ref().get(field::PLATFORM)?.try_into().ok()?;
        let w = u64::from_be_bytes(b);
        Some(ErspanPlatform {
            id: (w >> 58) as u8,
            info: w & MAX_PLATFORM_INFO,
        })
    }

    /// 12 bytes, or 20 with the platform-specific subheader.
    pub fn header_len(&self) -> usize {
        if self.has_platform_subheader() {
            TYPE_III_HEADER_LEN + PLATFORM_SUBHEADER_LEN
        } else {
            TYPE_III_HEADER_LEN
        }
    }

    /// The mirrored frame (Ethernet when [`ErspanIIIPacket::frame_type`] is 0).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ErspanIIIPacket<T> {
    common_setters!();

    pub fn set_bso(&mut self, v: u8) {
        put_bits16(
            self.buffer.as_mut(),
            field::COS_SESSION,
            11,
            0x3,
            u16::from(v),
        );
    }

    pub fn set_timestamp(&mut self, v: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_sgt(&mut self, v: u16) {
        self.buffer.as_mut()[field::SGT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_p(&mut self, v: bool) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 15, 0x1, u16::from(v));
    }

    pub fn set_frame_type(&mut self, v: u8) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 10, 0x1f, u16::from(v));
    }

    pub fn set_hw_id(&mut self, v: u8) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 4, 0x3f, u16::from(v));
    }

    pub fn set_direction(&mut self, v: bool) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 3, 0x1, u16::from(v));
    }

    pub fn set_granularity(&mut self, v: u8) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 1, 0x3, u16::from(v));
    }

    /// Sets the O bit. Setting it lengthens the header: write the subheader with
    /// [`ErspanIIIPacket::set_platform`].
    pub fn set_has_platform_subheader(&mut self, v: bool) {
        put_bits16(self.buffer.as_mut(), field::FLAGS, 0, 0x1, u16::from(v));
    }

    /// Writes the subheader (ID and info masked to 6 and 58 bits). [`Error::Malformed`] if O is
    /// clear, [`Error::Truncated`] if the buffer has no room for it.
    pub fn set_platform(&mut self, v: ErspanPlatform) -> Result<()> {
        if !self.has_platform_subheader() {
            return Err(Error::Malformed);
        }
        let w = (u64::from(v.id & MAX_PLATFORM_ID) << 58) | (v.info & MAX_PLATFORM_INFO);
        let out = self
            .buffer
            .as_mut()
            .get_mut(field::PLATFORM)
            .ok_or(Error::Truncated)?;
        out.copy_from_slice(&w.to_be_bytes());
        Ok(())
    }
}

/// The high-level form of an ERSPAN type II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErspanIIRepr {
    pub vlan: u16,
    pub cos: u8,
    /// The En field, see [`ErspanIIPacket::encap`].
    pub encap: u8,
    pub truncated: bool,
    pub session_id: u16,
    pub index: u32,
}

impl ErspanIIRepr {
    /// [`Error::Malformed`] if the version field is not 1. The reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &ErspanIIPacket<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != VERSION_II {
            return Err(Error::Malformed);
        }
        Ok(ErspanIIRepr {
            vlan: packet.vlan(),
            cos: packet.cos(),
            encap: packet.encap(),
            truncated: packet.truncated(),
            session_id: packet.session_id(),
            index: packet.index(),
        })
    }

    pub const fn header_len(&self) -> usize {
        TYPE_II_HEADER_LEN
    }

    /// Writes the header (reserved bits zero) into the first 8 bytes of `packet`.
    /// [`Error::Malformed`] if a field does not fit its width, [`Error::Truncated`] if the
    /// buffer is too short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ErspanIIPacket<T>) -> Result<()> {
        if self.vlan > MAX_VLAN
            || self.cos > 7
            || self.encap > 3
            || self.session_id > MAX_SESSION_ID
            || self.index > MAX_INDEX
        {
            return Err(Error::Malformed);
        }
        packet.check_len()?;
        packet.set_version(VERSION_II);
        packet.set_vlan(self.vlan);
        packet.set_cos(self.cos);
        packet.set_encap(self.encap);
        packet.set_truncated(self.truncated);
        packet.set_session_id(self.session_id);
        packet.set_index(self.index);
        Ok(())
    }
}

/// The high-level form of an ERSPAN type III header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErspanIIIRepr {
    pub vlan: u16,
    pub cos: u8,
    pub bso: u8,
    pub truncated: bool,
    pub session_id: u16,
    pub timestamp: u32,
    pub sgt: u16,
    pub p: bool,
    pub frame_type: u8,
    pub hw_id: u8,
    /// `true` for egress.
    pub direction: bool,
    pub granularity: u8,
    /// The platform-specific subheader; `Some` sets the O bit.
    pub platform: Option<ErspanPlatform>,
}

impl ErspanIIIRepr {
    /// [`Error::Malformed`] if the version field is not 2.
    pub fn parse<T: AsRef<[u8]>>(packet: &ErspanIIIPacket<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != VERSION_III {
            return Err(Error::Malformed);
        }
        Ok(ErspanIIIRepr {
            vlan: packet.vlan(),
            cos: packet.cos(),
            bso: packet.bso(),
            truncated: packet.truncated(),
            session_id: packet.session_id(),
            timestamp: packet.timestamp(),
            sgt: packet.sgt(),
            p: packet.p(),
            frame_type: packet.frame_type(),
            hw_id: packet.hw_id(),
            direction: packet.direction(),
            granularity: packet.granularity(),
            platform: packet.platform(),
        })
    }

    /// 12 bytes, or 20 with the platform-specific subheader.
    pub const fn header_len(&self) -> usize {
        if self.platform.is_some() {
            TYPE_III_HEADER_LEN + PLATFORM_SUBHEADER_LEN
        } else {
            TYPE_III_HEADER_LEN
        }
    }

    /// Writes the header into the start of `packet`. [`Error::Malformed`] if a field does not
    /// fit its width, [`Error::Truncated`] if the buffer is shorter than
    /// [`ErspanIIIRepr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut ErspanIIIPacket<T>,
    ) -> Result<()> {
        let platform_ok = self
            .platform
            .is_none_or(|p| p.id <= MAX_PLATFORM_ID && p.info <= MAX_PLATFORM_INFO);
        if self.vlan > MAX_VLAN
            || self.cos > 7
            || self.bso > 3
            || self.session_id > MAX_SESSION_ID
            || self.frame_type > 0x1f
            || self.hw_id > 0x3f
            || self.granularity > 3
            || !platform_ok
        {
            return Err(Error::Malformed);
        }
        if packet.buffer.as_ref().len() < self.header_len() {
            return Err(Error::Truncated);
        }
        packet.set_version(VERSION_III);
        packet.set_vlan(self.vlan);
        packet.set_cos(self.cos);
        packet.set_bso(self.bso);
        packet.set_truncated(self.truncated);
        packet.set_session_id(self.session_id);
        packet.set_timestamp(self.timestamp);
        packet.set_sgt(self.sgt);
        packet.set_p(self.p);
        packet.set_frame_type(self.frame_type);
        packet.set_hw_id(self.hw_id);
        packet.set_direction(self.direction);
        packet.set_granularity(self.granularity);
        packet.set_has_platform_subheader(self.platform.is_some());
        if let Some(p) = self.platform {
            packet.set_platform(p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorShift;

    // tcpdump-erspan-type-ii-1.pcap frame 1, bytes 42..54: the ERSPAN II header, then the start
    // of the mirrored frame. Oracle: version 1, session 666, VLAN 342; tshark: COS 6, index
    // 32760.
    static II_1: [u8; 12] = [
        0x11, 0x56, 0xc2, 0x9a, 0x00, 0x00, 0x7f, 0xf8, // ERSPAN II
        0x01, 0x00, 0x5e, 0x00, // Ethernet
    ];

    // tcpdump-erspan-type-ii-3.pcap frames 1 and 70, bytes 42..50. Oracle: session 101, VLAN 1
    // and 865; tshark: En 2 (802.1Q), index 43973.
    static II_3_F1: [u8; 8] = [0x10, 0x01, 0x10, 0x65, 0x00, 0x00, 0xab, 0xc5];
    static II_3_F70: [u8; 8] = [0x13, 0x61, 0x10, 0x65, 0x00, 0x00, 0xab, 0xc5];

    // sv-decode-erspan-typeII-01.pcap frame 1, bytes 42..50. Oracle: session 100, VLAN 23;
    // tshark: En 1 (ISL), index 0.
    static II_SV: [u8; 8] = [0x10, 0x17, 0x08, 0x64, 0x00, 0x00, 0x00, 0x00];

    // zeek-gre-erspan3-dot1q.pcap frame 1, bytes 38..62: type III with O set and the
    // platform-specific subheader (platform ID 3), then the mirrored frame. Oracle: version 2,
    // session 0, VLAN 10; tshark: timestamp 1884323413, granularity 3, port ID 3, upper
    // timestamp 368526056.
    static III_O: [u8; 24] = [
        0x20, 0x0a, 0x00, 0x00, 0x70, 0x50, 0x7e, 0x55, 0x00, 0x00, 0x00, 0x07, // ERSPAN III
        0x0c, 0x00, 0x00, 0x03, 0x15, 0xf7, 0x42, 0xe8, // platform subheader
        0x00, 0x50, 0x56, 0x8b, // Ethernet
    ];

    // tcpdump-erspan-type-iii-ft-0.pcap frame 1, bytes 38..54: type III without subheader.
    // Oracle: version 2, session 0, VLAN 20; tshark: timestamp 2740542463, granularity 3.
    static III_FT0: [u8; 16] = [
        0x20, 0x14, 0x00, 0x00, 0xa3, 0x59, 0x5b, 0xff, 0x00, 0x00, 0x00, 0x06, // ERSPAN III
        0x00, 0x50, 0x56, 0xac, // Ethernet
    ];

    // tcpdump-erspan-type-iii-pb-1.pcap frame 1, bytes 64..79 (end of capture): a fuzzed
    // header with O set, snapped 5 bytes into the subheader. Oracle: VLAN 3373, BSO 1, SGT 256.
    static III_SNAPPED: [u8; 15] = [
        0x2d, 0x2d, 0x08, 0x00, 0x48, 0x00, 0x08, 0x46, 0x01, 0x00, 0x00, 0x01, 0x3d, 0x0e, 0x45,
    ];

    #[test]
    fn test_parse_ii() {
        let p = ErspanIIPacket::new_checked(&II_1[..]).unwrap();
        assert_eq!(p.version(), VERSION_II);
        let r = ErspanIIRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ErspanIIRepr {
                vlan: 342,
                cos: 6,
                encap: 0,
                truncated: false,
                session_id: 666,
                index: 32760,
            }
        );
        assert_eq!(p.payload(), &[0x01, 0x00, 0x5e, 0x00]);
        // Oracle inner_offset: the mirrored frame starts at frame offset 50.
        assert_eq!(42 + p.header_len(), 50);

        for (bytes, vlan, session, encap, index) in [
            (&II_3_F1, 1, 101, 2, 43973),
            (&II_3_F70, 865, 101, 2, 43973),
            (&II_SV, 23, 100, 1, 0),
        ] {
            let r = ErspanIIRepr::parse(&ErspanIIPacket::new_checked(&bytes[..]).unwrap()).unwrap();
            assert_eq!(
                (r.vlan, r.session_id, r.encap, r.index, r.cos, r.truncated),
                (vlan, session, encap, index, 0, false)
            );
        }
    }

    #[test]
    fn test_parse_iii() {
        let p = ErspanIIIPacket::new_checked(&III_O[..]).unwrap();
        assert_eq!(p.version(), VERSION_III);
        assert_eq!(p.header_len(), 20);
        let r = ErspanIIIRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ErspanIIIRepr {
                vlan: 10,
                cos: 0,
                bso: 0,
                truncated: false,
                session_id: 0,
                timestamp: 1884323413,
                sgt: 0,
                p: false,
                frame_type: 0,
                hw_id: 0,
                direction: false,
                granularity: 3,
                platform: Some(ErspanPlatform {
                    id: 3,
                    info: 0x0000_0003_15f7_42e8,
                }),
            }
        );
        // Wireshark's reading of platform 3: port ID in bits 32..46, upper timestamp below.
        let info = r.platform.unwrap().info;
        assert_eq!(((info >> 32) & 0x3fff, info as u32), (3, 368526056));
        assert_eq!(p.payload(), &[0x00, 0x50, 0x56, 0x8b]);
        assert_eq!(38 + p.header_len(), 58);

        let p = ErspanIIIPacket::new_checked(&III_FT0[..]).unwrap();
        let r = ErspanIIIRepr::parse(&p).unwrap();
        assert_eq!(p.header_len(), 12);
        assert_eq!(
            (r.vlan, r.session_id, r.timestamp, r.granularity, r.platform),
            (20, 0, 2740542463, 3, None)
        );
        assert_eq!(p.payload(), &[0x00, 0x50, 0x56, 0xac]);
        assert_eq!(38 + p.header_len(), 50);
    }

    #[test]
    fn test_snapped_subheader() {
        let p = ErspanIIIPacket::new_unchecked(&III_SNAPPED[..]);
        assert_eq!(p.check_len(), Err(Error::Truncated));
        assert_eq!(ErspanIIIRepr::parse(&p), Err(Error::Truncated));
        // The fixed part is readable on its own, and agrees with the oracle.
        let fixed = ErspanIIIPacket::new_unchecked(&III_SNAPPED[..12]);
        assert_eq!((fixed.vlan(), fixed.bso(), fixed.sgt()), (3373, 1, 256));
        assert_eq!(fixed.platform(), None);
        assert_eq!(fixed.payload(), &[] as &[u8]);
    }

    #[test]
    fn test_version_mismatch() {
        assert_eq!(
            ErspanIIRepr::parse(&ErspanIIPacket::new_unchecked(&III_FT0[..])),
            Err(Error::Malformed)
        );
        assert_eq!(
            ErspanIIIRepr::parse(&ErspanIIIPacket::new_unchecked(&II_1[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn test_emit() {
        for bytes in [&II_1[..], &II_3_F1, &II_3_F70, &II_SV] {
            let r = ErspanIIRepr::parse(&ErspanIIPacket::new_checked(bytes).unwrap()).unwrap();
            let mut buf = bytes.to_vec();
            buf[..8].fill(0xff);
            r.emit(&mut ErspanIIPacket::new_unchecked(&mut buf[..]))
                .unwrap();
            assert_eq!(buf, bytes);
        }
        for bytes in [&III_O[..], &III_FT0] {
            let r = ErspanIIIRepr::parse(&ErspanIIIPacket::new_checked(bytes).unwrap()).unwrap();
            let mut buf = bytes.to_vec();
            buf[..r.header_len()].fill(0xff);
            r.emit(&mut ErspanIIIPacket::new_unchecked(&mut buf[..]))
                .unwrap();
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn test_emit_round_trip_all_fields() {
        let r = ErspanIIIRepr {
            vlan: 4095,
            cos: 7,
            bso: 3,
            truncated: true,
            session_id: 1023,
            timestamp: 0xdead_beef,
            sgt: 0xffff,
            p: true,
            frame_type: 31,
            hw_id: 63,
            direction: true,
            granularity: 2,
            platform: Some(ErspanPlatform {
                id: 63,
                info: MAX_PLATFORM_INFO,
            }),
        };
        let mut buf = [0u8; 20];
        r.emit(&mut ErspanIIIPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(
            buf,
            [
                0x2f, 0xff, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xfd, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]
        );
        let back = ErspanIIIRepr::parse(&ErspanIIIPacket::new_checked(&buf[..]).unwrap());
        assert_eq!(back, Ok(r));
        let r = ErspanIIRepr {
            vlan: 4095,
            cos: 7,
            encap: 3,
            truncated: true,
            session_id: 1023,
            index: MAX_INDEX,
        };
        let mut buf = [0u8; 8];
        r.emit(&mut ErspanIIPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, [0x1f, 0xff, 0xff, 0xff, 0x00, 0x0f, 0xff, 0xff]);
        let back = ErspanIIRepr::parse(&ErspanIIPacket::new_checked(&buf[..]).unwrap());
        assert_eq!(back, Ok(r));
    }

    #[test]
    fn test_emit_rejects_out_of_range() {
        let ii = ErspanIIRepr::parse(&ErspanIIPacket::new_checked(&II_1[..]).unwrap()).unwrap();
        let bad_ii = [
            ErspanIIRepr { vlan: 4096, ..ii },
            ErspanIIRepr { cos: 8, ..ii },
            ErspanIIRepr { encap: 4, ..ii },
            ErspanIIRepr {
                session_id: 1024,
                ..ii
            },
            ErspanIIRepr {
                index: MAX_INDEX + 1,
                ..ii
            },
        ];
        for r in bad_ii {
            let mut buf = II_1;
            assert_eq!(
                r.emit(&mut ErspanIIPacket::new_unchecked(&mut buf[..])),
                Err(Error::Malformed)
            );
            assert_eq!(buf, II_1, "{r:?} wrote something");
        }
        let iii = ErspanIIIRepr::parse(&ErspanIIIPacket::new_checked(&III_O[..]).unwrap()).unwrap();
        let platform = iii.platform.unwrap();
        let bad_iii = [
            ErspanIIIRepr { vlan: 4096, ..iii },
            ErspanIIIRepr { cos: 8, ..iii },
            ErspanIIIRepr { bso: 4, ..iii },
            ErspanIIIRepr {
                session_id: 1024,
                ..iii
            },
            ErspanIIIRepr {
                frame_type: 32,
                ..iii
            },
            ErspanIIIRepr { hw_id: 64, ..iii },
            ErspanIIIRepr {
                granularity: 4,
                ..iii
            },
            ErspanIIIRepr {
                platform: Some(ErspanPlatform { id: 64, ..platform }),
                ..iii
            },
            ErspanIIIRepr {
                platform: Some(ErspanPlatform {
                    info: MAX_PLATFORM_INFO + 1,
                    ..platform
                }),
                ..iii
            },
        ];
        for r in bad_iii {
            let mut buf = III_O;
            assert_eq!(
                r.emit(&mut ErspanIIIPacket::new_unchecked(&mut buf[..])),
                Err(Error::Malformed)
            );
            assert_eq!(buf, III_O, "{r:?} wrote something");
        }
        // The setters mask instead.
        let mut buf = II_1;
        let mut p = ErspanIIPacket::new_unchecked(&mut buf[..]);
        p.set_vlan(0x1001);
        p.set_session_id(0x7ff);
        assert_eq!(
            (p.version(), p.vlan(), p.session_id(), p.cos()),
            (1, 1, 0x3ff, 6)
        );
    }

    #[test]
    fn test_emit_truncated() {
        let iii = ErspanIIIRepr::parse(&ErspanIIIPacket::new_checked(&III_O[..]).unwrap()).unwrap();
        for n in 0..iii.header_len() {
            let mut buf = [0u8; 20];
            let mut p = ErspanIIIPacket::new_unchecked(&mut buf[..n]);
            assert_eq!(iii.emit(&mut p), Err(Error::Truncated), "len {n}");
        }
        let ii = ErspanIIRepr::parse(&ErspanIIPacket::new_checked(&II_1[..]).unwrap()).unwrap();
        for n in 0..ii.header_len() {
            let mut buf = [0u8; 8];
            let mut p = ErspanIIPacket::new_unchecked(&mut buf[..n]);
            assert_eq!(ii.emit(&mut p), Err(Error::Truncated), "len {n}");
        }
        // The platform setter refuses to write without O, or without room.
        let mut buf = III_FT0;
        let mut p = ErspanIIIPacket::new_checked(&mut buf[..12]).unwrap();
        let platform = ErspanPlatform { id: 1, info: 2 };
        assert_eq!(p.set_platform(platform), Err(Error::Malformed));
        p.set_has_platform_subheader(true);
        assert_eq!(p.set_platform(platform), Err(Error::Truncated));
        assert_eq!(p.platform(), None);
        assert_eq!(p.check_len(), Err(Error::Truncated));
    }

    #[test]
    fn test_truncated() {
        for n in 0..TYPE_II_HEADER_LEN {
            let p = ErspanIIPacket::new_unchecked(&II_1[..n]);
            assert_eq!(ErspanIIRepr::parse(&p), Err(Error::Truncated), "len {n}");
        }
        for (bytes, hlen) in [(&III_O[..], 20), (&III_FT0[..], 12)] {
            for n in 0..hlen {
                let p = ErspanIIIPacket::new_unchecked(&bytes[..n]);
                assert_eq!(ErspanIIIRepr::parse(&p), Err(Error::Truncated), "len {n}");
            }
        }
    }

    #[test]
    fn test_random_never_panics() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut buf = [0u8; 32];
        let (mut n2, mut n3) = (0, 0);
        for _ in 0..50_000 {
            let len = (rng.next_u64() % 33) as usize;
            rng.fill(&mut buf[..len]);
            if len > 0 {
                buf[0] = (buf[0] & 0x0f) | ((1 + (rng.next_u64() % 2) as u8) << 4);
            }
            if let Ok(p) = ErspanIIPacket::new_checked(&buf[..len]) {
                let _ = (
                    p.vlan(),
                    p.cos(),
                    p.encap(),
                    p.truncated(),
                    p.index(),
                    p.payload(),
                );
                if let Ok(r) = ErspanIIRepr::parse(&p) {
                    n2 += 1;
                    let mut out = [0u8; 8];
                    r.emit(&mut ErspanIIPacket::new_unchecked(&mut out[..]))
                        .unwrap();
                    // Everything but the 12 reserved bits comes back.
                    let mut expected = [0u8; 8];
                    expected.copy_from_slice(&buf[..8]);
                    expected[4] = 0;
                    expected[5] &= 0x0f;
                    assert_eq!(out, expected);
                }
            }
            if let Ok(p) = ErspanIIIPacket::new_checked(&buf[..len]) {
                let _ = (p.timestamp(), p.sgt(), p.p(), p.frame_type(), p.hw_id());
                let _ = (p.direction(), p.granularity(), p.platform(), p.payload());
                if let Ok(r) = ErspanIIIRepr::parse(&p) {
                    n3 += 1;
                    let mut out = [0u8; 20];
                    let hlen = r.header_len();
                    r.emit(&mut ErspanIIIPacket::new_unchecked(&mut out[..hlen]))
                        .unwrap();
                    assert_eq!(&out[..hlen], &buf[..hlen]);
                }
            }
        }
        assert!(n2 > 1000 && n3 > 1000, "{n2} {n3}");
    }
}
