//! The frames of one TPACKET_V3 block, walked with every offset and length the kernel wrote
//! checked before it is used: the block header's `num_pkts` and `offset_to_first_pkt`, and each
//! frame header's `tp_next_offset`, `tp_mac` and `tp_snaplen`. Plain arithmetic on the block's
//! bytes (no `unsafe`), so a forged block in a `Vec<u8>` goes through exactly what a live ring's
//! block does.
//!
//! The layout (linux/if_packet.h): a block starts with `struct tpacket_block_desc` (48 bytes:
//! `block_status` at 8, `num_pkts` at 12, `offset_to_first_pkt` at 16, `blk_len` at 20); its
//! frames are a chain of `struct tpacket3_hdr` (48 bytes), each `tp_next_offset` bytes after the
//! one before (the mac header plus the snapshot, rounded up to 8 bytes), the last one with
//! `tp_next_offset` 0. A frame's bytes are the `tp_snaplen` bytes `tp_mac` bytes after its
//! header.
#![deny(unsafe_code)]

/// Size of the block header (`struct tpacket_block_desc`), where the first frame starts at the
/// earliest.
pub const BLOCK_HDR: usize = 48;
/// Size of a frame header (`struct tpacket3_hdr`): a frame slot is at least this long.
pub const FRAME_HDR: usize = 48;
/// Frame headers start on this boundary (V3_ALIGNMENT in the kernel).
pub const ALIGN: usize = 8;
/// The block belongs to userspace.
pub const TP_STATUS_USER: u32 = 1;

/// Why a block, or a frame in it, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The block is not handed over to userspace (no TP_STATUS_USER).
    BlockStatus,
    /// `blk_len` is larger than the block.
    BlockLen,
    /// `offset_to_first_pkt` is inside the block header, unaligned, or past the block.
    FirstOffset,
    /// `num_pkts` is more than frames of the smallest size fit in the block.
    NumPkts,
    /// A frame header is unaligned or does not fit in the block.
    FrameHeader,
    /// `tp_mac` points into the frame's own header, or the frame's bytes (`tp_mac` +
    /// `tp_snaplen`) run past its slot or the block, or `tp_snaplen` exceeds `tp_len`.
    FrameData,
    /// `tp_next_offset` of a frame that is not the last is 0, unaligned, or shorter than a
    /// frame header: the frames after it cannot be found.
    NextOffset,
}

/// One frame of a block, with the fields vxspan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tp3Frame<'a> {
    /// The captured bytes (`tp_snaplen` of them).
    pub data: &'a [u8],
    /// The frame's length on the wire (`tp_len`).
    pub len: u32,
    pub sec: u32,
    pub nsec: u32,
    pub status: u32,
    pub vlan_tci: u32,
    pub vlan_tpid: u16,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .map_or(0, |x| u16::from_ne_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
}

/// The frames of a block, in order: each item is a frame, or why one was refused. A refused
/// frame whose `tp_next_offset` still leads somewhere valid is followed by the next one; a
/// refused block header, or a chain that breaks, is the last item.
#[derive(Debug)]
pub struct Tp3Frames<'a> {
    block: &'a [u8],
    /// Frames still to yield (at most `num_pkts`).
    remaining: u32,
    /// Where the next frame header is, or why it cannot be found.
    next: Result<usize, Invalid>,
}

impl<'a> Tp3Frames<'a> {
    /// Walks `block` (the whole block, `tp_block_size` bytes), checking its header first.
    pub fn new(block: &'a [u8]) -> Tp3Frames<'a> {
        let (remaining, next) = match header(block) {
            Ok((n, first)) => (n, Ok(first)),
            Err(e) => (1, Err(e)),
        };
        Tp3Frames {
            block,
            remaining,
            next,
        }
    }

    /// Reads the frame whose header is at `off`; sets where the next one is.
    fn frame(&mut self, off: usize) -> Result<Tp3Frame<'a>, Invalid> {
        let b = self.block;
        if !off.is_multiple_of(ALIGN) || off.checked_add(FRAME_HDR).is_none_or(|e| e > b.len()) {
            return Err(Invalid::FrameHeader);
        }
        let h = &b[off..off + FRAME_HDR];
        let next = u32_at(h, 0) as usize;
        let (snaplen, len, mac) = (
            u32_at(h, 12) as usize,
            u32_at(h, 16),
            u16_at(h, 24) as usize,
        );
        // The frame's slot: up to the next header, or the end of the block for the last one
        // (whose tp_next_offset the kernel sets to 0).
        let slot = if self.remaining > 0 {
            if next == 0 || !next.is_multiple_of(ALIGN) || next < FRAME_HDR {
                self.next = Err(Invalid::NextOffset);
                b.len() - off
            } else {
                // off < b.len() and next < 2^32: no overflow. A next header past the block is
                // refused when it is read.
                self.next = Ok(off + next);
                next.min(b.len() - off)
            }
        } else {
            b.len() - off
        };
        let end = mac.checked_add(snaplen).ok_or(Invalid::FrameData)?;
        if mac < FRAME_HDR || end > slot || snaplen > len as usize {
            return Err(Invalid::FrameData);
        }
        Ok(Tp3Frame {
            // off + end <= off + slot <= b.len().
            data: &b[off + mac..off + end],
            len,
            sec: u32_at(h, 4),
            nsec: u32_at(h, 8),
            status: u32_at(h, 20),
            vlan_tci: u32_at(h, 32),
            vlan_tpid: u16_at(h, 36),
        })
    }
}

