//! MPLS label stacks (RFC 3032 section 2.1), and a guess at what the bottom of the stack carries.
//!
//! ```text
//! |                Label                  | TC  |S|       TTL     |
//! ```
//!
//! MPLS does not say what follows the stack: the label's binding does, and a broker does not
//! know it. [`MplsStack`] guesses from the first nibble as LSRs do for load balancing (RFC 4928
//! section 2): 4 is IPv4, 6 is IPv6, 0 is the pseudowire control word of RFC 4385 section 3
//! (assumed to carry Ethernet), and anything else is taken as a bare Ethernet frame, including
//! nibble 1, which is really the pseudowire associated channel (RFC 4385 section 5).

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

/// What the bottom of the stack is guessed to carry (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MplsPayload {
    Ipv4,
    Ipv6,
    /// A pseudowire control word, then an Ethernet frame (RFC 4448).
    EthernetControlWord,
    /// An Ethernet frame without control word.
    Ethernet,
}

impl MplsPayload {
    /// The guess for a payload starting with `first_byte`.
    pub fn guess(first_byte: u8) -> Self {
        match first_byte >> 4 {
            4 => MplsPayload::Ipv4,
            6 => MplsPayload::Ipv6,
            0 => MplsPayload::EthernetControlWord,
            _ => MplsPayload::Ethernet,
        }
    }
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
    pub payload: MplsPayload,
}

impl MplsStack {
    /// Walks the stack at the start of `buf` to the entry with S set. [`Error::Truncated`] if the
    /// buffer ends before that entry, or before the first byte after it (and, for a control
    /// word, before the end of the word); [`Error::Malformed`] if no entry among the first
    /// [`MAX_LABELS`] has S set.
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
        let first = *buf.get(payload_offset).ok_or(Error::Truncated)?;
        let payload = MplsPayload::guess(first);
        if payload == MplsPayload::EthernetControlWord
            && buf.len() < payload_offset + CONTROL_WORD_LEN
        {
            return Err(Error::Truncated);
        }
        Ok(MplsStack {
            depth,
            top,
            bottom: entry,
            payload_offset,
            payload,
        })
    }

    /// Offset of the guessed inner packet: after the control word if there is one.
    pub fn inner_offset(&self) -> usize {
        match self.payload {
            MplsPayload::EthernetControlWord => self.payload_offset + CONTROL_WORD_LEN,
            _ => self.payload_offset,
        }
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
                payload: MplsPayload::Ipv4,
            }
        );
        assert_eq!(14 + s.inner_offset(), 18);

        let s = MplsStack::parse(&OVER_UDP).unwrap();
        assert_eq!(
            (s.top.label, s.top.ttl, s.payload),
            (21, 63, MplsPayload::Ipv4)
        );
        assert_eq!(42 + s.inner_offset(), 46);

        let s = MplsStack::parse(&PSEUDOWIRE).unwrap();
        assert_eq!((s.depth, s.bottom.label, s.bottom.ttl), (1, 16, 0));
        assert_eq!(s.payload, MplsPayload::EthernetControlWord);
        assert_eq!((s.payload_offset, s.inner_offset()), (4, 8));
    }

    #[test]
    fn test_deep_stack() {
        // Stacks of 2 to 16 entries, built (no capture has a multi-entry stack).
        for depth in 2..=MAX_LABELS {
            let labels: Vec<(u32, bool)> = (0..depth)
                .map(|i| (1000 + i as u32, i == depth - 1))
                .collect();
            let b = stack(&labels, &[0x60, 0, 0, 0]);
            let s = MplsStack::parse(&b).unwrap();
            assert_eq!(
                (s.depth, s.top.label, s.bottom.label),
                (depth, 1000, 999 + depth as u32)
            );
            assert_eq!(
                (s.payload_offset, s.payload),
                (depth * 4, MplsPayload::Ipv6)
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

    #[test]
    fn test_payload_guess() {
        for (nibble, guess) in [
            (0x4, MplsPayload::Ipv4),
            (0x6, MplsPayload::Ipv6),
            (0x0, MplsPayload::EthernetControlWord),
            (0x1, MplsPayload::Ethernet),
            (0x5, MplsPayload::Ethernet),
            (0xf, MplsPayload::Ethernet),
        ] {
            assert_eq!(MplsPayload::guess((nibble << 4) | 0x5), guess);
        }
        // Without a control word, an Ethernet frame whose destination MAC starts with nibble 0
        // is taken for one (the ambiguity of RFC 4928 section 2); another nibble is Ethernet.
        let b = stack(&[(3, true)], &[0x00, 0x1b, 0x21, 0x3c]);
        assert_eq!(
            MplsStack::parse(&b).unwrap().payload,
            MplsPayload::EthernetControlWord
        );
        let b = stack(&[(3, true)], &[0xa0, 0x1b, 0x21]);
        let s = MplsStack::parse(&b).unwrap();
        assert_eq!((s.payload, s.inner_offset()), (MplsPayload::Ethernet, 4));
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
        // Every prefix that ends before the first byte after the stack (or inside the control
        // word) is an error.
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
        for n in 0..8 {
            assert_eq!(
                MplsStack::parse(&PSEUDOWIRE[..n]),
                Err(Error::Truncated),
                "{n}"
            );
        }
        assert!(MplsStack::parse(&PSEUDOWIRE[..8]).is_ok());
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
                assert!(s.inner_offset() <= len);
            }
        }
        assert!(parsed > 1000, "{parsed}");
    }
}
