//! pcap and pcapng files: read both, write either.
//!
//! Written here rather than taken from pcap-file / pcap-parser because the replay path needs to
//! hand out frames without copying them (classic pcap files are memory-mapped and each frame is
//! a slice of the mapping; other files are read into one reused buffer), to honour each pcapng
//! interface's `if_tsresol` and `if_tsoffset` (timestamps are kept in nanoseconds, never rounded
//! to microseconds), and to treat every malformed length as an error rather than a panic or a
//! huge allocation. The formats: pcap (tcpdump's savefile, both byte orders, microsecond and
//! nanosecond magic) and pcapng (draft-ietf-opsawg-pcapng: SHB, IDB, EPB, SPB, OPB; other blocks
//! are skipped; several sections are supported).

#![allow(unsafe_code)]

use crate::{FrameSource, TxPort};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use vxspan_core::{RxFrame, TxDrop, TxFrame};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// The largest record accepted (libpcap's MAXIMUM_SNAPLEN).
pub const MAX_RECORD: u32 = 262_144;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One interface of a pcapng section (or the single implicit one of a pcap file).
#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u16,
    snaplen: u32,
    /// Units per second of the timestamps.
    units_per_sec: u64,
    /// Seconds added to every timestamp.
    offset_sec: i64,
}

impl Iface {
    fn ts_ns(&self, units: u64) -> u64 {
        let ns = u128::from(units) * 1_000_000_000 / u128::from(self.units_per_sec.max(1));
        let ns = ns as i128 + i128::from(self.offset_sec) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// A frame's metadata, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub ts: u64,
    pub caplen: u32,
    pub wire_len: u32,
    pub linktype: u16,
}

/// Reads pcap or pcapng, detected from the first four bytes.
pub struct Reader<R: Read> {
    r: R,
    format: Format,
    big_endian: bool,
    ifaces: Vec<Iface>,
    scratch: Vec<u8>,
    records: u64,
}

impl Reader<BufReader<File>> {
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = File::open(path)?;
        Reader::new(BufReader::with_capacity(1 << 20, f))
    }
}

