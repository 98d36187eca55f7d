//! The control socket's server: its own thread, never a packet thread.
//!
//! [`Control::bind`] creates the socket with mode 0600 from the start (the umask is narrowed
//! around `bind`, so there is no window with a wider mode), refuses to remove anything at the
//! path that is not a socket, and on exit removes the socket only if it is still the one it
//! made. [`serve`] accepts connections on a thread of its own and gives each one a thread (at
//! most [`MAX_CLIENTS`] at once; more are refused with an error reply): a request is one line
//! of at most [`MAX_REQUEST`] bytes read within [`READ_TIMEOUT`], a reply is written within
//! [`WRITE_TIMEOUT`]. `stats` is answered from the counters the datapath last published
//! ([`Latest`]); `status`, `reload` and `capture` become [`Job`]s the first worker picks up
//! between two batches, and their replies are written here. A client that sends a huge line,
//! never reads, or goes away costs a connection thread, never a worker's time.

use super::proto::{error_reply, Request, MAX_REQUEST};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vxspan_core::Report;

/// Connections served at once; more are refused.
pub const MAX_CLIENTS: usize = 32;
/// Of those, how many only root and the service user may take.
pub const RESERVED_FOR_FULL: usize = 4;
/// How long a client may take to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reply may take to be taken by the client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `status` may wait for the first worker (it answers between two batches).
const STATUS_WAIT: Duration = Duration::from_secs(10);
/// How long a `reload` may take (a program load, ports opened).
const RELOAD_WAIT: Duration = Duration::from_secs(120);

/// The control socket at its path, owned by this process.
pub(crate) struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket this process bound.
    id: (u64, u64),
}

impl Control {
    /// Binds the socket at `path`, mode 0600; with `group`, then given to that group with mode
    /// 0660 (its members may read: [`Access::of`]).
    pub(crate) fn bind(path: &Path, group: Option<&str>) -> Result<Control> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    bail!(
                        "{} is in use: another vxspan is running (use --control to run a second one)",
                        path.display()
                    );
                }
                // A socket nobody listens on: left by a process that was killed.
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Ok(_) => bail!(
                "{} exists and is not a socket: vxspan leaves it alone (remove it, or use --control)",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("{}: {e}", path.display()),
        }
        // Mode 0600 from the first moment: root (or the service user) only, since the socket
        // reloads the configuration and reads every counter. The umask is process-wide; this
        // runs before any other thread is started.
        // SAFETY: umask has no preconditions; the previous mask is restored right after.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.with_context(|| format!("control socket {}", path.display()))?;
        if let Some(g) = group {
            let gid = group_id(g)?;
            std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
                format!("management.control_group: giving {} to group {g} (the service user must be a member)", path.display())
            })?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        let m = std::fs::symlink_metadata(path)?;
        Ok(Control {
            listener,
            path: path.to_owned(),
            id: (m.dev(), m.ino()),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // Only the socket this process made: a new instance may have taken the path since.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The gid of group `name`.
pub(crate) fn group_id(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("group name has a NUL byte")?;
    // SAFETY: getgrnam reads a NUL-terminated name; the record it returns (static storage) is
    // read right away, before any other call that could overwrite it.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("management.control_group: no group named {name:?}");
    }
    // SAFETY: `gr` is a valid group record (checked non-null above).
    Ok(unsafe { (*gr).gr_gid })
}

/// What a client of the control socket may do, from its credentials (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Root or the daemon's own user: every request.
    Full,
    /// Anyone else who could connect (a member of `management.control_group`): `stats` and
    /// `status` only.
    ReadOnly,
}

impl Access {
    pub(crate) fn of(stream: &UnixStream) -> Access {
        let mut cred = libc::ucred {
            pid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        use std::os::fd::AsRawFd;
        // SAFETY: SO_PEERCRED writes at most `len` bytes, the size of the ucred it points to.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        Access::for_uid(r == 0, cred.uid, me)
    }

    fn for_uid(known: bool, uid: u32, me: u32) -> Access {
        if known && (uid == 0 || uid == me) {
            Access::Full
        } else {
            Access::ReadOnly
        }
    }

    /// Whether `req` is allowed; the refusal otherwise.
    pub(crate) fn allows(self, req: &Request) -> Result<(), String> {
        match (self, req) {
            (Access::Full, _) | (_, Request::Stats | Request::Status) => Ok(()),
            (Access::ReadOnly, r) => Err(format!(
                "{} needs root or the service user (this connection may read stats and status only)",
                r.line()
            )),
        }
    }
}

/// The counters as the datapath last published them.
#[derive(Default)]
pub(crate) struct Latest(Mutex<Arc<Report>>);

impl Latest {
    pub(crate) fn store(&self, r: Report) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(r);
    }

