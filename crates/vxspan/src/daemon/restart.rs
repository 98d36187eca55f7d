//! `vxspan restart`: the daemon executes its binary again in the same process (the file it was
//! started from, which an upgrade may have replaced), and the kernel tier keeps forwarding
//! throughout.
//!
//! The old image stops its workers and closes its outputs as a stop does, but leaves the XDP
//! program attached: the inputs' bpf_links, the old object's counter maps and a record of what
//! the next image needs (the configuration text the running plan came from, the counters so far,
//! the reload and restart counts, the hash key drawn at start, the inputs' offload settings to
//! restore at the end) survive the `execve`. The record is JSON in a memfd whose
//! descriptor number is in `VXSPAN_HANDOVER`; every other descriptor is closed by the exec. The
//! new image loads the configuration file as at any start, points each handed-over link at its
//! own program (atomically: no frame meets an input without a program), reads the old program's
//! last counters through the old plan, and carries on from the old totals. The process keeps its
//! PID, so systemd sees a running service throughout; a SIGTERM still detaches everything.
//!
//! What the exec interrupts is the userspace tier (its rings and AF_XDP sockets are reopened by
//! the new image; frames it would have read meanwhile are not seen) and the control socket,
//! metrics and AgentX endpoints (bound again). Only a binary this build can start is executed: it
//! must be a regular executable file and answer `--version` first; otherwise the restart is
//! refused and nothing stops. A new image that cannot read the record starts afresh (its inputs
//! are detached for the moment it takes to attach them again).

use super::*;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

/// The environment variable naming the record's descriptor.
const ENV: &str = "VXSPAN_HANDOVER";
/// The record's format; a new image refuses any other.
const VERSION: u32 = 1;
/// The largest record read (the configuration text is at most 1 MiB, the counters are bounded).
const MAX_RECORD: u64 = 64 << 20;

/// The binary this process was started from and its arguments, as at start (`/proc/self/exe`
/// names a replaced binary "(deleted)").
static START: std::sync::OnceLock<(PathBuf, Vec<std::ffi::OsString>)> = std::sync::OnceLock::new();