fn read_u32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn read_u16(b: &[u8], big: bool) -> u16 {
    if big {
        u16::from_be_bytes([b[0], b[1]])
    } else {
        u16::from_le_bytes([b[0], b[1]])
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of file before the first byte.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "capture file ends inside a record",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<R: Read> Reader<R> {
    pub fn new(mut r: R) -> io::Result<Self> {
        let mut magic = [0u8; 4];
        if !read_full(&mut r, &mut magic)? {
            return Err(bad("empty file: not a pcap or pcapng capture"));
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        let mut me = Reader {
            r,
            format: Format::Pcap,
            big_endian: false,
            ifaces: Vec::new(),
            scratch: Vec::new(),
            records: 0,
        };
        if le == PCAP_MAGIC_US || le == PCAP_MAGIC_NS || be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS
        {
            me.big_endian = be == PCAP_MAGIC_US || be == PCAP_MAGIC_NS;
            let ns = le == PCAP_MAGIC_NS || be == PCAP_MAGIC_NS;
            let mut h = [0u8; 20];
            if !read_full(&mut me.r, &mut h)? {
                return Err(bad("pcap file header is truncated"));
            }
            let snaplen = read_u32(&h[12..], me.big_endian);
            // The link type is the low 16 bits; the upper bits carry FCS information.
            let linktype = (read_u32(&h[16..], me.big_endian) & 0xffff) as u16;
            me.ifaces.push(Iface {
                linktype,
                snaplen,
                units_per_sec: if ns { 1_000_000_000 } else { 1_000_000 },
                offset_sec: 0,
            });
            Ok(me)
        } else if le == PCAPNG_SHB {
            me.format = Format::PcapNg;
            me.read_shb_rest()?;
            Ok(me)
        } else {
            Err(bad(format!(
                "not a pcap or pcapng capture (magic {le:#010x})"
            )))
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The link type of the first interface (pcap: the file's), if known yet.
    pub fn linktype(&self) -> Option<u16> {
        self.ifaces.first().map(|i| i.linktype)
    }

    /// After the 4-byte block type of an SHB: length, byte-order magic, the rest of the block.
    fn read_shb_rest(&mut self) -> io::Result<()> {
        let mut h = [0u8; 8];
        if !read_full(&mut self.r, &mut h)? {
            return Err(bad("pcapng section header is truncated"));
        }
        self.section_header([h[0], h[1], h[2], h[3]], [h[4], h[5], h[6], h[7]])
    }

    /// Starts a section: its byte order comes from the byte-order magic (and may differ from
    /// the previous section's); the rest of the header is skipped and interfaces are reset.
    fn section_header(&mut self, len: [u8; 4], bom: [u8; 4]) -> io::Result<()> {
        self.big_endian = match u32::from_le_bytes(bom) {
            PCAPNG_BOM => false,
            x if x.swap_bytes() == PCAPNG_BOM => true,
            _ => return Err(bad("pcapng section header has a bad byte-order magic")),
        };
        let total = read_u32(&len, self.big_endian);
        if total < 28 || !total.is_multiple_of(4) || total > 16 << 20 {
            return Err(bad(format!(
                "pcapng section header has a bad length {total}"
            )));
        }
        self.skip(u64::from(total) - 12)?;
        self.ifaces.clear();
        Ok(())
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "capture file ends inside a block",
            ));
        }
        Ok(())
    }

    /// Reads the next frame, appending its bytes to `out`. `Ok(None)` at the end of the file.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Record>> {
        match self.format {
            Format::Pcap => self.next_pcap(out),
            Format::PcapNg => self.next_pcapng(out),
        }
    }

    fn next_pcap(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Record>> {
        let mut h = [0u8; 16];
        if !read_full(&mut self.r, &mut h)? {
            return Ok(None);
        }
        let big = self.big_endian;
        let (sec, frac, caplen, wire_len) = (
            read_u32(&h, big),
            read_u32(&h[4..], big),
            read_u32(&h[8..], big),
            read_u32(&h[12..], big),
        );
        if caplen > MAX_RECORD {
            return Err(bad(format!(
                "record {} claims {caplen} bytes (more than {MAX_RECORD})",
                self.records + 1
            )));
        }
        let iface = self.ifaces[0];
        let start = out.len();
        out.resize(start + caplen as usize, 0);
        if !read_full(&mut self.r, &mut out[start..])? && caplen > 0 {
            out.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "capture file ends inside a record",
            ));
        }
        self.records += 1;
        let ts = u64::from(sec) * 1_000_000_000 + iface.ts_ns(u64::from(frac));
        Ok(Some(Record {
            ts,
            caplen,
            wire_len: wire_len.max(caplen),
            linktype: iface.linktype,
        }))
    }

    fn next_pcapng(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Record>> {
        loop {
            let mut h = [0u8; 8];
            if !read_full(&mut self.r, &mut h)? {
                return Ok(None);
            }
            let btype = read_u32(&h, self.big_endian);
            if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PCAPNG_SHB {
                let mut bom = [0u8; 4];
                if !read_full(&mut self.r, &mut bom)? {
                    return Err(bad("pcapng section header is truncated"));
                }
                self.section_header([h[4], h[5], h[6], h[7]], bom)?;
                continue;
            }
            let total = read_u32(&h[4..], self.big_endian);
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD + (1 << 16) {
                return Err(bad(format!(
                    "pcapng block of type {btype:#x} has a bad length {total}"
                )));
            }
            let body_len = (total - 12) as usize;
            let mut body = std::mem::take(&mut self.scratch);
            body.clear();
            body.resize(body_len + 4, 0);
            if !read_full(&mut self.r, &mut body)? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "capture file ends inside a block",
                ));
            }
            let result = self.block(btype, &body[..body_len], out);
            self.scratch = body;
            match result? {
                Some(rec) => {
                    self.records += 1;
                    return Ok(Some(rec));
                }
                None => continue,
            }
        }
    }

    /// Interprets one block body; returns a record for packet blocks.
    fn block(&mut self, btype: u32, b: &[u8], out: &mut Vec<u8>) -> io::Result<Option<Record>> {
        let big = self.big_endian;
        match btype {
            1 => {
                if b.len() < 8 {
                    return Err(bad("pcapng interface description block is too short"));
                }
                let mut iface = Iface {
                    linktype: read_u16(b, big),
                    snaplen: read_u32(&b[4..], big),
                    units_per_sec: 1_000_000,
                    offset_sec: 0,
                };
                let mut opts = &b[8..];
                while opts.len() >= 4 {
                    let code = read_u16(opts, big);
                    let len = usize::from(read_u16(&opts[2..], big));
                    let Some(val) = opts.get(4..4 + len) else {
                        break;
                    };
                    match (code, val) {
                        (0, _) => break,
                        (9, [r]) => {
                            iface.units_per_sec = if r & 0x80 == 0 {
                                10u64
                                    .checked_pow(u32::from(*r))
                                    .ok_or_else(|| bad("if_tsresol out of range"))?
                            } else {
                                1u64.checked_shl(u32::from(r & 0x7f))
                                    .filter(|_| r & 0x7f < 64)
                                    .ok_or_else(|| bad("if_tsresol out of range"))?
                            };
                        }
                        (14, v) if v.len() == 8 => {
                            let x = if big {
                                i64::from_be_bytes(v.try_into().expect("8 bytes"))
                            } else {
                                i64::from_le_bytes(v.try_into().expect("8 bytes"))
                            };
                            iface.offset_sec = x;
                        }
                        _ => {}
                    }
                    opts = opts.get(4 + len.div_ceil(4) * 4..).unwrap_or(&[]);
                }
                self.ifaces.push(iface);
                Ok(None)
            }
            6 | 2 => {
                // EPB: iface u32, ts hi, ts lo, caplen, origlen. OPB: iface u16, drops u16, ts hi, ts lo, caplen, len.
                if b.len() < 20 {
                    return Err(bad("pcapng packet block is too short"));
                }
                let iface_id = if btype == 6 {
                    read_u32(b, big)
                } else {
                    u32::from(read_u16(b, big))
                };
                let (hi, lo, caplen, wire_len) = (
                    read_u32(&b[4..], big),
                    read_u32(&b[8..], big),
                    read_u32(&b[12..], big),
                    read_u32(&b[16..], big),
                );
                let iface = *self.ifaces.get(iface_id as usize).ok_or_else(|| {
                    bad(format!(
                        "packet block names interface {iface_id}, which is not described"
                    ))
                })?;
                let data = b.get(20..20 + caplen as usize).ok_or_else(|| {
                    bad(format!(
                        "packet block claims {caplen} bytes but holds {}",
                        b.len() - 20
                    ))
                })?;
                out.extend_from_slice(data);
                Ok(Some(Record {
                    ts: iface.ts_ns((u64::from(hi) << 32) | u64::from(lo)),
                    caplen,
                    wire_len: wire_len.max(caplen),
                    linktype: iface.linktype,
                }))
            }
            3 => {
                let iface = *self
                    .ifaces
                    .first()
                    .ok_or_else(|| bad("simple packet block before any interface description"))?;
                if b.len() < 4 {
                    return Err(bad("pcapng simple packet block is too short"));
                }
                let wire_len = read_u32(b, big);
                let caplen = wire_len
                    .min(if iface.snaplen == 0 {
                        u32::MAX
                    } else {
                        iface.snaplen
                    })
                    .min((b.len() - 4) as u32);
                out.extend_from_slice(&b[4..4 + caplen as usize]);
                Ok(Some(Record {
                    ts: 0,
                    caplen,
                    wire_len: wire_len.max(caplen),
                    linktype: iface.linktype,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// A read-only memory map of a whole capture file.
struct Mmap {
    ptr: *const u8,
    len: usize,
}

impl Mmap {
    fn map(file: &File) -> io::Result<Option<Mmap>> {
        use std::os::fd::AsRawFd;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a private read-only mapping of a regular file's current length; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Ok(None);
        }
        // SAFETY: advice on the mapping just created; failure is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Some(Mmap {
            ptr: ptr.cast(),
            len,
        }))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, and lives as long as `self`. vxspan never
        // writes to it; the file must not be truncated while it is replayed (as with any reader
        // of a memory-mapped file, the process would get SIGBUS).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `map`, once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Classic pcap mapped into memory, each frame a slice of the mapping: the replay fast path (no
/// copy of the file at all). pcapng files, and files that cannot be mapped, go through [`Reader`].
struct Chunked {
    map: Mmap,
    pos: usize,
    big_endian: bool,
    ns: bool,
    linktype: u16,
}

impl Chunked {
    /// Maps `path` if it is a classic pcap file.
    fn open(path: &Path) -> io::Result<Option<Chunked>> {
        let file = File::open(path)?;
        let Some(map) = Mmap::map(&file)? else {
            return Ok(None);
        };
        let Some(h) = map.bytes().get(..24) else {
            return Ok(None);
        };
        let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, ns) = match (le, be) {
            (PCAP_MAGIC_US, _) => (false, false),
            (PCAP_MAGIC_NS, _) => (false, true),
            (_, PCAP_MAGIC_US) => (true, false),
            (_, PCAP_MAGIC_NS) => (true, true),
            _ => return Ok(None),
        };
        let linktype = (read_u32(&h[20..], big_endian) & 0xffff) as u16;
        Ok(Some(Chunked {
            map,
            pos: 24,
            big_endian,
            ns,
            linktype,
        }))
    }

    fn buf(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The next record: its metadata and where its bytes are in the mapping.
    #[inline]
    fn next(&mut self) -> io::Result<Option<(Record, usize)>> {
        let buf = self.map.bytes();
        let Some(h) = buf.get(self.pos..self.pos + 16) else {
            if self.pos < buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "capture file ends inside a record",
                ));
            }
            return Ok(None);
        };
        let word = |i: usize| {
            let w = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if self.big_endian {
                u32::from_be_bytes(w)
            } else {
                u32::from_le_bytes(w)
            }
        };
        let (sec, frac, caplen, wire_len) = (word(0), word(4), word(8), word(12));
        if caplen > MAX_RECORD {
            return Err(bad(format!(
                "a record claims {caplen} bytes (more than {MAX_RECORD})"
            )));
        }
        let start = self.pos + 16;
        if start + caplen as usize > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "capture file ends inside a record",
            ));
        }
        self.pos = start + caplen as usize;
        let ts = u64::from(sec) * 1_000_000_000
            + if self.ns {
                u64::from(frac)
            } else {
                u64::from(frac) * 1000
            };
        Ok(Some((
            Record {
                ts,
                caplen,
                wire_len: wire_len.max(caplen),
                linktype: self.linktype,
            },
            start,
        )))
    }
}

