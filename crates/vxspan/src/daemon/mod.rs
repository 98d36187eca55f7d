//! `vxspan run`: the live datapath, the control socket, reload and shutdown.
//!
//! With `--datapath xdp` (and `auto` where the XDP program loads), the kernel tier
//! ([`crate::kernel`]) runs every (input, VLAN) group it can in the XDP program; the frames of the
//! other groups pass up to the AF_PACKET rings below. With `afpacket`, everything runs there.
//!
//! The first worker (this thread) owns every port: it waits for any input ring to have frames
//! (poll), reads them in batches, runs them through the engine and sends the copies. Between two
//! batches it does the control jobs the control thread queues (`status`, attaching a capture),
//! applies a reload (SIGHUP or `vxspan reload`) that [`prepare`] readied on its own thread, and,
//! once a second, reads each ring's kernel statistics (frames dropped because the ring was
//! full are counted as `ring_overrun` on the input, so `rx_packets` counts every frame that
//! reached the socket). `vxspan restart` ends the loop and [`restart`] executes the binary again
//! in this process, the kernel tier forwarding on.
//!
//! With `--workers N`, each AF_PACKET input (not tunnel endpoints, not inputs with passthru) is
//! a PACKET_FANOUT_HASH group with one ring per worker, and an input's AF_XDP sockets (one per
//! RX queue) are spread over the workers; the other N - 1 workers are threads, each
//! with its own rings, engine ([`Engine::worker`]: counts apart, shares sampling, dedup, buckets
//! and ERSPAN sequences) and transmit sockets. The first worker reaches into them only between
//! two of their batches (`WorkerSlot`): to read their counters, to swap their engine on a
//! rules-only reload, or to give them new rings and sockets when ports change.
//!
//! A reload validates and compiles the new file first (off this thread); if it is invalid, the
//! running configuration stays and the error is logged and returned to `vxspan reload`. If only rules or
//! outputs' transforms changed (the same input and output interfaces), sockets and rings are kept
//! and the new plan is swapped in between two batches, so nothing is lost; otherwise the ports
//! are reopened. Counters continue across reloads (by port, VLAN and rule name).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vxspan_core::config::Destination;
use vxspan_core::{Plan, Report};
use vxspan_io::afpacket;
use vxspan_io::Batch;

mod diff;
mod outputs;
mod ports;
mod prepare;
mod restart;
mod serve;
mod state;
mod status;
mod worker;

use crate::control::server::Control;
use crate::logging::{log, warn};
use outputs::*;
use ports::*;
use state::*;
use worker::*;

/// Where the control socket lives unless `--control` or `management.control` say otherwise.
pub const DEFAULT_CONTROL: &str = "/run/vxspan/control.sock";

/// Frames read from one input before the others get their turn.
const BATCH: usize = 512;

/// Room for one batch of frames of up to 2 KiB (larger ones grow it).
fn new_batch() -> Batch {
    Batch::with_capacity(BATCH, BATCH * 2048)
}

/// The key drawn for an instance whose configuration names no `hash_key_file` (or handed over
/// by the previous image of this process: `vxspan restart` keeps balancing where it was).
static PROCESS_KEY: std::sync::OnceLock<[u8; vxspan_core::hashkey::KEY_LEN]> =
    std::sync::OnceLock::new();

/// The hash key of an instance whose configuration names no `hash_key_file`: drawn from the
/// kernel's random source once, at the first load, and kept across reloads and restarts in
/// place (balancing and flow sampling stay put until the process stops).
pub(super) fn process_hash_key() -> Result<vxspan_core::hashkey::HashKey, String> {
    if let Some(k) = PROCESS_KEY.get() {
        return Ok(vxspan_core::hashkey::HashKey::new(*k));
    }
    let mut key = [0u8; vxspan_core::hashkey::KEY_LEN];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?,
        &mut key,
    )
    .map_err(|e| format!("/dev/urandom: {e}"))?;
    log("no management.hash_key_file: flow and dedup hashes use a key drawn at start (balancing changes when the process starts again; share a key file between instances that must agree)");
    Ok(vxspan_core::hashkey::HashKey::new(
        *PROCESS_KEY.get_or_init(|| key),
    ))
}

