//! Geneve (RFC 8926).
//!
//! ```text
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//!
//! Each option (section 3.5):
//! |          Option Class         |      Type     |R|R|R| Length  |
//! |                 Variable-Length Option Data                   |
//! ```
//!
//! Opt Len and each option's Length count 4-byte words. The protocol type is an EtherType: the
//! same space as GRE's, see [`crate::gre::protocol`] (0x6558 for Ethernet, 0x0800 and 0x86dd
//! for bare IP as Google Cloud and AWS send).

use crate::{Error, Result};

/// IANA's Geneve port.
pub const GENEVE_PORT: u16 = 6081;
/// Length of the fixed part of the header.
pub const HEADER_LEN: usize = 8;
/// The longest options area Opt Len can express (63 words).
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Length of an option's own header.
pub const OPTION_HEADER_LEN: usize = 4;
/// The longest data an option's Length can express (31 words).
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

const FLAG_O: u8 = 0x80;
const FLAG_C: u8 = 0x40;
/// The critical bit of an option's type (section 3.5).
const OPTION_CRITICAL: u8 = 0x80;

mod field {
    use core::ops::Range;
    /// Ver (2) | Opt Len (6).
    pub const VER_OPTLEN: usize = 0;
    /// O (1) | C (1) | Rsvd (6).
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: Range<usize> = 2..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED: usize = 7;
    pub const OPTIONS: usize = 8;
}

/// A view of a Geneve header, its options and the payload. After [`GenevePacket::new_checked`]
/// no accessor panics.
#[derive(Debug, Clone)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        GenevePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`Error::Truncated`] if the buffer is shorter than 8 bytes or than the header with the
    /// options Opt Len announces.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }

    /// Opt Len: the length of the options in 4-byte words.
    pub fn opt_len(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f
    }

    /// The O bit: a control packet, not to be forwarded as data (section 3.4).
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_O != 0
    }

    /// The C bit: at least one option is critical; a receiver that does not understand a
    /// critical option must drop the packet (section 3.4).
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & FLAG_C != 0
    }

    pub fn protocol_type(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// 8 bytes plus the options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + usize::from(self.opt_len()) * 4
    }

    /// The raw options area (clamped to the buffer, so it never panics).
    pub fn options_bytes(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        buf.get(field::OPTIONS..self.header_len().min(buf.len()))
            .unwrap_or(&[])
    }

    /// The options, in order.
    pub fn options(&self) -> GeneveOptions<'_> {
        GeneveOptions {
            rest: self.options_bytes(),
        }
    }

    /// Everything after the options.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GenevePacket<T> {
    /// Sets the version (2 bits; only the low bits are written).
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_OPTLEN];
        *b = (*b & 0x3f) | ((v & 0x3) << 6);
    }

    /// Sets Opt Len in 4-byte words (6 bits; only the low bits are written). This moves the
    /// payload: re-check with [`GenevePacket::check_len`].
    pub fn set_opt_len(&mut self, words: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_OPTLEN];
        *b = (*b & 0xc0) | (words & 0x3f);
    }

    fn set_flag(&mut self, bit: u8, on: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = if on { *b | bit } else { *b & !bit };
    }

    pub fn set_oam(&mut self, v: bool) {
        self.set_flag(FLAG_O, v);
    }

    pub fn set_critical(&mut self, v: bool) {
        self.set_flag(FLAG_C, v);
    }

    pub fn set_protocol_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes the VNI; only the low 24 bits are written.
    pub fn set_vni(&mut self, v: u32) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&(v & MAX_VNI).to_be_bytes()[1..]);
    }

    /// Zeroes the reserved bits of the flags byte and the reserved byte after the VNI.
    pub fn clear_reserved(&mut self) {
        let buf = self.buffer.as_mut();
        buf[field::FLAGS] &= FLAG_O | FLAG_C;
        buf[field::RESERVED] = 0;
    }

    /// The raw options area, mutable (clamped to the buffer).
    pub fn options_bytes_mut(&mut self) -> &mut [u8] {
        let end = self.header_len().min(self.buffer.as_ref().len());
        self.buffer
            .as_mut()
            .get_mut(field::OPTIONS..end)
            .unwrap_or(&mut [])
    }
}