// SAFETY: the mapping is read-only and owned by this value.
unsafe impl Send for Mmap {}

/// Link types a capture input accepts, and how their frames become Ethernet frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    /// LINKTYPE_RAW (101, and DLT_RAW's 12 / 14 on some systems), IPV4 (228), IPV6 (229): a
    /// synthetic Ethernet header is prepended (see `vxspan_wire::ethernet::synthesize_for_ip`).
    RawIp,
    /// LINKTYPE_LINUX_SLL (113): the 16-byte cooked header is replaced by an Ethernet header
    /// with the synthetic addresses and the protocol type it carries.
    LinuxSll,
}

fn link_of(linktype: u16) -> Option<Link> {
    match linktype {
        LINKTYPE_ETHERNET => Some(Link::Ethernet),
        12 | 14 | 101 | 228 | 229 => Some(Link::RawIp),
        113 => Some(Link::LinuxSll),
        _ => None,
    }
}

/// Appends `data` of link type `lt` to `out` as an Ethernet frame; returns its wire length.
/// A frame that cannot be converted is appended empty (the engine counts it as malformed).
fn to_ethernet(lt: u16, data: &[u8], wire_len: u32, out: &mut Vec<u8>) -> (u32, bool) {
    match link_of(lt) {
        Some(Link::Ethernet) => {
            out.extend_from_slice(data);
            (wire_len, true)
        }
        Some(Link::RawIp) => {
            if vxspan_core::wire::ethernet::synthesize_for_ip(data, out) {
                out.extend_from_slice(data);
            }
            (wire_len + 14, true)
        }
        Some(Link::LinuxSll) if data.len() >= 16 => {
            out.extend_from_slice(&vxspan_core::wire::ethernet::SYNTHETIC_DST.0);
            out.extend_from_slice(&vxspan_core::wire::ethernet::SYNTHETIC_SRC.0);
            out.extend_from_slice(&data[14..]);
            (wire_len - 2, true)
        }
        _ => (wire_len, false),
    }
}

