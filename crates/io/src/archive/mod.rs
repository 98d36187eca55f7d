//! The pcap archive output: pcapng files with one interface description block per vxspan
//! input (its name, and what it reads and strips), nanosecond timestamps, rotation by size and by
//! packet time, and a retention count.
//!
//! # Files are never overwritten
//!
//! Every file is created with `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC` and mode 0640 (less
//! the umask; directories the pattern needs are created 0750): an existing file, or a symlink
//! (even a dangling one), at a name is never opened, truncated or followed. When the name a
//! rotation would produce is taken (two files started in the same second of a time-named
//! pattern, a restart into the same directory, a file vxspan did not create), the writer takes
//! the next free name, deterministically: a pattern with `%N` moves on to the next number, one
//! without gets a `.1`, `.2`, … suffix before the extension (`archive/name.rs`). At the first file
//! in a directory the writer lists it, and `%N` continues after the highest number of the file
//! names there that match the pattern (only `%N` in the file name is read back this way; with
//! `%N` in a directory part, taken names are still skipped one by one).
//!
//! # Retention
//!
//! `keep` counts and removes, oldest first: the files this writer created in this run, and the
//! regular files found at the first file in a directory whose names match the pattern
//! *exactly* (the width and range of every field, `%N` without leading zeros, the `.K` suffix;
//! the files of an earlier run), which count as older than any file of this run and are ordered
//! among themselves by the time, number and suffix in their names. Nothing else is ever
//! removed: not a name of another shape, not a symlink, not a file of this run that was
//! replaced (its device and inode are checked first). Two archives must not use patterns that
//! match each other's names. Each removal is queued as a [`Removed`] (path, and the packets this
//! run wrote to it; `None` for a file of an earlier run) for [`ArchiveWriter::take_removed`],
//! and summed in [`ArchiveStats`], so the caller can log it and report the packets still on
//! disk as `tx_packets - removed_packets`.
//!
//! # Write errors (a full disk)
//!
//! Records go through a 1 MiB buffer, and each record goes into it whole or not at all: when it
//! does not fit, the buffer is written out first, and if that fails the frame is refused with
//! [`TxDrop::TxError`] (the engine counts it as a tx drop; [`ArchiveStats::failed_packets`]
//! too). Frames accepted into the buffer stay there, in order, until a write succeeds. Those
//! still unwritten when their file is closed (at rotation, [`ArchiveWriter::close`] or drop)
//! with the write failing are lost: they are counted in [`ArchiveStats::lost_packets`] and,
//! when the writer was given a [`TxLosses`] ([`ArchiveWriter::with_losses`]), recorded there as
//! `tx_error`, so the report moves them from the output's tx to its tx drops. The buffer is then
//! discarded, never written later, so the file holds whole records up to the failure.
//!
//! # Flushing (readable after SIGKILL)
//!
//! The buffer is written out: right after a file is created (so even an empty file is a valid
//! pcapng), whenever the next record does not fit (at most 1 MiB is ever buffered), at
//! rotation and [`ArchiveWriter::close`], on [`TxPort::flush`] (which `vxspan run` calls every
//! second), and by [`ArchiveWriter::send`] when [`FLUSH_INTERVAL`] (1 s, wall clock) has passed
//! since the last write-out. The buffer only ever holds whole records, so a SIGKILLed vxspan
//! leaves files that end at a record boundary (tshark and capinfos read them), having lost at
//! most the last second, or MiB, of frames. There is no `fsync`: this is about the process
//! dying, not the machine.
//!
//! # API for the daemon
//!
//! - `ArchiveWriter::new(cfg: Archive, interfaces: Vec<(String, String)>) -> ArchiveWriter`
//! - `ArchiveWriter::with_losses(self, losses: Arc<TxLosses>, id: u16) -> ArchiveWriter`: where
//!   lost frames are recorded (`id` from [`TxLosses::id`] of the output's name).
//! - `TxPort::send(&mut self, TxFrame<'_>) -> Result<(), TxDrop>`, `TxPort::flush(&mut self) ->
//!   io::Result<()>` (an error leaves the frames buffered for the next attempt).
//! - `ArchiveWriter::close(&mut self) -> io::Result<()>`: writes out and closes the current file
//!   (counting what could not be written as lost); the next frame starts a new file.
//! - `ArchiveWriter::stats(&self) -> ArchiveStats`: cumulative counts of this run.
//! - `ArchiveWriter::take_removed(&mut self) -> Vec<Removed>`: the files `keep` removed since
//!   the last call (the last [`REMOVED_QUEUE`] of them).
//! - `ArchiveWriter::written(&self) -> impl Iterator<Item = &ArchiveFile>`: this run's files
//!   still on disk, oldest first, each with its packet count; `files()` gives just their paths.
//! - `last_error: Option<String>`: the last error, for the log.

