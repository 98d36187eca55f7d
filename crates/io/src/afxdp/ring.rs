//! Checks on the values an AF_XDP socket reads from its kernel rings, before any of them is used
//! to touch the UMEM: the address and length of an RX descriptor, the addresses of the
//! completion ring, and the addresses vxspan itself puts in the fill and TX rings.
//!
//! Everything here is plain arithmetic on integers (no `unsafe`): the socket code asks for the
//! byte range to read or write, and only dereferences what it gets back. A value that fails a
//! check is counted as an invalid ring entry by the caller and never used.
//!
//! Ownership of UMEM chunks is tracked with a bitset ([`FrameSet`]): a receive socket knows which
//! chunks the kernel holds (given to it through the fill ring and not yet returned in the RX
//! ring), a transmit socket which chunks are in flight (on the TX ring or waiting for their
//! completion). A descriptor naming a chunk the kernel does not hold, or a completion naming a
//! chunk that is not in flight (forged, or the same one twice), is refused: it could otherwise
//! put one chunk twice in the fill ring, or in the free list, and two frames would share it.
#![deny(unsafe_code)]

use std::ops::Range;

/// Why a value read from a ring was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The address lies past the end of the UMEM.
    OutOfRange,
    /// An address that must be a chunk's first byte is not.
    Unaligned,
    /// The frame runs past the end of its chunk (or the address arithmetic overflows).
    CrossesChunk,
    /// The chunk is not one the kernel was given: not in the kernel's hands (an RX
    /// descriptor), or not in flight (a completion), such as a second completion of one frame.
    NotOwned,
}

/// The layout of a UMEM: `len` bytes in chunks of `frame_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    len: u64,
    frame_size: u64,
}

impl Geometry {
    /// A UMEM of `frames` chunks of `frame_size` bytes (a power of two, as the kernel requires
    /// in aligned mode).
    pub fn new(frames: u32, frame_size: u32) -> Geometry {
        debug_assert!(frame_size.is_power_of_two());
        Geometry {
            len: u64::from(frames) * u64::from(frame_size),
            frame_size: u64::from(frame_size),
        }
    }

    /// The number of chunks.
    pub fn frames(self) -> u32 {
        (self.len / self.frame_size) as u32
    }

    /// The UMEM's length in bytes.
    pub fn len(self) -> u64 {
        self.len
    }

    /// Whether the UMEM has no chunk at all.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The first byte of chunk `index`.
    pub fn chunk_addr(self, index: u32) -> u64 {
        u64::from(index) * self.frame_size
    }

    /// The chunk holding byte `addr` (any offset in it).
    pub fn chunk_of(self, addr: u64) -> Result<u32, Invalid> {
        if addr >= self.len {
            return Err(Invalid::OutOfRange);
        }
        Ok((addr / self.frame_size) as u32)
    }

    /// The chunk that `addr` is the first byte of: for the addresses vxspan hands out itself
    /// (fill ring, TX ring) and gets back unchanged (completion ring).
    pub fn chunk_at(self, addr: u64) -> Result<u32, Invalid> {
        let chunk = self.chunk_of(addr)?;
        if !addr.is_multiple_of(self.frame_size) {
            return Err(Invalid::Unaligned);
        }
        Ok(chunk)
    }

    /// The bytes of the frame an RX descriptor names: `len` bytes from `addr`, all inside the
    /// UMEM and inside the chunk `addr` falls in. Where the frame starts in its chunk is the
    /// kernel's choice (after its headroom, moved by `bpf_xdp_adjust_head` in zero-copy mode),
    /// so any offset is taken as long as the frame ends in the same chunk. An empty frame is
    /// refused too (the kernel never delivers one).
    pub fn rx_frame(self, addr: u64, len: u32) -> Result<Range<usize>, Invalid> {
        let chunk = self.chunk_of(addr)?;
        let end = addr
            .checked_add(u64::from(len))
            .ok_or(Invalid::CrossesChunk)?;
        let chunk_end = self
            .chunk_addr(chunk)
            .saturating_add(self.frame_size)
            .min(self.len);
        if len == 0 || end > chunk_end {
            return Err(Invalid::CrossesChunk);
        }
        // end <= chunk_end <= len: both fit a usize wherever the UMEM was mapped.
        Ok(usize::try_from(addr).map_err(|_| Invalid::OutOfRange)?
            ..usize::try_from(end).map_err(|_| Invalid::OutOfRange)?)
    }

