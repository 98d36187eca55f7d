//! Writing pcap (nanosecond) and pcapng: [`Writer`], and the pcapng section header and
//! interface description blocks.

use super::{Format, LINKTYPE_ETHERNET, MAX_RECORD, PCAPNG_BOM, PCAPNG_SHB, PCAP_MAGIC_NS};
use crate::TxPort;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use vxspan_core::{TxDrop, TxFrame};

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

/// Creates a new file for writing captures, never touching an existing one: `O_CREAT | O_EXCL`
/// (an existing file, or a symlink even if dangling, fails with `AlreadyExists` and is left as
/// it is), `O_NOFOLLOW`, `O_CLOEXEC`, mode 0640 (less what the umask removes). Only the last
/// component is protected from symlinks: the directories on the way are the operator's.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o640)
        .open(path)
}

impl Writer<BufWriter<File>> {
    /// Creates `path`; `.pcapng` files are written as pcapng, anything else as pcap. The file
    /// must not exist yet (see `create_new`: an existing file or symlink at `path` is an
    /// `AlreadyExists` error and is left untouched); it is created with mode 0640.
    pub fn create(path: &Path) -> io::Result<Self> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcapng") => Format::PcapNg,
            _ => Format::Pcap,
        };
        Writer::new(BufWriter::with_capacity(1 << 20, create_new(path)?), format)
    }

    /// [`Writer::create`] for a file the user named on the command line (`replay -o`, `gen
    /// -w`): an existing regular file there is replaced (unlinked first, so another link to it
    /// keeps its bytes); a symlink or anything else that is not a regular file is refused.
    pub fn replace(path: &Path) -> io::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a regular file", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Writer::create(path)
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

    /// The underlying writer (the archive looks at its buffer).
    pub(crate) fn get_ref(&self) -> &W {
        &self.w
    }

    #[cfg(test)]
    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.w
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
    use crate::pcap::{Reader, LINKTYPE_ETHERNET};

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