/// Validates and compiles configuration text read from `path`.
pub(super) fn compile_text(
    path: &Path,
    text: &str,
) -> Result<(vxspan_config::Config, Plan), String> {
    let cfg = vxspan_config::parse(text, vxspan_config::Syntax::detect(path, text), path)
        .map_err(|e| e.to_string())?;
    let mut plan = Plan::compile(&cfg, &vxspan_io::filter::Libpcap)
        .map_err(|e| format!("{}: {}: {}", path.display(), e.path, e.message))?;
    if cfg.hash_key.is_none() {
        plan.hash_key = process_hash_key()?;
    }
    Ok((cfg, plan))
}

/// A configuration file as the daemon runs it: the text read, what it says, its plan.
pub(super) struct Loaded {
    pub(super) text: String,
    pub(super) cfg: vxspan_config::Config,
    pub(super) plan: Plan,
}

/// Loads, validates and compiles `path` for the live datapath; applies each output interface's
/// MTU where the configuration sets none.
pub(super) fn load_plan(path: &Path) -> Result<Loaded, String> {
    let text = vxspan_config::read(path).map_err(|e| e.to_string())?;
    plan_of(path, text)
}

/// [`load_plan`] of text read already.
fn plan_of(path: &Path, text: String) -> Result<Loaded, String> {
    let (cfg, mut plan) = compile_text(path, &text)?;
    let uplink = default_route_interface();
    for inp in &cfg.inputs {
        if Some(&inp.interface) == uplink.as_ref() && !inp.allow_uplink {
            return Err(format!(
                "{}: inputs.{}: interface {:?} carries this host's default route; taking it over would cut the host off (set allow_uplink = true on the input to do it anyway)",
                path.display(),
                inp.name,
                inp.interface
            ));
        }
    }
    for o in &mut plan.outputs {
        match &o.dest {
            // Loop guard: a tunnel sent to one of this instance's own tunnel endpoints.
            Destination::Tunnel(e) => {
                if let Some(l) = cfg
                    .inputs
                    .iter()
                    .filter_map(|i| i.listen.as_ref())
                    .find(|l| l.addr == e.outer().remote)
                {
                    return Err(format!("{}: outputs.{}: loop: the tunnel goes to {}, where this instance listens for {}", path.display(), o.name, e.outer().remote, l.kind.as_str()));
                }
            }
            Destination::Interface(ifname) => {
                if o.mtu.is_none() {
                    o.mtu = afpacket::mtu(ifname).ok();
                }
            }
            Destination::Archive(_) => {}
        }
    }
    Ok(Loaded { text, cfg, plan })
}

/// `vxspan run`'s command-line options, as given.
pub struct RunOptions<'a> {
    pub datapath: &'a str,
    pub workers: &'a str,
    pub xdp_mode: &'a str,
    pub transmit: &'a str,
    pub control: Option<&'a Path>,
    pub user: Option<&'a str>,
    pub log_level: &'a str,
    pub log_json: bool,
}

