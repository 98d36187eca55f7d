//! The outputs of the running plan: transmit sockets (AF_PACKET, AF_XDP), tunnels, archives,
//! passthru TAPs and live captures, behind the engine's `Sink`.

use super::*;
use anyhow::{Context, Result};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vxspan_core::{Plan, Sink, TxDrop, TxFrame};
use vxspan_io::afpacket::{self, TxBatch, TxSocket};
use vxspan_io::afxdp::XskTx;
use vxspan_io::tunnel::TunnelSender;
use vxspan_io::TxLosses;
use vxspan_io::TxPort;

/// The interface that carries the host's default route (IPv4), from /proc/self/net/route (the
/// same table as /proc/net/route, which ProcSubset=pid in the systemd unit hides).
pub(super) fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    })
}

/// Where an output's copies go.
pub(super) enum LiveOut {
    /// A transmit socket (index into `sockets`, shared by outputs on one interface).
    Packet(usize),
    /// A tunnel through the kernel's routing.
    Tunnel(TunnelSender),
    /// A rotating pcapng archive (one file for every worker).
    Archive(Arc<Mutex<vxspan_io::archive::ArchiveWriter>>),
}

/// Closes sockets on another thread: closing a packet socket waits for an RCU grace period
/// (tens of milliseconds), which the worker must not spend while its rings fill.
pub(super) fn close_later<T: Send + 'static>(t: T) {
    if let Err(e) = std::thread::Builder::new()
        .name("vxspan-close".into())
        .spawn(move || drop(t))
    {
        warn(format!("closing old ports: {e}"));
    }
}

/// A lock whose holder panicked still guards usable data here (sockets, files, counters).
pub(super) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The live captures, shared by every worker (each writes the frames it forwards).
#[derive(Default)]
pub(super) struct Captures {
    pub(super) list: Mutex<Vec<LiveCapture>>,
    /// Frames the captures that ended could not queue (the client did not keep up).
    pub(super) dropped: Arc<AtomicU64>,
    /// How many are attached: read per frame, without the lock.
    pub(super) count: AtomicUsize,
}

impl Captures {
    pub(super) fn attach(&self, c: LiveCapture) {
        let mut l = locked(&self.list);
        l.push(c);
        self.count.store(l.len(), Ordering::Relaxed);
    }

    pub(super) fn clear(&self) {
        let mut l = locked(&self.list);
        l.clear();
        self.count.store(0, Ordering::Relaxed);
    }

    /// Forgets the captures whose client has gone (their writer thread ended), frames or not.
    pub(super) fn prune(&self) {
        let mut l = locked(&self.list);
        l.retain(|c| c.alive && !c.ended.load(Ordering::Acquire));
        self.count.store(l.len(), Ordering::Relaxed);
    }

    /// The rules the attached captures record: `None` when one records every rule.
    pub(super) fn rules(&self) -> Option<Vec<usize>> {
        let l = locked(&self.list);
        let mut rules = Vec::new();
        for c in l.iter().filter(|c| c.alive) {
            rules.push(c.rule?);
        }
        rules.sort_unstable();
        rules.dedup();
        Some(rules)
    }
}

/// A live capture attached through the control socket: pcapng streamed to the client.
///
/// The worker never writes the client's socket: each pcapng block goes, whole, into a bounded
/// queue that a thread of the capture's own writes to the socket. When the client does not
/// keep up and the queue is full, the frame is not captured and counted (`dropped`, logged
/// when the capture ends and shown in `status` as `capture_dropped`); the stream stays valid,
/// since only whole blocks are queued.
pub(super) struct LiveCapture {
    pub(super) w: vxspan_io::pcap::Writer<CaptureQueue>,
    /// Only frames this rule forwarded (`None`: every forwarded frame).
    pub(super) rule: Option<usize>,
    pub(super) alive: bool,
    /// Set by the writer thread when it ends (the client went away).
    pub(super) ended: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a capture's client may take no data before the capture ends.
const CAPTURE_STALL: Duration = Duration::from_secs(10);

/// Blocks queued for a capture's writer thread at most (each a frame or the header).
const CAPTURE_QUEUE: usize = 4096;

/// The bytes of the block being written, and the queue they go to on `flush`.
pub(super) struct CaptureQueue {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    written: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl std::io::Write for CaptureQueue {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    /// Queues the block written since the last flush; a full queue drops it (counted).
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.buf);
        match self.tx.try_send(block) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
    }
}