/// One Geneve option (RFC 8926 section 3.5). `data` excludes the option header; its length is a
/// multiple of 4. The three reserved bits are ignored on parse and written as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    pub class: u16,
    pub typ: u8,
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// The high bit of the type: the option is critical (section 3.5).
    pub fn is_critical(&self) -> bool {
        self.typ & OPTION_CRITICAL != 0
    }

    pub fn buffer_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len()
    }

    /// Writes the option at the start of `buf` and returns its length. [`Error::Malformed`] if
    /// the data length is not a multiple of 4 or above [`MAX_OPTION_DATA_LEN`],
    /// [`Error::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.data.len() & 3 != 0 || self.data.len() > MAX_OPTION_DATA_LEN {
            return Err(Error::Malformed);
        }
        let out = buf.get_mut(..self.buffer_len()).ok_or(Error::Truncated)?;
        out[..2].copy_from_slice(&self.class.to_be_bytes());
        out[2] = self.typ;
        out[3] = (self.data.len() / 4) as u8;
        out[OPTION_HEADER_LEN..].copy_from_slice(self.data);
        Ok(self.buffer_len())
    }
}

/// Iterator over the options of a [`GenevePacket`]. An option whose Length runs past the
/// options area yields one `Err(Error::Malformed)` (Opt Len and the option disagree), after
/// which the iterator is exhausted.
#[derive(Debug, Clone)]
pub struct GeneveOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for GeneveOptions<'a> {
    type Item = Result<GeneveOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let [c0, c1, typ, len, ..] = *rest else {
            // Empty, or (only on a hand-made area) a partial option header.
            self.rest = &[];
            return (!rest.is_empty()).then_some(Err(Error::Malformed));
        };
        let end = OPTION_HEADER_LEN + usize::from(len & 0x1f) * 4;
        match rest.get(OPTION_HEADER_LEN..end) {
            Some(data) => {
                self.rest = &rest[end..];
                Some(Ok(GeneveOption {
                    class: u16::from_be_bytes([c0, c1]),
                    typ,
                    data,
                }))
            }
            None => {
                self.rest = &[];
                Some(Err(Error::Malformed))
            }
        }
    }
}

impl core::iter::FusedIterator for GeneveOptions<'_> {}

/// The high-level form of a Geneve header. The options are not part of it: they are read with
/// [`GenevePacket::options`] and written as bytes by [`GeneveRepr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveRepr {
    pub oam: bool,
    pub critical: bool,
    pub protocol: u16,
    pub vni: u32,
    /// Length of the options area in bytes: a multiple of 4, at most [`MAX_OPTIONS_LEN`].
    pub options_len: usize,
}

