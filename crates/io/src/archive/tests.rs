use super::*;
use crate::pcap::Reader;
use std::os::unix::fs::PermissionsExt;

/// 2023-11-14T22:13:20Z
const TS: u64 = 1_700_000_000_000_000_000;
const STAMP: &str = "20231114T221320";

/// A scratch directory, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!(
            "vxspan-archive-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn pattern(&self, name: &str) -> String {
        self.join(name).to_str().unwrap().to_owned()
    }

    /// File names in the directory, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg(path: String, rotate_bytes: Option<u64>, keep: Option<u32>) -> Archive {
    Archive {
        path,
        rotate_bytes,
        rotate_ns: None,
        keep,
    }
}

fn writer(cfg: Archive) -> ArchiveWriter {
    ArchiveWriter::new(cfg, vec![("in".into(), "a test input".into())])
}

/// Sends `n` frames of `len` bytes, 1 ns apart from `TS` (all in one second).
fn send(w: &mut ArchiveWriter, n: usize, len: usize) -> Vec<Result<(), TxDrop>> {
    let data = vec![0x5a; len];
    (0..n)
        .map(|i| {
            w.send(TxFrame {
                data: &data,
                wire_len: len as u32,
                ts: TS + i as u64,
                input: 0,
                tunnel: None,
                owner: u16::MAX,
            })
        })
        .collect()
}

/// Records in a capture, read with the crate's reader; `Err` if it does not end cleanly.
fn records(path: &Path) -> Result<u64, (u64, io::Error)> {
    let mut r = Reader::open(path).map_err(|e| (0, e))?;
    let (mut n, mut buf) = (0, Vec::new());
    loop {
        match r.next_into(&mut buf) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Ok(n),
            Err(e) => return Err((n, e)),
        }
        buf.clear();
    }
}

fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?;
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .unwrap_or(0o022)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn header_len() -> u64 {
    let w = Writer::pcapng_with_interfaces(Vec::new(), &[("in".into(), "a test input".into())]);
    w.unwrap().into_inner().len() as u64
}

#[test]
fn a_symlink_at_the_name_is_never_followed() {
    let d = Dir::new("symlink");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let ghost = d.join("ghost");
    let base = d.join(&format!("t-{STAMP}.pcapng"));
    let next = d.join(&format!("t-{STAMP}.1.pcapng"));
    std::os::unix::fs::symlink(&victim, &base).unwrap();
    std::os::unix::fs::symlink(&ghost, &next).unwrap();

    let mut w = writer(cfg(d.pattern("t-%Y%m%dT%H%M%S.pcapng"), None, None));
    assert!(send(&mut w, 3, 60).iter().all(Result::is_ok));
    w.close().unwrap();

    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!ghost.exists(), "a dangling symlink was followed");
    for (link, target) in [(&base, &victim), (&next, &ghost)] {
        assert!(std::fs::symlink_metadata(link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(&std::fs::read_link(link).unwrap(), target);
    }
    let file = d.join(&format!("t-{STAMP}.2.pcapng"));
    assert_eq!(w.files().collect::<Vec<_>>(), [&file]);
    assert!(std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(records(&file).unwrap(), 3);

    // `-o` / `--out-dir` files: refused, the target untouched.
    for link in [&base, &next] {
        let e = Writer::create(link)
            .err()
            .expect("a symlink must not be opened");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!ghost.exists());
}

#[test]
fn an_existing_file_is_left_alone() {
    let d = Dir::new("existing");
    let base = d.join(&format!("t-{STAMP}.pcapng"));
    std::fs::write(&base, "not vxspan's").unwrap();
    let mut w = writer(cfg(d.pattern("t-%Y%m%dT%H%M%S.pcapng"), None, None));
    assert!(send(&mut w, 2, 60).iter().all(Result::is_ok));
    w.close().unwrap();
    assert_eq!(std::fs::read(&base).unwrap(), b"not vxspan's");
    let file = d.join(&format!("t-{STAMP}.1.pcapng"));
    assert_eq!(records(&file).unwrap(), 2);

    // A numbered name taken after the directory was listed: the next number.
    let mut w = writer(cfg(d.pattern("a-%N.pcapng"), Some(100), None));
    assert!(send(&mut w, 1, 60).iter().all(Result::is_ok));
    std::fs::write(d.join("a-1.pcapng"), "planted").unwrap();
    assert!(send(&mut w, 3, 60).iter().all(Result::is_ok));
    w.close().unwrap();
    assert_eq!(std::fs::read(d.join("a-1.pcapng")).unwrap(), b"planted");
    assert_eq!(records(&d.join("a-0.pcapng")).unwrap(), 2);
    assert_eq!(records(&d.join("a-2.pcapng")).unwrap(), 2);

    let e = Writer::create(&base)
        .err()
        .expect("an existing file must not be opened");
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&base).unwrap(), b"not vxspan's");
}