impl LiveCapture {
    /// A capture of `rule`'s frames (all with `None`) streamed to `stream` by a thread of its
    /// own; `what` names it in the log. `dropped_total` adds up what every capture dropped.
    pub(super) fn start(
        stream: UnixStream,
        rule: Option<usize>,
        interfaces: &[(String, String)],
        what: String,
        dropped_total: Arc<AtomicU64>,
    ) -> std::io::Result<LiveCapture> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CAPTURE_QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let q = CaptureQueue {
            buf: Vec::new(),
            tx,
            written: written.clone(),
            dropped: dropped.clone(),
        };
        let mut w = vxspan_io::pcap::Writer::pcapng_with_interfaces(q, interfaces)?;
        w.flush()?;
        // A client that stops reading (a paused pager) ends its capture after this long
        // without progress, so its rule does not stay out of the kernel tier for good.
        stream.set_write_timeout(Some(CAPTURE_STALL))?;
        stream.set_read_timeout(None)?;
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let end = ended.clone();
        // The writer also watches for the client leaving while no frame comes (a capture of a
        // quiet rule): a read returns 0 at the client's close.
        let (watch, gone) = (stream.try_clone()?, ended.clone());
        std::thread::Builder::new()
            .name("vxspan-capture-watch".into())
            .spawn(move || {
                let mut b = [0u8; 64];
                while matches!(std::io::Read::read(&mut &watch, &mut b), Ok(n) if n > 0) {}
                gone.store(true, Ordering::Release);
                let _ = watch.shutdown(std::net::Shutdown::Both);
            })?;
        std::thread::Builder::new()
            .name("vxspan-capture".into())
            .spawn(move || {
                crate::process::yield_to_workers();
                let mut s = &stream;
                while let Ok(block) = rx.recv() {
                    if std::io::Write::write_all(&mut s, &block).is_err() {
                        break; // the client went away; the worker notices on its next frame
                    }
                }
                end.store(true, Ordering::Release);
                // Ends the watcher's read too (it holds the same socket), and the client sees
                // the end of the stream (a reload, or the capture detached).
                let _ = stream.shutdown(std::net::Shutdown::Both);
                let d = dropped.load(Ordering::Relaxed);
                dropped_total.fetch_add(d, Ordering::Relaxed);
                log(format!(
                    "capture detached ({what}): {} frames written, {d} dropped (capture_dropped: the client did not keep up)",
                    written.load(Ordering::Relaxed).saturating_sub(1)
                ));
            })?;
        Ok(LiveCapture {
            w,
            rule,
            alive: true,
            ended,
        })
    }
}

/// A passthru at run time: its TAP and a socket on its data port.
pub(super) struct LivePassthru {
    pub(super) tap: vxspan_io::tap::Tap,
    pub(super) port: TxSocket,
    pub(super) vlan: Option<u16>,
    /// Frames that could not be handed over in either direction.
    pub(super) errors: u64,
}

/// The outputs of the running plan.
pub(super) struct LiveOutputs {
    pub(super) passthru: Vec<LivePassthru>,
    /// Live captures (`vxspan capture`).
    pub(super) captures: Arc<Captures>,
    /// Transmit sockets by interface; `None` while the interface is gone (copies for it are
    /// counted as `link_down` until it comes back).
    pub(super) sockets: Vec<Option<OutSocket>>,
    /// The interface of each entry of `sockets`.
    pub(super) socket_names: Vec<String>,
    pub(super) outs: Vec<LiveOut>,
    /// How interface outputs transmit, and where refused copies are recorded.
    pub(super) tx: TxSetup,
}

