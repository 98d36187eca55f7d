//! `vxspan run`: the live datapath, the control socket, reload and shutdown.
//!
//! With `--datapath xdp` (and `auto` where the XDP program loads), the kernel tier
//! ([`crate::kernel`]) runs every (input, VLAN) group it can in the XDP program; the frames of the
//! other groups pass up to the AF_PACKET rings below. With `afpacket`, everything runs there.
//!
//! The first worker (this thread) owns every port: it waits for any input ring to have frames
//! (poll), reads them in batches, runs them through the engine and sends the copies. Between two
//! batches it answers the control socket, applies a pending reload (SIGHUP or `vxspan reload`)
//! and, once a second, reads each ring's kernel statistics (frames dropped because the ring was
//! full are counted as `ring_overrun` on the input, so `rx_packets` counts every frame that
//! reached the socket).
//!
//! With `--workers N`, each AF_PACKET input (not tunnel endpoints, not inputs with passthru) is
//! a PACKET_FANOUT_HASH group with one ring per worker, and an input's AF_XDP sockets (one per
//! RX queue) are spread over the workers; the other N - 1 workers are threads, each
//! with its own rings, engine ([`Engine::worker`]: counts apart, shares sampling, dedup, buckets
//! and ERSPAN sequences) and transmit sockets. The first worker reaches into them only between
//! two of their batches (`WorkerSlot`): to read their counters, to swap their engine on a
//! rules-only reload, or to give them new rings and sockets when ports change.
//!
//! A reload validates and compiles the new file first; if it is invalid, the running
//! configuration stays and the error is logged and returned to `vxspan reload`. If only rules or
//! outputs' transforms changed (the same input and output interfaces), sockets and rings are kept
//! and the new plan is swapped in between two batches, so nothing is lost; otherwise the ports
//! are reopened. Counters continue across reloads (by port, VLAN and rule name).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vxspan_core::{Engine, Plan, Report, RxDrop, Sink, TxDrop, TxFrame};
use vxspan_io::afpacket::{self, RxRing, TxBatch, TxSocket};
use vxspan_io::afxdp::XskTx;
use vxspan_io::tunnel::{ListenSocket, TunnelSender};
use vxspan_io::TxLosses;
use vxspan_io::{Batch, RxPort, TxPort};

/// Where the control socket lives unless `--control` or `management.control` say otherwise.
pub const DEFAULT_CONTROL: &str = "/run/vxspan/control.sock";

/// Frames read from one input before the others get their turn.
const BATCH: usize = 512;

/// Room for one batch of frames of up to 2 KiB (larger ones grow it).
fn new_batch() -> Batch {
    Batch::with_capacity(BATCH, BATCH * 2048)
}

/// An operational event (never per packet).
pub(crate) fn log(msg: impl std::fmt::Display) {
    tracing::info!("{msg}");
}

/// Something an operator should look at: a refused reload, a port that went away.
pub(crate) fn warn(msg: impl std::fmt::Display) {
    tracing::warn!("{msg}");
}

/// Structured logs on stderr (journald collects them under systemd, which stamps the time
/// itself). `level` is a tracing filter (`info`, `debug`, `vxspan=debug`, ...); the VXSPAN_LOG
/// environment variable, when set, wins. `json` prints one JSON object per event.
pub fn init_logging(level: &str, json: bool) -> Result<()> {
    use std::io::IsTerminal;
    let directive = std::env::var("VXSPAN_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .map_err(|e| anyhow::anyhow!("--log-level {directive:?}: {e}"))?;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = match (json, journald) {
        (true, _) => builder.json().try_init(),
        (false, true) => builder.without_time().try_init(),
        (false, false) => builder.try_init(),
    };
    // A second initialisation (tests calling run twice) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// The interface that carries the host's default route (IPv4), from /proc/net/route.
fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    })
}

/// Where an output's copies go.
enum LiveOut {
    /// A transmit socket (index into `sockets`, shared by outputs on one interface).
    Packet(usize),
    /// A tunnel through the kernel's routing.
    Tunnel(TunnelSender),
    /// A rotating pcapng archive (one file for every worker).
    Archive(Arc<Mutex<vxspan_io::archive::ArchiveWriter>>),
}

/// Closes sockets on another thread: closing a packet socket waits for an RCU grace period
/// (tens of milliseconds), which the worker must not spend while its rings fill.
fn close_later<T: Send + 'static>(t: T) {
    if let Err(e) = std::thread::Builder::new()
        .name("vxspan-close".into())
        .spawn(move || drop(t))
    {
        warn(format!("closing old ports: {e}"));
    }
}

/// A lock whose holder panicked still guards usable data here (sockets, files, counters).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The live captures, shared by every worker (each writes the frames it forwards).
#[derive(Default)]
struct Captures {
    list: Mutex<Vec<LiveCapture>>,
    /// How many are attached: read per frame, without the lock.
    count: AtomicUsize,
}

impl Captures {
    fn attach(&self, c: LiveCapture) {
        let mut l = locked(&self.list);
        l.push(c);
        self.count.store(l.len(), Ordering::Relaxed);
    }

    fn clear(&self) {
        let mut l = locked(&self.list);
        l.clear();
        self.count.store(0, Ordering::Relaxed);
    }
}

/// A live capture attached through the control socket: pcapng streamed to the client.
struct LiveCapture {
    w: vxspan_io::pcap::Writer<UnixStream>,
    /// Only frames this rule forwarded (`None`: every forwarded frame).
    rule: Option<usize>,
    alive: bool,
}

/// A passthru at run time: its TAP and a socket on its data port.
struct LivePassthru {
    tap: vxspan_io::tap::Tap,
    port: TxSocket,
    vlan: Option<u16>,
    /// Frames that could not be handed over in either direction.
    errors: u64,
}

/// The outputs of the running plan.
struct LiveOutputs {
    passthru: Vec<LivePassthru>,
    /// Live captures (`vxspan capture`).
    captures: Arc<Captures>,
    /// Transmit sockets by interface; `None` while the interface is gone (copies for it are
    /// counted as `link_down` until it comes back).
    sockets: Vec<Option<OutSocket>>,
    /// The interface of each entry of `sockets`.
    socket_names: Vec<String>,
    outs: Vec<LiveOut>,
    /// Per output: its id in the loss record.
    owners: Vec<u16>,
    /// How interface outputs transmit, and where refused copies are recorded.
    tx: TxSetup,
}

impl Sink for LiveOutputs {
    fn transmit(&mut self, output: usize, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        match self.outs.get_mut(output) {
            Some(LiveOut::Packet(i)) => {
                let owner = self.owners.get(output).copied().unwrap_or(u16::MAX);
                match self.sockets.get_mut(*i) {
                    Some(Some(OutSocket::Packet(s))) => {
                        s.queue(frame.data, owner);
                        Ok(())
                    }
                    Some(Some(OutSocket::Xdp(x))) => x.send(frame.data, owner),
                    _ => Err(TxDrop::LinkDown),
                }
            }
            Some(LiveOut::Tunnel(t)) => t.send(frame),
            Some(LiveOut::Archive(a)) => locked(a).send(frame),
            None => Err(TxDrop::LinkDown),
        }
    }

    fn tapping(&self) -> bool {
        self.captures.count.load(Ordering::Relaxed) > 0
    }

    fn passthru(&mut self, index: usize, f: TxFrame<'_>) {
        if let Some(p) = self.passthru.get_mut(index) {
            if p.tap.write(f.data).is_err() {
                p.errors += 1;
            }
        }
    }

    fn tap(&mut self, rules: &[usize], f: TxFrame<'_>) {
        let mut list = locked(&self.captures.list);
        for c in list.iter_mut().filter(|c| c.alive) {
            if c.rule.is_none_or(|r| rules.contains(&r)) {
                // A client that cannot keep up (the write times out) or went away is dropped.
                if c.w
                    .write_on(f.input as u32, f.data, f.wire_len, f.ts)
                    .is_err()
                {
                    c.alive = false;
                }
            }
        }
        list.retain(|c| c.alive);
        self.captures.count.store(list.len(), Ordering::Relaxed);
    }
}

impl LiveOutputs {
    /// Kicks the AF_XDP transmit rings this worker sends on: what waits there goes out (after
    /// each batch, and on every wake-up for what a busy device left waiting).
    fn flush_tx(&mut self) {
        for s in self.sockets.iter_mut().flatten() {
            match s {
                OutSocket::Packet(p) => p.flush(),
                OutSocket::Xdp(x) => x.flush(),
            }
        }
    }