/// `vxspan run`: logging set up, privileges dropped, ports opened, then the worker loop until
/// SIGINT / SIGTERM.
pub fn run(config: &Path, opts: RunOptions<'_>) -> Result<ExitCode> {
    let RunOptions {
        datapath,
        workers,
        xdp_mode,
        transmit,
        control,
        user,
        log_level,
        log_json,
    } = opts;
    if let Err(e) = crate::logging::init_logging(log_level, log_json) {
        eprintln!("vxspan: {e:#}");
        return Ok(ExitCode::from(crate::EXIT_INVALID));
    }
    restart::remember_start();
    // Started by `vxspan restart`: what the previous image of this process handed over.
    let inherited = match restart::take() {
        None => None,
        Some(Ok(i)) => {
            if let Some(k) = i.drawn_key {
                let _ = PROCESS_KEY.set(k);
            }
            Some(i)
        }
        Some(Err(e)) => {
            warn(format!(
                "restart: {e}; starting afresh (counters restart at zero)"
            ));
            None
        }
    };
    match datapath {
        "auto" | "afpacket" | "xdp" | "afxdp" => {}
        other => {
            eprintln!("vxspan: unknown datapath {other:?} (auto, afpacket, afxdp, xdp)");
            return Ok(ExitCode::from(crate::EXIT_INVALID));
        }
    }
    let xdp_tx = match (transmit, datapath) {
        ("afpacket", _) => false,
        ("afxdp", _) | ("auto", "afxdp") => true,
        ("auto", _) => false,
        (other, _) => {
            eprintln!("vxspan: unknown --transmit {other:?} (auto, afpacket, afxdp)");
            return Ok(ExitCode::from(crate::EXIT_INVALID));
        }
    };
    let workers = match parse_workers(workers) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("vxspan: {e}");
            return Ok(ExitCode::from(crate::EXIT_INVALID));
        }
    };
    // A restarted image whose file no longer loads (edited since, and never reloaded) runs what
    // the previous image ran: a restart never turns a running broker into a stopped one.
    let loaded = load_plan(config).or_else(|e| match &inherited {
        Some(i) => {
            warn(format!(
                "restart: {e}; running the configuration the previous image ran (fix the file, then reload)"
            ));
            plan_of(config, i.config_text.clone())
        }
        None => Err(e),
    });
    let Loaded {
        text: config_text,
        cfg,
        plan,
    } = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vxspan: invalid configuration: {e}");
            return Ok(ExitCode::from(crate::EXIT_INVALID));
        }
    };
    let mode = match crate::kernel::parse_mode(xdp_mode, cfg.xdp_mode) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("vxspan: {e}");
            return Ok(ExitCode::from(crate::EXIT_INVALID));
        }
    };
    let control_path = control
        .map(Path::to_owned)
        .or_else(|| cfg.control.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL));
    // Least privilege: from root, switch to the configured user keeping only the capabilities
    // needed; otherwise check this process holds them.
    let notifier = crate::privileges::Notifier::from_env();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match user.map(str::to_owned).or_else(|| cfg.user.clone()) {
        Some(u) if root => {
            let (uid, gid) = crate::privileges::lookup(&u)?;
            // The socket's directory is the user's only if vxspan creates it (mode 0750); an
            // existing one is left as it is (systemd's RuntimeDirectory= makes it the user's).
            if let Some(dir) = control_path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.exists() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    // Members of control_group must reach the socket in it.
                    let gid = match cfg.control_group.as_deref() {
                        Some(g) => crate::control::server::group_id(g)?,
                        None => gid,
                    };
                    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                        .with_context(|| format!("handing {} to {u}", dir.display()))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
                }
            }
            crate::privileges::drop_to(uid, gid)?;
            log(format!(
                "running as {u} (uid {uid}) with CAP_NET_RAW, CAP_NET_ADMIN, CAP_IPC_LOCK, CAP_BPF and CAP_PERFMON only (bounding set too), no_new_privs"
            ));
        }
        _ if !root => {
            if let Err(e) = crate::privileges::check() {
                eprintln!("vxspan: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
            crate::privileges::clear_inheritance()?;
            crate::privileges::no_new_privs()?;
        }
        _ => {}
    }
    // `--datapath afxdp` sends through AF_XDP TX rings too.
    let tx = TxSetup {
        losses: Arc::default(),
        xdp: xdp_tx,
    };
    let mut ports = open_ports(&plan, workers, None, &tx)?;
    let (mut history, reloads, restarts, old_kernel) = match inherited {
        Some(mut i) => {
            // What the first image turned off is restored at the end, as it would have been;
            // inputs that are gone get theirs back now (as the offloads are dropped).
            i.offloads
                .retain(|o| plan.inputs.iter().any(|p| p.interface == o.interface()));
            ports._offloads.append(&mut i.offloads);
            (
                i.carried,
                i.reloads,
                i.restarts,
                i.kernel.map(|k| (k, i.config_text)),
            )
        }
        None => (Report::default(), 0, 0, None),
    };
    let adopted = match (datapath, old_kernel) {
        (_, None) => None,
        // `--datapath afpacket`: the handed-over links are closed, which detaches them.
        ("afpacket", Some(_)) => None,
        (_, Some((h, old_text))) => match compile_text(config, &old_text).and_then(|(_, old)| {
            crate::kernel::KernelTier::adopt(&plan, &old, datapath == "afxdp", h)
        }) {
            Ok((k, _, why, old)) => {
                history.add(&old);
                log(format!("XDP program attached to the inputs ({why})"));
                Some(k)
            }
            Err(e) => {
                warn(format!(
                    "restart: taking over the kernel tier: {e}; attaching afresh"
                ));
                None
            }
        },
    };
    let mut kernel = match (datapath, adopted) {
        (_, Some(k)) => Some(k),
        ("afpacket", None) => None,
        (_, None) => match crate::kernel::KernelTier::start(&plan, mode, datapath == "afxdp") {
            Ok((k, _, why)) => {
                log(format!("XDP program attached to the inputs ({why})"));
                Some(k)
            }
            Err(e) if datapath == "xdp" || datapath == "afxdp" => {
                eprintln!("vxspan: --datapath {datapath}: {e}");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                warn(format!(
                    "XDP tier unavailable ({e}); every group runs on AF_PACKET"
                ));
                None
            }
        },
    };
    let mut xsks = Vec::new();
    if let Some(k) = &mut kernel {
        if let Err(e) = open_xsks(k, &plan, &mut xsks) {
            if datapath == "afxdp" {
                eprintln!("vxspan: --datapath afxdp: {e}");
                return Ok(ExitCode::FAILURE);
            }
            warn(format!(
                "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
            ));
        }
    }
    // The control socket appears once everything is set up: it is the sign vxspan is running.
    let ctl = Control::bind(&control_path, cfg.control_group.as_deref())?;
    let latest = Arc::new(crate::control::server::Latest::default());
    let job_wake = Arc::new(crate::wake::Waker::new()?);
    let jobs = crate::control::server::serve(&ctl, latest.clone(), job_wake.clone())?;
    if let Some(addr) = cfg.metrics {
        crate::metrics::spawn(addr, control_path.clone())?;
        log(format!("Prometheus metrics on http://{addr}/metrics"));
    }
    if let Some(snmp) = cfg.snmp.clone() {
        crate::snmp::spawn(snmp, control_path.clone())?;
    }
    log(format!(
        "running {} on {} input(s), {} output interface(s); control socket {}",
        config.display(),
        ports.inputs.len(),
        ports.outputs.sockets.len(),
        control_path.display()
    ));

    notifier.notify("READY=1\nSTATUS=forwarding");
    let mut last_watchdog = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let mut plan = plan;
    intern_loss_ids(&mut plan, &tx.losses);
    let mut st = State {
        config: config.to_owned(),
        cfg,
        config_text,
        restarts,
        restart: None,
        preparer: prepare::Preparer::spawn(job_wake.clone())?,
        engine: crate::kernel::engine_for(plan, kernel.as_ref()),
        ports,
        kernel,
        kernel_lost: None,
        xdp_mode: mode,
        xsks,
        history,
        reloads,
        workers: (1..workers)
            .map(|_| WorkerSlot::new().map(Arc::new))
            .collect::<std::io::Result<_>>()?,
        tx,
        gap: Arc::default(),
        captured: Some(Vec::new()),
    };
    st.respawn_workers();
    st.distribute_xsks();
    let spawn = |n: usize, slot: &Arc<WorkerSlot>| {
        let (slot, stop) = (slot.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("vxspan-worker-{n}"))
            .spawn(move || worker_loop(slot, stop))
    };
    let mut threads: Vec<std::thread::JoinHandle<()>> = st
        .workers
        .iter()
        .enumerate()
        .map(|(n, slot)| spawn(n + 1, slot))
        .collect::<std::io::Result<_>>()?;
    if workers > 1 {
        log(format!(
            "{workers} userspace workers (AF_PACKET inputs shared by flow hash)"
        ));
    }
    if st.kernel.is_some() {
        let plan = st.engine.plan().clone();
        if let Err(e) = st.open_xsks(&plan) {
            if datapath == "afxdp" {
                eprintln!("vxspan: --datapath afxdp: {e}");
                return Ok(ExitCode::FAILURE);
            }
            warn(format!(
                "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
            ));
        }
    }
    st.log_placement();
    let mut batch = new_batch();
    let mut ready = Vec::new();
    let mut last_stats = Instant::now();
    let (mut published, mut window) = (Instant::now(), Instant::now());
    let gap = st.gap.clone();
    latest.store(st.report());
    while !stop.load(Ordering::Relaxed) && st.restart.is_none() {
        if hup.swap(false, Ordering::Relaxed) {
            // Read and compiled on the preparer's thread, applied between two batches.
            st.want(prepare::Want::Reload(vec![None]));
        }
        if notifier
            .watchdog
            .is_some_and(|w| last_watchdog.elapsed() >= w)
        {
            notifier.notify("WATCHDOG=1");
            last_watchdog = Instant::now();
        }
        let mut fds: Vec<i32> = st.ports.inputs.iter().map(LiveInput::fd).collect();
        fds.extend(st.xsks.iter().map(|(_, x, _)| x.fd()));
        fds.extend(st.ports.outputs.passthru.iter().map(|p| p.tap.fd()));
        fds.push(job_wake.fd());
        afpacket::poll_readable(&fds, 100, &mut ready)?;
        if ready.last() == Some(&(fds.len() - 1)) {
            job_wake.woke(); // before the jobs are looked at, below
        }
        st.drain(&mut batch)?;
        st.passthru_out();
        // Control jobs (status, reload, capture); the control thread reads and writes the
        // clients' sockets.
        while let Ok(job) = jobs.try_recv() {
            let t = Instant::now();
            st.handle(job);
            gap.record(t.elapsed());
        }
        if !st.preparer.idle() {
            let t = Instant::now();
            st.apply_prepared();
            gap.record(t.elapsed());
        }
        if published.elapsed() >= PUBLISH_EVERY {
            let t = Instant::now();
            // Objects a swap replaced are read in each report until they are final.
            if let Some(k) = &mut st.kernel {
                let r = k.retire(false);
                st.history.add(&r);
            }
            st.read_ring_stats();
            st.read_xsk_stats();
            latest.store(st.report());
            published = Instant::now();
            gap.record(t.elapsed());
        }
        if window.elapsed() >= GAP_WINDOW {
            gap.roll();
            window = Instant::now();
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            // A worker thread that ended (a bug: it panicked) is started again on its slot;
            // its rings kept their frames meanwhile, and what overflowed is counted.
            for (n, t) in threads.iter_mut().enumerate() {
                if t.is_finished() && !stop.load(Ordering::Relaxed) {
                    warn(format!(
                        "worker {} stopped unexpectedly; starting it again",
                        n + 1
                    ));
                    if let Ok(fresh) = spawn(n + 1, &st.workers[n]) {
                        let old = std::mem::replace(t, fresh);
                        let _ = old.join();
                    }
                }
            }
            let t = Instant::now();
            st.check_ports();
            st.flush_archives();
            st.ports.outputs.captures.prune();
            st.place_captured();

            gap.record(t.elapsed());
            last_stats = Instant::now();
        }
    }
    // A stop signal wins over a restart asked for in the same moment.
    if stop.load(Ordering::Relaxed) {
        st.restart = None;
    }
    if st.restart.is_some() {
        // The process goes on: systemd is told what happens, not that it stops.
        notifier.notify("STATUS=restarting in place");
    } else {
        notifier.notify("STOPPING=1");
    }
    // The other workers end with this loop, whatever ended it.
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Frames still in the rings were received: count them before leaving.
    st.drain(&mut batch)?;
    for slot in &st.workers {
        slot.with(|w| {
            if let Some(w) = w.as_mut() {
                w.drain(&mut batch, None);
            }
        });
    }
    st.read_ring_stats();
    st.flush_archives();
    st.close_outputs();
    if let Some((exe, client)) = st.restart.take() {
        let (user, _) = st.reports();
        let carried = st.merged(&user, None);
        let e = restart::exec(&exe, &mut st, carried, client);
        // The kernel tier, handed over or not, is detached as the process exits.
        warn(format!("restart failed: {e}; stopping"));
        return Ok(ExitCode::FAILURE);
    }
    let report = st.report();
    log(format!(
        "stopping after {} reload(s); final counters:",
        st.reloads
    ));
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// The plan of configuration text, for the unit tests of the daemon's pure parts.
#[cfg(test)]
pub(super) fn test_plan(text: &str) -> Plan {
    let cfg = vxspan_config::parse(
        text,
        vxspan_config::Syntax::Toml,
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap()
}

/// `--workers`: `auto` is one per CPU this process may run on, at most 8.
fn parse_workers(s: &str) -> Result<usize, String> {
    match s {
        "auto" => Ok(std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8)),
        n => match n.parse::<usize>() {
            Ok(n @ 1..=64) => Ok(n),
            _ => Err(format!(
                "--workers {n:?}: expected auto or a number from 1 to 64"
            )),
        },
    }
}
