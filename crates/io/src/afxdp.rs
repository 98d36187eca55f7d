//! AF_XDP receive sockets, one per RX queue of an input, on xdpilone (DESIGN.md section 3): a
//! UMEM of 1,024 frames of 2 KiB (2 MiB, the size of an AF_PACKET ring), its fill and
//! completion rings, and an RX ring. The XDP program of vxspan-xdp steers the frames of the userspace tier
//! into these sockets through its XSK map; frames are copied out of the UMEM into a [`Batch`]
//! and the frames go straight back to the fill ring.
//!
//! Copy mode everywhere (every driver, veth included); zero-copy is tried first where the driver
//! supports it. A frame must fit in one UMEM frame: inputs whose MTU does not (jumbo frames) are
//! refused with a message, and the userspace tier reads them through AF_PACKET instead.
//!
//! Every address and length read from a ring (RX descriptors, completions) is checked by
//! [`ring`] before the UMEM is touched at it; one that fails is counted
//! ([`XskRx::invalid_ring_entries`], [`XskTx::invalid_ring_entries`]) and never used.
#![allow(unsafe_code)]

pub mod ring;

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::ops::Range;
use std::ptr::NonNull;

use ring::{Geometry, RxFrames, TxFrames};

use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::{Batch, RecvStatus, RxPort, TxDrop, TxLosses, TxPort};

/// Frames in a receive socket's UMEM, and entries in each of its rings.
const FRAMES: u32 = 1024;
/// Frames in a transmit socket's UMEM (2 MiB), and entries in its rings. In copy mode a frame
/// stays taken until the kernel frees the copy it made (on veth, once the peer has processed
/// it), so the UMEM sets how many copies can be in flight (256 frames measured slower than
/// 1,024 in the afxdp benchmark).
const TX_FRAMES: u32 = 1024;
/// Two frames per page (the smallest size the kernel accepts).
const FRAME_SIZE: u32 = 2048;
/// Room the kernel keeps in front of each frame (XDP_PACKET_HEADROOM).
const HEADROOM: u32 = 256;
/// The largest frame a socket takes: what a UMEM frame holds after the kernel's headroom.
pub const MAX_FRAME: u32 = FRAME_SIZE - HEADROOM;

fn errno(what: &str, e: xdpilone::Errno) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(e.get_raw().abs()).kind(),
        format!("{what}: {e}"),
    )
}

/// An anonymous, page-aligned mapping for the UMEM, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Area> {
        // SAFETY: an anonymous private mapping; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Area { ptr, len })
    }

    fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// The bytes `r` of the mapping; `None` if `r` is not inside it.
    ///
    /// # Safety
    ///
    /// Nothing may write those bytes while the slice lives: the caller holds the UMEM chunk
    /// they lie in (the kernel handed it over and has not had it back).
    unsafe fn bytes(&self, r: Range<usize>) -> Option<&[u8]> {
        if r.start > r.end || r.end > self.len {
            return None;
        }
        // SAFETY: [r.start, r.end) lies inside the mapping (checked above); the caller
        // guarantees nothing writes it meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(r.start), r.len()) })
    }

    /// Copies `data` into the bytes `r` of the mapping; false (nothing written) if `r` is not
    /// inside it or not `data`'s length.
    ///
    /// # Safety
    ///
    /// Nothing may read or write those bytes meanwhile: the caller holds the UMEM chunk they
    /// lie in (free: neither on the TX ring nor waiting for its completion).
    unsafe fn write(&self, r: Range<usize>, data: &[u8]) -> bool {
        if r.start > r.end || r.end > self.len || r.len() != data.len() {
            return false;
        }
        // SAFETY: [r.start, r.end) lies inside the mapping (checked above), `data` is a
        // separate borrow of that length, and the caller guarantees nothing else touches
        // the destination.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(r.start), r.len());
        }
        true
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is not used after drop (the
        // UMEM and rings that point into it are dropped first: see the field order of XskRx).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Which ring a socket has besides the UMEM's fill and completion rings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Rx,
    Tx,
}

/// A socket with its UMEM and rings set up, not yet bound.
struct Bound {
    area: Area,
    umem: Umem,
    /// The fill and completion rings.
    fq: DeviceQueue,
    user: User,
}