/// Notes the binary and arguments to execute on a restart; called once, at start. The path is
/// the one the process was started by (argv[0] made absolute), not where its symbolic links led
/// then: an upgrade that points a link elsewhere (update-alternatives, versioned directories) is
/// followed; without a path in argv[0], the resolved executable.
pub(super) fn remember_start() {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    let exe = match argv0 {
        Some(p) if p.is_absolute() => Some(p),
        Some(p) if p.components().count() > 1 => std::env::current_dir().ok().map(|d| d.join(p)),
        _ => std::env::current_exe().ok(),
    };
    if let Some(exe) = exe {
        let _ = START.set((exe, std::env::args_os().skip(1).collect()));
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    version: u32,
    config_text: String,
    carried: Report,
    reloads: u64,
    restarts: u64,
    /// The hash key drawn at start, when the configuration names no key file.
    drawn_key: Option<[u8; vxspan_core::hashkey::KEY_LEN]>,
    /// Per input: the offload settings changed when vxspan took it, to restore at the end.
    offloads: Vec<(String, Vec<(u32, u32)>)>,
    kernel: Option<KernelRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KernelRecord {
    mode: String,
    /// (ifindex, descriptor of its bpf_link)
    links: Vec<(u32, RawFd)>,
    /// The counter maps' descriptors (groups, in_stats, outputs).
    counters: [RawFd; 3],
    /// Their layout ([`vxspan_xdp::loader::MAP_LAYOUT`]): another one is not read.
    layout: u32,
    n_inputs: usize,
    n_outputs: usize,
    /// The maps every object shares (name, descriptor) and their slots' owners: ERSPAN
    /// sequences and sampling counts continue in the successor.
    #[serde(default)]
    shared: Vec<(String, RawFd)>,
    #[serde(default)]
    tunnel_slots: Vec<Option<String>>,
    #[serde(default)]
    sample_slots: Vec<Option<String>>,
}

/// What the previous image of this process handed over.
#[derive(Debug)]
pub(super) struct Inherited {
    pub(super) config_text: String,
    pub(super) carried: Report,
    pub(super) reloads: u64,
    pub(super) restarts: u64,
    pub(super) drawn_key: Option<[u8; vxspan_core::hashkey::KEY_LEN]>,
    pub(super) offloads: Vec<afpacket::Offloads>,
    pub(super) kernel: Option<vxspan_xdp::loader::Handover>,
}

/// Takes a descriptor named by the record: it must be open, inherited (not close-on-exec: the
/// previous image cleared the flag on what it handed over, and nothing else in this process has
/// it), and what `kind` says (`/proc/self/fd` names it: `anon_inode:bpf_link`,
/// `anon_inode:bpf-map`, `/memfd:vxspan-handover`); it is marked close-on-exec again.
fn claim(fd: RawFd, kind: &str) -> Result<OwnedFd, String> {
    if fd <= 2 {
        return Err(format!("descriptor {fd} is not the record's to give"));
    }
    // SAFETY: fcntl on an integer descriptor reads nothing from memory; a closed one is EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return Err(format!("descriptor {fd} was not handed over"));
    }
    let name = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    if !name.to_string_lossy().starts_with(kind) {
        return Err(format!("descriptor {fd} is {}, not {kind}", name.display()));
    }
    // SAFETY: fcntl on an integer descriptor reads nothing from memory; a closed one is EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(format!(
            "descriptor {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this image by the
    // previous one for this use alone; nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The handover of the previous image, if this process was started by `vxspan restart`.
/// The variable is removed either way. A record that cannot be read is an error (the caller
/// starts afresh), and every descriptor the previous image left open for this one is closed
/// then: its links would otherwise keep the old program attached, out of anyone's reach.
pub(super) fn take() -> Option<Result<Inherited, String>> {
    let v = std::env::var(ENV).ok()?;
    std::env::remove_var(ENV);
    let r = read_record(&v);
    if r.is_err() {
        close_inherited();
    }
    Some(r)
}

/// Closes every descriptor above stderr that is not close-on-exec: at start, before this image
/// opened anything of its own without the flag, those are what the previous image handed over.
fn close_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: fcntl and close on integer descriptors; only inherited ones (no close-on-exec
        // flag) are closed, none of which this image uses.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::close(fd);
            }
        }
    }
}

fn read_record(v: &str) -> Result<Inherited, String> {
    let fd: RawFd = v
        .parse()
        .map_err(|_| format!("{ENV}={v:?} is not a descriptor number"))?;
    let mut file = std::fs::File::from(claim(fd, "/memfd:vxspan-handover")?);
    let mut text = String::new();
    (&mut file)
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the handover record: {e}"))?;
    let r: Record = serde_json::from_str(&text).map_err(|e| format!("the handover record: {e}"))?;
    if r.version != VERSION {
        return Err(format!(
            "handover record version {} (this build reads {VERSION})",
            r.version
        ));
    }
    let kernel = match r.kernel {
        None => None,
        Some(k) => {
            let mode = vxspan_xdp::Mode::parse(&k.mode)
                .ok_or_else(|| format!("handover: unknown XDP mode {:?}", k.mode))?;
            if k.layout != vxspan_xdp::loader::MAP_LAYOUT {
                return Err(format!(
                    "the previous image's XDP maps have layout {} (this build: {})",
                    k.layout,
                    vxspan_xdp::loader::MAP_LAYOUT
                ));
            }
            let mut named: Vec<RawFd> = k.links.iter().map(|l| l.1).collect();
            named.extend(k.counters);
            named.extend(k.shared.iter().map(|s| s.1));
            named.sort_unstable();
            if named.windows(2).any(|w| w[0] == w[1]) {
                return Err("the handover record names a descriptor twice".into());
            }
            let links = k
                .links
                .iter()
                .map(|&(i, fd)| claim(fd, "anon_inode:bpf_link").map(|l| (i, l)))
                .collect::<Result<Vec<_>, _>>()?;
            let [g, s, o] = k.counters;
            let map = |fd| claim(fd, "anon_inode:bpf-map");
            let shared = if k.shared.is_empty() {
                None
            } else {
                Some(vxspan_xdp::shared::SharedHandover {
                    fds: k
                        .shared
                        .iter()
                        .map(|(n, fd)| Ok((n.clone(), map(*fd)?)))
                        .collect::<Result<_, String>>()?,
                    tunnel_slots: k.tunnel_slots,
                    sample_slots: k.sample_slots,
                })
            };
            Some(vxspan_xdp::loader::Handover {
                mode,
                links,
                counters: [map(g)?, map(s)?, map(o)?],
                n_inputs: k.n_inputs,
                n_outputs: k.n_outputs,
                shared,
            })
        }
    };
    Ok(Inherited {
        config_text: r.config_text,
        carried: r.carried,
        reloads: r.reloads,
        restarts: r.restarts,
        drawn_key: r.drawn_key,
        offloads: r
            .offloads
            .iter()
            .map(|(i, saved)| afpacket::Offloads::handed_over(i, saved))
            .collect(),
        kernel,
    })
}

