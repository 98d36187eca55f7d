//! IEEE 802.1Q / 802.1ad VLAN tags, stacked, and the frame edits RSPAN needs.
//!
//! A tag is recognised by its TPID: 0x8100 (C-tag), 0x88a8 (S-tag) or 0x9100 (pre-standard
//! stacked tag), in any order and any depth up to [`MAX_TAGS`]. The *outer* tag is the first one
//! after the source MAC. A tag whose VID is 0 is a priority tag (802.1Q-2018 clause 9.6): it
//! carries PCP only, and vxspan treats the frame as untagged for VLAN selection.

use crate::ethernet::{EtherType, HEADER_LEN};
use crate::{Error, Result};

/// Length of one tag (TPID + TCI).
pub const TAG_LEN: usize = 4;
/// The deepest tag stack accepted; deeper stacks are reported as malformed.
pub const MAX_TAGS: usize = 8;
/// Offset of the outer tag (right after the two MAC addresses).
pub const TAG_OFFSET: usize = 12;

/// One VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: EtherType,
    pub tci: u16,
}

impl VlanTag {
    pub fn new(tpid: EtherType, pcp: u8, dei: bool, vid: u16) -> Self {
        VlanTag {
            tpid,
            tci: (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff),
        }
    }

    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }

    pub fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    pub fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }

    /// Parses a tag from the first four bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        match buf {
            [a, b, c, d, ..] => Ok(VlanTag {
                tpid: u16::from_be_bytes([*a, *b]).into(),
                tci: u16::from_be_bytes([*c, *d]),
            }),
            _ => Err(Error::Truncated),
        }
    }

    /// Writes the tag into the first four bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let out = buf.get_mut(..TAG_LEN).ok_or(Error::Truncated)?;
        out[..2].copy_from_slice(&u16::from(self.tpid).to_be_bytes());
        out[2..].copy_from_slice(&self.tci.to_be_bytes());
        Ok(())
    }
}

/// What vxspan needs to know about a frame's layer 2: its tag stack and where layer 3 starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// Number of VLAN tags.
    pub n_tags: u8,
    /// The outer tag, if any.
    pub outer: Option<VlanTag>,
    /// The EtherType after the last tag.
    pub ethertype: EtherType,
    /// Offset of the layer 3 header.
    pub l3_offset: usize,
}

impl L2Info {
    /// Walks the Ethernet header and its tag stack. Fails on a frame shorter than its header or
    /// its tags, and on more than [`MAX_TAGS`] tags.
    #[inline]
    pub fn parse(frame: &[u8]) -> Result<Self> {
        if frame.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let mut off = TAG_OFFSET;
        let mut outer = None;
        let mut n_tags = 0u8;
        loop {
            // Raw TPID comparisons: this runs for every frame, before any conversion.
            let tpid = match frame.get(off..off + 2) {
                Some([a, b]) => u16::from_be_bytes([*a, *b]),
                _ => return Err(Error::Truncated),
            };
            if !matches!(tpid, 0x8100 | 0x88a8 | 0x9100) {
                return Ok(L2Info {
                    n_tags,
                    outer,
                    ethertype: tpid.into(),
                    l3_offset: off + 2,
                });
            }
            if usize::from(n_tags) == MAX_TAGS {
                return Err(Error::Malformed);
            }
            // The tag's TCI and the EtherType that follows it must both be present.
            let tci = match frame.get(off + 2..off + TAG_LEN + 2) {
                Some([c, d, _, _]) => u16::from_be_bytes([*c, *d]),
                _ => return Err(Error::Truncated),
            };
            outer.get_or_insert(VlanTag {
                tpid: tpid.into(),
                tci,
            });
            n_tags += 1;
            off += TAG_LEN;
        }
    }

    /// The outer VID for VLAN selection: 0 for untagged and priority-tagged frames.
    pub fn outer_vid(&self) -> u16 {
        self.outer.map_or(0, |t| t.vid())
    }
}

/// Appends `frame` with `tag` inserted as the new outer tag to `out`.
pub fn push_tag(frame: &[u8], tag: VlanTag, out: &mut Vec<u8>) -> Result<()> {
    if frame.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let start = out.len();
    out.extend_from_slice(&frame[..TAG_OFFSET]);
    out.extend_from_slice(&[0; TAG_LEN]);
    tag.emit(&mut out[start + TAG_OFFSET..])?;
    out.extend_from_slice(&frame[TAG_OFFSET..]);
    Ok(())
}

/// Appends `frame` without its outer tag to `out`. An untagged frame is appended unchanged.
/// Returns whether a tag was removed.
pub fn pop_tag(frame: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    let l2 = L2Info::parse(frame)?;
    if l2.outer.is_none() {
        out.extend_from_slice(frame);
        return Ok(false);
    }
    out.extend_from_slice(&frame[..TAG_OFFSET]);
    out.extend_from_slice(&frame[TAG_OFFSET + TAG_LEN..]);
    Ok(true)
}