impl Bound {
    fn new(interface: &str, queue: u32, zero_copy: bool, dir: Direction) -> io::Result<Bound> {
        let frames = match dir {
            Direction::Rx => FRAMES,
            Direction::Tx => TX_FRAMES,
        };
        let area = Area::new((frames * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: frames,
            complete_size: frames,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is a page-aligned mapping of `frames` * FRAME_SIZE bytes that outlives
        // the UMEM (the sockets drop it after it, by field order).
        let umem =
            unsafe { Umem::new(config, area.slice()) }.map_err(|e| errno("AF_XDP UMEM", e))?;
        let mut info = IfInfo::invalid();
        let name =
            CString::new(interface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        info.from_name(&name)
            .map_err(|e| errno(&format!("AF_XDP: interface {interface}"), e))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(|e| errno("AF_XDP socket", e))?;
        let fq = umem
            .fq_cq(&sock)
            .map_err(|e| errno("AF_XDP fill / completion rings", e))?;
        let size = NonZeroU32::new(frames);
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: if dir == Direction::Rx { size } else { None },
                    tx_size: if dir == Direction::Tx { size } else { None },
                    bind_flags: if zero_copy {
                        SocketConfig::XDP_BIND_ZEROCOPY
                    } else {
                        SocketConfig::XDP_BIND_COPY
                    },
                },
            )
            .map_err(|e| errno("AF_XDP ring", e))?;
        Ok(Bound {
            area,
            umem,
            fq,
            user,
        })
    }
}

fn bind_error(interface: &str, queue: u32, zero_copy: bool, e: xdpilone::Errno) -> io::Error {
    errno(
        &format!(
            "AF_XDP bind to {interface} queue {queue} ({} mode)",
            if zero_copy { "zero-copy" } else { "copy" }
        ),
        e,
    )
}

/// One AF_XDP socket receiving from one queue of one interface.
pub struct XskRx {
    // Field order is drop order: the rings and the UMEM registration go before the memory.
    rx: RingRx,
    fq: DeviceQueue,
    user: User,
    /// Kept for its registration with the kernel, which must outlive the rings.
    _umem: Umem,
    area: Area,
    pub name: String,
    pub queue: u32,
    /// Whether the kernel accepted zero-copy (otherwise copy mode).
    pub zero_copy: bool,
    /// Frames read so far.
    pub received: u64,
    /// Of the refused RX descriptors, how many [`XskRx::take_invalid_ring_entries`] reported.
    invalid_reported: u64,
    /// The descriptors of the batch being read (kept to reuse its allocation).
    descs: Vec<xdpilone::xdp::XdpDesc>,
    /// Which chunks the kernel holds, and the ones read and not yet back in the fill ring.
    frames: RxFrames,
}

// SAFETY: the raw pointers inside (the UMEM area, the mapped rings) are owned by this value and
// only used through &mut self; moving it to another thread moves that ownership with it.
unsafe impl Send for XskRx {}

/// The number of RX queues of `interface` (from sysfs; 1 if it cannot be read).
pub fn rx_queues(interface: &str) -> u32 {
    queues(interface, "rx-")
}

/// The number of TX queues of `interface` (from sysfs; 1 if it cannot be read).
pub fn tx_queues(interface: &str) -> u32 {
    queues(interface, "tx-")
}

/// The entries of `interface`'s sysfs queue directory named `prefix`N (at least 1).
fn queues(interface: &str, prefix: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

impl XskRx {
    /// Opens a socket on `queue` of `interface`: zero-copy if the driver allows, else copy mode.
    pub fn open(interface: &str, queue: u32) -> io::Result<XskRx> {
        match XskRx::open_mode(interface, queue, true) {
            Ok(x) => Ok(x),
            Err(_) => XskRx::open_mode(interface, queue, false),
        }
    }

    fn open_mode(interface: &str, queue: u32, zero_copy: bool) -> io::Result<XskRx> {
        let Bound {
            area,
            umem,
            fq,
            user,
        } = Bound::new(interface, queue, zero_copy, Direction::Rx)?;
        let rx = user.map_rx().map_err(|e| errno("AF_XDP RX ring mmap", e))?;
        umem.bind(&user)
            .map_err(|e| bind_error(interface, queue, zero_copy, e))?;
        let mut x = XskRx {
            rx,
            fq,
            user,
            _umem: umem,
            area,
            name: interface.to_owned(),
            queue,
            zero_copy,
            received: 0,
            invalid_reported: 0,
            descs: Vec::with_capacity(FRAMES as usize),
            frames: RxFrames::new(Geometry::new(FRAMES, FRAME_SIZE)),
        };
        // Every frame starts in the fill ring.
        x.give_back();
        Ok(x)
    }

    /// The socket's descriptor: for the XSK map and for poll.
    pub fn fd(&self) -> i32 {
        self.rx.as_raw_fd()
    }

    /// Frames the kernel could not hand over (no free frame, or the RX ring full).
    pub fn dropped(&self) -> io::Result<u64> {
        let s = self
            .user
            .statistics_v2()
            .map_err(|e| errno("XDP_STATISTICS", e))?;
        Ok(s.rx_dropped + s.rx_ring_full)
    }

    /// RX descriptors refused since the socket was opened: an address outside the UMEM, a
    /// frame that does not fit its chunk, or a chunk the kernel did not hold (see
    /// [`ring::Invalid`]). Their frames were dropped, not read.
    pub fn invalid_ring_entries(&self) -> u64 {
        self.frames.invalid()
    }

    /// RX descriptors refused since the last call (for counting them as drops once each).
    pub fn take_invalid_ring_entries(&mut self) -> u64 {
        let now = self.frames.invalid();
        let new = now - self.invalid_reported;
        self.invalid_reported = now;
        new
    }

    /// Puts the frames read back in the fill ring. A reservation may get fewer entries than
    /// asked (it trusts a cached view of the kernel's consumer index while that shows any
    /// room), so this asks again until every frame is back: a frame left out would be lost to
    /// the socket for good, and with every such loss the kernel would have one frame less to
    /// receive into (on veth at 1.8 Mpps that took the afxdp datapath from about 0.5 to below
    /// 0.1 Mpps in some runs). The ring has an entry for every frame, so it always takes them;
    /// a frame it did not take would wait here for the next read.
    ///
    /// Only chunk starts inside the UMEM that the kernel does not hold go in (the refill list of
    /// [`RxFrames`] holds nothing else), each once.
    fn give_back(&mut self) {
        let refill = self.frames.refill();
        let mut done = 0;
        while done < refill.len() {
            let mut w = self.fq.fill((refill.len() - done) as u32);
            let n = w.insert(refill[done..].iter().copied()) as usize;
            w.commit();
            if n == 0 {
                break;
            }
            done += n;
        }
        self.frames.refilled(done);
    }
}

impl RxPort for XskRx {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus> {
        let max = max.min(FRAMES as usize) as u32;
        let mut descs = std::mem::take(&mut self.descs);
        descs.clear();
        {
            let mut r = self.rx.receive(max);
            while let Some(d) = r.read() {
                descs.push(d);
            }
            r.release();
        }
        // AF_XDP carries no timestamp: the time of the read stands for it.
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for d in &descs {
            // A refused descriptor is counted there; its chunk goes back to the fill ring only
            // if the kernel held it.
            let Ok(r) = self.frames.receive(d.addr, d.len) else {
                continue;
            };
            // SAFETY: the kernel handed this chunk to userspace through the RX ring (RxFrames
            // checked it held it, and that the frame lies inside it): it does not write the
            // chunk until it is back in the fill ring, in give_back below, after this slice
            // is dropped.
            if let Some(f) = unsafe { self.area.bytes(r) } {
                batch.push(f, d.len, ts);
                self.received += 1;
            }
        }
        // Each chunk read goes back to the fill ring.
        self.give_back();
        self.descs = descs;
        Ok(RecvStatus::Ok)
    }
}

/// A copy on a TX ring: its length and the id of its output ([`TxLosses::id`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCopy {
    pub len: u32,
    pub owner: u16,
}

/// Where the descriptors of a TX ring stand, as far as userspace can tell: which the kernel has
/// taken (sent or dropped) and which it has not yet looked at, with each one's copy.
///
/// In copy mode a kick (`sendto`) makes the kernel take descriptors one after the other. A copy
/// the device drops (NET_XMIT_DROP) ends the kick with EBUSY: it is the last descriptor taken.
/// The kernel publishes how far it got only when it sent at least one frame in that kick, so
/// the consumer index read from the ring can lag by exactly that dropped one; this ledger
/// keeps the true position: after an EBUSY kick with nothing published, the kernel took one
/// descriptor, the first one it had not taken.
#[derive(Debug)]
pub struct TxLedger {
    copies: Vec<TxCopy>,
    /// Descriptors committed to the ring (wrapping, like the ring's own indices).
    committed: u32,
    /// Descriptors the kernel has taken.
    taken: u32,
}

impl TxLedger {
    /// A ledger for a ring of `size` entries (a power of two).
    pub fn new(size: u32) -> TxLedger {
        debug_assert!(size.is_power_of_two());
        TxLedger {
            copies: vec![TxCopy::default(); size as usize],
            committed: 0,
            taken: 0,
        }
    }