    /// The outputs as another worker sees them: its own transmit sockets and tunnel sockets
    /// (an interface that is gone stays `None`), the archives and captures shared, no
    /// passthru (inputs with passthru are read by the first worker only).
    fn for_worker(&self, plan: &Plan, worker: usize) -> Result<LiveOutputs> {
        let sockets = self
            .sockets
            .iter()
            .zip(&self.socket_names)
            .map(|(s, name)| match s {
                Some(OutSocket::Packet(_)) => TxBatch::open(name, self.tx.losses.clone())
                    .map(|s| Some(OutSocket::Packet(s)))
                    .with_context(|| format!("opening {name} for a worker")),
                Some(OutSocket::Xdp(x)) => Ok(Some(OutSocket::Xdp(x.for_worker(worker)))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = self
            .outs
            .iter()
            .zip(&plan.outputs)
            .map(|(out, o)| {
                Ok(match out {
                    LiveOut::Packet(i) => LiveOut::Packet(*i),
                    LiveOut::Tunnel(_) => {
                        let e = o.encap.as_ref().context("a tunnel output has an encap")?;
                        LiveOut::Tunnel(TunnelSender::open(e).with_context(|| {
                            format!("output {}: {} to {}", o.name, e.kind(), e.outer().remote)
                        })?)
                    }
                    LiveOut::Archive(a) => LiveOut::Archive(a.clone()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LiveOutputs {
            passthru: Vec::new(),
            captures: self.captures.clone(),
            sockets,
            socket_names: self.socket_names.clone(),
            outs,
            owners: self.owners.clone(),
            tx: self.tx.clone(),
        })
    }
}

/// How output interfaces transmit, and where copies the kernel refuses after they were queued
/// are recorded.
#[derive(Clone, Default)]
struct TxSetup {
    losses: Arc<TxLosses>,
    /// AF_XDP TX rings (`--transmit afxdp`, the default with `--datapath afxdp`), else
    /// AF_PACKET. Even in copy mode they carried about a third more than AF_PACKET batches on
    /// veth (BENCHMARKS.md), for a 2 MiB UMEM per socket.
    xdp: bool,
}

/// A transmit socket on an output interface.
enum OutSocket {
    /// AF_PACKET, bypassing the qdisc.
    Packet(TxBatch),
    /// AF_XDP TX rings (`--datapath afxdp`).
    Xdp(XdpOut),
}

impl OutSocket {
    fn ifindex(&self) -> u32 {
        match self {
            OutSocket::Packet(s) => s.ifindex(),
            OutSocket::Xdp(x) => x.set.ifindex,
        }
    }
}

/// An output interface's AF_XDP transmit sockets, one per TX queue in use, shared by the
/// workers (a veth has one TX queue; each socket has its own lock). A socket the kernel
/// refused (the interface went down) is replaced in place once the interface is up again, so
/// every worker picks up the new one.
struct XdpSet {
    /// `None` while a replacement could not be opened (copies are counted as `link_down`).
    queues: Vec<Mutex<Option<XskTx>>>,
    name: String,
    ifindex: u32,
    losses: Arc<TxLosses>,
}

impl XdpSet {
    /// Opens a socket on each of the first `n` TX queues of `interface` (at most as many as
    /// it has). Copies the kernel drops later are recorded in `losses`.
    fn open(interface: &str, n: usize, losses: &Arc<TxLosses>) -> std::io::Result<XdpSet> {
        let n = n.clamp(1, vxspan_io::afxdp::tx_queues(interface) as usize);
        let queues = (0..n as u32)
            .map(|q| XskTx::open(interface, q, losses.clone()).map(|x| Mutex::new(Some(x))))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(XdpSet {
            queues,
            name: interface.to_owned(),
            ifindex: afpacket::ifindex(interface)?,
            losses: losses.clone(),
        })
    }

    fn is_dead(&self) -> bool {
        self.queues
            .iter()
            .any(|q| locked(q).as_ref().is_none_or(XskTx::is_dead))
    }

    /// Replaces the sockets the kernel refused; returns the error of one that could not be
    /// opened again (it is retried at the next check).
    fn revive(&self) -> std::io::Result<()> {
        for (q, slot) in self.queues.iter().enumerate() {
            let mut x = locked(slot);
            if x.as_ref().is_none_or(XskTx::is_dead) {
                // The old socket is closed first: the queue takes one socket at a time.
                *x = None;
                *x = Some(XskTx::open(&self.name, q as u32, self.losses.clone())?);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let zero_copy = self
            .queues
            .iter()
            .all(|q| locked(q).as_ref().is_some_and(|x| x.zero_copy));
        format!(
            "AF_XDP on {} TX queue(s), {} mode",
            self.queues.len(),
            if zero_copy { "zero-copy" } else { "copy" }
        )
    }
}

/// One worker's use of an [`XdpSet`]: the queue it sends on.
struct XdpOut {
    set: Arc<XdpSet>,
    queue: usize,
}

impl XdpOut {
    fn for_worker(&self, worker: usize) -> XdpOut {
        XdpOut {
            set: self.set.clone(),
            queue: worker % self.set.queues.len(),
        }
    }

    fn send(&mut self, data: &[u8], owner: u16) -> Result<(), TxDrop> {
        match locked(&self.set.queues[self.queue]).as_mut() {
            Some(x) => x.send(data, owner),
            None => Err(TxDrop::LinkDown),
        }
    }

    /// Kicks this worker's queue: what waits on it goes out.
    fn flush(&self) {
        if let Some(x) = locked(&self.set.queues[self.queue]).as_mut() {
            x.flush();
        }
    }
}

/// An input: an interface's receive ring, or a tunnel endpoint's socket.
enum LiveInput {
    Ring(RxRing),
    Listen(ListenSocket),
    /// An interface that disappeared (a VM's vNIC disconnected): picked up again when it returns.
    Gone(String),
}

impl LiveInput {
    fn fd(&self) -> i32 {
        match self {
            LiveInput::Ring(r) => r.fd(),
            LiveInput::Listen(l) => l.fd(),
            // poll(2) ignores negative descriptors.
            LiveInput::Gone(_) => -1,
        }
    }

    fn recv(&mut self, batch: &mut Batch, max: usize) -> std::io::Result<()> {
        match self {
            LiveInput::Ring(r) => r.recv(batch, max).map(|_| ()),
            LiveInput::Listen(l) => l.recv(batch, max).map(|_| ()),
            LiveInput::Gone(_) => Ok(()),
        }
    }
}

/// Open ports for a plan.
struct Ports {
    inputs: Vec<LiveInput>,
    /// Per input: the fanout group its ring leads, which the other workers' rings join
    /// (`None`: read by the first worker alone: a tunnel endpoint, an input with passthru, or
    /// a single worker).
    fanout: Vec<Option<u16>>,
    /// Offloads turned off on input interfaces, restored when the ports are closed.
    _offloads: Vec<afpacket::Offloads>,
    outputs: LiveOutputs,
    /// Input and output interface names, to tell whether a new plan can keep these ports.
    key: (Vec<String>, Vec<String>),
}

impl Ports {
    /// Takes over `old`'s rings for the inputs [`open_ports`] left empty (same interface), with
    /// their fanout groups: the frames in them are read by the new plan, none are lost.
    fn take_rings(&mut self, old: &mut Ports) {
        for (input, group) in self.inputs.iter_mut().zip(self.fanout.iter_mut()) {
            let LiveInput::Gone(name) = input else {
                continue;
            };
            let found = old
                .inputs
                .iter()
                .position(|o| matches!(o, LiveInput::Ring(r) if r.name == *name));
            if let Some(j) = found {
                let ring = std::mem::replace(&mut old.inputs[j], LiveInput::Gone(name.clone()));
                *input = ring;
                *group = old.fanout[j].take();
            }
        }
    }
}

fn interfaces_key(plan: &Plan) -> (Vec<String>, Vec<String>) {
    let inputs = plan.inputs.iter().map(|i| i.interface.clone()).collect();
    let outputs = plan
        .outputs
        .iter()
        .map(|o| format!("{:?} {:?}", o.interface, o.encap))
        .collect();
    (inputs, outputs)
}

/// The hash key of an instance whose configuration names no `hash_key_file`: drawn from the
/// kernel's random source once, at the first load, and kept across reloads (balancing and
/// flow sampling stay put until the process restarts).
fn process_hash_key() -> Result<vxspan_core::hashkey::HashKey, String> {
    static KEY: std::sync::OnceLock<vxspan_core::hashkey::HashKey> = std::sync::OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k.clone());
    }
    let mut key = [0u8; vxspan_core::hashkey::KEY_LEN];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?,
        &mut key,
    )
    .map_err(|e| format!("/dev/urandom: {e}"))?;
    log("no management.hash_key_file: flow and dedup hashes use a key drawn at start (balancing changes at each restart; share a key file between instances that must agree)");
    Ok(KEY
        .get_or_init(|| vxspan_core::hashkey::HashKey::new(key))
        .clone())
}

/// Loads, validates and compiles `path` for the live datapath; applies each output interface's
/// MTU where the configuration sets none.
fn load_plan(path: &Path) -> Result<(vxspan_config::Config, Plan), String> {
    let cfg = vxspan_config::load(path).map_err(|e| e.to_string())?;
    let mut plan = Plan::compile(&cfg, &vxspan_io::filter::Libpcap)
        .map_err(|e| format!("{}: {}: {}", path.display(), e.path, e.message))?;
    if cfg.hash_key.is_none() {
        plan.hash_key = process_hash_key()?;
    }
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
        // Loop guard: a tunnel sent to one of this instance's own tunnel endpoints.
        if let Some(e) = &o.encap {
            if let Some(l) = cfg
                .inputs
                .iter()
                .filter_map(|i| i.listen.as_ref())
                .find(|l| l.addr == e.outer().remote)
            {
                return Err(format!("{}: outputs.{}: loop: the tunnel goes to {}, where this instance listens for {}", path.display(), o.name, e.outer().remote, l.kind.as_str()));
            }
            continue;
        }
        if o.mtu.is_none() {
            if let Some(ifname) = &o.interface {
                o.mtu = afpacket::mtu(ifname).ok();
            }
        }
    }
    Ok((cfg, plan))
}

/// The block size of each worker's ring on a shared input: the input's ring memory divided
/// among them (down to 64 KiB blocks), the count of blocks kept.
fn ring_block_size(workers: usize) -> usize {
    afpacket::BLOCK_SIZE / workers.max(1)
}

/// Whether the workers share input `i` of `plan` through a fanout group (an input with
/// passthru is read by the first worker alone, which holds its TAPs).
fn shares_input(plan: &Plan, i: usize, workers: usize) -> bool {
    workers > 1 && plan.inputs[i].passthru.is_empty()
}

/// Opens input `i`'s ring for the first worker: in a new fanout group when `workers` share it.
fn open_input_ring(
    plan: &Plan,
    i: usize,
    workers: usize,
) -> std::io::Result<(RxRing, Option<u16>)> {
    let inp = &plan.inputs[i];
    let shared = shares_input(plan, i, workers);
    let ring = RxRing::open_with(
        &inp.interface,
        if shared {
            ring_block_size(workers)
        } else {
            afpacket::BLOCK_SIZE
        },
    )?;
    let group = if shared {
        Some(ring.join_fanout(None)?)
    } else {
        None
    };
    Ok((ring, group))
}

/// Whether input `i` of `plan` can take over `old`'s ring on the same interface: the ring is
/// kept (with every frame in it) instead of a new one being opened beside it.
fn reusable_ring(plan: &Plan, i: usize, workers: usize, old: Option<&Ports>) -> bool {
    let inp = &plan.inputs[i];
    let shared = shares_input(plan, i, workers);
    old.is_some_and(|old| {
        old.inputs.iter().zip(&old.fanout).any(|(o, f)| {
            matches!(o, LiveInput::Ring(r) if r.name == inp.interface) && f.is_some() == shared
        })
    })
}

/// Opens the ports of `plan`. Inputs whose ring `old` can hand over are left empty for now
/// (`LiveInput::Gone`), filled by [`Ports::take_rings`] once nothing else can fail.
fn open_ports(plan: &Plan, workers: usize, old: Option<&Ports>, tx: &TxSetup) -> Result<Ports> {
    let mut inputs = Vec::new();
    let mut fanout = Vec::new();
    let mut offloads = Vec::new();
    for (ii, i) in plan.inputs.iter().enumerate() {
        if let Some(l) = &i.listen {
            let sock = ListenSocket::open(l.addr, l.port)
                .with_context(|| format!("input {}: listening on {}", i.name, i.interface))?;
            inputs.push(LiveInput::Listen(sock));
            fanout.push(None);
            continue;
        }
        if afpacket::set_up(&i.interface)
            .with_context(|| format!("input {}: bringing {} up", i.name, i.interface))?
        {
            log(format!("brought {} up", i.interface));
        }
        let off = afpacket::Offloads::disable(&i.interface);
        if !off.changed().is_empty() {
            log(format!(
                "{}: turned off {} (restored on exit)",
                i.interface,
                off.changed().join(", ")
            ));
        }
        offloads.push(off);
        if reusable_ring(plan, ii, workers, old) {
            inputs.push(LiveInput::Gone(i.interface.clone()));
            fanout.push(None);
            continue;
        }
        let (ring, group) = open_input_ring(plan, ii, workers).with_context(|| {
            format!(
                "input {}: opening a receive ring on {}",
                i.name, i.interface
            )
        })?;
        inputs.push(LiveInput::Ring(ring));
        fanout.push(group);
    }
    let mut sockets: Vec<Option<OutSocket>> = Vec::new();
    let mut socket_names: Vec<String> = Vec::new();
    let mut outs = Vec::new();
    for o in &plan.outputs {
        if let Some(e) = &o.encap {
            let t = TunnelSender::open(e).with_context(|| {
                format!("output {}: {} to {}", o.name, e.kind(), e.outer().remote)
            })?;
            outs.push(LiveOut::Tunnel(t));
            continue;
        }
        if let Some(a) = &o.archive {
            outs.push(LiveOut::Archive(Arc::new(Mutex::new(
                vxspan_io::archive::ArchiveWriter::new(a.clone(), plan.input_descriptions()),
            ))));
            continue;
        }
        let ifname = o
            .interface
            .as_deref()
            .context("an output is an interface or a tunnel")?;
        let idx = match socket_names.iter().position(|s| s == ifname) {
            Some(i) => i,
            None => {
                if afpacket::set_up(ifname)
                    .with_context(|| format!("output {}: bringing {ifname} up", o.name))?
                {
                    log(format!("brought {ifname} up"));
                }
                sockets
                    .push(Some(open_output(ifname, workers, old, tx).with_context(
                        || format!("output {}: opening {ifname}", o.name),
                    )?));
                socket_names.push(ifname.to_owned());
                sockets.len() - 1
            }
        };
        outs.push(LiveOut::Packet(idx));
    }
    Ok(Ports {
        inputs,
        fanout,
        _offloads: offloads,
        outputs: LiveOutputs {
            passthru: open_passthru(plan)?,
            captures: Arc::default(),
            sockets,
            socket_names,
            outs,
            owners: plan.outputs.iter().map(|o| tx.losses.id(&o.name)).collect(),
            tx: tx.clone(),
        },
        key: interfaces_key(plan),
    })
}

/// Opens a transmit socket on output interface `ifname`: AF_XDP TX rings with `tx.xdp` (the
/// set `old` has on the interface is kept: a second socket cannot bind its queues), AF_PACKET
/// otherwise, or where AF_XDP cannot take the interface (a jumbo MTU, or its queues already
/// serve AF_XDP input sockets).
fn open_output(
    ifname: &str,
    workers: usize,
    old: Option<&Ports>,
    tx: &TxSetup,
) -> Result<OutSocket> {
    let losses = &tx.losses;
    if tx.xdp {
        let ifindex = afpacket::ifindex(ifname).ok();
        let kept = old.and_then(|p| {
            let o = &p.outputs;
            o.socket_names
                .iter()
                .zip(&o.sockets)
                .find_map(|(n, s)| match s {
                    Some(OutSocket::Xdp(x)) if n == ifname && Some(x.set.ifindex) == ifindex => {
                        Some(x.for_worker(0))
                    }
                    _ => None,
                })
        });
        if let Some(x) = kept {
            return Ok(OutSocket::Xdp(x));
        }
        // A set of the interface that an earlier reload replaced may still be closing (on
        // another thread): its queues are busy for that long.
        let mut opened = XdpSet::open(ifname, workers, losses);
        for _ in 0..25 {
            match &opened {
                Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                    std::thread::sleep(Duration::from_millis(10));
                    opened = XdpSet::open(ifname, workers, losses);
                }
                _ => break,
            }
        }
        match opened {
            Ok(set) => {
                log(format!("output interface {ifname}: {}", set.describe()));
                return Ok(OutSocket::Xdp(XdpOut {
                    set: Arc::new(set),
                    queue: 0,
                }));
            }
            Err(e) => warn(format!(
                "output interface {ifname}: AF_XDP transmit unavailable ({e}); sending through AF_PACKET"
            )),
        }
    }
    Ok(OutSocket::Packet(TxBatch::open(ifname, losses.clone())?))
}

/// Opens the TAP devices of the plan's passthru sections, and a socket on each data port.
fn open_passthru(plan: &Plan) -> Result<Vec<LivePassthru>> {
    plan.passthru
        .iter()
        .map(|p| {
            let tap = vxspan_io::tap::Tap::open(&p.tap)
                .with_context(|| format!("passthru {}: TAP {}", p.name, p.tap))?;
            let port = TxSocket::open(&p.interface)
                .with_context(|| format!("passthru {}: {}", p.name, p.interface))?;
            log(format!(
                "passthru {}: {} <-> TAP {}",
                p.name, p.interface, p.tap
            ));
            Ok(LivePassthru {
                tap,
                port,
                vlan: p.vlan,
                errors: 0,
            })
        })
        .collect()
}

struct Control {
    listener: UnixListener,
    path: PathBuf,
}

impl Control {
    fn bind(path: &Path) -> Result<Control> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use: another vxspan is running (use --control to run a second one)",
                path.display()
            );
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("control socket {}", path.display()))?;
        // Root-only: the socket reloads the configuration and reads every counter.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Control {
            listener,
            path: path.to_owned(),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A worker beyond the first: a ring in each shared input's fanout group, its own engine
/// (sharing sampling, dedup, buckets and sequences with the first worker's) and its own
/// transmit sockets.
struct Worker {
    engine: Engine,
    /// (input, ring).
    rings: Vec<(usize, RxRing)>,
    /// The fanout group each ring is in.
    groups: Vec<u16>,
    /// AF_XDP sockets this worker reads (input, socket, drops seen so far): the inputs' RX
    /// queues are spread over the workers.
    xsks: Vec<Xsk>,
    outputs: LiveOutputs,
}

/// An AF_XDP socket feeding the userspace tier: (input, socket, drops counted so far).
type Xsk = (usize, vxspan_io::afxdp::XskRx, u64);

/// Counts what AF_XDP sockets could not take (no free frame, ring full) as `ring_overrun` on
/// their input.
fn count_xsk_drops(engine: &mut Engine, xsks: &mut [Xsk]) {
    for (i, x, seen) in xsks.iter_mut() {
        if let Ok(d) = x.dropped() {
            if d > *seen {
                engine.count_rx_drop(*i, RxDrop::RingOverrun, d - *seen, 0);
                *seen = d;
            }
        }
        let bad = x.take_invalid_ring_entries();
        if bad > 0 {
            engine.count_rx_drop(*i, RxDrop::InvalidRingEntry, bad, 0);
        }
    }
}

impl Worker {
    /// A worker for the running plan: `first` is the first worker's engine, `ports` its ports.
    /// Rings of `old` that are still in one of the ports' fanout groups are kept (so a change
    /// elsewhere loses none of their frames); `old` is left with the others.
    fn new(
        first: &Engine,
        ports: &Ports,
        workers: usize,
        index: usize,
        old: Option<&mut Worker>,
    ) -> Result<Worker> {
        let plan = first.plan();
        let mut kept: Vec<(RxRing, u16)> = Vec::new();
        let mut xsks = Vec::new();
        if let Some(old) = old {
            xsks = std::mem::take(&mut old.xsks);
            let rings = std::mem::take(&mut old.rings);
            let groups = std::mem::take(&mut old.groups);
            for ((i, ring), g) in rings.into_iter().zip(groups) {
                if ports.fanout.contains(&Some(g)) {
                    kept.push((ring, g));
                } else {
                    old.rings.push((i, ring));
                    old.groups.push(g);
                }
            }
        }
        let (mut rings, mut groups) = (Vec::new(), Vec::new());
        for (i, (input, group)) in ports.inputs.iter().zip(&ports.fanout).enumerate() {
            let (LiveInput::Ring(r), Some(id)) = (input, group) else {
                continue;
            };
            let ring = match kept.iter().position(|k| k.1 == *id) {
                Some(k) => kept.swap_remove(k).0,
                None => RxRing::open_with(&r.name, ring_block_size(workers))
                    .and_then(|ring| ring.join_fanout(Some(*id)).map(|_| ring))
                    .with_context(|| format!("a worker's ring on {}", r.name))?,
            };
            rings.push((i, ring));
            groups.push(*id);
        }
        Ok(Worker {
            engine: first.worker(),
            rings,
            groups,
            xsks,
            outputs: ports.outputs.for_worker(plan, index)?,
        })
    }

    /// Reads the rings, batch by batch, until they are empty or the control thread wants the
    /// worker (a reload, a counter read): it waits for at most one batch. A source that fails
    /// is left until the next call.
    fn drain(&mut self, batch: &mut Batch, wanted: Option<&AtomicBool>) {
        let sources = self
            .rings
            .iter_mut()
            .map(|(i, r)| (*i, r as &mut dyn RxPort))
            .chain(
                self.xsks
                    .iter_mut()
                    .map(|(i, x, _)| (*i, x as &mut dyn RxPort)),
            );
        for (i, port) in sources {
            let recv = |b: &mut Batch| port.recv(b, BATCH).map(|_| ());
            if let Ok(true) =
                drain_input(&mut self.engine, &mut self.outputs, i, batch, recv, wanted)
            {
                return;
            }
        }
        self.outputs.flush_tx();
    }

    fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.rings
            .iter()
            .map(|(_, r)| r.fd())
            .chain(self.xsks.iter().map(|(_, x, _)| x.fd()))
    }

    /// Counts what the rings and AF_XDP sockets dropped (full) as `ring_overrun`.
    fn read_ring_stats(&mut self) {
        count_ring_drops(&mut self.engine, self.rings.iter().map(|(i, r)| (*i, r)));
        count_xsk_drops(&mut self.engine, &mut self.xsks);
    }
}

/// Where a worker thread finds its work. The control thread takes the lock between two of the
/// worker's batches to swap its plan or read its counters; `wanted` keeps the worker from
/// taking the lock again first. Afterwards it wakes the worker through a pipe in the worker's
/// poll set: the worker may be waiting on the descriptors it had before (a socket it was just
/// given would otherwise not be read until that wait times out, 100 ms, longer than an AF_XDP
/// ring lasts at 10,000 frames a second).
struct WorkerSlot {
    worker: Mutex<Option<Worker>>,
    wanted: AtomicBool,
    wake: (std::io::PipeReader, std::io::PipeWriter),
    /// A wake-up byte is in the pipe (at most one is).
    woken: AtomicBool,
}

impl WorkerSlot {
    fn new() -> std::io::Result<WorkerSlot> {
        Ok(WorkerSlot {
            worker: Mutex::new(None),
            wanted: AtomicBool::new(false),
            wake: std::io::pipe()?,
            woken: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the worker (if it has one) between two of its batches, then wakes it.
    fn with<R>(&self, f: impl FnOnce(&mut Option<Worker>) -> R) -> R {
        self.wanted.store(true, Ordering::Relaxed);
        let r = f(&mut locked(&self.worker));
        self.wanted.store(false, Ordering::Relaxed);
        if !self.woken.swap(true, Ordering::AcqRel) {
            use std::io::Write;
            let _ = (&self.wake.1).write(&[1]);
        }
        r
    }

    fn wake_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.wake.0.as_raw_fd()
    }

    /// Takes the wake-up byte out of the pipe (called when poll found it readable).
    fn woke(&self) {
        use std::io::Read;
        let mut b = [0u8; 8];
        let _ = (&self.wake.0).read(&mut b);
        self.woken.store(false, Ordering::Release);
    }
}

/// A worker thread: waits for its rings, drains them, until `stop`.
fn worker_loop(slot: Arc<WorkerSlot>, stop: Arc<AtomicBool>) {
    let mut batch = new_batch();
    let mut ready = Vec::new();
    let mut fds = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Bounded: the control thread holds the lock for one swap or one counter read.
        for _ in 0..10_000 {
            if !slot.wanted.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        fds.clear();
        fds.push(slot.wake_fd());
        if let Some(w) = locked(&slot.worker).as_mut() {
            w.drain(&mut batch, Some(&slot.wanted));
            fds.extend(w.fds());
        }
        // A descriptor closed by a swap meanwhile only ends this wait early; a swap wakes it
        // through the pipe (index 0).
        let _ = afpacket::poll_readable(&fds, 100, &mut ready);
        if ready.first() == Some(&0) {
            slot.woke();
        }
    }
}

struct State {
    config: PathBuf,
    cfg: vxspan_config::Config,
    engine: Engine,
    ports: Ports,
    /// The XDP tier, when the datapath is xdp.
    kernel: Option<crate::kernel::KernelTier>,
    /// `--xdp-mode` (None: vxspan picks), for re-attaching after a reload that changes ports.
    xdp_mode: Option<vxspan_xdp::Mode>,
    /// AF_XDP sockets feeding the userspace tier that this worker reads (the others' are in
    /// their `Worker`).
    xsks: Vec<Xsk>,
    /// Counters of the plans replaced by reloads.
    history: Report,
    reloads: u64,
    /// The other workers (the first is this thread: `engine` and `ports`).
    workers: Vec<Arc<WorkerSlot>>,
    /// How outputs transmit, and the copies their sockets accepted that the kernel then
    /// refused (taken off `tx` when counters are reported).
    tx: TxSetup,
}

impl State {
    fn report(&self) -> Report {
        let (user, kernel) = self.reports();
        self.merged(&user, kernel.as_ref().map(|k| &k.0))
    }

    /// The current plan's counters, each tier's apart: the userspace tier's, and the kernel
    /// tier's with the frames it handed up per input (the maps are read once).
    fn reports(&self) -> (Report, Option<(Report, Vec<u64>)>) {
        let plan = self.engine.plan();
        let mut user = self.engine.report();
        for w in self.worker_reports() {
            user.add(&w);
        }
        (user, self.kernel.as_ref().map(|k| k.snapshot(plan)))
    }

    /// The other workers' counters for the current plan.
    fn worker_reports(&self) -> Vec<Report> {
        self.workers
            .iter()
            .filter_map(|s| s.with(|w| w.as_ref().map(|w| w.engine.report())))
            .collect()
    }

    /// Gives every other worker a fresh share of the current ports (rings in the fanout
    /// groups, transmit sockets) and an engine for the current plan. Rings whose group stays
    /// are kept; what the others still hold is read one last time, and what the old engines
    /// counted goes to the history.
    fn respawn_workers(&mut self) {
        let n = self.workers.len() + 1;
        let mut batch = new_batch();
        for (k, slot) in self.workers.iter().enumerate() {
            let old = slot.with(|w| {
                let mut old = w.take();
                match Worker::new(&self.engine, &self.ports, n, k + 1, old.as_mut()) {
                    Ok(fresh) => *w = Some(fresh),
                    Err(e) => warn(format!("worker: {e:#}; its share is read by the others")),
                }
                old
            });
            if let Some(mut old) = old {
                old.drain(&mut batch, None);
                old.read_ring_stats();
                self.history.add(&old.engine.report());
                close_later(old);
            }
        }
    }

    /// A rules-only reload for the other workers: their rings and sockets stay, each gets an
    /// engine for the new plan between two of its batches (nothing is lost); the old engines'
    /// counters go to the history.
    fn swap_worker_engines(&mut self) {
        let owners = &self.ports.outputs.owners;
        for slot in &self.workers {
            let old = slot.with(|w| {
                w.as_mut().map(|w| {
                    let fresh = self.engine.worker();
                    w.read_ring_stats();
                    w.outputs.owners.clone_from(owners);
                    std::mem::replace(&mut w.engine, fresh).report()
                })
            });
            if let Some(r) = old {
                self.history.add(&r);
            }
        }
    }

    /// Every counter since start: the replaced plans' and both tiers' of the current one.
    fn merged(&self, user: &Report, kernel: Option<&Report>) -> Report {
        let mut r = self.history.clone();
        r.add(user);
        if let Some(k) = kernel {
            r.add(k);
        }
        self.tx.losses.apply(&mut r);
        r
    }

    /// The datapath as it runs: "afpacket", or "xdp (native)" / "xdp (generic)".
    fn datapath(&self) -> String {
        match self
            .kernel
            .as_ref()
            .and_then(|k| k.mode().map(|m| (m, k.userspace_only())))
        {
            Some((m, true)) => format!("afxdp ({})", m.as_str()),
            Some((m, false)) => format!("xdp ({})", m.as_str()),
            None => "afpacket".into(),
        }
    }

    /// The groups with the tier they actually run in here.
    fn groups(&self) -> Vec<vxspan_core::plan::GroupDescription> {
        let plan = self.engine.plan();
        let mut groups = plan.describe(&self.cfg).groups;
        let actual: Vec<(vxspan_core::Tier, String)> = match &self.kernel {
            Some(k) => k
                .tables()
                .inputs
                .iter()
                .flat_map(|i| i.placement.iter().cloned())
                .collect(),
            None => plan
                .inputs
                .iter()
                .flat_map(|i| i.groups.iter())
                .map(|g| {
                    let why = match g.tier {
                        vxspan_core::Tier::Xdp => format!("datapath afpacket ({})", g.why),
                        vxspan_core::Tier::Userspace => g.why.clone(),
                    };
                    (vxspan_core::Tier::Userspace, why)
                })
                .collect(),
        };
        for (g, (tier, why)) in groups.iter_mut().zip(actual) {
            g.tier = tier;
            g.why = why;
        }
        groups
    }

    fn reload(&mut self) -> Result<String, String> {
        let (cfg, plan) = load_plan(&self.config)?;
        let same_ports = interfaces_key(&plan) == self.ports.key;
        // Everything that can fail comes first, and nothing is changed until all of it has
        // worked: new ports are opened beside the old ones, then the kernel tier swaps its
        // tables (atomically on its attachments when the input interfaces stay, even if the
        // outputs change; otherwise it is re-attached below).
        let same_inputs = plan.inputs.iter().map(|i| &i.interface).eq(self
            .engine
            .plan()
            .inputs
            .iter()
            .map(|i| &i.interface));
        let new_ports = if same_ports {
            None
        } else {
            Some(
                open_ports(&plan, self.workers.len() + 1, Some(&self.ports), &self.tx)
                    .map_err(|e| format!("{e:#}"))?,
            )
        };
        if same_inputs {
            if let Some(k) = &mut self.kernel {
                let old = k.reload(self.engine.plan(), &plan)?;
                self.history.add(&old);
            }
        }
        if let Some(mut ports) = new_ports {
            // What the old rings hold was received under the old plan: it is read through it
            // now. Rings of interfaces that stay inputs then go to the new ports as they are.
            let mut batch = new_batch();
            if let Err(e) = self.drain(&mut batch) {
                warn(format!("reading the inputs before the reload: {e}"));
            }
            ports.take_rings(&mut self.ports);
            // Inputs that stay keep the offload settings saved when vxspan first took them
            // (the new ports found them already off); the others get theirs back now.
            let old = std::mem::take(&mut self.ports._offloads);
            let (keep, restore): (Vec<_>, Vec<_>) = old
                .into_iter()
                .partition(|o| ports.key.0.iter().any(|i| i == o.interface()));
            ports
                ._offloads
                .retain(|o| !keep.iter().any(|k| k.interface() == o.interface()));
            ports._offloads.extend(keep);
            drop(restore);
            close_later(std::mem::replace(&mut self.ports, ports));
        }
        if !same_inputs {
            if let Some(k) = self.kernel.take() {
                self.restart_kernel(k, &plan);
            }
        }
        self.history.add(&self.engine.report());
        // Captures name rules of the old plan: they end with it.
        self.ports.outputs.captures.clear();
        // The other workers count their frames of the old plan in its engine, until they
        // get the new one.
        let sequences = self.engine.erspan_sequences();
        // Copies are recorded under their output's name: a rules-only reload may rename one.
        self.ports.outputs.owners = plan
            .outputs
            .iter()
            .map(|o| self.tx.losses.id(&o.name))
            .collect();
        self.engine = Engine::new(Arc::new(plan));
        self.engine.continue_erspan_sequences(&sequences);
        if same_ports {
            self.swap_worker_engines();
        } else {
            self.respawn_workers();
        }
        self.cfg = cfg;
        self.reloads += 1;
        if self.kernel.is_some() {
            let plan = self.engine.plan().clone();
            if let Err(e) = self.open_xsks(&plan) {
                warn(format!(
                    "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
                ));
            }
        }
        self.log_placement();
        Ok(if same_ports {
            "reloaded (rules only: ports kept)".into()
        } else {
            "reloaded (ports reopened)".into()
        })
    }

    /// Reads every input until it has nothing more, batch by batch, through the engine. Every
    /// input is visited (a readable descriptor only says that one ring block was retired).
    fn drain(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        let State {
            engine,
            ports,
            xsks,
            ..
        } = self;
        for (i, input) in ports.inputs.iter_mut().enumerate() {
            drain_input(
                engine,
                &mut ports.outputs,
                i,
                batch,
                |b| input.recv(b, BATCH),
                None,
            )?;
        }
        for (i, x, _) in xsks.iter_mut() {
            drain_input(
                engine,
                &mut ports.outputs,
                *i,
                batch,
                |b| x.recv(b, BATCH).map(|_| ()),
                None,
            )?;
        }
        ports.outputs.flush_tx();
        Ok(())
    }

    /// Notices interfaces that disappeared (or were re-created with a new index) and picks up
    /// the ones that came back: inputs get a new ring (up, promiscuous, offloads off), outputs a
    /// new socket. While an output is gone its copies are counted as `link_down`.
    fn check_ports(&mut self) {
        // A port that came back has a new interface index: the kernel tier is re-attached.
        let mut came_back = false;
        // The other workers follow any change: new rings, new sockets.
        let mut changed = false;
        let plan = self.engine.plan().clone();
        let workers = self.workers.len() + 1;
        for (ii, input) in self.ports.inputs.iter_mut().enumerate() {
            let gone = match input {
                LiveInput::Ring(r) => {
                    (afpacket::ifindex(&r.name).ok() != Some(r.ifindex)).then(|| r.name.clone())
                }
                _ => None,
            };
            if let Some(name) = gone {
                warn(format!(
                    "input interface {name} disappeared; waiting for it to come back"
                ));
                *input = LiveInput::Gone(name);
                self.ports.fanout[ii] = None;
                changed = true;
            }
            if let LiveInput::Gone(name) = input {
                if afpacket::ifindex(name).is_ok() {
                    let _ = afpacket::set_up(name);
                    let off = afpacket::Offloads::disable(name);
                    match open_input_ring(&plan, ii, workers) {
                        Ok((ring, group)) => {
                            log(format!("input interface {name} is back"));
                            came_back = true;
                            self.ports._offloads.push(off);
                            self.ports.fanout[ii] = group;
                            *input = LiveInput::Ring(ring);
                        }
                        Err(e) => log(format!(
                            "input interface {name} is back but cannot be opened yet: {e}"
                        )),
                    }
                }
            }
        }
        let outs = &mut self.ports.outputs;
        for (sock, name) in outs.sockets.iter_mut().zip(&outs.socket_names) {
            let current = afpacket::ifindex(name).ok();
            match sock {
                Some(s) if current != Some(s.ifindex()) => {
                    warn(format!("output interface {name} disappeared; copies for it are counted as link_down until it comes back"));
                    *sock = None;
                    changed = true;
                }
                // The kernel refused AF_XDP transmit (the interface went down): copies are
                // counted as link_down; once it is up, the sockets are opened again.
                Some(OutSocket::Xdp(x))
                    if x.set.is_dead()
                        && afpacket::link_state(name).is_ok_and(|(up, _)| up) =>
                {
                    match x.set.revive() {
                        Ok(()) => log(format!(
                            "output interface {name} is up again; its AF_XDP sockets were reopened"
                        )),
                        Err(e) => warn(format!(
                            "output interface {name} is up again but its AF_XDP sockets cannot be reopened yet: {e}"
                        )),
                    }
                }
                None if current.is_some() => {
                    let _ = afpacket::set_up(name);
                    if let Ok(s) = open_output(name, workers, None, &self.tx) {
                        log(format!("output interface {name} is back"));
                        came_back = true;
                        *sock = Some(s);
                    }
                }
                _ => {}
            }
        }
        if came_back {
            if let Some(k) = self.kernel.take() {
                let plan = self.engine.plan().clone();
                self.restart_kernel(k, &plan);
            }
        }
        // Balancing skips outputs whose interface is gone.
        for (o, out) in self.ports.outputs.outs.iter().enumerate() {
            if let LiveOut::Packet(i) = out {
                let up = self
                    .ports
                    .outputs
                    .sockets
                    .get(*i)
                    .is_some_and(Option::is_some);
                self.engine.set_output_up(o, up);
            }
        }
        if changed || came_back {
            self.respawn_workers();
        }
    }

    /// What the hosts behind passthru TAPs send goes out of their data ports (tagged with the
    /// passthru's VLAN, if it has one). Locally sent frames are not seen by the input rings
    /// (PACKET_IGNORE_OUTGOING), so they are never mirrored back.
    fn passthru_out(&mut self) {
        let mut buf = vec![0u8; 65_536];
        let mut tagged = Vec::with_capacity(65_540);
        for p in self.ports.outputs.passthru.iter_mut() {
            for _ in 0..256 {
                let n = match p.tap.read(&mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(_) => {
                        p.errors += 1;
                        break;
                    }
                };
                let frame = &buf[..n];
                let data = match p.vlan {
                    Some(vid) => {
                        tagged.clear();
                        if vxspan_core::wire::vlan::push_tag(
                            frame,
                            vxspan_core::wire::VlanTag::new(
                                vxspan_core::wire::EtherType::Vlan,
                                0,
                                false,
                                vid,
                            ),
                            &mut tagged,
                        )
                        .is_err()
                        {
                            continue;
                        }
                        &tagged[..]
                    }
                    None => frame,
                };
                if p.port
                    .send(TxFrame {
                        data,
                        wire_len: data.len() as u32,
                        ts: 0,
                        input: 0,
                    })
                    .is_err()
                {
                    p.errors += 1;
                }
            }
        }
    }

    /// Closes the transmit sockets (the other workers' first, their counters kept): AF_XDP
    /// sockets send what still waits on their rings, and count what cannot go, before the
    /// final counters are read.
    fn close_outputs(&mut self) {
        for slot in &self.workers {
            if let Some(w) = slot.with(Option::take) {
                self.history.add(&w.engine.report());
            }
        }
        self.ports.outputs.sockets.clear();
    }

    /// Pushes archive files to disk, so they are readable while vxspan runs.
    fn flush_archives(&mut self) {
        for out in self.ports.outputs.outs.iter_mut() {
            if let LiveOut::Archive(a) = out {
                if let Err(e) = locked(a).flush() {
                    warn(format!("archive: {e}"));
                }
            }
        }
    }

    fn read_ring_stats(&mut self) {
        let rings = self.ports.inputs.iter().enumerate();
        count_ring_drops(
            &mut self.engine,
            rings.filter_map(|(i, input)| match input {
                LiveInput::Ring(r) => Some((i, r)),
                _ => None,
            }),
        );
        for slot in &self.workers {
            slot.with(|w| w.as_mut().map(Worker::read_ring_stats));
        }
    }

    /// What `vxspan top` shows besides the counters: the ports with their link state, the
    /// (input, VLAN) groups with their rules, outputs and tier, and the process's own figures.
    fn status(&self) -> serde_json::Value {
        let plan = self.engine.plan();
        let link = |ifname: &str| match afpacket::link_state(ifname) {
            Ok((true, true)) => "up",
            Ok((true, false)) => "no carrier",
            Ok((false, _)) => "down",
            Err(_) => "gone",
        };
        let mut ports = Vec::new();
        for i in &plan.inputs {
            let state = if i.listen.is_some() {
                "listening"
            } else {
                link(&i.interface)
            };
            ports.push(serde_json::json!({"name": i.name, "role": "input", "interface": i.interface, "link": state}));
        }
        for o in &plan.outputs {
            let (what, state) = match (&o.interface, &o.encap, &o.archive) {
                (Some(ifname), _, _) => (ifname.clone(), link(ifname)),
                (None, Some(e), _) => (format!("{} to {}", e.kind(), e.outer().remote), "tunnel"),
                (None, None, Some(a)) => (a.path.clone(), "file"),
                _ => (String::new(), "-"),
            };
            let transmit = o.interface.as_ref().and_then(|ifname| {
                let outs = &self.ports.outputs;
                let i = outs.socket_names.iter().position(|n| n == ifname)?;
                Some(match outs.sockets.get(i)? {
                    Some(OutSocket::Xdp(x)) => x.set.describe(),
                    Some(OutSocket::Packet(_)) => "AF_PACKET".into(),
                    None => "none (interface gone)".into(),
                })
            });
            ports.push(serde_json::json!({"name": o.name, "role": "output", "interface": what, "link": state, "transmit": transmit}));
        }
        let process = crate::metrics::Process::read();
        // Frames each tier received, per input: with a VxSPAN-only configuration the userspace
        // tier sees none.
        let (user, kern) = self.reports();
        let report = self.merged(&user, kern.as_ref().map(|k| &k.0));
        let xsk_counts = self.xsk_counts();
        let tiers: serde_json::Map<String, serde_json::Value> = plan
            .inputs
            .iter()
            .enumerate()
            .map(|(ii, i)| {
                let rx = |r: &Report| r.interfaces.get(&i.name).map_or(0, |p| p.rx_packets);
                (
                    i.name.clone(),
                    serde_json::json!({
                        "xdp_rx_packets": kern.as_ref().map_or(0, |k| rx(&k.0)),
                        // Handed up by the program: each is then read by the userspace tier
                        // or counted as ring_overrun, so this equals userspace_rx_packets.
                        "xdp_to_userspace_packets": kern.as_ref().and_then(|k| k.1.get(ii).copied()).unwrap_or(0),
                        "userspace_rx_packets": rx(&user),
                        "afxdp_rx_packets": xsk_counts.iter().filter(|(x, _)| *x == ii).map(|(_, n)| n).sum::<u64>(),
                        "afxdp_sockets": xsk_counts.iter().filter(|(x, _)| *x == ii).count(),
                    }),
                )
            })
            .collect();
        // The tier of each (input, VLAN) the counters list, for labels (Prometheus, top).
        let placement: Vec<Vec<vxspan_core::Tier>> = match &self.kernel {
            Some(k) => k
                .tables()
                .inputs
                .iter()
                .map(|i| {
                    let mut v: Vec<_> = i.placement.iter().map(|p| p.0).collect();
                    // VIDs of no group: dropped where the input's frames are classified.
                    v.push(if i.all_userspace {
                        vxspan_core::Tier::Userspace
                    } else {
                        vxspan_core::Tier::Xdp
                    });
                    v
                })
                .collect(),
            None => plan
                .inputs
                .iter()
                .map(|i| vec![vxspan_core::Tier::Userspace; i.groups.len() + 1])
                .collect(),
        };
        let vlan_tiers: serde_json::Map<String, serde_json::Value> = plan
            .inputs
            .iter()
            .zip(&placement)
            .map(|(i, tiers)| {
                let m: serde_json::Map<String, serde_json::Value> = (0..4096u16)
                    .filter_map(|vid| {
                        let key = vxspan_core::counters::vlan_key(vid);
                        report.vlans.get(&i.name)?.get(&key)?;
                        let g = i.group_of_vid[usize::from(vid)];
                        let t = if g == vxspan_core::plan::NO_GROUP {
                            tiers[tiers.len() - 1]
                        } else {
                            tiers[usize::from(g)]
                        };
                        Some((key, serde_json::to_value(t).unwrap_or_default()))
                    })
                    .collect();
                (i.name.clone(), serde_json::Value::Object(m))
            })
            .collect();
        // Frames each userspace worker received (the first one's include tunnel endpoints,
        // passthru inputs and AF_XDP sockets).
        let rx_of = |r: &Report| -> u64 {
            plan.inputs
                .iter()
                .filter_map(|i| r.interfaces.get(&i.name))
                .map(|p| p.rx_packets)
                .sum()
        };
        let mut worker_rx = vec![rx_of(&self.engine.report())];
        worker_rx.extend(self.worker_reports().iter().map(rx_of));
        serde_json::json!({
            "workers": worker_rx.len(),
            "vlan_hint_inputs": self.kernel.as_ref().map_or(0, |k| k.vlan_hint_inputs()),
            "worker_rx_packets": worker_rx,
            "tiers": tiers,
            "vlan_tiers": vlan_tiers,
            "config": self.config.display().to_string(),
            "reloads": self.reloads,
            "datapath": self.datapath(),
            "rss_bytes": process.resident_bytes,
            "cpu_seconds": process.cpu_seconds,
            "ports": ports,
            "groups": self.groups(),
        })
    }

    /// Detaches `old` (its counters go to the history) and attaches a new kernel tier for
    /// `plan`, whose inputs changed. If that fails, every group runs on AF_PACKET.
    fn restart_kernel(&mut self, old: crate::kernel::KernelTier, plan: &Plan) {
        self.collect_xsks();
        self.read_xsk_stats();
        let userspace_only = old.userspace_only();
        old.detach(self.engine.plan(), &mut self.history);
        self.xsks.clear();
        match crate::kernel::KernelTier::start(plan, self.xdp_mode, userspace_only) {
            Ok((k, _, why)) => {
                log(format!("XDP tier re-attached to the inputs ({why})"));
                self.kernel = Some(k);
                if let Err(e) = self.open_xsks(plan) {
                    warn(format!(
                        "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
                    ));
                }
            }
            Err(e) => warn(format!(
                "XDP tier could not be re-attached ({e}); every group runs on AF_PACKET"
            )),
        }
    }

    /// Opens the AF_XDP sockets the kernel tier's placement needs (see [`open_xsks`]) and
    /// spreads them over the workers.
    fn open_xsks(&mut self, plan: &Plan) -> Result<(), String> {
        self.collect_xsks();
        let r = match &mut self.kernel {
            Some(k) => open_xsks(k, plan, &mut self.xsks),
            None => Ok(()),
        };
        self.distribute_xsks();
        r
    }

    /// Takes every AF_XDP socket back from the other workers (with the drops they counted:
    /// their counters stay theirs).
    fn collect_xsks(&mut self) {
        for slot in &self.workers {
            let mut w_xsks = slot.with(|w| {
                w.as_mut().map_or_else(Vec::new, |w| {
                    count_xsk_drops(&mut w.engine, &mut w.xsks);
                    std::mem::take(&mut w.xsks)
                })
            });
            self.xsks.append(&mut w_xsks);
        }
    }

    /// Spreads the AF_XDP sockets over the workers: of each input's sockets (one per RX
    /// queue), the k-th goes to worker (k + 1) mod N. The first worker also serves the control
    /// socket and runs reloads, which keep it busy for a few hundred milliseconds (loading the
    /// new program), longer than a socket's ring lasts at a high rate: it gets a socket only
    /// when an input has more queues than there are other workers. An input with passthru
    /// stays with the first worker, which has its TAP.
    fn distribute_xsks(&mut self) {
        let n = self.workers.len() + 1;
        if n == 1 {
            return;
        }
        let plan = self.engine.plan().clone();
        let mut per_input: std::collections::BTreeMap<usize, usize> = Default::default();
        let mut shares: Vec<Vec<Xsk>> = (0..n).map(|_| Vec::new()).collect();
        for x in std::mem::take(&mut self.xsks) {
            if !shares_input(&plan, x.0, n) {
                shares[0].push(x);
                continue;
            }
            let k = per_input.entry(x.0).or_insert(0);
            shares[(*k + 1) % n].push(x);
            *k += 1;
        }
        let mut shares = shares.into_iter();
        self.xsks = shares.next().unwrap_or_default();
        for (slot, share) in self.workers.iter().zip(shares) {
            let back = slot.with(|w| match w.as_mut() {
                Some(w) => {
                    w.xsks.extend(share);
                    Vec::new()
                }
                None => share,
            });
            self.xsks.extend(back);
        }
    }

    /// AF_XDP sockets per input, every worker's: (input, frames read).
    fn xsk_counts(&self) -> Vec<(usize, u64)> {
        let mut v: Vec<(usize, u64)> = self.xsks.iter().map(|(i, x, _)| (*i, x.received)).collect();
        for slot in &self.workers {
            v.extend(slot.with(|w| {
                w.as_ref().map_or_else(Vec::new, |w| {
                    w.xsks.iter().map(|(i, x, _)| (*i, x.received)).collect()
                })
            }));
        }
        v
    }

    /// Counts what this worker's AF_XDP sockets could not take (no free frame, ring full) as
    /// `ring_overrun` on their input (the other workers count theirs).
    fn read_xsk_stats(&mut self) {
        count_xsk_drops(&mut self.engine, &mut self.xsks);
    }

    /// Logs where each group runs on this machine, and why.
    fn log_placement(&self) {
        let afxdp = self.xsk_counts().len();
        for g in self.groups() {
            let tier = match g.tier {
                vxspan_core::Tier::Xdp => "kernel tier (XDP)",
                vxspan_core::Tier::Userspace if afxdp == 0 => "userspace tier (AF_PACKET)",
                vxspan_core::Tier::Userspace => "userspace tier (AF_XDP)",
            };
            log(format!(
                "{} vlan {}: rules {} -> {}: {tier}: {}",
                g.input,
                g.vlan,
                g.rules.join(","),
                g.to.join(","),
                g.why
            ));
        }
    }

    fn serve(&mut self, stream: UnixStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let reply = match line.trim() {
            "status" => self.status().to_string(),
            "stats" => {
                self.read_ring_stats();
                self.read_xsk_stats();
                serde_json::to_string(&self.report()).unwrap_or_default()
            }
                        cmd if cmd == "capture" || cmd.starts_with("capture ") => {
                let name = cmd.strip_prefix("capture").unwrap_or("").trim();
                let rule = if name.is_empty() { Ok(None) } else { self.engine.plan().rules.iter().position(|r| r.name == name).map(Some).ok_or(name) };
                match rule {
                    Ok(rule) => {
                        // The stream is the reply: pcapng, one interface per input, until the
                        // client leaves (or a reload, which closes captures).
                        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                        if let Ok(w) = vxspan_io::pcap::Writer::pcapng_with_interfaces(stream, &self.engine.plan().input_descriptions()) {
                            log(format!("capture attached ({})", if name.is_empty() { "every forwarded frame" } else { name }));
                            self.ports.outputs.captures.attach(LiveCapture { w, rule, alive: true });
                        }
                        return;
                    }
                    Err(name) => serde_json::json!({ "error": format!("no rule named {name:?}") }).to_string(),
                }
            }
            "reload" => match self.reload() {
                Ok(msg) => {
                    log(&msg);
                    serde_json::json!({ "ok": msg }).to_string()
                }
                Err(e) => {
                    warn(format!(
                        "reload refused, the running configuration stays: {e}"
                    ));
                    serde_json::json!({ "error": e }).to_string()
                }
            },
            other => {
                serde_json::json!({ "error": format!("unknown command {other:?} (stats, status, reload, capture [RULE])") })
                    .to_string()
            }
        };
        let mut w = &stream;
        let _ = w.write_all(reply.as_bytes());
        let _ = w.write_all(b"\n");
    }
}

/// Reads one source of input `input` (`recv` appends a batch) until it has nothing more, each
/// batch through the engine. With `wanted`, it stops after the batch during which the flag was
/// raised and says so (`Ok(true)`).
fn drain_input(
    engine: &mut Engine,
    outputs: &mut LiveOutputs,
    input: usize,
    batch: &mut Batch,
    mut recv: impl FnMut(&mut Batch) -> std::io::Result<()>,
    wanted: Option<&AtomicBool>,
) -> std::io::Result<bool> {
    loop {
        batch.clear();
        recv(batch)?;
        if batch.is_empty() {
            return Ok(false);
        }
        engine.process_batch(input, batch.iter(), outputs);
        outputs.flush_tx();
        if wanted.is_some_and(|w| w.load(Ordering::Relaxed)) {
            return Ok(true);
        }
    }
}

/// Counts what receive rings dropped (full) since the last read as `ring_overrun` on their
/// input.
fn count_ring_drops<'a>(engine: &mut Engine, rings: impl Iterator<Item = (usize, &'a RxRing)>) {
    for (i, ring) in rings {
        if let Ok((_, drops)) = ring.take_stats() {
            if drops > 0 {
                engine.count_rx_drop(i, RxDrop::RingOverrun, drops, 0);
            }
        }
        let bad = ring.take_invalid_ring_entries();
        if bad > 0 {
            engine.count_rx_drop(i, RxDrop::InvalidRingEntry, bad, 0);
        }
    }
}

/// Opens an AF_XDP socket on every RX queue of each input whose frames (some of them) go to
/// the userspace tier, and registers it with the kernel tier. Inputs whose MTU does not fit
/// an AF_XDP frame, and queues where a socket cannot be opened, are an error (the caller
/// decides whether AF_PACKET takes over).
fn open_xsks(
    k: &mut crate::kernel::KernelTier,
    plan: &Plan,
    xsks: &mut Vec<(usize, vxspan_io::afxdp::XskRx, u64)>,
) -> Result<(), String> {
    for (i, inp) in plan.inputs.iter().enumerate() {
        if inp.listen.is_some()
            || !k.tables().input_needs_userspace(i)
            || xsks.iter().any(|(x, _, _)| *x == i)
        {
            continue;
        }
        let mtu = afpacket::mtu(&inp.interface).unwrap_or(1500);
        // Ethernet header and two tags on top of the MTU.
        if mtu + 22 > vxspan_io::afxdp::MAX_FRAME {
            return Err(format!(
                "input {}: MTU {mtu} of {} does not fit an AF_XDP frame ({} bytes); jumbo frames need --datapath xdp or afpacket",
                inp.name,
                inp.interface,
                vxspan_io::afxdp::MAX_FRAME
            ));
        }
        for q in 0..vxspan_io::afxdp::rx_queues(&inp.interface) {
            let x = vxspan_io::afxdp::XskRx::open(&inp.interface, q)
                .map_err(|e| format!("input {}: {e}", inp.name))?;
            k.bind_xsk(i, q, x.fd())?;
            log(format!(
                "AF_XDP socket on {} queue {q} ({} mode)",
                inp.interface,
                if x.zero_copy { "zero-copy" } else { "copy" }
            ));
            xsks.push((i, x, 0));
        }
    }
    Ok(())
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
    if let Err(e) = init_logging(log_level, log_json) {
        eprintln!("vxspan: {e:#}");
        return Ok(ExitCode::from(crate::EXIT_INVALID));
    }
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
    let (cfg, plan) = match load_plan(config) {
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
            if let Some(dir) = control_path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .with_context(|| format!("handing {} to {u}", dir.display()))?;
            }
            crate::privileges::drop_to(uid, gid)?;
            log(format!(
                "running as {u} (uid {uid}) with CAP_NET_RAW, CAP_NET_ADMIN, CAP_IPC_LOCK and CAP_BPF only"
            ));
        }
        _ if !root => {
            if let Err(e) = crate::privileges::check() {
                eprintln!("vxspan: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => {}
    }
    // `--datapath afxdp` sends through AF_XDP TX rings too.
    let tx = TxSetup {
        losses: Arc::default(),
        xdp: xdp_tx,
    };
    let ports = open_ports(&plan, workers, None, &tx)?;
    let mut kernel = match datapath {
        "afpacket" => None,
        _ => match crate::kernel::KernelTier::start(&plan, mode, datapath == "afxdp") {
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
    let ctl = Control::bind(&control_path)?;
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

    let mut st = State {
        config: config.to_owned(),
        cfg,
        engine: Engine::new(Arc::new(plan)),
        ports,
        kernel,
        xdp_mode: mode,
        xsks,
        history: Report::default(),
        reloads: 0,
        workers: (1..workers)
            .map(|_| WorkerSlot::new().map(Arc::new))
            .collect::<std::io::Result<_>>()?,
        tx,
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
    while !stop.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            notifier.notify("RELOADING=1");
            match st.reload() {
                Ok(msg) => log(msg),
                Err(e) => warn(format!(
                    "reload refused, the running configuration stays: {e}"
                )),
            }
            notifier.notify("READY=1");
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
        afpacket::poll_readable(&fds, 100, &mut ready)?;
        st.drain(&mut batch)?;
        st.passthru_out();
        while let Ok((stream, _)) = ctl.listener.accept() {
            st.serve(stream);
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
            st.read_ring_stats();
            st.read_xsk_stats();
            st.check_ports();
            st.flush_archives();
            last_stats = Instant::now();
        }
    }
    notifier.notify("STOPPING=1");
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
    let report = st.report();
    log(format!(
        "stopping after {} reload(s); final counters:",
        st.reloads
    ));
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
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

/// Sends one command to a running instance and returns its one-line JSON reply.
pub fn request(control: &Path, command: &str) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(control).with_context(|| {
        format!(
            "connecting to {} (is vxspan running? is --control right?)",
            control.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    serde_json::from_str(&line)
        .with_context(|| format!("reply from {}: {line:?}", control.display()))
}

/// The counters of a running instance: its `stats` reply.
pub fn fetch_stats(control: &Path) -> Result<Report> {
    Ok(serde_json::from_value(request(control, "stats")?)?)
}

/// The ports, groups and process figures of a running instance: its `status` reply.
pub fn fetch_status(control: &Path) -> Result<crate::top::Status> {
    Ok(serde_json::from_value(request(control, "status")?)?)
}

pub fn status(control: &Path) -> Result<ExitCode> {
    let v = request(control, "status")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub fn stats(control: &Path, json: bool) -> Result<ExitCode> {
    let v = request(control, "stats")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r: Report = serde_json::from_value(v)?;
    print!("{}", render(&r));
    Ok(ExitCode::SUCCESS)
}

pub fn reload(control: &Path) -> Result<ExitCode> {
    let v = request(control, "reload")?;
    match (v.get("ok"), v.get("error")) {
        (Some(ok), _) => {
            println!("{}", ok.as_str().unwrap_or("reloaded"));
            Ok(ExitCode::SUCCESS)
        }
        (_, Some(e)) => {
            eprintln!(
                "vxspan: reload refused, the running configuration stays: {}",
                e.as_str().unwrap_or("?")
            );
            Ok(ExitCode::from(crate::EXIT_INVALID))
        }
        _ => bail!("unexpected reply {v}"),
    }
}

/// A counter table from a report alone (no plan at hand).
fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = crate::replay::port_table(r, r.interfaces.keys().map(String::as_str));
    let _ = writeln!(s, "\n{:<20} {:>10} {:>10}", "rule", "matched", "forwarded");
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>10}",
            rule.name, rule.matched_packets, rule.forwarded_packets
        );
    }
    s
}

/// `vxspan capture`: streams, as pcapng, the frames a running instance forwards (all, or those
/// of one rule) to `out` (`-` for standard output) until interrupted.
pub fn capture(control: &Path, rule: Option<&str>, out: &Path) -> Result<ExitCode> {
    let mut s = UnixStream::connect(control).with_context(|| {
        format!(
            "connecting to {} (is vxspan running? is --control right?)",
            control.display()
        )
    })?;
    s.write_all(format!("capture {}\n", rule.unwrap_or("")).as_bytes())?;
    let mut first = [0u8; 1];
    if std::io::Read::read(&mut s, &mut first)? == 0 {
        bail!("{} closed the capture", control.display());
    }
    if first[0] == b'{' {
        let mut line = String::from("{");
        BufReader::new(&s).read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        eprintln!(
            "vxspan: capture refused: {}",
            v["error"].as_str().unwrap_or(line.trim())
        );
        return Ok(ExitCode::from(crate::EXIT_INVALID));
    }
    let mut sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?)
    };
    sink.write_all(&first)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut s, &mut buf)?;
        if n == 0 {
            break;
        }
        if sink
            .write_all(&buf[..n])
            .and_then(|_| sink.flush())
            .is_err()
        {
            break; // the reader went away (e.g. tcpdump -c N finished)
        }
    }
    Ok(ExitCode::SUCCESS)
}