mod name;
#[cfg(test)]
mod tests;

pub use name::file_name;
use name::{Key, Pattern};

use crate::pcap::{create_new, Writer, MAX_RECORD};
use crate::{TxLosses, TxPort};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vxspan_core::config::Archive;
use vxspan_core::{TxDrop, TxFrame};

/// The longest buffered data waits for a write-out while frames arrive.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Removals kept for [`ArchiveWriter::take_removed`] (older ones are only counted).
pub const REMOVED_QUEUE: usize = 4096;
const BUFFER: usize = 1 << 20;
/// Taken names tried before giving up on a file.
const MAX_TRIES: u64 = 100_000;

/// Creates `dir` and its parents as needed, mode 0750 (less the umask).
fn make_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

/// A file this writer created in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: PathBuf,
    /// Frames written to it (accepted and not lost; the current file's include those still in
    /// the buffer).
    pub packets: u64,
    /// Their bytes (as counted by the engine: each frame's length).
    pub bytes: u64,
    /// Device and inode, so that a file put in its place is never removed.
    id: (u64, u64),
}

/// A file removed by `keep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: PathBuf,
    /// The frames this run wrote to it; `None` for a file of an earlier run.
    pub packets: Option<u64>,
}

/// What an archive did in this run. The frames of this run on disk (or about to be, from the
/// buffer) are `packets - lost_packets - removed_packets`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub files_created: u64,
    /// Frames accepted by `send` (what the engine counts as tx), and their bytes.
    pub packets: u64,
    pub bytes: u64,
    /// Frames refused by `send` with [`TxDrop::TxError`] (already counted by the engine).
    pub failed_packets: u64,
    pub failed_bytes: u64,
    /// Frames accepted but never written (their file was closed while writing failed).
    pub lost_packets: u64,
    pub lost_bytes: u64,
    /// Frames accepted and waiting in the buffer now.
    pub buffered_packets: u64,
    /// Files removed by `keep` (of this run and of earlier ones).
    pub files_removed: u64,
    /// The frames of this run in those files, and their bytes.
    pub removed_packets: u64,
    pub removed_bytes: u64,
}

/// The archive's file, counting the bytes the kernel took.
struct Counted {
    file: File,
    written: u64,
    /// Bytes after which writes fail with ENOSPC: a full disk, for tests (`u64::MAX` otherwise).
    limit: u64,
}

impl Write for Counted {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.written);
        if room == 0 && !b.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = self
            .file
            .write(&b[..b.len().min(room.try_into().unwrap_or(usize::MAX))])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

struct Current {
    w: Writer<BufWriter<Counted>>,
    /// Record bytes written, for `rotate_bytes`.
    bytes: u64,
    first_ts: u64,
    /// The records that may still be (partly) in the buffer: where each ends in the file, and
    /// its frame's length.
    pending: VecDeque<(u64, u64)>,
    flushed: Instant,
}

impl Current {
    /// Where the data handed to the buffer ends in the file.
    fn end(&self) -> u64 {
        let b = self.w.get_ref();
        b.get_ref().written + b.buffer().len() as u64
    }

    /// Writes the buffer out; the records now wholly in the file are no longer pending.
    fn flush(&mut self) -> io::Result<()> {
        let r = self.w.flush();
        let durable = self.w.get_ref().get_ref().written;
        while self.pending.front().is_some_and(|&(end, _)| end <= durable) {
            self.pending.pop_front();
        }
        self.flushed = Instant::now();
        r
    }
}

/// A rotating pcapng archive.
pub struct ArchiveWriter {
    cfg: Archive,
    pattern: Pattern,
    interfaces: Vec<(String, String)>,
    cur: Option<Current>,
    /// This run's files still on disk, oldest first (the last is the current one).
    files: VecDeque<ArchiveFile>,
    /// Files of earlier runs that `keep` may remove, oldest first.
    earlier: BTreeSet<(Key, PathBuf)>,
    /// Directories listed (once each) for earlier files and `%N`.
    scanned: HashSet<PathBuf>,
    seq: u64,
    /// The last name without suffix and the suffix it got (patterns without `%N`), so files
    /// started in the same second do not try every taken suffix again.
    suffix: Option<(PathBuf, u64)>,
    removed: VecDeque<Removed>,
    stats: ArchiveStats,
    losses: Option<(Arc<TxLosses>, u16)>,
    flush_every: Duration,
    /// See [`Counted::limit`].
    file_limit: u64,
    /// The last error, for the log. Not every error costs a frame (a failed write-out leaves
    /// the frames buffered, a file `keep` could not remove stays): what was dropped is in
    /// [`ArchiveWriter::stats`].
    pub last_error: Option<String>,
}