impl Sink for LiveOutputs {
    /// Every kind of output is a [`TxPort`]: an interface's socket (AF_PACKET batches or
    /// AF_XDP), a tunnel's, an archive; the replay path sends through the same trait.
    fn transmit(&mut self, output: usize, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        match self.outs.get_mut(output) {
            Some(LiveOut::Packet(i)) => match self.sockets.get_mut(*i) {
                Some(Some(s)) => s.send(frame),
                _ => Err(TxDrop::LinkDown),
            },
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
                    .and_then(|_| c.w.flush())
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
    pub(super) fn flush_tx(&mut self) {
        for s in self.sockets.iter_mut().flatten() {
            // Refusals are recorded by the socket under each copy's owner; nothing to report.
            let _ = s.flush();
        }
    }

    /// The outputs as another worker sees them: its own transmit sockets and tunnel sockets
    /// (an interface that is gone stays `None`), the archives and captures shared, no
    /// passthru (inputs with passthru are read by the first worker only).
    pub(super) fn for_worker(&self, plan: &Plan, worker: usize) -> Result<LiveOutputs> {
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
                        let e = o.dest.encap().context("a tunnel output has an encap")?;
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
            tx: self.tx.clone(),
        })
    }
}

/// Gives each output of `plan` the id its late losses are recorded under, interned by name:
/// copies queued before a reload that renumbers the outputs (a rules-only reload may rename
/// or remove one) are still charged to the output they were counted for.
pub(super) fn intern_loss_ids(plan: &mut Plan, losses: &TxLosses) {
    for o in &mut plan.outputs {
        o.loss_id = losses.id(&o.name);
    }
}

/// How output interfaces transmit, and where copies the kernel refuses after they were queued
/// are recorded.
#[derive(Clone, Default)]
pub(super) struct TxSetup {
    pub(super) losses: Arc<TxLosses>,
    /// AF_XDP TX rings (`--transmit afxdp`, the default with `--datapath afxdp`), else
    /// AF_PACKET. Even in copy mode they carried about a third more than AF_PACKET batches on
    /// veth (BENCHMARKS.md), for a 2 MiB UMEM per socket.
    pub(super) xdp: bool,
}

/// A transmit socket on an output interface.
pub(super) enum OutSocket {
    /// AF_PACKET, bypassing the qdisc.
    Packet(TxBatch),
    /// AF_XDP TX rings (`--datapath afxdp`).
    Xdp(XdpOut),
}

impl TxPort for OutSocket {
    fn send(&mut self, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        match self {
            OutSocket::Packet(p) => p.send(frame),
            OutSocket::Xdp(x) => x.send(frame),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OutSocket::Packet(p) => TxPort::flush(p),
            OutSocket::Xdp(x) => x.flush(),
        }
    }
}

