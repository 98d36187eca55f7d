//! MPLS label stacks (RFC 3032 section 2.1), and what the bottom of the stack carries, as the
//! caller says.
//!
//! ```text
//! |                Label                  | TC  |S|       TTL     |
//! ```
//!
//! MPLS does not say what follows the stack: the label's binding does, and a broker does not
//! know it. Guessing from the first nibble, as LSRs do for load balancing (RFC 4928 section 2),
//! takes every Ethernet pseudowire whose inner destination MAC starts with 0, 4 or 6 (02:..,
//! 00:1b:21:.., 40:..) for a control word or an IP packet, so [`MplsStack::inner`] does not
//! guess: the caller names the payload ([`MplsPayload`], from configuration) and whether a
//! control word (RFC 4385 section 3) comes first; what does not fit is [`MplsInner::Undecided`].

use crate::{Error, Result};

/// Length of one label stack entry.
pub const ENTRY_LEN: usize = 4;
/// The deepest stack accepted; deeper stacks are reported as malformed.
pub const MAX_LABELS: usize = 16;
/// Length of the pseudowire control word.
pub const CONTROL_WORD_LEN: usize = 4;
/// The largest label (20 bits).
pub const MAX_LABEL: u32 = 0x000f_ffff;

/// One label stack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsLabel {
    /// 20 bits.
    pub label: u32,
    /// Traffic class (formerly EXP), 3 bits.
    pub tc: u8,
    /// The S bit: bottom of stack.
    pub bottom: bool,
    pub ttl: u8,
}

impl MplsLabel {
    /// Parses an entry from the first four bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let b: [u8; ENTRY_LEN] = buf
            .get(..ENTRY_LEN)
            .ok_or(Error::Truncated)?
            .try_into()
            .map_err(|_| Error::Truncated)?;
        let w = u32::from_be_bytes(b);
        Ok(MplsLabel {
            label: w >> 12,
            tc: ((w >> 9) & 0x7) as u8,
            bottom: w & 0x100 != 0,
            ttl: w as u8,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ENTRY_LEN
    }

    /// Writes the entry into the first four bytes of `buf`. [`Error::Malformed`] if the label
    /// does not fit 20 bits or TC 3 bits (rejected, not masked: a masked label would switch the
    /// packet onto another LSP), [`Error::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.label > MAX_LABEL || self.tc > 7 {
            return Err(Error::Malformed);
        }
        let out = buf.get_mut(..ENTRY_LEN).ok_or(Error::Truncated)?;
        let w = (self.label << 12)
            | (u32::from(self.tc) << 9)
            | (u32::from(self.bottom) << 8)
            | u32::from(self.ttl);
        out.copy_from_slice(&w.to_be_bytes());
        Ok(())
    }
}

/// What the bottom of the stack carries, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MplsPayload {
    /// IPv4 or IPv6, told apart by the version nibble.
    Ip,
    /// An Ethernet frame (an Ethernet pseudowire, RFC 4448).
    Ethernet,
}

/// The inner packet after a stack, and its offset in the buffer the stack was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MplsInner {
    Ipv4(usize),
    Ipv6(usize),
    Ethernet(usize),
    /// Not what the configuration says: an IP payload whose version nibble is neither 4 nor 6
    /// or that is not plausibly one whole packet ([`crate::ethernet::ip_plausible`]), or a
    /// control word
    /// whose first nibble is not 0 (such as the pseudowire associated channel,
    /// nibble 1).
    Undecided,
}

/// A walked label stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsStack {
    /// Number of entries, 1 to [`MAX_LABELS`].
    pub depth: usize,
    /// The first (outermost) entry.
    pub top: MplsLabel,
    /// The entry with S set.
    pub bottom: MplsLabel,
    /// Offset of the first byte after the stack.
    pub payload_offset: usize,
}