    /// The bytes a copy of `len` bytes takes at the start of the chunk at `addr` (TX).
    pub fn tx_frame(self, addr: u64, len: usize) -> Result<Range<usize>, Invalid> {
        self.chunk_at(addr)?;
        let len = u64::try_from(len).map_err(|_| Invalid::CrossesChunk)?;
        if len > self.frame_size {
            return Err(Invalid::CrossesChunk);
        }
        let start = usize::try_from(addr).map_err(|_| Invalid::OutOfRange)?;
        Ok(start..start + len as usize)
    }
}

/// A set of chunk indices, one bit each.
#[derive(Debug, Clone)]
pub struct FrameSet {
    bits: Vec<u64>,
    /// Chunks `0..frames` can be in the set.
    frames: u32,
    len: u32,
}

impl FrameSet {
    /// An empty set for chunks `0..frames`.
    pub fn new(frames: u32) -> FrameSet {
        FrameSet {
            bits: vec![0; frames.div_ceil(64) as usize],
            frames,
            len: 0,
        }
    }

    fn word(&mut self, i: u32) -> Option<(&mut u64, u64)> {
        if i >= self.frames {
            return None;
        }
        let w = self.bits.get_mut((i / 64) as usize)?;
        Some((w, 1 << (i % 64)))
    }

    /// Adds chunk `i`; false if it was there already (or is out of range).
    pub fn insert(&mut self, i: u32) -> bool {
        let Some((w, bit)) = self.word(i) else {
            return false;
        };
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.len += 1;
        true
    }

    /// Takes chunk `i` out; false if it was not there.
    pub fn remove(&mut self, i: u32) -> bool {
        let Some((w, bit)) = self.word(i) else {
            return false;
        };
        if *w & bit == 0 {
            return false;
        }
        *w &= !bit;
        self.len -= 1;
        true
    }