enum Source {
    /// Classic pcap of Ethernet frames: frames are slices of the chunk.
    Chunked(Chunked),
    /// Anything else: frames are converted (or copied) into `scratch`.
    General(Reader<BufReader<File>>),
}

/// A capture file as an input: frames in file order, converted to Ethernet where their link
/// type allows it.
pub struct FileInput {
    src: Source,
    scratch: Vec<u8>,
    /// The current frame: in the chunk (`Some(start)`) or in `scratch` (`None`).
    cur: Option<usize>,
    rec: Record,
    /// Frames whose link type cannot be turned into Ethernet (passed on empty, so the engine
    /// counts them as malformed and the accounting stays exact).
    pub unsupported: u64,
}

impl FileInput {
    pub fn open(path: &Path) -> io::Result<Self> {
        let src = match Chunked::open(path)? {
            Some(c) if c.linktype == LINKTYPE_ETHERNET => Source::Chunked(c),
            _ => Source::General(Reader::open(path)?),
        };
        let lt = match &src {
            Source::Chunked(c) => Some(c.linktype),
            Source::General(r) => r.linktype(),
        };
        if let Some(lt) = lt {
            if link_of(lt).is_none() {
                return Err(bad(format!("unsupported link type {lt} (vxspan reads Ethernet, raw IP and Linux cooked captures)")));
            }
        }
        Ok(FileInput {
            src,
            scratch: Vec::new(),
            cur: None,
            rec: Record {
                ts: 0,
                caplen: 0,
                wire_len: 0,
                linktype: 0,
            },
            unsupported: 0,
        })
    }
}