impl ArchiveWriter {
    /// `interfaces`: (name, description) of each vxspan input, in input order.
    pub fn new(cfg: Archive, interfaces: Vec<(String, String)>) -> Self {
        ArchiveWriter {
            pattern: Pattern::new(&cfg.path),
            cfg,
            interfaces,
            cur: None,
            files: VecDeque::new(),
            earlier: BTreeSet::new(),
            scanned: HashSet::new(),
            seq: 0,
            suffix: None,
            removed: VecDeque::new(),
            stats: ArchiveStats::default(),
            losses: None,
            flush_every: FLUSH_INTERVAL,
            file_limit: u64::MAX,
            last_error: None,
        }
    }

    /// Records frames that were accepted but could not be written in `losses`, under `id`
    /// ([`TxLosses::id`] of the output's name), as [`TxDrop::TxError`].
    pub fn with_losses(mut self, losses: Arc<TxLosses>, id: u16) -> Self {
        self.losses = Some((losses, id));
        self
    }

    /// The files written so far that are still kept, oldest first.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.files.iter().map(|f| &f.path)
    }

    /// This run's files still on disk, oldest first, with their packet counts.
    pub fn written(&self) -> impl Iterator<Item = &ArchiveFile> {
        self.files.iter()
    }

    pub fn stats(&self) -> ArchiveStats {
        ArchiveStats {
            buffered_packets: self.cur.as_ref().map_or(0, |c| c.pending.len() as u64),
            ..self.stats
        }
    }

    /// The files `keep` removed since the last call, in order.
    pub fn take_removed(&mut self) -> Vec<Removed> {
        self.removed.drain(..).collect()
    }

    /// Writes out and closes the current file; frames that cannot be written are counted as
    /// lost. The next frame starts a new file.
    pub fn close(&mut self) -> io::Result<()> {
        let Some(mut c) = self.cur.take() else {
            return Ok(());
        };
        let r = c.flush();
        if r.is_err() && !c.pending.is_empty() {
            let n = c.pending.len() as u64;
            let bytes = c.pending.iter().map(|&(_, len)| len).sum();
            self.stats.lost_packets += n;
            self.stats.lost_bytes += bytes;
            if let Some(f) = self.files.back_mut() {
                f.packets = f.packets.saturating_sub(n);
                f.bytes = f.bytes.saturating_sub(bytes);
            }
            if let Some((losses, id)) = &self.losses {
                losses.add(*id, TxDrop::TxError, n, bytes);
            }
        }
        // What could not be written is dropped here, never written after a later record.
        let _ = c.w.into_inner().into_parts();
        r
    }

    /// Lists `dir` (once per run) for the files of earlier runs and the highest `%N`.
    fn scan(&mut self, dir: &Path) -> io::Result<()> {
        if !self.scanned.insert(dir.to_path_buf()) {
            return Ok(());
        }
        let listed = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        for entry in std::fs::read_dir(listed)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| self.pattern.matches(n)) else {
                continue;
            };
            if self.pattern.n_in_name {
                self.seq = self.seq.max(key.n.saturating_add(1));
            }
            if self.cfg.keep.is_some() && entry.file_type()?.is_file() {
                self.earlier.insert((key, dir.join(name)));
            }
        }
        Ok(())
    }

    /// Creates the next file at a free name.
    fn create(&mut self, ts: u64) -> io::Result<(PathBuf, File)> {
        let base = self.pattern.expand(ts, self.seq, 0);
        let mut suffix = match &self.suffix {
            Some((b, last)) if !self.pattern.numbered && *b == base => last + 1,
            _ => 0,
        };
        for _ in 0..MAX_TRIES {
            let path = self.pattern.expand(ts, self.seq, suffix);
            // (`%N` in a directory part: each number has its own directory)
            make_dir(path.parent().unwrap_or(Path::new("")))?;
            match create_new(&path) {
                Ok(f) => {
                    self.seq += 1;
                    if !self.pattern.numbered {
                        self.suffix = Some((base, suffix));
                    }
                    return Ok((path, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.pattern.numbered {
                        self.seq += 1;
                    } else {
                        suffix += 1;
                    }
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{}: {MAX_TRIES} names taken, no free one", base.display()),
        ))
    }

    fn open(&mut self, ts: u64) -> io::Result<()> {
        let first = self.pattern.expand(ts, self.seq, 0);
        let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
        make_dir(&dir)?;
        // Without the listing, numbers and earlier files are not known, but taken names are
        // still skipped one by one: nothing is overwritten.
        if let Err(e) = self.scan(&dir) {
            self.last_error = Some(format!("{}: {e}", dir.display()));
        }
        let (path, file) = self.create(ts)?;
        let m = file.metadata()?;
        self.stats.files_created += 1;
        self.files.push_back(ArchiveFile {
            path,
            packets: 0,
            bytes: 0,
            id: (m.dev(), m.ino()),
        });
        self.trim();
        let sink = Counted {
            file,
            written: 0,
            limit: self.file_limit,
        };
        let w = Writer::pcapng_with_interfaces(
            BufWriter::with_capacity(BUFFER, sink),
            &self.interfaces,
        )?;
        let mut c = Current {
            w,
            bytes: 0,
            first_ts: ts,
            pending: VecDeque::new(),
            flushed: Instant::now(),
        };
        // The header at once: a file that gets no frame before a SIGKILL is still a capture.
        // If it cannot be written it waits in the buffer like any record.
        if let Err(e) = c.flush() {
            self.last_error = Some(e.to_string());
        }
        self.cur = Some(c);
        Ok(())
    }

    /// Removes the oldest files beyond `keep` (never the current one).
    fn trim(&mut self) {
        let Some(keep) = self.cfg.keep else {
            return;
        };
        let keep = (keep as usize).max(1);
        while self.earlier.len() + self.files.len() > keep {
            let (path, packets, bytes, id) = match self.earlier.pop_first() {
                Some((_, path)) => (path, None, 0, None),
                None => match self.files.pop_front() {
                    Some(f) => (f.path, Some(f.packets), f.bytes, Some(f.id)),
                    None => return,
                },
            };
            // Still the file it was: this run's by device and inode, an earlier one regular.
            match std::fs::symlink_metadata(&path) {
                Ok(m) if id.map_or(m.file_type().is_file(), |id| id == (m.dev(), m.ino())) => {}
                Ok(_) => {
                    self.last_error = Some(format!(
                        "{}: not removed, it is no longer the archive's file",
                        path.display()
                    ));
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.last_error = Some(format!("{}: {e}", path.display()));
                    continue;
                }
            }
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    self.last_error = Some(format!("{}: not removed: {e}", path.display()));
                    continue;
                }
            }
            self.stats.files_removed += 1;
            self.stats.removed_packets += packets.unwrap_or(0);
            self.stats.removed_bytes += bytes;
            if self.removed.len() == REMOVED_QUEUE {
                self.removed.pop_front();
            }
            self.removed.push_back(Removed { path, packets });
        }
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
            // A file that cannot be written out is closed all the same (its unwritten frames
            // are counted as lost); the frame goes to the next one.
            if let Err(e) = self.close() {
                self.last_error = Some(e.to_string());
            }
            self.open(f.ts)?;
        }
        let c = self.cur.as_mut().expect("opened above");
        // An enhanced packet block: 28 bytes of header, the data padded to 4, 4 of trailer.
        let need = 35 + f.data.len().min(MAX_RECORD as usize);
        let b = c.w.get_ref();
        if b.capacity() - b.buffer().len() < need {
            c.flush()?;
        }
        // The record fits in the buffer: it goes in whole, and writing it cannot fail.
        c.w.write_on(f.input as u32, f.data, f.wire_len, f.ts)?;
        let len = f.data.len() as u64;
        let end = c.end();
        c.pending.push_back((end, len));
        c.bytes += 32 + f.data.len().div_ceil(4) as u64 * 4;
        self.stats.packets += 1;
        self.stats.bytes += len;
        if let Some(file) = self.files.back_mut() {
            file.packets += 1;
            file.bytes += len;
        }
        if c.flushed.elapsed() >= self.flush_every {
            // The frame is in the buffer either way; a failed write is tried again later.
            if let Err(e) = c.flush() {
                self.last_error = Some(e.to_string());
            }
        }
        Ok(())
    }
}

impl TxPort for ArchiveWriter {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.write(&f).map_err(|e| {
            self.stats.failed_packets += 1;
            self.stats.failed_bytes += f.data.len() as u64;
            self.last_error = Some(e.to_string());
            TxDrop::TxError
        })
    }

    /// Writes the buffer out; on an error the frames stay buffered for the next attempt.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.cur {
            Some(c) => c.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