/// Checks a block header: the number of frames and where the first one is.
fn header(block: &[u8]) -> Result<(u32, usize), Invalid> {
    if block.len() < BLOCK_HDR {
        return Err(Invalid::BlockLen);
    }
    if u32_at(block, 8) & TP_STATUS_USER == 0 {
        return Err(Invalid::BlockStatus);
    }
    let num = u32_at(block, 12);
    let first = u32_at(block, 16) as usize;
    if u32_at(block, 20) as usize > block.len() {
        return Err(Invalid::BlockLen);
    }
    if first < BLOCK_HDR || !first.is_multiple_of(ALIGN) || first > block.len() {
        return Err(Invalid::FirstOffset);
    }
    if num as usize > (block.len() - first) / FRAME_HDR {
        return Err(Invalid::NumPkts);
    }
    Ok((num, first))
}

impl<'a> Iterator for Tp3Frames<'a> {
    type Item = Result<Tp3Frame<'a>, Invalid>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let off = match self.next {
            Ok(off) => off,
            Err(e) => {
                self.remaining = 0;
                return Some(Err(e));
            }
        };
        let r = self.frame(off);
        if r == Err(Invalid::FrameHeader) {
            // Nothing after a header that cannot be read can be found.
            self.remaining = 0;
        }
        Some(r)
    }
}

/// Blocks laid out as the kernel writes them, in plain memory, for tests.
#[cfg(test)]
pub(crate) mod forge {
    use super::*;

    pub struct Block(pub Vec<u8>);

    impl Block {
        /// A handed-over block of `size` bytes announcing `num` frames, the first at `first`.
        pub fn new(size: usize, num: u32, first: u32) -> Block {
            let mut b = Block(vec![0; size]);
            b.u32(8, TP_STATUS_USER);
            b.u32(12, num);
            b.u32(16, first);
            b.u32(20, size as u32);
            b
        }

        pub fn u32(&mut self, at: usize, v: u32) {
            self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }

        pub fn u16(&mut self, at: usize, v: u16) {
            self.0[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        }

        /// A frame header at `off`: the next `next` bytes on, `data` `mac` bytes after it
        /// (as much of it as fits the block), `len` on the wire, timestamp 7 s 9 ns.
        pub fn frame(&mut self, off: usize, next: u32, mac: u16, data: &[u8], len: u32) {
            self.u32(off, next);
            self.u32(off + 4, 7);
            self.u32(off + 8, 9);
            self.u32(off + 12, data.len() as u32);
            self.u32(off + 16, len);
            self.u32(off + 20, TP_STATUS_USER);
            self.u16(off + 24, mac);
            let at = off + usize::from(mac);
            let n = data.len().min(self.0.len().saturating_sub(at));
            if n > 0 {
                self.0[at..at + n].copy_from_slice(&data[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::forge::Block;
    use super::*;

    /// The frames' first bytes, or the reasons they were refused.
    fn walk(b: &Block) -> Vec<Result<u8, Invalid>> {
        Tp3Frames::new(&b.0)
            .map(|f| f.map(|f| f.data.first().copied().unwrap_or(0)))
            .collect()
    }

    /// Three frames of 60 bytes at 48, 160 and 272 (slots of 112: their data is 52 bytes on).
    fn three() -> Block {
        let mut b = Block::new(4096, 3, 48);
        b.frame(48, 112, 52, &[1; 60], 60);
        b.frame(160, 112, 52, &[2; 60], 60);
        b.frame(272, 0, 52, &[3; 60], 60);
        b
    }

    #[test]
    fn a_valid_block_yields_every_frame() {
        assert_eq!(walk(&three()), [Ok(1), Ok(2), Ok(3)]);
        let b = three();
        let f = Tp3Frames::new(&b.0).next().unwrap().unwrap();
        assert_eq!((f.data.len(), f.len, f.sec, f.nsec), (60, 60, 7, 9));
        // An empty block, as a timer may retire one.
        assert_eq!(walk(&Block::new(4096, 0, 48)), []);
    }

    #[test]
    fn a_block_not_handed_over_is_refused() {
        let mut b = three();
        b.u32(8, 0);
        assert_eq!(walk(&b), [Err(Invalid::BlockStatus)]);
    }

    #[test]
    fn a_first_offset_past_the_block_or_inside_its_header_is_refused() {
        for first in [4096 + 8, u32::MAX - 7, 0, 40, 52] {
            let mut b = three();
            b.u32(16, first);
            assert_eq!(walk(&b), [Err(Invalid::FirstOffset)], "{first}");
        }
        // At the very end: no room for the frames announced.
        let mut b = three();
        b.u32(16, 4096);
        assert_eq!(walk(&b), [Err(Invalid::NumPkts)]);
    }

    #[test]
    fn a_block_length_past_the_block_is_refused() {
        let mut b = three();
        b.u32(20, 4097);
        assert_eq!(walk(&b), [Err(Invalid::BlockLen)]);
        assert_eq!(
            Tp3Frames::new(&[0xff; 20]).collect::<Vec<_>>(),
            [Err(Invalid::BlockLen)]
        );
    }

    #[test]
    fn more_frames_than_fit_the_block_are_refused() {
        for num in [u32::MAX, 1 << 20, (4096 - 48) / 48 + 1] {
            let mut b = three();
            b.u32(12, num);
            assert_eq!(walk(&b), [Err(Invalid::NumPkts)], "{num}");
        }
        // As many as could fit is taken; the walk stops where the chain does.
        let mut b = three();
        b.u32(12, (4096 - 48) / 48);
        assert_eq!(walk(&b), [Ok(1), Ok(2), Ok(3), Err(Invalid::NextOffset)]);
    }

    #[test]
    fn a_zero_next_offset_before_the_last_frame_ends_the_walk() {
        let mut b = three();
        b.u32(48, 0);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::NextOffset)]);
    }

    #[test]
    fn next_offsets_that_are_unaligned_short_or_out_of_the_block_end_the_walk() {
        let mut b = three();
        b.u32(48, 113);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::NextOffset)]);
        let mut b = three();
        // Shorter than a header.
        b.u32(48, 40);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::NextOffset)]);
        // Out of the block, including offsets that would wrap around in 32 bits (backwards).
        for next in [4096, u32::MAX - 7, u32::MAX - 47] {
            let mut b = three();
            b.u32(160, next);
            assert_eq!(
                walk(&b),
                [Ok(1), Ok(2), Err(Invalid::FrameHeader)],
                "{next}"
            );
        }
        // Into the last 47 bytes: the header does not fit.
        let mut b = three();
        b.u32(160, 4096 - 160 - 40);
        assert_eq!(walk(&b), [Ok(1), Ok(2), Err(Invalid::FrameHeader)]);
    }

    #[test]
    fn frame_bytes_past_their_slot_or_the_block_are_refused() {
        // Past the slot: the frame is refused, the chain goes on.
        let mut b = three();
        b.u32(160 + 12, 61);
        b.u32(160 + 16, 61);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::FrameData), Ok(3)]);
        let mut b = three();
        b.u16(160 + 24, 60);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::FrameData), Ok(3)]);
        // The last frame past the block.
        let mut b = three();
        b.u16(272 + 24, 4000);
        assert_eq!(walk(&b), [Ok(1), Ok(2), Err(Invalid::FrameData)]);
        let mut b = three();
        b.u32(272 + 12, u32::MAX);
        b.u32(272 + 16, u32::MAX);
        assert_eq!(walk(&b), [Ok(1), Ok(2), Err(Invalid::FrameData)]);
        // The mac offset inside the frame's own header.
        let mut b = three();
        b.u16(48 + 24, 40);
        assert_eq!(walk(&b), [Err(Invalid::FrameData), Ok(2), Ok(3)]);
        // More captured than was on the wire.
        let mut b = three();
        b.u32(48 + 16, 59);
        assert_eq!(walk(&b), [Err(Invalid::FrameData), Ok(2), Ok(3)]);
    }

    #[test]
    fn a_frame_ending_exactly_at_the_block_end_is_taken() {
        let mut b = Block::new(4096, 2, 48);
        b.frame(48, 4096 - 48 - 112, 52, &[1; 60], 60);
        b.frame(4096 - 112, 0, 52, &[2; 60], 60);
        assert_eq!(walk(&b), [Ok(1), Ok(2)]);
        b.u32(4096 - 112 + 12, 61);
        b.u32(4096 - 112 + 16, 61);
        assert_eq!(walk(&b), [Ok(1), Err(Invalid::FrameData)]);
    }

    /// Random corruption of a valid block: never a panic, and every frame yielded lies inside
    /// the block with its bytes after its header.
    #[test]
    fn corrupted_blocks_never_yield_bytes_outside_the_block() {
        let mut rng = vxspan_core::wire::XorShift(0x2545_f491_4f6c_dd1du64);
        let mut rand = move |n: u64| rng.below(n);
        let mut refused = 0;
        for _ in 0..20_000 {
            let mut b = three();
            for _ in 0..=rand(4) {
                let at = rand(320) as usize;
                let v = match rand(3) {
                    0 => rand(1 << 32) as u32,
                    1 => rand(5000) as u32,
                    _ => rand(64) as u32 * 8,
                };
                b.u32(at & !3, v);
            }
            let base = b.0.as_ptr() as usize;
            for f in Tp3Frames::new(&b.0) {
                match f {
                    Ok(f) => {
                        let start = f.data.as_ptr() as usize - base;
                        assert!(start >= BLOCK_HDR + FRAME_HDR);
                        assert!(start + f.data.len() <= b.0.len());
                        assert!(f.data.len() as u64 <= u64::from(f.len));
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(refused > 1000);
    }
}