/// A time-named pattern rotating by size within one second: every file a new name, every
/// frame in exactly one file.
#[test]
fn rotation_in_the_same_second_never_overwrites() {
    let d = Dir::new("same-second");
    let mut w = writer(cfg(d.pattern("t-%Y%m%dT%H%M%S.pcapng"), Some(100), None));
    assert!(send(&mut w, 25, 60).iter().all(Result::is_ok));
    w.close().unwrap();
    let files: Vec<ArchiveFile> = w.written().cloned().collect();
    assert_eq!(files.len(), 13);
    assert_eq!(w.stats().files_created, 13);
    assert_eq!(d.names().len(), 13);
    assert_eq!(files[0].path, d.join(&format!("t-{STAMP}.pcapng")));
    assert_eq!(files[12].path, d.join(&format!("t-{STAMP}.12.pcapng")));
    let mut total = 0;
    for f in &files {
        let n = records(&f.path).unwrap();
        assert_eq!(n, f.packets, "{}", f.path.display());
        total += n;
    }
    assert_eq!(total, 25);
    assert_eq!(w.stats().packets, 25);
}

#[test]
fn a_restart_continues_the_numbering() {
    let d = Dir::new("restart");
    let c = cfg(d.pattern("a-%N.pcapng"), Some(100), None);
    let mut w = writer(c.clone());
    assert!(send(&mut w, 6, 60).iter().all(Result::is_ok));
    drop(w);
    assert_eq!(d.names(), ["a-0.pcapng", "a-1.pcapng", "a-2.pcapng"]);
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(d.join(&format!("a-{i}.pcapng"))).unwrap())
        .collect();

    let mut w = writer(c.clone());
    assert!(send(&mut w, 4, 60).iter().all(Result::is_ok));
    drop(w);
    assert_eq!(
        d.names(),
        [
            "a-0.pcapng",
            "a-1.pcapng",
            "a-2.pcapng",
            "a-3.pcapng",
            "a-4.pcapng"
        ]
    );
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&std::fs::read(d.join(&format!("a-{i}.pcapng"))).unwrap(), b);
    }
    for name in d.names() {
        assert_eq!(records(&d.join(&name)).unwrap(), 2, "{name}");
    }

    // The oldest removed meanwhile (by hand, or by `keep`): the free numbers are not reused,
    // numbering goes on after the highest.
    for i in 0..4 {
        std::fs::remove_file(d.join(&format!("a-{i}.pcapng"))).unwrap();
    }
    let mut w = writer(c);
    assert!(send(&mut w, 1, 60).iter().all(Result::is_ok));
    drop(w);
    assert_eq!(d.names(), ["a-4.pcapng", "a-5.pcapng"]);
}

#[test]
fn files_are_created_0640() {
    let d = Dir::new("mode");
    let mut w = writer(cfg(d.pattern("sub/a-%N.pcapng"), None, None));
    assert!(send(&mut w, 1, 60).iter().all(Result::is_ok));
    w.close().unwrap();
    let mask = umask();
    assert_eq!(mode(&d.join("sub/a-0.pcapng")), 0o640 & !mask);
    assert_eq!(mode(&d.join("sub")), 0o750 & !mask);
    let out = d.join("out.pcap");
    Writer::create(&out).unwrap().flush().unwrap();
    assert_eq!(mode(&out), 0o640 & !mask);
}