    fn at(&self, index: u32) -> TxCopy {
        self.copies[(index & (self.copies.len() as u32 - 1)) as usize]
    }

    /// Records a descriptor committed to the ring.
    pub fn push(&mut self, copy: TxCopy) {
        let m = self.copies.len() as u32 - 1;
        self.copies[(self.committed & m) as usize] = copy;
        self.committed = self.committed.wrapping_add(1);
    }

    /// The ring index the next descriptor gets (the producer index).
    pub fn committed(&self) -> u32 {
        self.committed
    }

    /// Descriptors the kernel has not taken yet.
    pub fn waiting(&self) -> u32 {
        self.committed.wrapping_sub(self.taken)
    }

    /// Takes in the outcome of a kick: `published` is the consumer index read from the ring
    /// afterwards, `dropped` whether the kick ended with EBUSY. Returns the copy the kernel
    /// dropped.
    pub fn after_kick(&mut self, published: u32, dropped: bool) -> Option<TxCopy> {
        let ahead = published.wrapping_sub(self.taken);
        // A published index is never behind what we know, nor past what was committed.
        let moved = ahead != 0 && ahead <= self.waiting();
        if moved {
            self.taken = published;
        }
        if !dropped {
            return None;
        }
        if moved {
            // Frames went out before the drop: the published index is exact, the dropped copy
            // is the last one taken.
            Some(self.at(self.taken.wrapping_sub(1)))
        } else if self.waiting() > 0 {
            // Nothing went out: the kernel took exactly one descriptor, the dropped one.
            let c = self.at(self.taken);
            self.taken = self.taken.wrapping_add(1);
            Some(c)
        } else {
            None
        }
    }

