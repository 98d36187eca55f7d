//! Least privilege for `vxspan run`: a root start switches to an unprivileged user keeping only
//! the capabilities the data path and reloads need; a non-root start checks it holds them and
//! names the one that is missing. Also systemd's readiness protocol (sd_notify).

use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// What `vxspan run` needs, and why (for the message when one is missing).
pub const NEEDED: [(Capability, &str); 5] = [
    (
        Capability::CAP_NET_RAW,
        "to open AF_PACKET and raw GRE sockets",
    ),
    (
        Capability::CAP_NET_ADMIN,
        "to bring ports up, make inputs promiscuous and turn their offloads off",
    ),
    (
        Capability::CAP_IPC_LOCK,
        "to lock the receive rings in memory",
    ),
    (
        Capability::CAP_BPF,
        "to load the XDP program (the kernel tier) and swap it on reload",
    ),
    (
        Capability::CAP_PERFMON,
        "with CAP_BPF, for the verifier to accept the XDP program's pointer arithmetic (a loader without it gets the unprivileged Spectre checks, which refuse the program)",
    ),
];

/// Fails naming the first needed capability the process does not have in its effective set.
/// CAP_IPC_LOCK, CAP_BPF and CAP_PERFMON are optional: without them the rings are not locked,
/// and `--datapath auto` runs everything on AF_PACKET.
pub fn check() -> Result<()> {
    let have =
        caps::read(None, CapSet::Effective).context("reading this process's capabilities")?;
    for (cap, why) in NEEDED.iter().filter(|(c, _)| {
        !matches!(
            *c,
            Capability::CAP_IPC_LOCK | Capability::CAP_BPF | Capability::CAP_PERFMON
        )
    }) {
        if !have.contains(cap) {
            bail!("missing capability {cap} (needed {why}); run as root, or grant it, e.g. AmbientCapabilities= in the systemd unit or setpriv --ambient-caps");
        }
    }
    Ok(())
}

/// The uid and gid of `user`.
pub fn lookup(user: &str) -> Result<(u32, u32)> {
    let name = std::ffi::CString::new(user).context("user name has a NUL byte")?;
    // SAFETY: getpwnam reads a NUL-terminated name; the returned record (static storage) is read
    // right away, before any other call that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("no user named {user:?}");
    }
    // SAFETY: `pw` is a valid passwd record (checked non-null above).
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Switches from root to `uid` / `gid`, keeping only the capabilities in [`NEEDED`]
/// (permitted and effective), so a reload can still open new ports and load the XDP program. The
/// bounding set is cut to those too (while CAP_SETPCAP is still held), the inheritable and ambient sets are emptied and
/// no_new_privs is set: nothing this process executes can gain a capability or a uid back.
pub fn drop_to(uid: u32, gid: u32) -> Result<()> {
    let keep: CapsHashSet = NEEDED.iter().map(|(c, _)| *c).collect();
    // SAFETY: prctl with PR_SET_KEEPCAPS takes integer arguments only; the result is checked.
    // KEEPCAPS keeps the permitted set across setuid.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        bail!(
            "prctl(PR_SET_KEEPCAPS): {}",
            std::io::Error::last_os_error()
        );
    }
    // PR_CAPBSET_DROP needs CAP_SETPCAP, which goes with the uid switch: first. The bounding set
    // limits only what a later execve can gain, so the setuid below still works.
    limit_bounding(&keep)?;
    // SAFETY: setgroups with a count of 0 reads no memory; setgid / setuid take integers. Each
    // result is checked.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            bail!("setgroups: {}", std::io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            bail!("setgid({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            bail!("setuid({uid}): {}", std::io::Error::last_os_error());
        }
    }
    caps::set(None, CapSet::Permitted, &keep).context("limiting the permitted capabilities")?;
    caps::set(None, CapSet::Effective, &keep).context("raising the effective capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")?;
    // SAFETY: as above, integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    no_new_privs()
}

/// Removes every capability but `keep` from this thread's bounding set (inherited by the
/// threads it starts). Needs CAP_SETPCAP; capabilities already absent are left alone.
fn limit_bounding(keep: &CapsHashSet) -> Result<()> {
    let bounding = caps::read(None, CapSet::Bounding).context("reading the bounding set")?;
    for cap in bounding.difference(keep) {
        caps::drop(None, CapSet::Bounding, *cap)
            .with_context(|| format!("dropping {cap} from the bounding set"))?;
    }
    Ok(())
}

/// Before `vxspan restart` executes the binary again: a process that is not root keeps the
/// capabilities of [`NEEDED`] it holds across the exec (raised in the inheritable and ambient
/// sets; no_new_privs does not stop ambient capabilities). Root needs nothing.
pub fn pass_capabilities() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let have =
        caps::read(None, CapSet::Effective).context("reading this process's capabilities")?;
    let pass: CapsHashSet = NEEDED
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| have.contains(c))
        .collect();
    // Under the packaged unit they are inheritable already (AmbientCapabilities=), and capset
    // is outside its system call filter: only a set that lacks them is written.
    let inheritable =
        caps::read(None, CapSet::Inheritable).context("reading the inheritable set")?;
    if !pass.is_subset(&inheritable) {
        caps::set(None, CapSet::Inheritable, &pass).context("passing the capabilities on")?;
    }
    for c in &pass {
        caps::raise(None, CapSet::Ambient, *c)
            .with_context(|| format!("passing {c} on to the next image"))?;
    }
    Ok(())
}

/// Empties the ambient set (a restarted image got its capabilities through it, as does a
/// process of the packaged unit): nothing this process starts inherits a capability. A
/// prctl, which the unit's system call filter allows (capset it does not); the inheritable set
/// alone passes nothing to a program without file capabilities.
pub fn clear_inheritance() -> Result<()> {
    caps::clear(None, CapSet::Ambient).context("clearing the ambient capabilities")
}

/// Sets no_new_privs: an execve can no longer raise privileges (setuid bits, file
/// capabilities). No capability is needed; it cannot be unset.
pub fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only; the result is checked.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!(
            "prctl(PR_SET_NO_NEW_PRIVS): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// systemd's notification socket ($NOTIFY_SOCKET), when started with Type=notify.
pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// Half of WatchdogSec, when the unit has a watchdog.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let addr = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|p| match p.strip_prefix('@') {
                Some(abs) => SocketAddr::from_abstract_name(abs.as_bytes()).ok(),
                None => SocketAddr::from_pathname(&p).ok(),
            });
        let sock = addr.and_then(|a| UnixDatagram::unbound().ok().map(|s| (s, a)));
        let pid_ok =
            std::env::var("WATCHDOG_PID").map_or(true, |p| p == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|_| pid_ok)
            .map(|u| Duration::from_micros(u / 2));
        Notifier { sock, watchdog }
    }

    pub fn notify(&self, state: &str) {
        if let Some((s, a)) = &self.sock {
            let _ = s.send_to_addr(state.as_bytes(), a);
        }
    }
}