#[test]
fn keep_removes_only_files_of_the_pattern() {
    let d = Dir::new("keep");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // Two files of an earlier run, and names of other shapes.
    for name in ["a-0.pcapng", "a-3.pcapng"] {
        std::fs::write(d.join(name), "earlier run").unwrap();
    }
    let others = ["a-01.pcapng", "a-x.pcapng", "b-5.pcapng", "a-7.pcapng.bak"];
    for name in others {
        std::fs::write(d.join(name), "someone else's").unwrap();
    }
    // Matching names that are not regular files: skipped by the numbering, never removed.
    std::os::unix::fs::symlink(&victim, d.join("a-8.pcapng")).unwrap();
    std::fs::create_dir(d.join("a-9.pcapng")).unwrap();

    let mut w = writer(cfg(d.pattern("a-%N.pcapng"), Some(100), Some(3)));
    assert!(send(&mut w, 10, 60).iter().all(Result::is_ok));
    w.close().unwrap();

    let removed = w.take_removed();
    let expected = [
        ("a-0.pcapng", None),
        ("a-3.pcapng", None),
        ("a-10.pcapng", Some(2)),
        ("a-11.pcapng", Some(2)),
    ];
    assert_eq!(
        removed,
        expected.map(|(n, packets)| Removed {
            path: d.join(n),
            packets
        })
    );
    assert!(w.take_removed().is_empty());
    let s = w.stats();
    assert_eq!(
        (s.files_removed, s.removed_packets, s.removed_bytes),
        (4, 4, 240)
    );
    let kept: Vec<String> = ["a-12.pcapng", "a-13.pcapng", "a-14.pcapng"]
        .map(String::from)
        .into();
    assert_eq!(
        w.files().cloned().collect::<Vec<_>>(),
        kept.iter().map(|n| d.join(n)).collect::<Vec<_>>()
    );
    let mut on_disk = 0;
    for n in &kept {
        on_disk += records(&d.join(n)).unwrap();
    }
    assert_eq!(on_disk, s.packets - s.removed_packets);
    for name in others {
        assert_eq!(std::fs::read(d.join(name)).unwrap(), b"someone else's");
    }
    assert!(std::fs::symlink_metadata(d.join("a-8.pcapng"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(d.join("a-9.pcapng").is_dir());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // A file of this run put back by someone else is no longer the archive's to remove.
    let d = Dir::new("keep-replaced");
    let mut w = writer(cfg(d.pattern("a-%N.pcapng"), Some(100), Some(1)));
    assert!(send(&mut w, 2, 60).iter().all(Result::is_ok));
    // (renamed over it, so that the new file cannot reuse the old inode number)
    std::fs::write(d.join("new"), "replaced").unwrap();
    std::fs::rename(d.join("new"), d.join("a-0.pcapng")).unwrap();
    assert!(send(&mut w, 1, 60).iter().all(Result::is_ok));
    assert_eq!(std::fs::read(d.join("a-0.pcapng")).unwrap(), b"replaced");
    assert!(w.take_removed().is_empty());
    assert!(w.last_error.as_deref().unwrap().contains("not removed"));
}

/// What a SIGKILL leaves (the writer is forgotten: nothing runs after the last frame): whole
/// records only, readable to the end.
#[test]
fn files_are_readable_without_a_close() {
    let d = Dir::new("sigkill");
    // A new file has its header on disk at once.
    let mut w = writer(cfg(d.pattern("a-%N.pcapng"), None, None));
    assert!(send(&mut w, 1, 60).iter().all(Result::is_ok));
    std::mem::forget(w);
    assert_eq!(records(&d.join("a-0.pcapng")).unwrap(), 0);

    // More than the buffer: written out whenever the next record does not fit.
    let mut w = writer(cfg(d.pattern("b-%N.pcapng"), None, None));
    assert!(send(&mut w, 1500, 1000).iter().all(Result::is_ok));
    let buffered = w.stats().buffered_packets;
    assert!(buffered > 0 && buffered < 1100, "{buffered}");
    std::mem::forget(w);
    assert_eq!(records(&d.join("b-0.pcapng")).unwrap(), 1500 - buffered);

    // After the flush interval, every frame.
    let mut w = writer(cfg(d.pattern("c-%N.pcapng"), None, None));
    w.flush_every = Duration::ZERO;
    assert!(send(&mut w, 5, 60).iter().all(Result::is_ok));
    assert_eq!(w.stats().buffered_packets, 0);
    std::mem::forget(w);
    assert_eq!(records(&d.join("c-0.pcapng")).unwrap(), 5);
}

/// ENOSPC: frames that cannot even be buffered are refused (tx_error); frames buffered and
/// never written are counted as lost, in the stats and in `TxLosses`.
#[test]
fn a_full_disk_is_counted() {
    let d = Dir::new("enospc");
    let losses = Arc::new(TxLosses::default());
    let id = losses.id("archive");
    let mut w = writer(cfg(d.pattern("a-%N.pcapng"), None, None)).with_losses(losses.clone(), id);
    w.flush_every = Duration::ZERO;
    // Room for the header and two and a half records of 60 bytes (92 bytes each).
    w.file_limit = header_len() + 2 * 92 + 46;
    assert!(send(&mut w, 5, 60).iter().all(Result::is_ok));
    assert_eq!(w.stats().buffered_packets, 3);
    assert!(TxPort::flush(&mut w).is_err());
    assert!(w.close().is_err());
    let s = w.stats();
    assert_eq!((s.packets, s.lost_packets, s.lost_bytes), (5, 3, 180));
    assert_eq!(s.buffered_packets, 0);
    assert_eq!(losses.of("archive").packets[TxDrop::TxError as usize], 3);
    assert_eq!(losses.of("archive").bytes[TxDrop::TxError as usize], 180);
    assert_eq!(w.written().next().unwrap().packets, 2);
    // Two whole records, then the part of the third that fitted.
    let (n, e) = records(&d.join("a-0.pcapng")).unwrap_err();
    assert_eq!((n, e.kind()), (2, io::ErrorKind::UnexpectedEof));

    // No room at all: the buffer fills, then frames are refused.
    w.file_limit = header_len();
    let sent = send(&mut w, 1100, 1000);
    let refused = sent.iter().filter(|r| **r == Err(TxDrop::TxError)).count() as u64;
    let accepted = sent.iter().filter(|r| r.is_ok()).count() as u64;
    assert!(refused > 0 && accepted > 1000, "{accepted} {refused}");
    assert!(w.close().is_err());
    let s = w.stats();
    assert_eq!(s.packets, 5 + accepted);
    assert_eq!(s.failed_packets, refused);
    assert_eq!(s.failed_bytes, refused * 1000);
    assert_eq!(s.lost_packets, 3 + accepted);
    assert_eq!(
        losses.of("archive").packets[TxDrop::TxError as usize],
        3 + accepted
    );
    assert_eq!(records(&d.join("a-1.pcapng")).unwrap(), 0);
    assert!(w.last_error.is_some());

    // The disk has room again before the file is closed: nothing is lost, and the record cut
    // short is completed in place.
    {
        let mut w = writer(cfg(d.pattern("b-%N.pcapng"), None, None));
        w.flush_every = Duration::ZERO;
        w.file_limit = header_len() + 2 * 92 + 46;
        assert!(send(&mut w, 5, 60).iter().all(Result::is_ok));
        assert_eq!(w.stats().buffered_packets, 3);
        w.cur.as_mut().unwrap().w.get_mut().get_mut().limit = u64::MAX;
        TxPort::flush(&mut w).unwrap();
        w.close().unwrap();
        assert_eq!((w.stats().lost_packets, w.stats().buffered_packets), (0, 0));
        assert_eq!(records(&d.join("b-0.pcapng")).unwrap(), 5);
    }
}