impl GeneveRepr {
    /// [`Error::Malformed`] on a version other than 0 (RFC 8926 section 3.4: packets with an
    /// unknown version must be dropped). Reserved bits are ignored; options are not validated
    /// here (see [`GeneveOptions`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &GenevePacket<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != 0 {
            return Err(Error::Malformed);
        }
        Ok(GeneveRepr {
            oam: packet.oam(),
            critical: packet.critical(),
            protocol: packet.protocol_type(),
            vni: packet.vni(),
            options_len: usize::from(packet.opt_len()) * 4,
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Writes the header (version 0, reserved fields zero) and copies `options`, which must be
    /// exactly `options_len` bytes of encoded options (see [`GeneveOption::emit`]), after it.
    /// [`Error::Malformed`] if the VNI does not fit 24 bits, `options_len` is not a multiple of
    /// 4 or above [`MAX_OPTIONS_LEN`], or `options` has another length; [`Error::Truncated`] if
    /// the buffer is shorter than [`GeneveRepr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut GenevePacket<T>,
        options: &[u8],
    ) -> Result<()> {
        if self.vni > MAX_VNI
            || self.options_len & 3 != 0
            || self.options_len > MAX_OPTIONS_LEN
            || options.len() != self.options_len
        {
            return Err(Error::Malformed);
        }
        if packet.buffer.as_ref().len() < self.header_len() {
            return Err(Error::Truncated);
        }
        packet.set_version(0);
        packet.set_opt_len((self.options_len / 4) as u8);
        packet.clear_reserved();
        packet.set_oam(self.oam);
        packet.set_critical(self.critical);
        packet.set_protocol_type(self.protocol);
        packet.set_vni(self.vni);
        packet.options_bytes_mut().copy_from_slice(options);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gre::protocol;
    use crate::XorShift;

    // zeek-geneve-many-options.pcap frame 1, bytes 42..130: Opt Len 19 (76 bytes) holding three
    // options of class 0x0100 (types 1, 2, 3; 16, 36 and 12 data bytes), then the inner
    // Ethernet. Oracle: VNI 786734, inner Ethernet.
    static MANY_OPTIONS: [u8; 88] = [
        0x13, 0x00, 0x65, 0x58, 0x0c, 0x01, 0x2e, 0x00, // fixed header
        0x01, 0x00, 0x01, 0x04, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x30, 0x61,
        0x62, 0x63, 0x64, 0x65, 0x00, // option 1
        0x01, 0x00, 0x02, 0x09, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61,
        0x62, 0x63, 0x64, 0x65, 0x66, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x30, 0x00, 0x00, 0x00, // option 2
        0x01, 0x00, 0x03, 0x03, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x00,
        0x00, // option 3
        0x62, 0x94, 0x75, 0x30, // Ethernet
    ];

    // tcpdump-geneve-gcp.pcap frame 1, bytes 42..94: Google Cloud, protocol 0x0800 (bare IPv4),
    // three options of class 0x0132, then the IPv4 header. Oracle: VNI 0, inner IPv4.
    static GCP: [u8; 52] = [
        0x0a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // fixed header
        0x01, 0x32, 0x01, 0x01, 0x80, 0x00, 0x00, 0xd1, // option 1
        0x01, 0x32, 0x02, 0x04, 0x08, 0x00, 0x00, 0x0d, 0xc0, 0xa8, 0x64, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, // option 2
        0x01, 0x32, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, // option 3
        0x45, 0x00, 0x00, 0x28, // IPv4
    ];

    // tcpdump-geneve.pcap frame 1, bytes 42..62: C set, one critical option (class 0, type
    // 0x80). Oracle: VNI 10, inner Ethernet.
    static CRITICAL: [u8; 20] = [
        0x02, 0x40, 0x65, 0x58, 0x00, 0x00, 0x0a, 0x00, // fixed header
        0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, // option
        0xfe, 0x71, 0xd8, 0x83, // Ethernet
    ];

    // tcpdump-geneve.pcap frame 2, bytes 42..54: no options. Oracle: VNI 11, inner Ethernet.
    static NO_OPTIONS: [u8; 12] = [
        0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x0b, 0x00, // fixed header
        0xb6, 0x9e, 0xd2, 0x49, // Ethernet
    ];

    // zeek-geneve-truncated.pcapng frame 1, bytes 42..58 (end of the 58-byte snap): the header
    // and its one option are complete, the inner frame was not captured. Oracle: VNI 0, no
    // inner layer.
    static SNAPPED: [u8; 16] = [
        0x02, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x0a,
    ];

    fn collect<T: AsRef<[u8]>>(p: &GenevePacket<T>) -> Vec<(u16, u8, usize)> {
        p.options()
            .map(|o| {
                let o = o.unwrap();
                (o.class, o.typ, o.data.len())
            })
            .collect()
    }

    #[test]
    fn test_parse() {
        let p = GenevePacket::new_checked(&MANY_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 84);
        assert_eq!(
            GeneveRepr::parse(&p),
            Ok(GeneveRepr {
                oam: false,
                critical: false,
                protocol: protocol::TEB,
                vni: 786734,
                options_len: 76,
            })
        );
        assert_eq!(
            collect(&p),
            [(0x0100, 1, 16), (0x0100, 2, 36), (0x0100, 3, 12)]
        );
        assert_eq!(
            p.options().next().unwrap().unwrap().data,
            b"1234567890abcde\0"
        );
        assert_eq!(p.payload(), &[0x62, 0x94, 0x75, 0x30]);
        // Oracle inner_offset: the inner frame starts at frame offset 126.
        assert_eq!(42 + p.header_len(), 126);

        let p = GenevePacket::new_checked(&GCP[..]).unwrap();
        let r = GeneveRepr::parse(&p).unwrap();
        assert_eq!((r.protocol, r.vni, r.options_len), (protocol::IPV4, 0, 40));
        assert_eq!(
            collect(&p),
            [(0x0132, 1, 4), (0x0132, 2, 16), (0x0132, 3, 8)]
        );
        assert_eq!(p.payload(), &[0x45, 0x00, 0x00, 0x28]);
        assert_eq!(42 + p.header_len(), 90);

        let p = GenevePacket::new_checked(&CRITICAL[..]).unwrap();
        let r = GeneveRepr::parse(&p).unwrap();
        assert_eq!((r.critical, r.oam, r.vni), (true, false, 10));
        let o = p.options().next().unwrap().unwrap();
        assert!(o.is_critical());
        assert_eq!((o.class, o.data), (0, &[0, 0, 0, 0x0c][..]));
        assert_eq!(42 + p.header_len(), 58);

        let p = GenevePacket::new_checked(&NO_OPTIONS[..]).unwrap();
        let r = GeneveRepr::parse(&p).unwrap();
        assert_eq!((r.vni, r.options_len), (11, 0));
        assert_eq!(p.options().count(), 0);
        assert_eq!(42 + p.header_len(), 50);

        let p = GenevePacket::new_checked(&SNAPPED[..]).unwrap();
        assert_eq!(GeneveRepr::parse(&p).unwrap().vni, 0);
        assert_eq!(collect(&p), [(0, 0, 4)]);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn test_unknown_version() {
        for ver in 1..4u8 {
            let mut b = NO_OPTIONS;
            b[0] |= ver << 6;
            let p = GenevePacket::new_checked(&b[..]).unwrap();
            assert_eq!(GeneveRepr::parse(&p), Err(Error::Malformed));
        }
        // Reserved bits are ignored.
        let mut b = NO_OPTIONS;
        b[1] |= 0x3f;
        b[7] = 0xff;
        let p = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!(GeneveRepr::parse(&p).unwrap().vni, 11);
    }

    #[test]
    fn test_option_overrun() {
        // Option 2 of MANY_OPTIONS made to claim 20 words, past the end of the options area.
        let mut b = MANY_OPTIONS;
        b[8 + 20 + 3] = 20;
        let p = GenevePacket::new_checked(&b[..]).unwrap();
        let mut it = p.options();
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        // A partial option header can only come from a hand-made area, and is reported too.
        let mut it = GeneveOptions { rest: &[1, 2] };
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        // The R bits of an option are not part of its length.
        let mut b = CRITICAL;
        b[11] |= 0xe0;
        let p = GenevePacket::new_checked(&b[..]).unwrap();
        assert_eq!(collect(&p), [(0, 0x80, 4)]);
    }

    #[test]
    fn test_emit() {
        for bytes in [&MANY_OPTIONS[..], &GCP, &CRITICAL, &NO_OPTIONS, &SNAPPED] {
            let p = GenevePacket::new_checked(bytes).unwrap();
            let r = GeneveRepr::parse(&p).unwrap();
            let mut buf = bytes.to_vec();
            buf[..r.header_len()].fill(0xee);
            r.emit(
                &mut GenevePacket::new_unchecked(&mut buf[..]),
                p.options_bytes(),
            )
            .unwrap();
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn test_emit_options() {
        // Rebuild GCP's options one by one.
        let p = GenevePacket::new_checked(&GCP[..]).unwrap();
        let mut area = [0u8; 40];
        let mut off = 0;
        for o in p.options() {
            off += o.unwrap().emit(&mut area[off..]).unwrap();
        }
        assert_eq!(off, 40);
        assert_eq!(&area[..], p.options_bytes());

        let bad = GeneveOption {
            class: 1,
            typ: 2,
            data: &[1, 2, 3],
        };
        assert_eq!(bad.emit(&mut area), Err(Error::Malformed));
        let big = [0u8; MAX_OPTION_DATA_LEN + 4];
        let too_long = GeneveOption { data: &big, ..bad };
        assert_eq!(too_long.emit(&mut [0u8; 256]), Err(Error::Malformed));
        let max = GeneveOption {
            data: &big[..MAX_OPTION_DATA_LEN],
            ..bad
        };
        assert_eq!(max.emit(&mut area), Err(Error::Truncated));
        let mut out = [0u8; 128];
        assert_eq!(max.emit(&mut out), Ok(128));
        assert_eq!(out[3], 31);
    }

    #[test]
    fn test_emit_errors() {
        let r = GeneveRepr::parse(&GenevePacket::new_checked(&GCP[..]).unwrap()).unwrap();
        let opts = &GCP[8..48];
        let mut buf = [0u8; 64];
        let mut p = GenevePacket::new_unchecked(&mut buf[..]);
        for bad in [
            GeneveRepr { vni: 1 << 24, ..r },
            GeneveRepr {
                options_len: 39,
                ..r
            },
            GeneveRepr {
                options_len: 256,
                ..r
            },
        ] {
            assert_eq!(bad.emit(&mut p, opts), Err(Error::Malformed));
        }
        assert_eq!(r.emit(&mut p, &opts[..36]), Err(Error::Malformed));
        assert_eq!(buf, [0; 64]);
        for n in 0..r.header_len() {
            let mut p = GenevePacket::new_unchecked(&mut buf[..n]);
            assert_eq!(r.emit(&mut p, opts), Err(Error::Truncated), "len {n}");
        }
        let max = GeneveRepr {
            options_len: MAX_OPTIONS_LEN,
            ..r
        };
        let mut big = [0u8; 8 + MAX_OPTIONS_LEN];
        let mut p = GenevePacket::new_unchecked(&mut big[..]);
        max.emit(&mut p, &[0; MAX_OPTIONS_LEN]).unwrap();
        assert_eq!((p.opt_len(), p.header_len()), (63, 260));
    }

    #[test]
    fn test_truncated() {
        for bytes in [
            &MANY_OPTIONS[..84],
            &GCP[..48],
            &CRITICAL[..16],
            &NO_OPTIONS[..8],
        ] {
            for n in 0..bytes.len() {
                let p = GenevePacket::new_unchecked(&bytes[..n]);
                assert_eq!(GeneveRepr::parse(&p), Err(Error::Truncated), "len {n}");
                // Unchecked accessors of the variable part stay in bounds.
                if n >= HEADER_LEN {
                    assert!(p.options_bytes().len() < p.header_len() - HEADER_LEN);
                    assert!(p.payload().is_empty());
                    let _ = p.options().count();
                }
            }
        }
    }

    #[test]
    fn test_random_never_panics() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut buf = [0u8; 96];
        let (mut parsed, mut options) = (0, 0);
        for _ in 0..50_000 {
            let len = (rng.next_u64() % 97) as usize;
            rng.fill(&mut buf[..len]);
            if len > 0 {
                // Version 0 and a small Opt Len, so that headers fit.
                buf[0] = (rng.next_u64() % 22) as u8;
            }
            let Ok(p) = GenevePacket::new_checked(&buf[..len]) else {
                continue;
            };
            let _ = (
                p.oam(),
                p.critical(),
                p.protocol_type(),
                p.vni(),
                p.payload(),
            );
            for o in p.options() {
                match o {
                    Ok(o) => {
                        options += 1;
                        assert!(o.data.len() & 3 == 0 && o.data.len() <= MAX_OPTION_DATA_LEN);
                    }
                    Err(e) => assert_eq!(e, Error::Malformed),
                }
            }
            if let Ok(r) = GeneveRepr::parse(&p) {
                parsed += 1;
                let mut out = [0u8; 96];
                let hlen = r.header_len();
                r.emit(
                    &mut GenevePacket::new_unchecked(&mut out[..hlen]),
                    p.options_bytes(),
                )
                .unwrap();
                let back = GeneveRepr::parse(&GenevePacket::new_unchecked(&out[..hlen]));
                assert_eq!(back, Ok(r));
            }
        }
        assert!(parsed > 1000 && options > 1000, "{parsed} {options}");
    }
}