/// Whether a restart can be attempted: the binary to execute is there, starts, and accepts the
/// configuration file as it is now. Checked before anything stops.
pub(super) fn preflight(config: &Path) -> Result<PathBuf, String> {
    let (exe, _) = START
        .get()
        .ok_or("the binary this process was started from is not known")?;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", exe.display()));
    }
    run_within(exe, &["--version".as_ref()], "--version")?;
    // The file the new image will load, validated by the new binary (an upgrade may refuse a
    // key the running one took): a file it refuses is no reason to stop anything.
    run_within(exe, &["check".as_ref(), config.as_os_str()], "check")?;
    Ok(exe.clone())
}

/// Runs `exe ARGS` with its output discarded; an error unless it exits 0 within 5 s (it is
/// killed then).
fn run_within(exe: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<(), String> {
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{} {what}: {e}", exe.display()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("{} {what} failed ({st})", exe.display())),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} {what}: no answer within 5 s", exe.display()));
            }
        }
    }
}

/// Clears close-on-exec on `fd` (it is to survive the exec).
fn inherit(fd: RawFd) -> Result<(), String> {
    // SAFETY: fcntl with integer arguments on a descriptor this process owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(format!(
            "descriptor {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec except `keep` (some libraries open
/// sockets without the flag; none of them is to reach the next image).
fn close_on_exec_except(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: fcntl with integer arguments; a descriptor closed meanwhile is EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The old image's part: writes the record, keeps the handed-over descriptors open across the
/// exec, tells `client` and executes `exe`. Returns only on failure (the kernel tier is then
/// detached as the process exits).
pub(super) fn exec(
    exe: &Path,
    st: &mut State,
    mut carried: Report,
    mut client: UnixStream,
) -> String {
    let mut keep = Vec::new();
    let kernel = match st.kernel.take().map(crate::kernel::KernelTier::handover) {
        None => None,
        Some(Err(e)) => return e,
        Some(Ok((h, retired))) => {
            // Objects replaced before are not handed over: their counts go in the record.
            carried.add(&retired);
            let links: Vec<(u32, RawFd)> = h
                .links
                .into_iter()
                .map(|(i, l)| (i, l.into_raw_fd()))
                .collect();
            let [g, s, o] = h.counters;
            let counters = [g.into_raw_fd(), s.into_raw_fd(), o.into_raw_fd()];
            keep.extend(links.iter().map(|l| l.1));
            keep.extend(counters);
            let (shared, tunnel_slots, sample_slots) = match h.shared {
                None => (Vec::new(), Vec::new(), Vec::new()),
                Some(sh) => (
                    sh.fds
                        .into_iter()
                        .map(|(n, fd)| (n, fd.into_raw_fd()))
                        .collect::<Vec<_>>(),
                    sh.tunnel_slots,
                    sh.sample_slots,
                ),
            };
            keep.extend(shared.iter().map(|s| s.1));
            Some(KernelRecord {
                mode: h.mode.as_str().to_owned(),
                links,
                counters,
                layout: vxspan_xdp::loader::MAP_LAYOUT,
                n_inputs: h.n_inputs,
                n_outputs: h.n_outputs,
                shared,
                tunnel_slots,
                sample_slots,
            })
        }
    };
    let record = Record {
        version: VERSION,
        config_text: st.config_text.clone(),
        carried,
        reloads: st.reloads,
        restarts: st.restarts + 1,
        drawn_key: PROCESS_KEY.get().copied(),
        offloads: st
            .ports
            ._offloads
            .iter()
            .map(|o| (o.interface().to_owned(), o.saved().to_vec()))
            .collect(),
        kernel,
    };
    let memfd = match write_record(&record) {
        Ok(f) => f,
        Err(e) => return e,
    };
    keep.push(memfd.as_raw_fd());
    for &fd in &keep {
        if let Err(e) = inherit(fd) {
            return e;
        }
    }
    if let Err(e) = crate::privileges::pass_capabilities() {
        return format!("{e:#}");
    }
    close_on_exec_except(&keep);
    let args = START.get().map(|s| s.1.clone()).unwrap_or_default();
    let line = serde_json::json!({
        "ok": format!("restarting: executing {} in process {}; the kernel tier keeps forwarding", exe.display(), std::process::id()),
        "pid": std::process::id(),
    });
    let _ = writeln!(client, "{line}");
    drop(client);
    log(format!(
        "restarting in place: executing {} (the kernel tier stays attached)",
        exe.display()
    ));
    let e = std::process::Command::new(exe)
        .args(args)
        .env(ENV, memfd.as_raw_fd().to_string())
        .exec();
    format!("executing {}: {e}", exe.display())
}

/// The record in a memfd, read from its start by the next image.
fn write_record(r: &Record) -> Result<std::fs::File, String> {
    let name = c"vxspan-handover";
    // SAFETY: `name` is a NUL-terminated string; memfd_create reads it and returns a new
    // descriptor (or -1).
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor owned by nobody else.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let text = serde_json::to_vec(r).map_err(|e| format!("the handover record: {e}"))?;
    f.write_all(&text)
        .and_then(|()| f.rewind())
        .map_err(|e| format!("writing the handover record: {e}"))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_junk_is_refused() {
        let mut carried = Report::default();
        carried.interfaces.insert("eth1".into(), Default::default());
        let r = Record {
            version: VERSION,
            config_text: "[inputs.a]\n".into(),
            carried: carried.clone(),
            reloads: 3,
            restarts: 1,
            drawn_key: Some([7; 16]),
            offloads: Vec::new(),
            kernel: None,
        };
        let handed = |r: &Record| {
            let fd = write_record(r).unwrap().into_raw_fd();
            inherit(fd).unwrap();
            fd
        };
        // Still close-on-exec: not handed over, refused.
        let kept = write_record(&r).unwrap();
        assert!(read_record(&kept.as_raw_fd().to_string())
            .unwrap_err()
            .contains("not handed over"));
        // Inherited, but not the memfd (a file a wrapper left open): refused, left alone.
        let other = std::fs::File::open("/proc/self/stat").unwrap();
        inherit(other.as_raw_fd()).unwrap();
        assert!(read_record(&other.as_raw_fd().to_string())
            .unwrap_err()
            .contains("not /memfd:vxspan-handover"));
        let got = read_record(&handed(&r).to_string()).unwrap();
        assert_eq!(got.config_text, "[inputs.a]\n");
        assert_eq!(got.carried, carried);
        assert_eq!((got.reloads, got.restarts), (3, 1));
        assert_eq!(got.drawn_key, Some([7; 16]));
        assert!(got.kernel.is_none());
        assert!(read_record("x").is_err());
        assert!(read_record("1").is_err(), "stdio is never the record");
        assert!(read_record("999999").is_err(), "a closed descriptor");
        let mut old = r;
        old.version = 0;
        assert!(read_record(&handed(&old).to_string())
            .unwrap_err()
            .contains("version 0"));
    }
}