    pub fn contains(&self, i: u32) -> bool {
        i < self.frames
            && self
                .bits
                .get((i / 64) as usize)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The number of chunks in the set.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The chunks of a receive socket's UMEM: which the kernel holds, and which were read and wait
/// to go back to the fill ring.
#[derive(Debug)]
pub struct RxFrames {
    geometry: Geometry,
    /// Chunks in the fill ring or holding a frame the kernel has not handed over.
    in_kernel: FrameSet,
    /// Chunks read and not yet back in the fill ring (their first bytes).
    refill: Vec<u64>,
    /// RX descriptors refused (see [`Invalid`]).
    invalid: u64,
}

impl RxFrames {
    /// Every chunk starts on the refill list: the socket puts them all in the fill ring.
    pub fn new(geometry: Geometry) -> RxFrames {
        RxFrames {
            geometry,
            in_kernel: FrameSet::new(geometry.frames()),
            refill: (0..geometry.frames())
                .map(|i| geometry.chunk_addr(i))
                .collect(),
            invalid: 0,
        }
    }

    /// Takes in one RX descriptor: its chunk is back from the kernel and goes on the refill
    /// list, and the frame's bytes are returned if the descriptor is valid. A descriptor whose
    /// address is outside the UMEM, or names a chunk the kernel does not hold, is counted and
    /// ignored (nothing goes back to the fill ring for it); one whose frame does not fit its
    /// chunk is counted and its frame dropped, but its chunk goes back (the kernel had it).
    pub fn receive(&mut self, addr: u64, len: u32) -> Result<Range<usize>, Invalid> {
        let r = self.take(addr, len);
        if r.is_err() {
            self.invalid += 1;
        }
        r
    }

    fn take(&mut self, addr: u64, len: u32) -> Result<Range<usize>, Invalid> {
        let chunk = self.geometry.chunk_of(addr)?;
        if !self.in_kernel.remove(chunk) {
            return Err(Invalid::NotOwned);
        }
        self.refill.push(self.geometry.chunk_addr(chunk));
        self.geometry.rx_frame(addr, len)
    }

    /// The chunks waiting to go back to the fill ring (chunk-aligned addresses inside the UMEM,
    /// each once, by construction).
    pub fn refill(&self) -> &[u64] {
        &self.refill
    }

    /// The first `n` chunks of [`RxFrames::refill`] are in the fill ring now.
    pub fn refilled(&mut self, n: usize) {
        let n = n.min(self.refill.len());
        for &a in &self.refill[..n] {
            // Cannot fail: refill holds chunk starts this set gave up.
            if let Ok(c) = self.geometry.chunk_at(a) {
                self.in_kernel.insert(c);
            }
        }
        self.refill.drain(..n);
    }

    /// RX descriptors refused so far.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Chunks the kernel holds.
    pub fn in_kernel(&self) -> u32 {
        self.in_kernel.len()
    }
}

/// The chunks of a transmit socket's UMEM: free ones, and the ones in flight (on the TX ring or
/// waiting for their completion).
#[derive(Debug)]
pub struct TxFrames {
    geometry: Geometry,
    /// Free chunks (their first bytes), taken from the end.
    free: Vec<u64>,
    in_flight: FrameSet,
    /// Completion addresses refused (see [`Invalid`]).
    invalid: u64,
}

impl TxFrames {
    /// Every chunk starts free.
    pub fn new(geometry: Geometry) -> TxFrames {
        TxFrames {
            geometry,
            free: (0..geometry.frames())
                .rev()
                .map(|i| geometry.chunk_addr(i))
                .collect(),
            in_flight: FrameSet::new(geometry.frames()),
            invalid: 0,
        }
    }

    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a free chunk for a copy of `len` bytes: its address (for the descriptor) and the
    /// bytes to copy into. The chunk is in flight until [`TxFrames::complete`] or
    /// [`TxFrames::put_back`]. `None` if no chunk is free, or `len` does not fit one (the
    /// chunk then stays free).
    pub fn take(&mut self, len: usize) -> Option<(u64, Range<usize>)> {
        let &addr = self.free.last()?;
        let range = self.geometry.tx_frame(addr, len).ok()?;
        let chunk = self.geometry.chunk_at(addr).ok()?;
        self.free.pop();
        // The free list and the in-flight set never share a chunk (each move is between the
        // two), so this always inserts.
        self.in_flight.insert(chunk);
        Some((addr, range))
    }

    /// Gives back a chunk from [`TxFrames::take`] that did not go on the TX ring.
    pub fn put_back(&mut self, addr: u64) {
        if let Ok(c) = self.geometry.chunk_at(addr) {
            if self.in_flight.remove(c) {
                self.free.push(addr);
            }
        }
    }

    /// Takes in an address read from the completion ring: the chunk is free again if it is a
    /// chunk start inside the UMEM and in flight. Anything else (out of range, unaligned, not
    /// sent, completed already) is counted and ignored.
    pub fn complete(&mut self, addr: u64) -> Result<(), Invalid> {
        let r = self.geometry.chunk_at(addr).and_then(|c| {
            if self.in_flight.remove(c) {
                Ok(())
            } else {
                Err(Invalid::NotOwned)
            }
        });
        match r {
            Ok(()) => self.free.push(addr),
            Err(_) => self.invalid += 1,
        }
        r
    }

    /// Completion addresses refused so far.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Chunks in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.len()
    }

    /// Free chunks.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The geometry of the sockets: 1,024 chunks of 2 KiB.
    fn g() -> Geometry {
        Geometry::new(1024, 2048)
    }

    #[test]
    fn rx_frames_inside_one_chunk_are_taken() {
        assert_eq!(g().rx_frame(256, 60), Ok(256..316));
        assert_eq!(g().rx_frame(2048 + 256, 1792), Ok(2304..4096));
        // Any offset in the chunk (adjust_head can move the start).
        assert_eq!(
            g().rx_frame(2048 * 1023, 2048),
            Ok(2048 * 1023..2048 * 1024)
        );
    }

    #[test]
    fn rx_frames_past_the_umem_or_their_chunk_are_refused() {
        let end = 2048 * 1024;
        assert_eq!(g().rx_frame(end, 60), Err(Invalid::OutOfRange));
        assert_eq!(g().rx_frame(u64::MAX, 60), Err(Invalid::OutOfRange));
        // Longer than a chunk, or running into the next one.
        assert_eq!(g().rx_frame(256, 2048), Err(Invalid::CrossesChunk));
        assert_eq!(g().rx_frame(2047, 2), Err(Invalid::CrossesChunk));
        assert_eq!(g().rx_frame(end - 10, 11), Err(Invalid::CrossesChunk));
        assert_eq!(g().rx_frame(256, u32::MAX), Err(Invalid::CrossesChunk));
        assert_eq!(g().rx_frame(256, 0), Err(Invalid::CrossesChunk));
    }

    #[test]
    fn address_arithmetic_never_overflows() {
        // A UMEM as large as u64 allows: addr + len would wrap.
        let big = Geometry {
            len: u64::MAX - 1023,
            frame_size: 1 << 62,
        };
        assert_eq!(
            big.rx_frame(u64::MAX - 2000, u32::MAX),
            Err(Invalid::CrossesChunk)
        );
        assert_eq!(big.chunk_at(u64::MAX), Err(Invalid::OutOfRange));
    }

    #[test]
    fn chunk_addresses_must_be_chunk_starts_inside_the_umem() {
        assert_eq!(g().chunk_at(0), Ok(0));
        assert_eq!(g().chunk_at(2048 * 1023), Ok(1023));
        assert_eq!(g().chunk_at(2048 * 1024), Err(Invalid::OutOfRange));
        assert_eq!(g().chunk_at(2048 + 256), Err(Invalid::Unaligned));
        assert_eq!(g().chunk_at(1), Err(Invalid::Unaligned));
    }

    #[test]
    fn tx_copies_fit_their_chunk() {
        assert_eq!(g().tx_frame(4096, 1514), Ok(4096..5610));
        assert_eq!(g().tx_frame(4096, 2048), Ok(4096..6144));
        assert_eq!(g().tx_frame(4096, 2049), Err(Invalid::CrossesChunk));
        assert_eq!(g().tx_frame(4097, 60), Err(Invalid::Unaligned));
        assert_eq!(g().tx_frame(2048 * 1024, 60), Err(Invalid::OutOfRange));
    }

    #[test]
    fn frame_sets_count_and_refuse_repeats() {
        let mut s = FrameSet::new(100);
        assert!(s.insert(3) && s.insert(99) && s.insert(64));
        assert!(!s.insert(3));
        assert!(!s.insert(100), "out of range");
        assert_eq!(s.len(), 3);
        assert!(s.contains(64) && !s.contains(65));
        assert!(s.remove(3) && !s.remove(3) && !s.remove(100));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn completions_free_only_frames_in_flight_and_only_once() {
        let mut t = TxFrames::new(g());
        let (a, r) = t.take(100).unwrap();
        let (b, _) = t.take(100).unwrap();
        assert_eq!((a, r), (0, 0..100));
        assert_eq!(b, 2048);
        assert_eq!((t.in_flight(), t.free()), (2, 1022));
        assert_eq!(t.complete(a), Ok(()));
        // The same completion again (duplicated or forged): not freed a second time.
        assert_eq!(t.complete(a), Err(Invalid::NotOwned));
        // A chunk never sent.
        assert_eq!(t.complete(4096), Err(Invalid::NotOwned));
        // Unaligned, and past the UMEM.
        assert_eq!(t.complete(b + 1), Err(Invalid::Unaligned));
        assert_eq!(t.complete(1 << 40), Err(Invalid::OutOfRange));
        assert_eq!(t.invalid(), 4);
        assert_eq!((t.in_flight(), t.free()), (1, 1023));
        assert_eq!(t.complete(b), Ok(()));
        assert_eq!((t.in_flight(), t.free(), t.invalid()), (0, 1024, 4));
    }

    /// However the completion ring is forged, no two copies in flight ever share a chunk, and
    /// every chunk is free or in flight, never both.
    #[test]
    fn forged_completions_never_let_two_copies_share_a_chunk() {
        let mut rng = vxspan_core::wire::XorShift(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = move |n: u64| rng.below(n);
        let geometry = Geometry::new(64, 2048);
        let mut t = TxFrames::new(geometry);
        let mut owner: Vec<Option<u32>> = vec![None; 64];
        let mut sent = Vec::new();
        for copy in 0..20_000u32 {
            if rand(2) == 0 {
                if let Some((addr, r)) = t.take(60) {
                    let c = (addr / 2048) as usize;
                    assert_eq!(owner[c], None, "chunk {c} given to two copies");
                    assert_eq!(r.start, addr as usize);
                    owner[c] = Some(copy);
                    sent.push(addr);
                }
            } else {
                // A real completion, a repeated one, or garbage.
                let addr = match rand(3) {
                    0 if !sent.is_empty() => sent.swap_remove(rand(sent.len() as u64) as usize),
                    1 => rand(64) * 2048,
                    _ => rand(1 << 20),
                };
                if t.complete(addr).is_ok() {
                    owner[(addr / 2048) as usize] = None;
                    sent.retain(|&a| a != addr);
                }
            }
            let busy = owner.iter().filter(|o| o.is_some()).count();
            assert_eq!(t.in_flight() as usize, busy);
            assert_eq!(t.free() + busy, 64);
        }
        assert!(t.invalid() > 1000);
    }

    #[test]
    fn rx_descriptors_give_their_chunk_back_once() {
        let mut r = RxFrames::new(g());
        assert_eq!((r.refill().len(), r.in_kernel()), (1024, 0));
        // A descriptor before any chunk went to the kernel: refused.
        assert_eq!(r.receive(256, 60), Err(Invalid::NotOwned));
        r.refilled(1024);
        assert_eq!(r.invalid(), 1);
        r.invalid = 0;
        assert_eq!(r.receive(2048 + 256, 60), Ok(2304..2364));
        assert_eq!(r.refill(), [2048]);
        // A second descriptor for that chunk before it went back: refused, nothing to refill.
        assert_eq!(r.receive(2048 + 512, 60), Err(Invalid::NotOwned));
        // Past the UMEM: refused, nothing to refill.
        assert_eq!(r.receive(2048 * 1024 + 256, 60), Err(Invalid::OutOfRange));
        // Too long for its chunk: refused, but the kernel had the chunk, so it goes back.
        assert_eq!(r.receive(4096 + 256, 1900), Err(Invalid::CrossesChunk));
        assert_eq!(r.refill(), [2048, 4096]);
        assert_eq!(r.invalid(), 3);
        assert_eq!(r.in_kernel(), 1022);
        r.refilled(1);
        assert_eq!(r.refill(), [4096]);
        assert_eq!(r.in_kernel(), 1023);
        // Back in the kernel: the chunk can be received again.
        assert_eq!(r.receive(2048 + 256, 60), Ok(2304..2364));
        r.refilled(5);
        assert_eq!(r.in_kernel(), 1024);
        assert!(r.refill().is_empty());
    }
}
