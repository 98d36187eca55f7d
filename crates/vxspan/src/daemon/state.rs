//! The first worker's state: the engine, ports, kernel tier and the other workers; reload,
//! port checks and counter reports.

use super::*;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use vxspan_core::{Engine, Plan, Report, TxFrame};
use vxspan_io::afpacket;
use vxspan_io::{Batch, RxPort, TxPort};

/// A reload that was applied.
pub(super) struct Reloaded {
    pub(super) summary: &'static str,
    /// What changed (see [`super::diff`]).
    pub(super) changes: Vec<String>,
}

impl Reloaded {
    /// The log line: the summary and each change.
    pub(super) fn line(&self) -> String {
        if self.changes.is_empty() {
            self.summary.to_owned()
        } else {
            format!("{}: {}", self.summary, self.changes.join("; "))
        }
    }
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub(super) enum Refused {
    /// The file is not a valid configuration (`vxspan reload` exits 2).
    Invalid(String),
    /// It is valid, but cannot be applied while running: each reason (exit 3).
    NotLive(Vec<String>),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(e) => f.write_str(e),
            Refused::NotLive(why) => write!(f, "valid, but not appliable live: {}", why.join("; ")),
        }
    }
}

pub(super) struct State {
    /// The first worker's longest gap between two batches.
    pub(super) gap: Arc<GapMeter>,
    pub(super) config: PathBuf,
    pub(super) cfg: vxspan_config::Config,
    /// The text `cfg` was parsed from (a restart hands it on: the next image reads the old
    /// program's counters through the plan it ran).
    pub(super) config_text: String,
    /// Restarts in place since the process started (`vxspan restart`).
    pub(super) restarts: u64,
    /// The thread that prepares reloads and capture moves, and what waits for it.
    pub(super) preparer: super::prepare::Preparer,
    /// A restart asked for: the binary to execute and the client to tell. The loop ends.
    pub(super) restart: Option<(PathBuf, std::os::unix::net::UnixStream)>,
    pub(super) engine: Engine,
    pub(super) ports: Ports,
    /// The XDP tier, when the datapath is xdp.
    pub(super) kernel: Option<crate::kernel::KernelTier>,
    /// The kernel tier could not be re-attached after an output came back (an interface
    /// missing then): whether it ran every group in userspace. Tried again when the next
    /// output comes back, so a flapping port does not leave everything on AF_PACKET.
    pub(super) kernel_lost: Option<bool>,
    /// `--xdp-mode` (None: vxspan picks), for re-attaching after a reload that changes ports.
    pub(super) xdp_mode: Option<vxspan_xdp::Mode>,
    /// AF_XDP sockets feeding the userspace tier that this worker reads (the others' are in
    /// their `Worker`).
    pub(super) xsks: Vec<Xsk>,
    /// Counters of the plans replaced by reloads.
    pub(super) history: Report,
    pub(super) reloads: u64,
    /// The other workers (the first is this thread: `engine` and `ports`).
    pub(super) workers: Vec<Arc<WorkerSlot>>,
    /// The rules whose kernel-tier groups run in userspace while a capture records them
    /// (`None`: every rule; empty: none).
    pub(super) captured: Option<Vec<usize>>,
    /// How outputs transmit, and the copies their sockets accepted that the kernel then
    /// refused (taken off `tx` when counters are reported).
    pub(super) tx: TxSetup,
}

impl State {
    pub(super) fn report(&self) -> Report {
        let (user, kernel) = self.reports();
        self.merged(&user, kernel.as_ref().map(|k| &k.0))
    }

    /// The current plan's counters, each tier's apart: the userspace tier's, and the kernel
    /// tier's with the frames it handed up per input (the maps are read once).
    pub(super) fn reports(&self) -> (Report, Option<crate::kernel::Snapshot>) {
        let plan = self.engine.plan();
        let mut user = self.engine.report();
        for w in self.worker_reports() {
            user.add(&w);
        }
        (user, self.kernel.as_ref().map(|k| k.snapshot(plan)))
    }

    /// The other workers' counters for the current plan.
    pub(super) fn worker_reports(&self) -> Vec<Report> {
        self.workers
            .iter()
            .filter_map(|s| s.snapshot().report.map(|r| (*r).clone()))
            .collect()
    }