    pub(crate) fn load(&self) -> Arc<Report> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the first worker does for a client, between two batches.
pub(crate) enum Job {
    /// Build the `status` reply (one line of JSON).
    Status(SyncSender<String>),
    /// Reload the configuration; the reply line.
    Reload(SyncSender<String>),
    /// Restart in place; the daemon replies on `stream` just before it executes its binary.
    /// `Err` says why not (the server replies it).
    Restart {
        stream: UnixStream,
        reply: SyncSender<Result<(), String>>,
    },
    /// Attach a capture writing to `stream`; `Err` says why not (the server replies it).
    Capture {
        rule: Option<String>,
        stream: UnixStream,
        reply: SyncSender<Result<(), String>>,
    },
}

/// Jobs queued for the first worker at most; more get a "busy" reply.
const JOBS: usize = 16;

/// Starts the server thread on `ctl`'s socket; returns where the jobs arrive. `wake` is rung
/// after each job is queued (the first worker polls its descriptor with its rings).
pub(crate) fn serve(
    ctl: &Control,
    latest: Arc<Latest>,
    wake: Arc<crate::wake::Waker>,
) -> Result<Receiver<Job>> {
    let listener = ctl.listener.try_clone()?;
    listener.set_nonblocking(false)?;
    let (jobs, rx) = sync_channel(JOBS);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("vxspan-control".into())
        .spawn(move || {
            // The client threads it starts inherit its priority.
            crate::process::yield_to_workers();
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    // Out of descriptors (or memory): accept fails at once, again and again;
                    // waiting a little keeps this thread from spinning on a core.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                // The last slots are kept for root and the service user: read-only clients
                // holding every one of them cannot lock the operator out.
                let limit = match Access::of(&stream) {
                    Access::Full => MAX_CLIENTS,
                    Access::ReadOnly => MAX_CLIENTS - RESERVED_FOR_FULL,
                };
                if active.fetch_add(1, Ordering::AcqRel) >= limit {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = reply(&stream, &error_reply("too many control connections"));
                    continue;
                }
                let active_left = active.clone();
                let (latest, jobs, active) = (latest.clone(), jobs.clone(), active.clone());
                let wake = wake.clone();
                let spawned = std::thread::Builder::new()
                    .name("vxspan-client".into())
                    .spawn(move || {
                        let queue = |job| {
                            let r = jobs.try_send(job);
                            wake.wake();
                            r
                        };
                        client(stream, &latest, queue);
                        active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active_left.fetch_sub(1, Ordering::AcqRel);
                    crate::logging::warn("control: no thread for a client");
                }
            }
        })?;
    Ok(rx)
}

fn reply(mut stream: &UnixStream, line: &str) -> std::io::Result<()> {
    stream.write_all(line.as_bytes())?;
    stream.write_all(b"\n")
}

/// Reads one request line of at most `MAX_REQUEST` bytes, all of it within `READ_TIMEOUT`
/// (a deadline for the whole line: a byte every second does not hold a slot for longer).
pub(crate) fn read_request(stream: &UnixStream) -> Result<Request, String> {
    read_request_within(stream, READ_TIMEOUT)
}

fn read_request_within(stream: &UnixStream, limit: Duration) -> Result<Request, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut line = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "reading the request: no complete line within {limit:?}"
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("reading the request: {e}"))?;
        let want = (MAX_REQUEST - line.len()).min(chunk.len());
        match (&*stream).read(&mut chunk[..want]) {
            Ok(0) => return Err("no request line (it ends with a newline)".into()),
            Ok(n) => line.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the request: {e}")),
        }
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end + 1);
            break;
        }
        if line.len() >= MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    }
    let line = String::from_utf8(line).map_err(|_| "the request is not UTF-8".to_string())?;
    Request::parse(&line)
}