impl OutSocket {
    pub(super) fn ifindex(&self) -> u32 {
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
pub(super) struct XdpSet {
    /// `None` while a replacement could not be opened (copies are counted as `link_down`).
    pub(super) queues: Vec<Mutex<Option<XskTx>>>,
    pub(super) name: String,
    pub(super) ifindex: u32,
    pub(super) losses: Arc<TxLosses>,
}

impl XdpSet {
    /// Opens a socket on each of the first `n` TX queues of `interface` (at most as many as
    /// it has). Copies the kernel drops later are recorded in `losses`.
    pub(super) fn open(
        interface: &str,
        n: usize,
        losses: &Arc<TxLosses>,
    ) -> std::io::Result<XdpSet> {
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

    pub(super) fn is_dead(&self) -> bool {
        self.queues
            .iter()
            .any(|q| locked(q).as_ref().is_none_or(XskTx::is_dead))
    }

    /// Replaces the sockets the kernel refused; returns the error of one that could not be
    /// opened again (it is retried at the next check).
    pub(super) fn revive(&self) -> std::io::Result<()> {
        for (q, slot) in self.queues.iter().enumerate() {
            let mut x = locked(slot);
            if x.as_ref().is_none_or(XskTx::is_dead) {
                // The old socket is closed first: the queue takes one socket at a time (the
                // kernel releases it a little after the close: EBUSY until then, and the
                // next check, a second later, tries again; no worker waits here).
                *x = None;
                *x = Some(XskTx::open(&self.name, q as u32, self.losses.clone())?);
            }
        }
        Ok(())
    }

    /// Completion-ring entries the kernel returned that were no frame in flight, over every
    /// queue's current socket (a kernel or driver bug if ever non-zero; none went back to the
    /// free list, so no frame was reused while the device still read it).
    pub(super) fn invalid_completions(&self) -> u64 {
        self.queues
            .iter()
            .filter_map(|q| locked(q).as_ref().map(XskTx::invalid_ring_entries))
            .sum()
    }

    pub(super) fn describe(&self) -> String {
        if self.is_dead() {
            return format!(
                "AF_XDP on {} TX queue(s), closed by the kernel (reopened once the interface is up)",
                self.queues.len()
            );
        }
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
pub(super) struct XdpOut {
    pub(super) set: Arc<XdpSet>,
    pub(super) queue: usize,
}

impl XdpOut {
    pub(super) fn for_worker(&self, worker: usize) -> XdpOut {
        XdpOut {
            set: self.set.clone(),
            queue: worker % self.set.queues.len(),
        }
    }
}

/// Sends on this worker's queue of the set; a queue the kernel closed is `link_down`.
impl TxPort for XdpOut {
    fn send(&mut self, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        match locked(&self.set.queues[self.queue]).as_mut() {
            Some(x) => TxPort::send(x, frame),
            None => Err(TxDrop::LinkDown),
        }
    }

    /// Kicks this worker's queue: what waits on it goes out.
    fn flush(&mut self) -> std::io::Result<()> {
        match locked(&self.set.queues[self.queue]).as_mut() {
            Some(x) => TxPort::flush(x),
            None => Ok(()),
        }
    }
}

/// Runs `open` again while it fails with EBUSY, for up to 250 ms: an AF_XDP socket closed
/// on a queue (by a reload on another thread, or a revive) holds it until the kernel has
/// released it, a little after the close.
fn busy_retry<T>(mut open: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut opened = open();
    for _ in 0..25 {
        match &opened {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                std::thread::sleep(Duration::from_millis(10));
                opened = open();
            }
            _ => break,
        }
    }
    opened
}

/// Opens a transmit socket on output interface `ifname`: AF_XDP TX rings with `tx.xdp` (the
/// set `old` has on the interface is kept: a second socket cannot bind its queues), AF_PACKET
/// otherwise, or where AF_XDP cannot take the interface (a jumbo MTU, or its queues already
/// serve AF_XDP input sockets).
pub(super) fn open_output(
    ifname: &str,
    workers: usize,
    old: Option<&PortsView>,
    tx: &TxSetup,
) -> Result<OutSocket> {
    let losses = &tx.losses;
    if tx.xdp {
        let ifindex = afpacket::ifindex(ifname).ok();
        let kept = old.and_then(|v| v.xdp_set(ifname, ifindex));
        if let Some(x) = kept {
            return Ok(OutSocket::Xdp(x));
        }
        // A set of the interface that an earlier reload replaced may still be closing (on
        // another thread): its queues are busy for that long.
        match busy_retry(|| XdpSet::open(ifname, workers, losses)) {
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
pub(super) fn open_passthru(plan: &Plan) -> Result<Vec<LivePassthru>> {
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