/// Appends `frame` with its outer tag's VID rewritten to `vid` (PCP, DEI and TPID kept) to `out`.
/// An untagged frame gets a new 802.1Q tag with that VID.
pub fn set_outer_vid(frame: &[u8], vid: u16, out: &mut Vec<u8>) -> Result<()> {
    let l2 = L2Info::parse(frame)?;
    match l2.outer {
        Some(tag) => {
            let start = out.len();
            out.extend_from_slice(frame);
            let rewritten = VlanTag {
                tpid: tag.tpid,
                tci: (tag.tci & 0xf000) | (vid & 0x0fff),
            };
            rewritten.emit(&mut out[start + TAG_OFFSET..])
        }
        None => push_tag(frame, VlanTag::new(EtherType::Vlan, 0, false, vid), out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for (tpid, tci) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn untagged() {
        let l2 = L2Info::parse(&frame(&[], 0x0800, &[1, 2])).unwrap();
        assert_eq!(l2.n_tags, 0);
        assert_eq!(l2.outer, None);
        assert_eq!(l2.outer_vid(), 0);
        assert_eq!(l2.ethertype, EtherType::Ipv4);
        assert_eq!(l2.l3_offset, 14);
    }

    #[test]
    fn single_tag_pcp_dei() {
        let l2 = L2Info::parse(&frame(&[(0x8100, 0xb00a)], 0x86dd, &[])).unwrap();
        let t = l2.outer.unwrap();
        assert_eq!((t.pcp(), t.dei(), t.vid()), (5, true, 10));
        assert_eq!(l2.outer_vid(), 10);
        assert_eq!(l2.ethertype, EtherType::Ipv6);
        assert_eq!(l2.l3_offset, 18);
    }

    #[test]
    fn stacked_tags_any_tpid() {
        for tpid in [0x8100, 0x88a8, 0x9100] {
            let l2 = L2Info::parse(&frame(&[(tpid, 100), (0x8100, 20)], 0x0800, &[])).unwrap();
            assert_eq!(l2.n_tags, 2);
            assert_eq!(l2.outer_vid(), 100);
            assert_eq!(l2.l3_offset, 22);
        }
        let l2 = L2Info::parse(&frame(
            &[(0x88a8, 1), (0x9100, 2), (0x8100, 3)],
            0x0806,
            &[],
        ));
        assert_eq!(l2.unwrap().n_tags, 3);
    }

    #[test]
    fn priority_tag_counts_as_untagged() {
        let l2 = L2Info::parse(&frame(&[(0x8100, 0xe000)], 0x0800, &[])).unwrap();
        assert_eq!(l2.n_tags, 1);
        assert_eq!(l2.outer_vid(), 0);
    }

    #[test]
    fn truncated_and_too_deep() {
        let f = frame(&[(0x8100, 10)], 0x0800, &[]);
        for n in 0..f.len() {
            assert!(L2Info::parse(&f[..n]).is_err(), "len {n}");
        }
        let deep: Vec<(u16, u16)> = (0..=MAX_TAGS as u16).map(|i| (0x8100, i)).collect();
        assert_eq!(
            L2Info::parse(&frame(&deep, 0x0800, &[])).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn tag_round_trip() {
        let t = VlanTag::new(EtherType::QinQ, 3, false, 4094);
        let mut b = [0u8; 4];
        t.emit(&mut b).unwrap();
        assert_eq!(b, [0x88, 0xa8, 0x6f, 0xfe]);
        assert_eq!(VlanTag::parse(&b).unwrap(), t);
        assert!(VlanTag::parse(&b[..3]).is_err());
        assert!(t.emit(&mut b[..3]).is_err());
    }

    #[test]
    fn push_pop_set() {
        let plain = frame(&[], 0x0800, &[9, 9]);
        let mut pushed = Vec::new();
        push_tag(
            &plain,
            VlanTag::new(EtherType::Vlan, 0, false, 100),
            &mut pushed,
        )
        .unwrap();
        assert_eq!(pushed, frame(&[(0x8100, 100)], 0x0800, &[9, 9]));

        let mut popped = Vec::new();
        assert!(pop_tag(&pushed, &mut popped).unwrap());
        assert_eq!(popped, plain);
        popped.clear();
        assert!(!pop_tag(&plain, &mut popped).unwrap());
        assert_eq!(popped, plain);

        let tagged = frame(&[(0x88a8, 0xa00a), (0x8100, 20)], 0x0800, &[]);
        let mut set = Vec::new();
        set_outer_vid(&tagged, 33, &mut set).unwrap();
        assert_eq!(set, frame(&[(0x88a8, 0xa021), (0x8100, 20)], 0x0800, &[]));
        set.clear();
        set_outer_vid(&plain, 33, &mut set).unwrap();
        assert_eq!(set, frame(&[(0x8100, 33)], 0x0800, &[9, 9]));
    }
}