impl FrameSource for FileInput {
    fn advance(&mut self) -> io::Result<bool> {
        match &mut self.src {
            Source::Chunked(c) => match c.next()? {
                Some((rec, start)) => {
                    self.rec = rec;
                    self.cur = Some(start);
                    Ok(true)
                }
                None => Ok(false),
            },
            Source::General(r) => {
                let mut raw = std::mem::take(&mut self.scratch);
                raw.clear();
                let Some(rec) = r.next_into(&mut raw)? else {
                    self.scratch = raw;
                    return Ok(false);
                };
                let mut out = Vec::with_capacity(raw.len() + 14);
                let (wire_len, ok) = to_ethernet(rec.linktype, &raw, rec.wire_len, &mut out);
                if !ok {
                    self.unsupported += 1;
                }
                self.scratch = out;
                self.rec = Record {
                    wire_len,
                    caplen: self.scratch.len() as u32,
                    ..rec
                };
                self.cur = None;
                Ok(true)
            }
        }
    }

    fn current(&self) -> RxFrame<'_> {
        let data = match (&self.src, self.cur) {
            (Source::Chunked(c), Some(start)) => &c.buf()[start..start + self.rec.caplen as usize],
            _ => &self.scratch[..],
        };
        RxFrame {
            data,
            wire_len: self.rec.wire_len,
            ts: self.rec.ts,
        }
    }
}

/// A section header block: little-endian, version 1.0, section length unknown.
fn shb() -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&PCAPNG_SHB.to_le_bytes());
    b.extend_from_slice(&28u32.to_le_bytes());
    b.extend_from_slice(&PCAPNG_BOM.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(-1i64).to_le_bytes());
    b.extend_from_slice(&28u32.to_le_bytes());
    b
}

/// An interface description block: Ethernet, nanosecond timestamps, optional name and
/// description options.
fn idb(name: Option<&str>, description: Option<&str>) -> Vec<u8> {
    let mut opts = Vec::new();
    let mut opt = |code: u16, val: &[u8]| {
        opts.extend_from_slice(&code.to_le_bytes());
        opts.extend_from_slice(&(val.len() as u16).to_le_bytes());
        opts.extend_from_slice(val);
        opts.resize(opts.len().div_ceil(4) * 4, 0);
    };
    if let Some(n) = name {
        opt(2, &n.as_bytes()[..n.len().min(1024)]);
    }
    if let Some(d) = description {
        opt(3, &d.as_bytes()[..d.len().min(1024)]);
    }
    opt(9, &[9]);
    opts.extend_from_slice(&[0, 0, 0, 0]);
    let total = (20 + opts.len()) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&MAX_RECORD.to_le_bytes());
    b.extend_from_slice(&opts);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// Writes frames to a pcap (nanosecond) or pcapng file.
