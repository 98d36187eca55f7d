//! AF_PACKET ports: a TPACKET_V3 memory-mapped receive ring per input, and a packet socket per
//! output interface for transmit.
//!
//! Written on `libc` rather than taken from a crate: the AF_PACKET crates either receive with
//! `recv()` (one system call per frame) or are GPL. Every system call goes through [`sys`], and
//! every `unsafe` block says why it is sound.
//!
//! Receive: the kernel fills blocks of the ring and hands each block to userspace by setting
//! `TP_STATUS_USER` in the block header; vxspan reads every frame of the block, then returns it
//! with `TP_STATUS_KERNEL`. The kernel moves the outer 802.1Q / 802.1ad tag of a frame out of
//! band (`tp_vlan_tci`, `tp_vlan_tpid`): it is put back so rules and outputs see the frame as it
//! was on the wire. `PACKET_IGNORE_OUTGOING` keeps a port from seeing what vxspan (or anything
//! else on the host) transmits on it. Frames the kernel dropped because the ring was full are
//! read from `PACKET_STATISTICS` and counted as `ring_overrun`. Every offset and length in a
//! block is checked before it is used ([`block`]); a block header or frame header that fails is
//! counted ([`RxRing::invalid_ring_entries`]) and its frames are not read.
//!
//! Transmit: a socket bound to the output interface, with `PACKET_QDISC_BYPASS` (mirror traffic
//! is not shaped by the host's qdiscs). Outputs queue their copies ([`TxBatch::queue`]) and
//! send a batch with one `sendmmsg()` ([`TxBatch::flush`]); a copy the kernel refuses ends the
//! call at that message with its error, so each refused copy is known and recorded in
//! [`TxLosses`] with its reason, and the rest of the batch is sent by the next call. Passthru
//! sends each frame with one `send()` ([`TxPort`]).
#![allow(unsafe_code)]

pub mod block;

use crate::{Batch, RecvStatus, RxPort, TxLosses, TxPort};
use block::TP_STATUS_USER;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use vxspan_core::{TxDrop, TxFrame};

/// Ring geometry: 8 blocks of 256 KiB (2 MiB per input: ten inputs stay well inside the
/// appliance's memory budget); a block is handed over when full or
/// after `RETIRE_MS`, whichever comes first. When several workers share an input through a
/// fanout group, each of their rings has 8 smaller blocks ([`RxRing::open_with`]): at low
/// rates a block is handed over half empty, so the count of blocks, not their size, sets how
/// long a ring can wait for its reader.
pub const BLOCK_SIZE: usize = 256 * 1024;
pub const BLOCK_NR: usize = 8;
const FRAME_SIZE: usize = 2048;
const RETIRE_MS: u32 = 10;

/// `enum tpacket_versions` value of TPACKET_V3 (linux/if_packet.h).
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Thin wrappers: the only place this module calls into the kernel.
mod sys {
    use std::io;

    pub fn check(ret: libc::c_int, call: &'static str) -> io::Result<libc::c_int> {
        if ret < 0 {
            let e = io::Error::last_os_error();
            Err(io::Error::new(e.kind(), format!("{call}: {e}")))
        } else {
            Ok(ret)
        }
    }

    pub fn setsockopt<T>(
        fd: libc::c_int,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        call: &'static str,
    ) -> io::Result<()> {
        // SAFETY: `value` points to a live `T` of exactly `size_of::<T>()` bytes for the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        check(r, call).map(|_| ())
    }

    /// Reads socket option `name` into `value`.
    ///
    /// # Safety
    ///
    /// Every bit pattern of the size of `T` must be a valid `T` (plain integers, C structs of
    /// integers): the kernel writes what it has.
    pub unsafe fn getsockopt<T>(
        fd: libc::c_int,
        level: libc::c_int,
        name: libc::c_int,
        value: &mut T,
        call: &'static str,
    ) -> io::Result<()> {
        let mut len = std::mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: `value` is valid for writes of `len` bytes, `len` for a write of its own.
        let r = unsafe { libc::getsockopt(fd, level, name, (value as *mut T).cast(), &mut len) };
        check(r, call).map(|_| ())
    }
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL byte")
    })?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ))
    } else {
        Ok(i)
    }
}