fn client(
    stream: UnixStream,
    latest: &Latest,
    queue: impl Fn(Job) -> Result<(), TrySendError<Job>>,
) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let access = Access::of(&stream);
    let request = match read_request(&stream).and_then(|r| access.allows(&r).map(|()| r)) {
        Ok(r) => r,
        Err(e) => {
            let _ = reply(&stream, &error_reply(&e));
            return;
        }
    };
    let busy = || error_reply("the daemon is busy: too many requests queued, try again");
    let gone = || error_reply("the daemon is stopping");
    let line = match request {
        Request::Stats => serde_json::to_string(&*latest.load()).unwrap_or_default(),
        Request::Status | Request::Reload => {
            let (tx, rx) = sync_channel(1);
            let (job, wait) = match request {
                Request::Status => (Job::Status(tx), STATUS_WAIT),
                _ => (Job::Reload(tx), RELOAD_WAIT),
            };
            match queue(job) {
                Ok(()) => rx.recv_timeout(wait).unwrap_or_else(|_| gone()),
                Err(TrySendError::Full(_)) => busy(),
                Err(TrySendError::Disconnected(_)) => gone(),
            }
        }
        Request::Capture(_) | Request::Restart => {
            let Ok(copy) = stream.try_clone() else { return };
            let (tx, rx) = sync_channel(1);
            let job = match request {
                Request::Capture(rule) => Job::Capture {
                    rule,
                    stream: copy,
                    reply: tx,
                },
                _ => Job::Restart {
                    stream: copy,
                    reply: tx,
                },
            };
            match queue(job) {
                Ok(()) => match rx.recv_timeout(STATUS_WAIT) {
                    // The capture writes the stream from now on; a restart replies on it.
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => error_reply(&e),
                    Err(_) => gone(),
                },
                Err(TrySendError::Full(_)) => busy(),
                Err(TrySendError::Disconnected(_)) => gone(),
            }
        }
    };
    let _ = reply(&stream, &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn an_oversized_request_is_refused_after_the_limit() {
        let (mut a, b) = pair();
        let junk = vec![b'x'; 3 * MAX_REQUEST];
        std::thread::spawn(move || {
            let _ = a.write_all(&junk);
        });
        let e = read_request(&b).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn a_request_without_newline_is_refused() {
        let (mut a, b) = pair();
        a.write_all(b"stats").unwrap();
        drop(a);
        assert!(read_request(&b).unwrap_err().contains("newline"));
    }

    #[test]
    fn a_trickling_client_meets_one_deadline_for_the_whole_line() {
        let (mut a, b) = pair();
        let t = std::time::Instant::now();
        std::thread::spawn(move || {
            for _ in 0..100 {
                if a.write_all(b"s").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let e = read_request_within(&b, Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("within"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_silent_client_times_out() {
        let (_a, b) = pair();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(read_request(&b).unwrap_err().contains("reading"));
    }

    #[test]
    fn read_only_clients_may_read_stats_and_status_only() {
        let full = Access::for_uid(true, 0, 998);
        assert_eq!(full, Access::Full);
        assert_eq!(Access::for_uid(true, 998, 998), Access::Full);
        let ro = Access::for_uid(true, 1000, 998);
        assert_eq!(ro, Access::ReadOnly);
        assert_eq!(
            Access::for_uid(false, 0, 0),
            Access::ReadOnly,
            "unknown peer"
        );
        for r in [Request::Stats, Request::Status] {
            assert!(ro.allows(&r).is_ok());
        }
        for r in [
            Request::Reload,
            Request::Capture(None),
            Request::Capture(Some("x".into())),
        ] {
            assert!(full.allows(&r).is_ok());
            let e = ro.allows(&r).unwrap_err();
            assert!(e.contains("needs root or the service user"), "{e}");
        }
        // A connection from this process is its own user's.
        let (a, _b) = pair();
        assert_eq!(Access::of(&a), Access::Full);
    }

    #[test]
    fn requests_parse() {
        let (mut a, b) = pair();
        a.write_all(b"capture web\n").unwrap();
        assert_eq!(read_request(&b), Ok(Request::Capture(Some("web".into()))));
    }

    #[test]
    fn bind_leaves_a_regular_file_alone_and_replaces_a_stale_socket() {
        let dir = std::env::temp_dir().join(format!("vxspan-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        std::fs::write(&path, b"keep me").unwrap();
        let e = Control::bind(&path, None).err().unwrap().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        std::fs::remove_file(&path).unwrap();
        drop(UnixListener::bind(&path).unwrap()); // stale: nobody listens
        let c = Control::bind(&path, None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(Control::bind(&path, None).is_err(), "in use");
        drop(c);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