impl MplsStack {
    /// Walks the stack at the start of `buf` to the entry with S set. [`Error::Truncated`] if the
    /// buffer ends before that entry, or before the first byte after it; [`Error::Malformed`] if
    /// no entry among the first [`MAX_LABELS`] has S set.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let top = MplsLabel::parse(buf)?;
        let mut entry = top;
        let mut depth = 1;
        while !entry.bottom {
            if depth == MAX_LABELS {
                return Err(Error::Malformed);
            }
            entry = MplsLabel::parse(buf.get(depth * ENTRY_LEN..).unwrap_or(&[]))?;
            depth += 1;
        }
        let payload_offset = depth * ENTRY_LEN;
        if buf.len() <= payload_offset {
            return Err(Error::Truncated);
        }
        Ok(MplsStack {
            depth,
            top,
            bottom: entry,
            payload_offset,
        })
    }

    /// The inner packet of `buf` (the buffer this stack was parsed from) when the stack carries
    /// `payload`, after a control word if `control_word`; `cut`: the capture ended before the
    /// packet did. An IP payload must be plausibly one whole packet
    /// ([`crate::ethernet::ip_plausible`]). [`Error::Truncated`] if `buf` ends before the
    /// control word does or before the first byte after it.
    pub fn inner(
        &self,
        buf: &[u8],
        payload: MplsPayload,
        control_word: bool,
        cut: bool,
    ) -> Result<MplsInner> {
        let mut at = self.payload_offset;
        if control_word {
            let cw = buf.get(at..at + CONTROL_WORD_LEN).ok_or(Error::Truncated)?;
            if cw[0] >> 4 != 0 {
                return Ok(MplsInner::Undecided);
            }
            at += CONTROL_WORD_LEN;
        }
        let first = *buf.get(at).ok_or(Error::Truncated)?;
        let ip_ok = crate::ethernet::ip_plausible(&buf[at..], cut);
        Ok(match (payload, first >> 4) {
            (MplsPayload::Ethernet, _) => MplsInner::Ethernet(at),
            (MplsPayload::Ip, 4) if ip_ok => MplsInner::Ipv4(at),
            (MplsPayload::Ip, 6) if ip_ok => MplsInner::Ipv6(at),
            (MplsPayload::Ip, _) => MplsInner::Undecided,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorShift;

    // arkime-mpls-basic.pcap frame 9, bytes 14..22: label 29, TC 0, S, TTL 255, then IPv4.
    // Oracle: outer_mpls 29, mpls_payload_type ip at frame offset 18.
    static ARKIME_F9: [u8; 8] = [0x00, 0x01, 0xd1, 0xff, 0x45, 0x00, 0x00, 0x64];

    // tcpdump-mpls-over-udp.pcap frame 1, bytes 42..50 (MPLS in UDP 6635): label 21, S, TTL
    // 63, then IPv4. Oracle: inner IPv4 at frame offset 46.
    static OVER_UDP: [u8; 8] = [0x00, 0x01, 0x51, 0x3f, 0x45, 0x00, 0x00, 0x54];

    // sv-decode-too-many-layers.pcap frame 1, bytes 14..26: label 16, S, TTL 0, a zero control
    // word, then an Ethernet frame (itself MPLS, nested again and again). Oracle: outer_mpls 16.
    static PSEUDOWIRE: [u8; 12] = [
        0x00, 0x01, 0x01, 0x00, // label
        0x00, 0x00, 0x00, 0x00, // control word
        0x01, 0x02, 0x03, 0x04, // Ethernet
    ];

    fn stack(labels: &[(u32, bool)], payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; labels.len() * ENTRY_LEN];
        for (i, &(label, bottom)) in labels.iter().enumerate() {
            let e = MplsLabel {
                label,
                tc: (i % 8) as u8,
                bottom,
                ttl: 64,
            };
            e.emit(&mut out[i * ENTRY_LEN..]).unwrap();
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn test_parse() {
        let s = MplsStack::parse(&ARKIME_F9).unwrap();
        let l = MplsLabel {
            label: 29,
            tc: 0,
            bottom: true,
            ttl: 255,
        };
        assert_eq!(
            s,
            MplsStack {
                depth: 1,
                top: l,
                bottom: l,
                payload_offset: 4,
            }
        );
        // The fixtures hold the first 4 bytes of the IPv4 header: padded to a whole one.
        let ip = |s: &MplsStack, b: &[u8]| {
            let mut b = b.to_vec();
            b.resize(24, 0);
            s.inner(&b, MplsPayload::Ip, false, true).unwrap() // a capture cut short
        };
        assert_eq!(ip(&s, &ARKIME_F9), MplsInner::Ipv4(4)); // frame offset 18
        assert_eq!(
            s.inner(&ARKIME_F9, MplsPayload::Ip, false, false),
            Ok(MplsInner::Undecided),
            "an IPv4 header cut short is not taken for one"
        );

        let s = MplsStack::parse(&OVER_UDP).unwrap();
        assert_eq!((s.top.label, s.top.ttl), (21, 63));
        assert_eq!(ip(&s, &OVER_UDP), MplsInner::Ipv4(4)); // frame offset 46

        let s = MplsStack::parse(&PSEUDOWIRE).unwrap();
        assert_eq!((s.depth, s.bottom.label, s.bottom.ttl), (1, 16, 0));
        assert_eq!(
            s.inner(&PSEUDOWIRE, MplsPayload::Ethernet, true, false),
            Ok(MplsInner::Ethernet(8))
        );
    }

    #[test]
    fn test_deep_stack() {
        // Stacks of 2 to 16 entries, built (no capture has a multi-entry stack).
        for depth in 2..=MAX_LABELS {
            let labels: Vec<(u32, bool)> = (0..depth)
                .map(|i| (1000 + i as u32, i == depth - 1))
                .collect();
            let b = stack(&labels, &[0x60; 40]);
            let s = MplsStack::parse(&b).unwrap();
            assert_eq!(
                (s.depth, s.top.label, s.bottom.label),
                (depth, 1000, 999 + depth as u32)
            );
            assert_eq!(s.payload_offset, depth * 4);
            assert_eq!(
                s.inner(&b, MplsPayload::Ip, false, true),
                Ok(MplsInner::Ipv6(depth * 4))
            );
            assert_eq!(s.bottom.tc, ((depth - 1) % 8) as u8);
        }
        let labels: Vec<(u32, bool)> = (0..=MAX_LABELS)
            .map(|i| (i as u32, i == MAX_LABELS))
            .collect();
        assert_eq!(
            MplsStack::parse(&stack(&labels, &[0x45])),
            Err(Error::Malformed)
        );
        // A stack that never ends is malformed once the bound is passed, truncated before.
        let endless: Vec<(u32, bool)> = (0..MAX_LABELS).map(|i| (i as u32, false)).collect();
        assert_eq!(
            MplsStack::parse(&stack(&endless, &[])),
            Err(Error::Malformed)
        );
        assert_eq!(
            MplsStack::parse(&stack(&endless[..5], &[])),
            Err(Error::Truncated)
        );
    }

    /// The configuration decides, never the first nibble: an Ethernet pseudowire whose inner
    /// destination MAC starts with nibble 0, 4 or 6 stays Ethernet (the bug of guessing).
    #[test]
    fn test_payload_as_configured() {
        for mac0 in [0x02, 0x00, 0x40, 0x60, 0xa0] {
            let mut frame = [0u8; 60];
            frame[..4].copy_from_slice(&[mac0, 0x1b, 0x21, 0x3c]);
            let b = stack(&[(3, true)], &frame);
            let s = MplsStack::parse(&b).unwrap();
            assert_eq!(
                s.inner(&b, MplsPayload::Ethernet, false, false),
                Ok(MplsInner::Ethernet(4))
            );
            // 40:1b:21:3c is no whole IPv4 header (IHL 0); 60:1b:.. is a whole IPv6 header, but
            // its payload length (0) does not account for the 20 bytes after it.
            assert_eq!(
                s.inner(&b, MplsPayload::Ip, false, false),
                Ok(MplsInner::Undecided),
                "{mac0:#x}"
            );
        }
        // A control word with first nibble 1 (the associated channel) is not a pseudowire frame.
        let b = stack(&[(3, true)], &[0x10, 0, 0, 0, 0x02, 0]);
        let s = MplsStack::parse(&b).unwrap();
        assert_eq!(
            s.inner(&b, MplsPayload::Ethernet, true, false),
            Ok(MplsInner::Undecided)
        );
        // A control word cut short, or nothing after it.
        let b = stack(&[(3, true)], &[0, 0, 0]);
        let s = MplsStack::parse(&b).unwrap();
        assert_eq!(
            s.inner(&b, MplsPayload::Ethernet, true, false),
            Err(Error::Truncated)
        );
        let b = stack(&[(3, true)], &[0, 0, 0, 0]);
        let s = MplsStack::parse(&b).unwrap();
        assert_eq!(
            s.inner(&b, MplsPayload::Ip, true, false),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn test_emit() {
        for bytes in [&ARKIME_F9[..], &OVER_UDP, &PSEUDOWIRE] {
            let l = MplsLabel::parse(bytes).unwrap();
            let mut out = [0u8; 4];
            l.emit(&mut out).unwrap();
            assert_eq!(&out[..], &bytes[..4]);
        }
        let max = MplsLabel {
            label: MAX_LABEL,
            tc: 7,
            bottom: true,
            ttl: 255,
        };
        let mut out = [0u8; 4];
        max.emit(&mut out).unwrap();
        assert_eq!(out, [0xff; 4]);
        assert_eq!(MplsLabel::parse(&out), Ok(max));
        out = [0; 4];
        for bad in [
            MplsLabel {
                label: MAX_LABEL + 1,
                ..max
            },
            MplsLabel { tc: 8, ..max },
        ] {
            assert_eq!(bad.emit(&mut out), Err(Error::Malformed));
            assert_eq!(out, [0; 4]);
        }
        for n in 0..ENTRY_LEN {
            assert_eq!(max.emit(&mut out[..n]), Err(Error::Truncated));
        }
    }

    #[test]
    fn test_truncated() {
        // Every prefix that ends before the first byte after the stack is an error.
        for n in 0..5 {
            assert_eq!(
                MplsStack::parse(&ARKIME_F9[..n]),
                Err(Error::Truncated),
                "{n}"
            );
            assert_eq!(
                MplsStack::parse(&OVER_UDP[..n]),
                Err(Error::Truncated),
                "{n}"
            );
        }
        for n in 0..5 {
            assert_eq!(
                MplsStack::parse(&PSEUDOWIRE[..n]),
                Err(Error::Truncated),
                "{n}"
            );
        }
        assert!(MplsStack::parse(&PSEUDOWIRE[..5]).is_ok());
        let labels: Vec<(u32, bool)> = (0..4).map(|i| (i, i == 3)).collect();
        let b = stack(&labels, &[0x45]);
        for n in 0..b.len() {
            assert_eq!(MplsStack::parse(&b[..n]), Err(Error::Truncated), "{n}");
        }
        for n in 0..ENTRY_LEN {
            assert_eq!(MplsLabel::parse(&ARKIME_F9[..n]), Err(Error::Truncated));
        }
    }

    #[test]
    fn test_random_never_panics() {
        let mut rng = XorShift(0x1357_9bdf_2468_ace0);
        let mut buf = [0u8; 80];
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = (rng.next_u64() % 81) as usize;
            rng.fill(&mut buf[..len]);
            if let Ok(s) = MplsStack::parse(&buf[..len]) {
                parsed += 1;
                assert!(s.depth <= MAX_LABELS && s.payload_offset < len);
                assert!(s.bottom.bottom);
                for p in [MplsPayload::Ip, MplsPayload::Ethernet] {
                    for cw in [false, true] {
                        if let Ok(
                            MplsInner::Ipv4(at) | MplsInner::Ipv6(at) | MplsInner::Ethernet(at),
                        ) = s.inner(&buf[..len], p, cw, false)
                        {
                            assert!(at < len);
                        }
                    }
                }
            }
        }
        assert!(parsed > 1000, "{parsed}");
    }
}