/// A packet socket that receives nothing until [`bind`] gives it a protocol: created with
/// ETH_P_ALL, it would take frames from every interface until bound to one, and count them.
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = sys::check(
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_PACKET)",
    )?;
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(fd)
}

/// Binds to `ifindex`; with `receive`, every frame of that interface is received (ETH_P_ALL),
/// otherwise none (a transmit-only socket).
fn bind(fd: RawFd, ifindex: u32, receive: bool) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to start from.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = if receive {
        (libc::ETH_P_ALL as u16).to_be()
    } else {
        0
    };
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    sys::check(r, "bind(AF_PACKET)").map(|_| ())
}

/// The block size a ring gets for `requested` bytes: from 64 KiB to `BLOCK_SIZE`, rounded down
/// to a power of two (the kernel allocates a block as one power-of-two run of pages).
pub fn ring_block_size(requested: usize) -> usize {
    let clamped = requested.clamp(64 * 1024, BLOCK_SIZE);
    1usize << (usize::BITS - 1 - clamped.leading_zeros())
}

/// A receive ring on one interface.
pub struct RxRing {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    next_block: usize,
    block_size: usize,
    pub name: String,
    /// The interface index the ring is bound to (a re-created interface gets a new one).
    pub ifindex: u32,
    /// Block and frame headers refused so far (see [`block::Invalid`]).
    invalid: u64,
    /// Of those, how many [`RxRing::take_invalid_ring_entries`] has reported.
    invalid_reported: std::sync::atomic::AtomicU64,
}

