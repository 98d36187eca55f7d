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
//!
//! The module is split by direction: `read` (the [`Reader`] of both formats, and the
//! memory-mapped classic pcap fast path), `link` (link type conversion to Ethernet and the
//! [`FileInput`] replay source) and `write` (the [`Writer`], and the pcapng section header and
//! interface description blocks).

mod link;
mod read;
mod write;

pub use link::FileInput;
pub use read::Reader;
pub(crate) use write::create_new;
pub use write::Writer;

use std::io;

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