pub struct Writer<W: Write> {
    w: W,
    format: Format,
    /// Interface description blocks written (pcapng).
    interfaces: u32,
}

impl Writer<BufWriter<File>> {
    /// Creates `path`; `.pcapng` files are written as pcapng, anything else as pcap.
    pub fn create(path: &Path) -> io::Result<Self> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcapng") => Format::PcapNg,
            _ => Format::Pcap,
        };
        Writer::new(
            BufWriter::with_capacity(1 << 20, File::create(path)?),
            format,
        )
    }
}

impl<W: Write> Writer<W> {
    pub fn new(mut w: W, format: Format) -> io::Result<Self> {
        match format {
            Format::Pcap => {
                let mut h = Vec::with_capacity(24);
                h.extend_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
                h.extend_from_slice(&2u16.to_le_bytes());
                h.extend_from_slice(&4u16.to_le_bytes());
                h.extend_from_slice(&0u32.to_le_bytes());
                h.extend_from_slice(&0u32.to_le_bytes());
                h.extend_from_slice(&MAX_RECORD.to_le_bytes());
                h.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
                w.write_all(&h)?;
            }
            Format::PcapNg => {
                // SHB: type, length 28, BOM, version 1.0, section length -1 (unknown), length.
                w.write_all(&shb())?;
                w.write_all(&idb(None, None))?;
                // (an anonymous Ethernet interface: see `pcapng_with_interfaces` for named ones)
            }
        }
        Ok(Writer {
            w,
            format,
            interfaces: 1,
        })
    }

    /// A pcapng writer with one interface description block per entry of `interfaces`
    /// (name, description); frames then name their interface with [`Writer::write_on`].
    pub fn pcapng_with_interfaces(mut w: W, interfaces: &[(String, String)]) -> io::Result<Self> {
        w.write_all(&shb())?;
        for (name, description) in interfaces {
            w.write_all(&idb(Some(name), Some(description)))?;
        }
        if interfaces.is_empty() {
            w.write_all(&idb(None, None))?;
        }
        Ok(Writer {
            w,
            format: Format::PcapNg,
            interfaces: interfaces.len().max(1) as u32,
        })
    }

    pub fn write(&mut self, data: &[u8], wire_len: u32, ts: u64) -> io::Result<()> {
        self.write_on(0, data, wire_len, ts)
    }