    /// Gives up every descriptor not taken (the socket is closed before the kernel sees them),
    /// handing each copy to `lost`.
    pub fn abandon(&mut self, mut lost: impl FnMut(TxCopy)) {
        for k in 0..self.waiting() {
            lost(self.at(self.taken.wrapping_add(k)));
        }
        self.taken = self.committed;
    }
}

/// One AF_XDP socket transmitting on one queue of one interface: a UMEM of 1,024 frames of
/// 2 KiB, a TX ring and its completion ring. [`XskTx::send`] copies a frame into a free UMEM
/// frame and puts its descriptor on the TX ring; [`XskTx::flush`] kicks the kernel, which sends
/// them (in copy mode, within the kick; in zero-copy mode, the driver later). Copies the kernel
/// drops, or that are still waiting when the socket is closed, are recorded in [`TxLosses`].
pub struct XskTx {
    // Field order is drop order: the rings and the UMEM registration go before the memory.
    tx: RingTx,
    cq: DeviceQueue,
    /// Kept for the socket it owns, which must outlive the rings.
    _user: User,
    _umem: Umem,
    area: Area,
    /// Whether the kernel accepted zero-copy (otherwise copy mode).
    pub zero_copy: bool,
    /// The largest untagged frame the interface takes (its MTU and an Ethernet header).
    max_len: usize,
    /// UMEM chunks free, and the ones in flight (on the TX ring or waiting for completion).
    frames: TxFrames,
    ledger: TxLedger,
    losses: std::sync::Arc<TxLosses>,
    /// The kernel refused the socket (interface down or gone): it takes no more frames, and
    /// what it held was counted as lost.
    dead: bool,
}

// SAFETY: as for XskRx: the UMEM area and the mapped rings are owned by this value and only
// used through &mut self.
unsafe impl Send for XskTx {}

impl XskTx {
    /// Opens a socket on TX queue `queue` of `interface`: zero-copy if the driver allows, else
    /// copy mode. Interfaces whose MTU does not fit a UMEM frame are refused.
    pub fn open(
        interface: &str,
        queue: u32,
        losses: std::sync::Arc<TxLosses>,
    ) -> io::Result<XskTx> {
        let mtu = crate::afpacket::mtu(interface)? as usize;
        // An Ethernet header and one VLAN tag on top of the MTU.
        if mtu + 18 > FRAME_SIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "MTU {mtu} of {interface} does not fit an AF_XDP frame ({FRAME_SIZE} bytes)"
                ),
            ));
        }
        let (opened, zero_copy) = match XskTx::open_mode(interface, queue, true) {
            Ok(o) => (o, true),
            Err(_) => (XskTx::open_mode(interface, queue, false)?, false),
        };
        Ok(XskTx::new(opened, zero_copy, mtu + 14, losses))
    }

    fn open_mode(interface: &str, queue: u32, zero_copy: bool) -> io::Result<(Bound, RingTx)> {
        let b = Bound::new(interface, queue, zero_copy, Direction::Tx)?;
        let tx = b
            .user
            .map_tx()
            .map_err(|e| errno("AF_XDP TX ring mmap", e))?;
        b.umem
            .bind(&b.user)
            .map_err(|e| bind_error(interface, queue, zero_copy, e))?;
        Ok((b, tx))
    }

    fn new(
        (b, tx): (Bound, RingTx),
        zero_copy: bool,
        max_len: usize,
        losses: std::sync::Arc<TxLosses>,
    ) -> XskTx {
        XskTx {
            tx,
            cq: b.fq,
            _user: b.user,
            _umem: b.umem,
            area: b.area,
            zero_copy,
            max_len,
            frames: TxFrames::new(Geometry::new(TX_FRAMES, FRAME_SIZE)),
            ledger: TxLedger::new(TX_FRAMES),
            losses,
            dead: false,
        }
    }

    /// Whether the kernel refused the socket: it must be closed and opened again.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Completion-ring addresses refused since the socket was opened: outside the UMEM, not a
    /// chunk start, or a chunk not in flight (never sent, or completed already: see
    /// [`ring::Invalid`]). None of them went back to the free list.
    pub fn invalid_ring_entries(&self) -> u64 {
        self.frames.invalid()
    }

    /// Puts a copy of `data` on the TX ring. It leaves at the next [`XskTx::flush`] (which
    /// this calls itself when the UMEM is full).
    pub fn send(&mut self, data: &[u8], owner: u16) -> Result<(), TxDrop> {
        if self.dead {
            return Err(TxDrop::LinkDown);
        }
        let tagged = matches!(data.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
        if data.len() > self.max_len + if tagged { 4 } else { 0 } {
            return Err(TxDrop::MtuExceeded);
        }
        if !self.frames.has_free() {
            self.flush();
        }
        let Some((addr, range)) = self.frames.take(data.len()) else {
            return Err(if self.dead {
                TxDrop::LinkDown
            } else if self.frames.has_free() {
                // Cannot happen: max_len fits FRAME_SIZE.
                TxDrop::MtuExceeded
            } else {
                TxDrop::QueueFull
            });
        };
        // SAFETY: the chunk at `addr` was free (never sent, or its completion came back), so
        // the kernel does not read it; TxFrames checked that `range` lies inside it.
        if !unsafe { self.area.write(range, data) } {
            self.frames.put_back(addr);
            return Err(TxDrop::TxError);
        }
        let desc = xdpilone::xdp::XdpDesc {
            addr,
            len: data.len() as u32,
            options: 0,
        };
        let mut w = self.tx.transmit(1);
        let put = w.insert_once(desc);
        w.commit();
        if !put {
            // The ring has as many entries as the UMEM has frames: it cannot be full while a
            // frame is free. Kept as a counted drop, never a panic.
            self.frames.put_back(addr);
            return Err(TxDrop::QueueFull);
        }
        self.ledger.push(TxCopy {
            len: desc.len,
            owner,
        });
        Ok(())
    }

    /// Frames whose transmission is complete go back to the free list: only chunks in flight,
    /// each once (an address that is not one is counted by TxFrames and dropped).
    fn reap(&mut self) {
        let mut c = self.cq.complete(TX_FRAMES);
        while let Some(addr) = c.read() {
            let _ = self.frames.complete(addr);
        }
        c.release();
    }

    fn published(&self) -> u32 {
        self.ledger.committed().wrapping_sub(self.tx.pending())
    }

    /// Kicks the kernel until it has taken every descriptor, or it stops making progress
    /// (then the rest waits for the next flush). Each copy the device drops is recorded as
    /// `queue_full`; if the kernel refuses the socket (interface down or gone), everything
    /// waiting is recorded as `link_down` and the socket takes no more.
    pub fn flush(&mut self) {
        self.reap();
        let mut stalls = 0;
        // Bounded: each round either takes a descriptor or counts a stall.
        while !self.dead && self.ledger.waiting() > 0 && stalls < 4 {
            let before = self.ledger.waiting();
            // SAFETY: a zero-length sendto on the socket's own descriptor, no buffers.
            let r = unsafe {
                libc::sendto(
                    self.tx.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            let err = if r < 0 {
                io::Error::last_os_error().raw_os_error()
            } else {
                None
            };
            match err {
                None => {
                    self.ledger.after_kick(self.published(), false);
                }
                Some(libc::EBUSY) => {
                    if let Some(c) = self.ledger.after_kick(self.published(), true) {
                        self.losses
                            .add(c.owner, TxDrop::QueueFull, 1, u64::from(c.len));
                    }
                }
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    self.ledger.after_kick(self.published(), false);
                    self.reap();
                }
                Some(e) => {
                    let reason = match e {
                        libc::ENETDOWN | libc::ENXIO | libc::ENODEV => TxDrop::LinkDown,
                        _ => TxDrop::TxError,
                    };
                    self.give_up(reason);
                }
            }
            if self.zero_copy {
                // The driver sends in the background; the kick only woke it.
                break;
            }
            if self.ledger.waiting() == before {
                stalls += 1;
            } else {
                stalls = 0;
            }
        }
        self.reap();
    }

    /// Records every waiting copy as lost with `reason` and stops taking frames. The socket
    /// is never kicked again, so the kernel cannot send them later: it is closed once the
    /// caller replaces it.
    fn give_up(&mut self, reason: TxDrop) {
        self.ledger.after_kick(self.published(), false);
        let losses = &self.losses;
        self.ledger
            .abandon(|c| losses.add(c.owner, reason, 1, u64::from(c.len)));
        self.dead = true;
    }
}

impl Drop for XskTx {
    fn drop(&mut self) {
        // What can still go out goes; the rest is closed with the socket and counted.
        for _ in 0..100 {
            self.flush();
            if self.dead || self.ledger.waiting() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !self.dead {
            self.give_up(TxDrop::QueueFull);
        }
    }
}

/// A copy goes on the TX ring at once (refused with its reason when it cannot); what the device
/// drops after a kick is recorded under its [`vxspan_core::TxFrame::owner`].
impl TxPort for XskTx {
    fn send(&mut self, frame: vxspan_core::TxFrame<'_>) -> Result<(), TxDrop> {
        XskTx::send(self, frame.data, frame.owner)
    }

    fn flush(&mut self) -> io::Result<()> {
        XskTx::flush(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(len: u32) -> TxCopy {
        TxCopy { len, owner: 0 }
    }

    fn ledger(lens: &[u32]) -> TxLedger {
        let mut l = TxLedger::new(8);
        for &n in lens {
            l.push(copy(n));
        }
        l
    }

    fn abandoned(l: &mut TxLedger) -> Vec<u32> {
        let mut v = Vec::new();
        l.abandon(|c| v.push(c.len));
        v
    }

    #[test]
    fn a_kick_that_sends_everything_leaves_nothing_waiting() {
        let mut l = ledger(&[60, 70, 80]);
        assert_eq!(l.after_kick(3, false), None);
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_drop_after_sent_frames_is_the_last_descriptor_taken() {
        let mut l = ledger(&[60, 70, 80, 90]);
        // Two sent, the third dropped: the kernel published 3.
        assert_eq!(l.after_kick(3, true), Some(copy(80)));
        assert_eq!(l.waiting(), 1);
        assert_eq!(l.after_kick(4, false), None);
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_drop_with_nothing_sent_is_the_first_waiting_descriptor() {
        let mut l = ledger(&[60, 70, 80]);
        // The first is dropped, nothing published: the ring still reads 0.
        assert_eq!(l.after_kick(0, true), Some(copy(60)));
        // Again: the published index still lags, the second is dropped.
        assert_eq!(l.after_kick(0, true), Some(copy(70)));
        assert_eq!(l.waiting(), 1);
        // The third is sent: the kernel publishes everything it took.
        assert_eq!(l.after_kick(3, false), None);
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_lagging_published_index_never_moves_the_ledger_back() {
        let mut l = ledger(&[60, 70, 80]);
        assert_eq!(l.after_kick(0, true), Some(copy(60)));
        // EAGAIN with nothing sent: the ring still reads 0, one is known taken.
        assert_eq!(l.after_kick(0, false), None);
        assert_eq!(l.waiting(), 2);
    }

    #[test]
    fn indices_wrap() {
        let mut l = TxLedger::new(4);
        l.committed = u32::MAX - 1;
        l.taken = u32::MAX - 1;
        for n in [10, 20, 30] {
            l.push(copy(n));
        }
        assert_eq!(l.waiting(), 3);
        assert_eq!(l.after_kick(u32::MAX, true), Some(copy(10)));
        assert_eq!(l.after_kick(u32::MAX, true), Some(copy(20)));
        assert_eq!(abandoned(&mut l), [30]);
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn abandoning_hands_over_what_was_never_taken() {
        let mut l = ledger(&[60, 70, 80]);
        l.after_kick(1, false);
        assert_eq!(abandoned(&mut l), [70, 80]);
        assert_eq!(l.after_kick(1, true), None);
    }

    /// The ledger against a model of the kernel's copy-mode transmit (`__xsk_generic_xmit`):
    /// each kick takes up to 32 descriptors; each is sent, or dropped by the device (the kick
    /// ends with EBUSY), or the device is busy (not taken, the kick ends with EAGAIN). The
    /// consumer index is published at the end of a kick only if a frame was sent, and
    /// sometimes at its start (when the kernel refreshes its view of the ring). After every
    /// kick the ledger names exactly the dropped copy and knows what is still waiting.
    #[test]
    fn the_ledger_follows_the_kernel_through_random_kicks() {
        let mut rng = vxspan_core::wire::XorShift(0x2545_f491_4f6c_dd1du64);
        let mut rand = move |n: u64| rng.below(n);
        let size = 64u32;
        let mut l = TxLedger::new(size);
        // The kernel's own consumer index, and the one userspace can read.
        let (mut taken, mut published) = (0u32, 0u32);
        let (mut dropped_total, mut sent_total) = (0u64, 0u64);
        for _ in 0..20_000 {
            // Fill part of the free room; each copy's length names its ring index.
            let room = size - l.waiting();
            for _ in 0..rand(u64::from(room) + 1) {
                l.push(copy(l.committed()));
            }
            if rand(4) == 0 {
                published = taken;
            }
            let mut sent = false;
            let mut dropped = None;
            for _ in 0..32 {
                if taken == l.committed() {
                    break;
                }
                match rand(10) {
                    0..=5 => {
                        taken = taken.wrapping_add(1);
                        sent = true;
                        sent_total += 1;
                    }
                    6 | 7 => {
                        dropped = Some(taken);
                        taken = taken.wrapping_add(1);
                        break;
                    }
                    _ => break,
                }
            }
            if sent {
                published = taken;
            }
            let got = l.after_kick(published, dropped.is_some());
            assert_eq!(got.map(|c| c.len), dropped, "the dropped copy");
            dropped_total += u64::from(dropped.is_some());
            assert_eq!(l.waiting(), l.committed().wrapping_sub(taken), "waiting");
        }
        assert!(dropped_total > 1000 && sent_total > 10_000);
    }

    #[test]
    fn each_copy_keeps_its_owner() {
        let mut l = TxLedger::new(4);
        l.push(TxCopy { len: 60, owner: 1 });
        l.push(TxCopy { len: 70, owner: 2 });
        assert_eq!(l.after_kick(0, true).map(|c| c.owner), Some(1));
        let mut owners = Vec::new();
        l.abandon(|c| owners.push(c.owner));
        assert_eq!(owners, [2]);
    }
}