// SAFETY: the mapping is owned by this value alone and only touched through `&mut self`.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Opens a TPACKET_V3 ring on `interface`, promiscuous (the membership ends with the socket).
    pub fn open(interface: &str) -> io::Result<Self> {
        Self::open_with(interface, BLOCK_SIZE)
    }

    /// Opens a ring of `BLOCK_NR` blocks of `block_size` bytes (rounded down to a power of two,
    /// from 64 KiB to `BLOCK_SIZE`) on `interface`.
    pub fn open_with(interface: &str, block_size: usize) -> io::Result<Self> {
        let block_size = ring_block_size(block_size);
        let blocks = BLOCK_NR;
        let idx = ifindex(interface)?;
        let fd = packet_socket()?;
        let raw = fd.as_raw_fd();
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &TPACKET_V3,
            "setsockopt(PACKET_VERSION)",
        )?;
        // Best effort on older kernels: without it a port would also see its own transmissions.
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &1 as &libc::c_int,
            "setsockopt(PACKET_IGNORE_OUTGOING)",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (block_size / FRAME_SIZE * blocks) as u32,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "setsockopt(PACKET_RX_RING)",
        )?;
        let map_len = block_size * blocks;
        // SAFETY: mapping the ring the kernel just allocated for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                raw,
                0,
            )
        };
        let map = if map == libc::MAP_FAILED {
            // MAP_LOCKED needs RLIMIT_MEMLOCK room; retry without it.
            // SAFETY: as above.
            let m = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    raw,
                    0,
                )
            };
            if m == libc::MAP_FAILED {
                return Err(io::Error::new(
                    io::Error::last_os_error().kind(),
                    format!("mmap of the receive ring: {}", io::Error::last_os_error()),
                ));
            }
            m
        } else {
            map
        };
        let mreq = libc::packet_mreq {
            mr_ifindex: idx as i32,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq,
            "setsockopt(PACKET_ADD_MEMBERSHIP promiscuous)",
        )?;
        bind(raw, idx, true)?;
        Ok(RxRing {
            fd,
            map: map.cast(),
            map_len,
            next_block: 0,
            block_size,
            name: interface.to_owned(),
            ifindex: idx,
            invalid: 0,
            invalid_reported: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Puts this ring in a fanout group (PACKET_FANOUT_HASH: the kernel spreads frames over
    /// the group's rings by flow hash, symmetric in source and destination, so a flow's frames
    /// in both directions, and every fragment of a datagram, reach one ring). `None` creates a
    /// group with an id the kernel picks unused (PACKET_FANOUT_FLAG_UNIQUEID), so two instances
    /// never join each other's; `Some(id)` joins it. Returns the group's id.
    pub fn join_fanout(&self, group: Option<u16>) -> io::Result<u16> {
        // The group's own hook replaces the socket's: PACKET_IGNORE_OUTGOING must be asked of
        // the group too, or a port would read what vxspan sends out of it (a tunnel to a
        // collector behind an input would loop).
        let mode = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        let arg: libc::c_uint = match group {
            None => (mode | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
            Some(id) => (mode << 16) | libc::c_uint::from(id),
        };
        sys::setsockopt(
            self.fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            &arg,
            "setsockopt(PACKET_FANOUT)",
        )?;
        let mut val: libc::c_uint = 0;
        // SAFETY: any bit pattern is a valid c_uint.
        unsafe {
            sys::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &mut val,
                "getsockopt(PACKET_FANOUT)",
            )?;
        }
        Ok((val & 0xffff) as u16)
    }

    fn block_status(&self, b: usize) -> &AtomicU32 {
        // SAFETY: block `b` (< BLOCK_NR) lies inside the mapping; its header starts with
        // `version` (u32) and `offset_to_priv` (u32), then `block_status` at offset 8, 4-aligned
        // (blocks are page-aligned). The kernel and this process both access it atomically.
        unsafe { &*(self.map.add(b * self.block_size + 8) as *const AtomicU32) }
    }

    /// Frames the kernel received and dropped (ring full) since the last call: reading the
    /// statistics resets them.
    pub fn take_stats(&self) -> io::Result<(u64, u64)> {
        // SAFETY: tpacket_stats_v3 is plain data.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        // SAFETY: tpacket_stats_v3 holds only integers: any bit pattern is valid.
        unsafe {
            sys::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st,
                "getsockopt(PACKET_STATISTICS)",
            )?;
        }
        Ok((u64::from(st.tp_packets), u64::from(st.tp_drops)))
    }

    /// Ring entries refused since the ring was opened: block headers (status, `blk_len`,
    /// `offset_to_first_pkt`, `num_pkts`) and frame headers (`tp_next_offset`, `tp_mac`,
    /// `tp_snaplen`) out of range or misaligned (see [`block::Invalid`]). One count per header
    /// refused; the frames it describes, or that cannot be found past it, are not read.
    pub fn invalid_ring_entries(&self) -> u64 {
        self.invalid
    }

    /// Ring entries refused since the last call (for counting them as drops once each).
    pub fn take_invalid_ring_entries(&self) -> u64 {
        let before = self
            .invalid_reported
            .swap(self.invalid, std::sync::atomic::Ordering::Relaxed);
        self.invalid - before
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `open`, once.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// Appends the frames of one handed-over block to `batch`, restoring out-of-band VLAN tags.
/// Returns the frames appended and the entries refused ([`block::Tp3Frames`]).
fn read_block(block: &[u8], batch: &mut Batch) -> (usize, u64) {
    let (mut n, mut invalid) = (0, 0);
    for f in block::Tp3Frames::new(block) {
        let Ok(f) = f else {
            invalid += 1;
            continue;
        };
        let (data, len) = (f.data, f.len);
        let ts = u64::from(f.sec) * 1_000_000_000 + u64::from(f.nsec);
        if f.status & TP_STATUS_VLAN_VALID != 0 && data.len() >= 12 {
            let tpid = if f.status & TP_STATUS_VLAN_TPID_VALID != 0 && f.vlan_tpid != 0 {
                f.vlan_tpid
            } else {
                0x8100
            };
            let _ = batch.push_with::<()>(len.saturating_add(4), ts, |v| {
                v.extend_from_slice(&data[..12]);
                v.extend_from_slice(&tpid.to_be_bytes());
                v.extend_from_slice(&(f.vlan_tci as u16).to_be_bytes());
                v.extend_from_slice(&data[12..]);
                Ok(())
            });
        } else {
            batch.push(data, len, ts);
        }
        n += 1;
    }
    (n, invalid)
}

impl RxPort for RxRing {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus> {
        let mut got = 0;
        while got < max {
            let b = self.next_block;
            if self.block_status(b).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            fence(Ordering::Acquire);
            // SAFETY: the block is handed over to userspace (TP_STATUS_USER): the kernel does
            // not write it until its status is set back to TP_STATUS_KERNEL below, after this
            // slice is dropped. It lies inside the mapping.
            let block = unsafe {
                std::slice::from_raw_parts(self.map.add(b * self.block_size), self.block_size)
            };
            let (n, invalid) = read_block(block, batch);
            got += n;
            self.invalid += invalid;
            self.block_status(b)
                .store(TP_STATUS_KERNEL, Ordering::Release);
            self.next_block = (b + 1) % BLOCK_NR;
        }
        Ok(RecvStatus::Ok)
    }
}

/// A transmit socket on one interface.
pub struct TxSocket {
    fd: OwnedFd,
    pub name: String,
    /// The interface index the socket is bound to.
    pub ifindex: u32,
}

/// The drop reason of a send that failed with `errno`.
fn tx_drop(errno: Option<i32>) -> TxDrop {
    match errno {
        Some(libc::EAGAIN) | Some(libc::ENOBUFS) => TxDrop::QueueFull,
        Some(libc::ENETDOWN) | Some(libc::ENXIO) | Some(libc::ENODEV) => TxDrop::LinkDown,
        Some(libc::EMSGSIZE) => TxDrop::MtuExceeded,
        _ => TxDrop::TxError,
    }
}

impl TxSocket {
    pub fn open(interface: &str) -> io::Result<Self> {
        let idx = ifindex(interface)?;
        let fd = packet_socket()?;
        let raw = fd.as_raw_fd();
        sys::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &1 as &libc::c_int,
            "setsockopt(PACKET_QDISC_BYPASS)",
        )?;
        // Nothing is received on this socket: a receive buffer of the minimum keeps it cheap.
        sys::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &0 as &libc::c_int,
            "setsockopt(SO_RCVBUF)",
        )?;
        bind(raw, idx, false)?;
        Ok(TxSocket {
            fd,
            name: interface.to_owned(),
            ifindex: idx,
        })
    }
}

impl TxPort for TxSocket {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        // SAFETY: `f.data` is valid for reads of its length for the duration of the call.
        let r = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                f.data.as_ptr().cast(),
                f.data.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        Err(tx_drop(io::Error::last_os_error().raw_os_error()))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies queued on a [`TxBatch`] before a batch goes out.
const TX_BATCH: usize = 64;

/// A [`TxSocket`] that sends in batches: copies are queued ([`TxBatch::queue`]) and go out
/// with `sendmmsg` ([`TxBatch::flush`]); a copy the kernel refuses is recorded in `losses`.
pub struct TxBatch {
    socket: TxSocket,
    /// Queued copies, back to back, and each one's (start, length, output id).
    queued: Vec<u8>,
    copies: Vec<(usize, u32, u16)>,
    losses: std::sync::Arc<TxLosses>,
}

impl TxBatch {
    pub fn open(interface: &str, losses: std::sync::Arc<TxLosses>) -> io::Result<Self> {
        Ok(TxBatch {
            socket: TxSocket::open(interface)?,
            queued: Vec::with_capacity(TX_BATCH * FRAME_SIZE),
            copies: Vec::with_capacity(TX_BATCH),
            losses,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.socket.ifindex
    }

    /// Queues a copy of `data` for output `owner` ([`TxLosses::id`]); it leaves at the next
    /// [`TxBatch::flush`], which this calls itself when the batch is full.
    pub fn queue(&mut self, data: &[u8], owner: u16) {
        if self.copies.len() == TX_BATCH {
            self.flush();
        }
        self.copies
            .push((self.queued.len(), data.len() as u32, owner));
        self.queued.extend_from_slice(data);
    }

    /// Sends the queued copies, with as few `sendmmsg` calls as the kernel allows: each call
    /// sends messages until one is refused; that one is recorded as lost, with its reason, and
    /// the next call starts after it.
    pub fn flush(&mut self) {
        let mut iov: Vec<libc::iovec> = self
            .copies
            .iter()
            .map(|&(start, len, _)| libc::iovec {
                iov_base: self.queued[start..].as_ptr() as *mut libc::c_void,
                iov_len: len as usize,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid value (no name, no
                // control data), and the fields used are set below.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut i = 0;
        let mut interrupted = 0;
        while i < msgs.len() {
            // SAFETY: `msgs[i..]` are valid mmsghdr structures whose iovecs point into
            // `self.queued`, which is neither moved nor changed until they are dropped.
            let r = unsafe {
                libc::sendmmsg(
                    self.socket.fd.as_raw_fd(),
                    msgs[i..].as_mut_ptr(),
                    (msgs.len() - i) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                i += r as usize;
                continue;
            }
            let errno = io::Error::last_os_error().raw_os_error();
            if errno == Some(libc::EINTR) && interrupted < 3 {
                interrupted += 1;
                continue;
            }
            let (_, len, owner) = self.copies[i];
            self.losses.add(owner, tx_drop(errno), 1, u64::from(len));
            i += 1;
        }
        drop(msgs);
        self.queued.clear();
        self.copies.clear();
    }
}

/// Copies are queued and go out at [`TxPort::flush`] (or when the batch is full); a copy the
/// kernel refuses then is recorded under its [`TxFrame::owner`].
impl TxPort for TxBatch {
    fn send(&mut self, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        self.queue(frame.data, frame.owner);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        TxBatch::flush(self);
        Ok(())
    }
}

impl Drop for TxBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns the readable ones.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32, ready: &mut Vec<usize>) -> io::Result<()> {
    ready.clear();
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(e);
    }
    ready.extend(
        pfds.iter()
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, _)| i),
    );
    Ok(())
}

/// An `ifreq` naming `interface`, and a socket to issue interface ioctls on: a Unix datagram
/// socket (the kernel passes interface ioctls of any socket to the device layer). Not a packet
/// socket: closing one waits for an RCU grace period, 8 to 16 ms here, and a reload makes a
/// dozen of these calls while its rings fill.
fn ifreq(interface: &str) -> io::Result<(OwnedFd, libc::ifreq)> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = sys::check(
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_UNIX)",
    )?;
    // SAFETY: `raw` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all-zero is valid (and leaves the name NUL-terminated).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    Ok((fd, ifr))
}

/// The MTU of `interface` (SIOCGIFMTU).
pub fn mtu(interface: &str) -> io::Result<u32> {
    let (fd, mut ifr) = ifreq(interface)?;
    // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name; SIOCGIFMTU writes ifru_mtu.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) };
    sys::check(r, "ioctl(SIOCGIFMTU)")?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

/// Whether `interface` is administratively up and has a carrier (IFF_UP, IFF_RUNNING).
pub fn link_state(interface: &str) -> io::Result<(bool, bool)> {
    let (fd, mut ifr) = ifreq(interface)?;
    // SAFETY: `ifr` holds a NUL-terminated name; SIOCGIFFLAGS fills ifru_flags.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    sys::check(r, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok((
        flags & libc::IFF_UP as libc::c_short != 0,
        flags & libc::IFF_RUNNING as libc::c_short != 0,
    ))
}

/// Brings `interface` up if it is down (SIOCGIFFLAGS / SIOCSIFFLAGS); returns whether it was down.
pub fn set_up(interface: &str) -> io::Result<bool> {
    let (fd, mut ifr) = ifreq(interface)?;
    // SAFETY: `ifr` holds a NUL-terminated name; SIOCGIFFLAGS fills ifru_flags.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    sys::check(r, "ioctl(SIOCGIFFLAGS)")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(false);
    }
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above, setting the flags member.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr) };
    sys::check(r, "ioctl(SIOCSIFFLAGS)")?;
    Ok(true)
}

