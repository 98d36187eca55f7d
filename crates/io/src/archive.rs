//! The pcap archive output: pcapng files with one interface description block per vxspan
//! input (its name, and what it reads and strips), nanosecond timestamps, rotation by size and by
//! packet time, and a retention count.

use crate::pcap::Writer;
use crate::TxPort;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use vxspan_core::config::Archive;
use vxspan_core::{TxDrop, TxFrame};

/// Civil date and time (UTC) of `ns` nanoseconds since the Unix epoch (Howard Hinnant's
/// days-to-civil algorithm).
fn civil(ns: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// Expands `%Y %m %d %H %M %S` (from `ts`, UTC), `%N` (the file's sequence number) and `%%`.
pub fn file_name(pattern: &str, ts: u64, seq: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ts);
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &format!("{y:04}"),
            Some('m') => out += &format!("{mo:02}"),
            Some('d') => out += &format!("{d:02}"),
            Some('H') => out += &format!("{h:02}"),
            Some('M') => out += &format!("{mi:02}"),
            Some('S') => out += &format!("{s:02}"),
            Some('N') => out += &seq.to_string(),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

struct Current {
    w: Writer<BufWriter<File>>,
    bytes: u64,
    first_ts: u64,
}

/// A rotating pcapng archive.
pub struct ArchiveWriter {
    cfg: Archive,
    interfaces: Vec<(String, String)>,
    cur: Option<Current>,
    files: VecDeque<PathBuf>,
    seq: u64,
    /// The last error, for the log (the copy that hit it is counted as `tx_error`).
    pub last_error: Option<String>,
}

impl ArchiveWriter {
    /// `interfaces`: (name, description) of each vxspan input, in input order.
    pub fn new(cfg: Archive, interfaces: Vec<(String, String)>) -> Self {
        ArchiveWriter {
            cfg,
            interfaces,
            cur: None,
            files: VecDeque::new(),
            seq: 0,
            last_error: None,
        }
    }

    /// The files written so far that are still kept, oldest first.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.files.iter()
    }

    fn open(&mut self, ts: u64) -> io::Result<()> {
        if let Some(mut c) = self.cur.take() {
            c.w.flush()?;
        }
        let path = PathBuf::from(file_name(&self.cfg.path, ts, self.seq));
        self.seq += 1;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let w = Writer::pcapng_with_interfaces(f, &self.interfaces)?;
        self.files.retain(|p| *p != path);
        self.files.push_back(path);
        if let Some(keep) = self.cfg.keep {
            while self.files.len() > keep as usize {
                if let Some(old) = self.files.pop_front() {
                    let _ = std::fs::remove_file(old);
                }
            }
        }
        self.cur = Some(Current {
            w,
            bytes: 0,
            first_ts: ts,
        });
        Ok(())
    }

    fn write(&mut self, f: &TxFrame<'_>) -> io::Result<()> {
        let rotate = match &self.cur {
            None => true,
            Some(c) => {
                self.cfg.rotate_bytes.is_some_and(|b| c.bytes >= b)
                    || self
                        .cfg
                        .rotate_ns
                        .is_some_and(|t| f.ts >= c.first_ts.saturating_add(t))
            }
        };
        if rotate {
            self.open(f.ts)?;
        }
        let c = self.cur.as_mut().expect("opened above");
        c.w.write_on(f.input as u32, f.data, f.wire_len, f.ts)?;
        c.bytes += 32 + f.data.len().div_ceil(4) as u64 * 4;
        Ok(())
    }
}

impl TxPort for ArchiveWriter {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.write(&f).map_err(|e| {
            self.last_error = Some(e.to_string());
            TxDrop::TxError
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.cur {
            Some(c) => c.w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        // 2023-11-14T22:13:20Z
        assert_eq!(
            file_name("a-%Y%m%dT%H%M%S-%N.pcapng", 1_700_000_000_000_000_000, 3),
            "a-20231114T221320-3.pcapng"
        );
        assert_eq!(file_name("%%%Y", 0, 0), "%1970");
        assert_eq!(civil(951_782_400 * 1_000_000_000), (2000, 2, 29, 0, 0, 0));
    }
}