    /// Writes a frame on interface `iface` (pcapng; ignored for pcap).
    pub fn write_on(&mut self, iface: u32, data: &[u8], wire_len: u32, ts: u64) -> io::Result<()> {
        let caplen = data.len().min(MAX_RECORD as usize);
        let data = &data[..caplen];
        let wire_len = wire_len.max(caplen as u32);
        match self.format {
            Format::Pcap => {
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
                h[4..8].copy_from_slice(&((ts % 1_000_000_000) as u32).to_le_bytes());
                h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
                h[12..].copy_from_slice(&wire_len.to_le_bytes());
                self.w.write_all(&h)?;
                self.w.write_all(data)
            }
            Format::PcapNg => {
                let padded = caplen.div_ceil(4) * 4;
                let total = (32 + padded) as u32;
                let mut h = [0u8; 28];
                h[..4].copy_from_slice(&6u32.to_le_bytes());
                h[4..8].copy_from_slice(&total.to_le_bytes());
                h[8..12]
                    .copy_from_slice(&iface.min(self.interfaces.saturating_sub(1)).to_le_bytes());
                h[12..16].copy_from_slice(&((ts >> 32) as u32).to_le_bytes());
                h[16..20].copy_from_slice(&(ts as u32).to_le_bytes());
                h[20..24].copy_from_slice(&(caplen as u32).to_le_bytes());
                h[24..28].copy_from_slice(&wire_len.to_le_bytes());
                self.w.write_all(&h)?;
                self.w.write_all(data)?;
                self.w.write_all(&[0u8; 3][..padded - caplen])?;
                self.w.write_all(&total.to_le_bytes())
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

impl<W: Write> TxPort for Writer<W> {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.write(f.data, f.wire_len, f.ts)
            .map_err(|_| TxDrop::TxError)
    }

    fn flush(&mut self) -> io::Result<()> {
        Writer::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<(Vec<u8>, u32, u64)> {
        vec![
            (vec![1; 60], 60, 1_700_000_000_123_456_789),
            (vec![2; 14], 1514, 1_700_000_000_123_456_790),
            (vec![3; 9001], 9001, 1_700_000_001_000_000_001),
            (vec![], 0, 5),
        ]
    }

    fn round_trip(format: Format) {
        let mut w = Writer::new(Vec::new(), format).unwrap();
        for (d, wl, ts) in frames() {
            w.write(&d, wl, ts).unwrap();
        }
        let bytes = w.into_inner();
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.format(), format);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while let Some(rec) = r.next_into(&mut buf).unwrap() {
            got.push((buf.clone(), rec.wire_len, rec.ts));
            assert_eq!(rec.linktype, LINKTYPE_ETHERNET);
            buf.clear();
        }
        assert_eq!(got, frames());
    }

    #[test]
    fn pcap_round_trip() {
        round_trip(Format::Pcap);
    }

    #[test]
    fn pcapng_round_trip() {
        round_trip(Format::PcapNg);
    }

    #[test]
    fn microsecond_big_endian_pcap() {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_US.to_be_bytes());
        f.extend_from_slice(&[
            0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1,
        ]);
        f.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 3, 0xaa, 0xbb]);
        let mut r = Reader::new(&f[..]).unwrap();
        let mut buf = Vec::new();
        let rec = r.next_into(&mut buf).unwrap().unwrap();
        assert_eq!(
            rec,
            Record {
                ts: 10_000_007_000,
                caplen: 2,
                wire_len: 3,
                linktype: 1
            }
        );
        assert_eq!(buf, [0xaa, 0xbb]);
        assert!(r.next_into(&mut buf).unwrap().is_none());
    }

    /// A raw-IP capture (LINKTYPE_RAW) becomes Ethernet with the synthetic header; a packet that
    /// is not IP becomes an empty frame (counted as malformed by the engine).
    #[test]
    fn raw_ip_gets_a_synthetic_ethernet_header() {
        let mut f = Vec::new();
        f.extend_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
        f.extend_from_slice(&[
            2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
        ]);
        for pkt in [
            &[0x45u8, 0, 0, 20][..],
            &[0x60, 0, 0, 0][..],
            &[0x10, 1][..],
        ] {
            f.extend_from_slice(&[0, 0, 0, 0, 5, 0, 0, 0]);
            f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            f.extend_from_slice(pkt);
        }
        let path = std::env::temp_dir().join(format!("vxspan-rawip-{}.pcap", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let mut input = FileInput::open(&path).unwrap();
        let mut frames = Vec::new();
        while input.advance().unwrap() {
            let f = input.current();
            frames.push((f.data.to_vec(), f.wire_len, f.ts));
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            &frames[0].0[..6],
            &vxspan_core::wire::ethernet::SYNTHETIC_DST.0
        );
        assert_eq!(&frames[0].0[12..], &[0x08, 0x00, 0x45, 0, 0, 20]);
        assert_eq!(frames[0].1, 18);
        assert_eq!(&frames[1].0[12..14], &[0x86, 0xdd]);
        assert!(frames[2].0.is_empty());
        assert_eq!(frames[2].2, 5);
    }

    #[test]
    fn truncations_never_panic() {
        for format in [Format::Pcap, Format::PcapNg] {
            let mut w = Writer::new(Vec::new(), format).unwrap();
            for (d, wl, ts) in frames() {
                w.write(&d, wl, ts).unwrap();
            }
            let bytes = w.into_inner();
            for n in 0..bytes.len() {
                if let Ok(mut r) = Reader::new(&bytes[..n]) {
                    let mut buf = Vec::new();
                    while let Ok(Some(_)) = r.next_into(&mut buf) {}
                }
            }
        }
    }
}