    /// Gives every other worker a fresh share of the current ports (rings in the fanout
    /// groups, transmit sockets) and an engine for the current plan. Rings whose group stays
    /// are kept; what the others still hold is read one last time, and what the old engines
    /// counted goes to the history.
    pub(super) fn respawn_workers(&mut self) {
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
    pub(super) fn swap_worker_engines(&mut self) {
        for slot in &self.workers {
            let old = slot.with(|w| {
                w.as_mut().map(|w| {
                    let fresh = self.engine.worker();
                    w.read_ring_stats();
                    std::mem::replace(&mut w.engine, fresh).report()
                })
            });
            if let Some(r) = old {
                self.history.add(&r);
            }
        }
    }

    /// Every counter since start: the replaced plans' and both tiers' of the current one.
    pub(super) fn merged(&self, user: &Report, kernel: Option<&Report>) -> Report {
        let mut r = self.history.clone();
        r.add(user);
        if let Some(k) = kernel {
            r.add(k);
        }
        self.tx.losses.apply(&mut r);
        r
    }

    /// The datapath as it runs: "afpacket", or "xdp (native)" / "xdp (generic)".
    pub(super) fn datapath(&self) -> String {
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
    pub(super) fn groups(&self) -> Vec<vxspan_core::plan::GroupDescription> {
        crate::kernel::placed_groups(
            self.engine.plan(),
            &self.cfg,
            self.kernel.as_ref().map(|k| k.tables()),
        )
    }

    /// What preparing a reload of the configuration file needs of the running state (taken
    /// here, cheaply; used by [`super::prepare::prepare_reload`] on the preparer's thread).
    pub(super) fn reload_ctx(&self) -> super::prepare::ReloadCtx {
        super::prepare::ReloadCtx {
            path: self.config.clone(),
            cfg: self.cfg.clone(),
            ports_key: self.ports.key.clone(),
            view: self.ports.view(),
            inputs: self
                .engine
                .plan()
                .inputs
                .iter()
                .map(|i| i.interface.clone())
                .collect(),
            workers: self.workers.len() + 1,
            tx: self.tx.clone(),
            kernel: self.kernel.as_ref().map(|k| k.ask()),
        }
    }

    /// Applies a prepared reload: all of what changed, or nothing. The file was read and
    /// compiled, new ports opened and the kernel tier's object loaded off this thread; what is
    /// left here is the swap.
    pub(super) fn apply_reload(
        &mut self,
        p: super::prepare::PreparedReload,
    ) -> Result<Reloaded, Refused> {
        let super::prepare::PreparedReload {
            loaded: Loaded { text, cfg, plan },
            diff,
            same_ports,
            same_inputs,
            new_ports,
            kernel,
        } = p;
        let not_live = |e: String| Refused::NotLive(vec![e]);
        // Everything that can fail comes first, and nothing is changed until all of it has
        // worked: the new ports were opened beside the old ones, then the kernel tier swaps its
        // tables (atomically on its attachments when the input interfaces stay, even if the
        // outputs change; otherwise it is re-attached below).
        if same_inputs {
            match (&mut self.kernel, kernel) {
                (Some(k), Some(prepared)) => k
                    .commit(self.engine.plan().clone(), &plan, prepared)
                    .map_err(|e| not_live(format!("the kernel tier: {e}; try again")))?,
                (Some(_), None) => {
                    return Err(not_live(
                        "the kernel tier came up while the reload was prepared; try again".into(),
                    ))
                }
                (None, _) => {}
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
            } else if let Some(userspace_only) = self.kernel_lost {
                self.start_kernel(&plan, userspace_only);
            }
        }
        self.history.add(&self.engine.report());
        // Captures name rules of the old plan: they end with it (the kernel tier took the new
        // plan's placement above).
        self.ports.outputs.captures.clear();
        self.captured = Some(Vec::new());
        // The other workers count their frames of the old plan in its engine, until they
        // get the new one.
        let sequences = self.engine.erspan_sequences();
        let mut plan = plan;
        intern_loss_ids(&mut plan, &self.tx.losses);
        self.engine = crate::kernel::engine_for(plan, self.kernel.as_ref());
        self.engine.continue_erspan_sequences(&sequences);
        if same_ports {
            self.swap_worker_engines();
        } else {
            self.respawn_workers();
        }
        self.cfg = cfg;
        self.config_text = text;
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
        Ok(Reloaded {
            summary: match (diff.changes.is_empty(), same_ports) {
                (true, _) => "reloaded (nothing changed: ports kept)",
                (false, true) => "reloaded (ports kept)",
                (false, false) => "reloaded (ports reopened)",
            },
            changes: diff.changes,
        })
    }

    /// Reads every input until it has nothing more, batch by batch, through the engine. Every
    /// input is visited (a readable descriptor only says that one ring block was retired).
    pub(super) fn drain(&mut self, batch: &mut Batch) -> std::io::Result<()> {
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
    pub(super) fn check_ports(&mut self) {
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
            let plan = self.engine.plan().clone();
            if let Some(k) = self.kernel.take() {
                self.restart_kernel(k, &plan);
            } else if let Some(userspace_only) = self.kernel_lost {
                self.start_kernel(&plan, userspace_only);
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
                // The XDP program balances over the same outputs (one source of truth).
                if let Some(k) = self.kernel.as_mut() {
                    if let Err(e) = k.set_output_up(o, up) {
                        warn(format!(
                            "output {o}: cannot mark it for the kernel tier: {e}"
                        ));
                    }
                }
            }
        }
        if changed || came_back {
            self.respawn_workers();
        }
    }

    /// What the hosts behind passthru TAPs send goes out of their data ports (tagged with the
    /// passthru's VLAN, if it has one). Locally sent frames are not seen by the input rings
    /// (PACKET_IGNORE_OUTGOING), so they are never mirrored back.
    pub(super) fn passthru_out(&mut self) {
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
                        tunnel: None,
                        owner: u16::MAX,
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
    pub(super) fn close_outputs(&mut self) {
        for slot in &self.workers {
            if let Some(w) = slot.with(Option::take) {
                self.history.add(&w.engine.report());
            }
        }
        self.ports.outputs.sockets.clear();
    }

    /// Pushes archive files to disk, so they are readable while vxspan runs.
    pub(super) fn flush_archives(&mut self) {
        for out in self.ports.outputs.outs.iter_mut() {
            if let LiveOut::Archive(a) = out {
                let mut a = locked(a);
                if let Err(e) = a.flush() {
                    warn(format!("archive: {e}"));
                }
                // `keep` removed these: their packets leave the files, not the counters.
                for r in a.take_removed() {
                    match r.packets {
                        Some(n) => log(format!(
                            "archive: removed {} ({n} packets)",
                            r.path.display()
                        )),
                        None => log(format!(
                            "archive: removed {} (from an earlier run)",
                            r.path.display()
                        )),
                    }
                }
            }
        }
    }

    pub(super) fn read_ring_stats(&mut self) {
        let rings = self.ports.inputs.iter().enumerate();
        count_ring_drops(
            &mut self.engine,
            rings.filter_map(|(i, input)| match input {
                LiveInput::Ring(r) => Some((i, r)),
                _ => None,
            }),
        );
        // The other workers read theirs when they publish their counters.
    }
}

impl State {
    /// Detaches `old` (its counters go to the history) and attaches a new kernel tier for
    /// `plan`, whose inputs changed. If that fails, every group runs on AF_PACKET.
    pub(super) fn restart_kernel(&mut self, old: crate::kernel::KernelTier, plan: &Plan) {
        self.collect_xsks();
        self.read_xsk_stats();
        let userspace_only = old.userspace_only();
        old.detach(self.engine.plan(), &mut self.history);
        self.xsks.clear();
        self.start_kernel(plan, userspace_only);
    }

    /// Attaches a kernel tier for `plan` where none runs (after [`State::restart_kernel`]
    /// detached one); on failure, [`State::kernel_lost`] remembers to try again.
    fn start_kernel(&mut self, plan: &Plan, userspace_only: bool) {
        match crate::kernel::KernelTier::start(plan, self.xdp_mode, userspace_only) {
            Ok((k, _, why)) => {
                log(format!("XDP tier re-attached to the inputs ({why})"));
                self.kernel = Some(k);
                self.kernel_lost = None;
                if let Err(e) = self.open_xsks(plan) {
                    warn(format!(
                        "AF_XDP: {e}; the userspace tier reads through AF_PACKET"
                    ));
                }
            }
            Err(e) => {
                warn(format!(
                    "XDP tier could not be re-attached ({e}); every group runs on AF_PACKET until an output comes back"
                ));
                self.kernel_lost = Some(userspace_only);
            }
        }
    }

    /// Opens the AF_XDP sockets the kernel tier's placement needs (see [`open_xsks`]) and
    /// spreads them over the workers.
    pub(super) fn open_xsks(&mut self, plan: &Plan) -> Result<(), String> {
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
    pub(super) fn collect_xsks(&mut self) {
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
    pub(super) fn distribute_xsks(&mut self) {
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
    pub(super) fn xsk_counts(&self) -> Vec<(usize, u64)> {
        let mut v: Vec<(usize, u64)> = self.xsks.iter().map(|(i, x, _)| (*i, x.received)).collect();
        for slot in &self.workers {
            v.extend(slot.snapshot().xsks);
        }
        v
    }

    /// Counts what this worker's AF_XDP sockets could not take (no free frame, ring full) as
    /// `ring_overrun` on their input (the other workers count theirs).
    pub(super) fn read_xsk_stats(&mut self) {
        count_xsk_drops(&mut self.engine, &mut self.xsks);
    }

    /// Logs where each group runs on this machine, and why.
    pub(super) fn log_placement(&self) {
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
}

/// `plan` with the kernel-tier groups of `rules` (every rule with `None`) moved to userspace,
/// each saying why; the placement the kernel tier runs while captures record those rules.
pub(super) fn with_captured(plan: &Plan, rules: Option<&[usize]>) -> Plan {
    let mut p = plan.clone();
    for inp in &mut p.inputs {
        for g in &mut inp.groups {
            // A group no rule takes has nothing to capture: it stays where it is.
            let hit = match rules {
                None if g.rules.is_empty() => None,
                None => Some(g.rules.first().copied()),
                Some(rs) => g.rules.iter().find(|r| rs.contains(r)).map(|r| Some(*r)),
            };
            if let (Some(r), vxspan_core::Tier::Xdp) = (hit, g.tier) {
                g.tier = vxspan_core::Tier::Userspace;
                g.why = match r.and_then(|r| plan.rules.get(r)) {
                    Some(rule) if rules.is_some() => format!(
                        "vxspan capture of rule {} attached: in userspace while it runs",
                        rule.name
                    ),
                    _ => "vxspan capture attached: in userspace while it runs".into(),
                };
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::daemon::test_plan as plan;

    fn tiers(p: &Plan) -> Vec<(vxspan_core::Tier, String)> {
        p.inputs
            .iter()
            .flat_map(|i| i.groups.iter().map(|g| (g.tier, g.why.clone())))
            .collect()
    }

    fn taken(p: &Plan) -> Vec<bool> {
        p.inputs
            .iter()
            .flat_map(|i| i.groups.iter().map(|g| !g.rules.is_empty()))
            .collect()
    }

    #[test]
    fn captures_move_only_their_rules_kernel_groups_to_userspace() {
        use vxspan_core::Tier::{Userspace, Xdp};
        let p = plan(
            "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth2\"\n\
             [[rules]]\nname = \"ten\"\nfrom = [\"in\"]\nvlan = 10\nto = [\"x\"]\n\
             [[rules]]\nname = \"twenty\"\nfrom = [\"in\"]\nvlan = 20\nto = [\"x\"]\n\
             [[rules]]\nname = \"web\"\nfrom = [\"in\"]\nvlan = 30\nfilter = \"tcp port 80\"\nto = [\"x\"]\n",
        );
        let before = tiers(&p);
        let kernel = before.iter().filter(|(t, _)| *t == Xdp).count();
        assert!(kernel >= 2, "{before:?}");
        assert_eq!(
            tiers(&with_captured(&p, Some(&[]))),
            before,
            "no capture, no move"
        );
        let ten = with_captured(&p, Some(&[0]));
        let moved: Vec<_> = tiers(&ten)
            .into_iter()
            .zip(&before)
            .filter(|(n, o)| n.0 != o.0)
            .collect();
        assert_eq!(moved.len(), 1, "only rule ten's group: {moved:?}");
        assert_eq!(moved[0].0 .0, Userspace);
        assert!(moved[0].0 .1.contains("capture of rule ten"), "{moved:?}");
        // Every rule: every kernel group that a rule takes (a group no rule takes has nothing
        // to capture and stays); the filter's group was in userspace already and keeps its
        // reason.
        let all = tiers(&with_captured(&p, None));
        for (((t, why), (t0, why0)), taken) in all.iter().zip(&before).zip(taken(&p)) {
            match (taken, t0) {
                (true, _) => assert_eq!(*t, Userspace),
                (false, _) => assert_eq!(t, t0),
            }
            if *t0 == Userspace {
                assert_eq!(why, why0);
            }
        }
    }
}
