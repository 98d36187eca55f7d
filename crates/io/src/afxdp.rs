//! AF_XDP receive sockets, one per RX queue of an input, on xdpilone (DESIGN.md section 3): a
//! UMEM of 1,024 frames of 2 KiB (2 MiB, the size of an AF_PACKET ring), its fill and
//! completion rings, and an RX ring. The XDP program of vxspan-xdp steers the frames of the userspace tier
//! into these sockets through its XSK map; frames are copied out of the UMEM into a [`Batch`]
//! and the frames go straight back to the fill ring.
//!
//! Copy mode everywhere (every driver, veth included); zero-copy is tried first where the driver
//! supports it. A frame must fit in one UMEM frame: inputs whose MTU does not (jumbo frames) are
//! refused with a message, and the userspace tier reads them through AF_PACKET instead.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;

use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::{Batch, RecvStatus, RxPort};

/// Frames in the UMEM, and entries in each ring.
const FRAMES: u32 = 1024;
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
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is not used after drop (the
        // UMEM and rings that point into it are dropped first: see the field order of XskRx).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
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
    /// The descriptors of the batch being read (kept to reuse its allocation).
    descs: Vec<xdpilone::xdp::XdpDesc>,
}

// SAFETY: the raw pointers inside (the UMEM area, the mapped rings) are owned by this value and
// only used through &mut self; moving it to another thread moves that ownership with it.
unsafe impl Send for XskRx {}

/// The number of RX queues of `interface` (from sysfs; 1 if it cannot be read).
pub fn rx_queues(interface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
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
        let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
        let config = UmemConfig {
            fill_size: FRAMES,
            complete_size: FRAMES,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is a page-aligned mapping of FRAMES * FRAME_SIZE bytes that outlives
        // the UMEM (it is dropped after it, by field order).
        let umem =
            unsafe { Umem::new(config, area.slice()) }.map_err(|e| errno("AF_XDP UMEM", e))?;
        let mut info = IfInfo::invalid();
        let name =
            CString::new(interface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        info.from_name(&name)
            .map_err(|e| errno(&format!("AF_XDP: interface {interface}"), e))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(|e| errno("AF_XDP socket", e))?;
        let mut fq = umem
            .fq_cq(&sock)
            .map_err(|e| errno("AF_XDP fill / completion rings", e))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: None,
                    bind_flags: if zero_copy {
                        SocketConfig::XDP_BIND_ZEROCOPY
                    } else {
                        SocketConfig::XDP_BIND_COPY
                    },
                },
            )
            .map_err(|e| errno("AF_XDP RX ring", e))?;
        let rx = user.map_rx().map_err(|e| errno("AF_XDP RX ring mmap", e))?;
        umem.bind(&user).map_err(|e| {
            errno(
                &format!(
                    "AF_XDP bind to {interface} queue {queue} ({} mode)",
                    if zero_copy { "zero-copy" } else { "copy" }
                ),
                e,
            )
        })?;
        // Every frame starts in the fill ring.
        {
            let mut w = fq.fill(FRAMES);
            w.insert((0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)));
            w.commit();
        }
        Ok(XskRx {
            rx,
            fq,
            user,
            _umem: umem,
            area,
            name: interface.to_owned(),
            queue,
            zero_copy,
            received: 0,
            descs: Vec::with_capacity(FRAMES as usize),
        })
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

    fn frame_bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.area.len {
            return None;
        }
        // SAFETY: [start, end) lies inside the UMEM mapping (checked above), and the kernel
        // handed this frame to userspace through the RX ring: it does not write it until the
        // frame is put back in the fill ring, after this slice is dropped.
        Some(unsafe { std::slice::from_raw_parts(self.area.ptr.as_ptr().add(start), len as usize) })
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
            if let Some(f) = self.frame_bytes(d.addr, d.len) {
                batch.push(f, d.len, ts);
                self.received += 1;
            }
        }
        if !descs.is_empty() {
            // Each frame goes back to the fill ring, at its frame boundary.
            let mut w = self.fq.fill(descs.len() as u32);
            w.insert(
                descs
                    .iter()
                    .map(|d| d.addr - d.addr % u64::from(FRAME_SIZE)),
            );
            w.commit();
        }
        self.descs = descs;
        Ok(RecvStatus::Ok)
    }
}
