//! Link types a capture input accepts, their conversion to Ethernet, and [`FileInput`].

use super::read::{Chunked, Reader};
use super::{bad, Record, LINKTYPE_ETHERNET};
use crate::FrameSource;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use vxspan_core::RxFrame;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::PCAP_MAGIC_NS;

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
}
