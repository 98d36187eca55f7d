//! Reading pcap and pcapng: [`Reader`] for both, and `Chunked`, classic pcap mapped into memory.

#![allow(unsafe_code)]

use super::{
    bad, Format, Record, MAX_RECORD, PCAPNG_BOM, PCAPNG_SHB, PCAP_MAGIC_NS, PCAP_MAGIC_US,
};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

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
pub(super) struct Chunked {
    map: Mmap,
    pos: usize,
    big_endian: bool,
    ns: bool,
    pub(super) linktype: u16,
}

impl Chunked {
    /// Maps `path` if it is a classic pcap file.
    pub(super) fn open(path: &Path) -> io::Result<Option<Chunked>> {
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

    pub(super) fn buf(&self) -> &[u8] {
        self.map.bytes()
    }

    /// The next record: its metadata and where its bytes are in the mapping.
    #[inline]
    pub(super) fn next(&mut self) -> io::Result<Option<(Record, usize)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