/// ethtool commands (linux/ethtool.h): get / set GRO, GSO, and the flags word (for LRO).
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;
/// Receive VLAN offload: the NIC strips the outer tag into metadata (vmxnet3, virtio-net and
/// most physical NICs do by default). An XDP program would then see tagged frames as untagged.
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool(interface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let (fd, mut ifr) = ifreq(interface)?;
    let mut v = EthtoolValue { cmd, data };
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: `ifr` names the interface and points at `v`, a live ethtool_value, for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    sys::check(r, "ioctl(SIOCETHTOOL)")?;
    Ok(v.data)
}

/// ETHTOOL_GDRVINFO and the start of `struct ethtool_drvinfo` (the rest is read into `rest`).
const ETHTOOL_GDRVINFO: u32 = 0x03;

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    rest: [u8; 160],
}

/// The name of `interface`'s driver ("veth", "vmxnet3", "virtio_net", ...).
pub fn driver(interface: &str) -> io::Result<String> {
    let (fd, mut ifr) = ifreq(interface)?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    ifr.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: `ifr` names the interface and points at `info`, a live buffer the size of
    // struct ethtool_drvinfo (196 bytes), for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    sys::check(r, "ioctl(SIOCETHTOOL GDRVINFO)")?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Offload settings changed on an interface, to put back when vxspan lets it go.
#[derive(Debug)]
pub struct Offloads {
    interface: String,
    /// (set command, previous value) for each setting changed.
    changed: Vec<(u32, u32)>,
}

impl Offloads {
    /// Turns off GRO, LRO, GSO and receive VLAN offload on an input, so frames are forwarded as
    /// they were on the wire instead of merged into super-frames, and XDP sees their tags. Settings the driver does not support are left
    /// alone; the ones changed are restored when the returned value is dropped.
    pub fn disable(interface: &str) -> Offloads {
        let mut changed = Vec::new();
        for (get, set) in [(ETHTOOL_GGRO, ETHTOOL_SGRO), (ETHTOOL_GGSO, ETHTOOL_SGSO)] {
            if let Ok(1) = ethtool(interface, get, 0) {
                if ethtool(interface, set, 0).is_ok() {
                    changed.push((set, 1));
                }
            }
        }
        if let Ok(flags) = ethtool(interface, ETHTOOL_GFLAGS, 0) {
            // Both off in one call where the driver allows it, else LRO alone.
            for off in [ETH_FLAG_LRO | ETH_FLAG_RXVLAN, ETH_FLAG_LRO] {
                let new = flags & !off;
                if new == flags {
                    continue;
                }
                if ethtool(interface, ETHTOOL_SFLAGS, new).is_ok() {
                    changed.push((ETHTOOL_SFLAGS, flags));
                    break;
                }
            }
        }
        Offloads {
            interface: interface.to_owned(),
            changed,
        }
    }

    /// The interface whose settings these are.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// What is restored on drop, as (ethtool set command, previous value) pairs: handed to the
    /// next image of the process on a restart in place, which restores them at its end.
    pub fn saved(&self) -> &[(u32, u32)] {
        &self.changed
    }

    /// The settings an earlier image of this process changed on `interface` and handed over:
    /// restored on drop like one's own. Commands other than the ones [`Offloads::disable`]
    /// issues are left out.
    pub fn handed_over(interface: &str, saved: &[(u32, u32)]) -> Offloads {
        Offloads {
            interface: interface.to_owned(),
            changed: saved
                .iter()
                .copied()
                .filter(|(c, _)| matches!(*c, ETHTOOL_SGRO | ETHTOOL_SGSO | ETHTOOL_SFLAGS))
                .collect(),
        }
    }

    /// The settings that were changed ("gro", "gso", "lro", "rx-vlan-offload").
    pub fn changed(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (c, old) in &self.changed {
            match *c {
                ETHTOOL_SGRO => names.push("gro"),
                ETHTOOL_SGSO => names.push("gso"),
                _ => {
                    let now = ethtool(&self.interface, ETHTOOL_GFLAGS, 0).unwrap_or(*old);
                    if old & ETH_FLAG_LRO != 0 && now & ETH_FLAG_LRO == 0 {
                        names.push("lro");
                    }
                    if old & ETH_FLAG_RXVLAN != 0 && now & ETH_FLAG_RXVLAN == 0 {
                        names.push("rx-vlan-offload");
                    }
                }
            }
        }
        names
    }
}

impl Drop for Offloads {
    fn drop(&mut self) {
        for (set, old) in self.changed.iter().rev() {
            let _ = ethtool(&self.interface, *set, *old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use block::forge::Block;

    /// A block as the kernel lays it out, with two frames, the second with an out-of-band tag.
    #[test]
    fn reads_a_block_and_restores_tags() {
        let mut b = Block::new(4096, 2, 48);
        let plain: Vec<u8> = (0..60).collect();
        b.frame(48, 256, 64, &plain, 60);
        b.frame(304, 0, 64, &plain, 60);
        b.u32(304 + 20, 1 | TP_STATUS_VLAN_VALID);
        b.u32(304 + 32, 0x200a);
        let mut batch = Batch::default();
        assert_eq!(read_block(&b.0, &mut batch), (2, 0));
        let f: Vec<_> = batch.iter().collect();
        assert_eq!(f[0].data, &plain[..]);
        assert_eq!(f[0].ts, 7_000_000_009);
        assert_eq!(&f[1].data[..12], &plain[..12]);
        assert_eq!(&f[1].data[12..16], &[0x81, 0x00, 0x20, 0x0a]);
        assert_eq!(&f[1].data[16..], &plain[12..]);
        assert_eq!(f[1].wire_len, 64);
    }

    /// Forged blocks through the reader the ring uses: what is refused is counted, what is
    /// valid around it is still read.
    #[test]
    fn forged_blocks_are_counted_and_never_read() {
        let frames = |b: &mut Block| {
            b.frame(48, 112, 52, &[1; 60], 60);
            b.frame(160, 112, 52, &[2; 60], 60);
            b.frame(272, 0, 52, &[3; 60], 60);
        };
        let read = |b: &Block| {
            let mut batch = Batch::default();
            let r = read_block(&b.0, &mut batch);
            let firsts: Vec<u8> = batch.iter().map(|f| f.data[0]).collect();
            (r, firsts)
        };
        let mut b = Block::new(4096, 3, 48);
        frames(&mut b);
        assert_eq!(read(&b), ((3, 0), vec![1, 2, 3]));
        // offset_to_first_pkt past the block.
        let mut x = Block::new(4096, 3, 8192);
        frames(&mut x);
        assert_eq!(read(&x), ((0, 1), vec![]));
        // num_pkts huge.
        let mut x = Block::new(4096, u32::MAX, 48);
        frames(&mut x);
        assert_eq!(read(&x), ((0, 1), vec![]));
        // tp_next_offset 0 with frames left.
        let mut x = Block::new(4096, 3, 48);
        frames(&mut x);
        x.u32(160, 0);
        assert_eq!(read(&x), ((2, 1), vec![1, 2]));
        // tp_next_offset out of the block.
        x.u32(160, 0xffff_fff8);
        assert_eq!(read(&x), ((2, 1), vec![1, 2]));
        // tp_mac + tp_snaplen past the block, on the last frame.
        let mut x = Block::new(4096, 3, 48);
        frames(&mut x);
        x.u16(272 + 24, 4090);
        assert_eq!(read(&x), ((2, 1), vec![1, 2]));
        // ... and on a middle one, past its slot.
        let mut x = Block::new(4096, 3, 48);
        frames(&mut x);
        x.u16(160 + 24, 4000);
        assert_eq!(read(&x), ((2, 1), vec![1, 3]));
        // A wire length that would overflow with the restored tag.
        let mut x = Block::new(4096, 1, 48);
        x.frame(48, 0, 52, &[1; 60], u32::MAX);
        x.u32(48 + 20, 1 | TP_STATUS_VLAN_VALID);
        assert_eq!(read(&x), ((1, 0), vec![1]));
    }

    #[test]
    fn ring_blocks_are_powers_of_two_within_bounds() {
        let k = 1024;
        for (asked, got) in [
            (256 * k, 256 * k),
            (128 * k, 128 * k),
            (256 * k / 3, 64 * k),
            (32 * k, 64 * k),
            (0, 64 * k),
            (4096 * k, 256 * k),
        ] {
            assert_eq!(ring_block_size(asked), got, "{asked}");
        }
    }

    #[test]
    fn garbage_blocks_never_panic() {
        let mut block = vec![0xffu8; 1024];
        let mut batch = Batch::default();
        assert_eq!(read_block(&block, &mut batch), (0, 1));
        block[12..16].copy_from_slice(&1000u32.to_ne_bytes());
        block[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(read_block(&block, &mut batch), (0, 1));
        assert!(batch.is_empty());
    }
}
