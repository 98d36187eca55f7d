//! The kernel tier inside `vxspan run`: the XDP program of vxspan-xdp, attached to every input,
//! runs the (input, VLAN) groups it can; the frames of the other groups pass up to the
//! AF_PACKET rings the userspace tier reads. Its counters are merged with the userspace tier's
//! in every report, and a reload swaps its tables atomically.

use std::sync::Arc;
use std::time::Instant;
use vxspan_core::{Plan, Report};
use vxspan_xdp::loader::{Prepared, Retired, RETIRE_AFTER};
use vxspan_xdp::{Datapath, Mode, Tables};

/// The kernel tier's counters (a [`Report`]), per input the frames handed to the userspace
/// tier, and per output the frames handed up because a tunnel's next hop was not resolved.
pub type Snapshot = (Report, Vec<u64>, Vec<u64>);

/// A first engine for `plan`: ERSPAN outputs the kernel tier (if any) originates take their
/// sequence numbers from its counters, and rules it samples their counts, so both tiers
/// number one sequence and keep exactly 1 in N between them.
pub fn engine_for(plan: Plan, kernel: Option<&KernelTier>) -> vxspan_core::Engine {
    let cells = kernel.map(|k| (k.sequence_cells(&plan), k.sample_cells(&plan)));
    let mut engine = vxspan_core::Engine::new(Arc::new(plan));
    if let Some((seqs, samples)) = cells {
        engine.share_sequences(|o, _| seqs.get(o).cloned().flatten());
        engine.share_samples(|r, _| samples.get(r).cloned().flatten());
    }
    engine
}

/// The `--xdp-mode` / `xdp_mode` choice: None lets vxspan pick (native unless an output is a
/// veth, see [`KernelTier::start`]).
pub fn parse_mode(cli: &str, cfg: Option<vxspan_config::XdpMode>) -> Result<Option<Mode>, String> {
    match cli {
        "native" => Ok(Some(Mode::Native)),
        "generic" => Ok(Some(Mode::Generic)),
        "offload" => Err("--xdp-mode offload: no NIC here runs BPF maps of this kind in hardware; use native or generic".into()),
        "auto" => match cfg {
            Some(vxspan_config::XdpMode::Native) => Ok(Some(Mode::Native)),
            Some(vxspan_config::XdpMode::Generic) => Ok(Some(Mode::Generic)),
            Some(vxspan_config::XdpMode::Offload) => Err("xdp_mode offload: not supported; use native or generic".into()),
            None => Ok(None),
        },
        other => Err(format!("unknown --xdp-mode {other:?} (auto, native, generic, offload)")),
    }
}

fn ifindex(name: &str) -> Option<u32> {
    vxspan_xdp::loader::ifindex(name).ok()
}

/// Whether `ifname` is a veth (its ethtool driver name).
fn is_veth(ifname: &str) -> bool {
    vxspan_io::afpacket::driver(ifname).is_ok_and(|d| d == "veth")
}

pub struct KernelTier {
    dp: Datapath,
    /// `--datapath afxdp`: every group runs in userspace, fed by AF_XDP.
    userspace_only: bool,
    /// Per output sent to by the kernel tier alone: its device's tx_dropped when the current
    /// tables were loaded. What the device drops after a redirect (a full transmit ring...) is
    /// visible only there; the difference is moved from tx to `tx_error`.
    dev_base: Vec<Option<u64>>,
    /// Objects replaced by swaps, counted in every report until their counters are final.
    retiring: Vec<Retiring>,
    /// Keeps the tunnel outputs' next hops current (None: it could not be started, tunnel
    /// copies go through the userspace tier).
    _feeder: Option<crate::nexthop::Feeder>,
}

/// A replaced object: the plan it ran, when it was replaced, and the device drops charged to it
/// (its baselines and the devices' counters at the swap).
struct Retiring {
    obj: Retired,
    plan: Arc<Plan>,
    at: Instant,
    dev: (Vec<Option<u64>>, Vec<Option<u64>>),
}

/// What the heavy part of a table swap needs to know of the running kernel tier: taken on the
/// first worker (cheap), used on the thread that prepares the swap ([`KernelAsk::prepare`]).
#[derive(Clone)]
pub struct KernelAsk {
    userspace_only: bool,
    links: Vec<(u32, bool)>,
    /// The maps every object of the running datapath shares (tunnel slots and sequences).
    shared: vxspan_xdp::shared::Shared,
}

impl KernelAsk {
    /// Builds `plan`'s tables and loads them into an object for the current links: the
    /// verifier and the VLAN-hint copies run here, off the packet threads.
    pub fn prepare(&self, plan: &Plan) -> Result<Prepared, String> {
        let tables = Tables::build(plan, &ifindex, self.userspace_only)?;
        Datapath::prepare(tables, &self.links, &self.shared)
    }

    /// Whether `p` was prepared for the links this ask describes.
    pub fn made(&self, p: &Prepared) -> bool {
        p.links() == self.links.as_slice()
    }
}

/// The first kernel-originated tunnel output whose route (now) leaves by a veth, named as
/// "NAME's egress DEV".
fn tunnel_veth(tables: &Tables) -> Option<String> {
    let mut nl = vxspan_io::netdev::Rtnl::open().ok()?;
    tables.outputs.iter().find_map(|o| {
        let t = o.tunnel.as_ref()?;
        let r = match vxspan_io::route::resolve(&mut nl, t.remote).ok()? {
            vxspan_io::route::NextHop::Ready(r, _) | vxspan_io::route::NextHop::Unresolved(r) => r,
            vxspan_io::route::NextHop::Unroutable(_) => return None,
        };
        is_veth(&r.ifname).then(|| format!("{}'s egress {}", t.name, r.ifname))
    })
}

/// An interface's tx_dropped counter.
fn tx_dropped(ifname: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/tx_dropped"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// For each output of `plan`: its tx_dropped now, if only the kernel tier sends to it (the
/// userspace tier counts its own send failures; sharing the device counter would count twice).
fn device_baseline(plan: &Plan, tables: &Tables) -> Vec<Option<u64>> {
    let mut kernel_only: Vec<bool> = plan
        .outputs
        .iter()
        .map(|o| o.dest.interface().is_some())
        .collect();
    for (inp, t) in plan.inputs.iter().zip(&tables.inputs) {
        for (g, (tier, _)) in inp.groups.iter().zip(&t.placement) {
            if *tier == vxspan_core::Tier::Userspace {
                for &r in &g.rules {
                    for o in plan.rules[r].to.iter() {
                        kernel_only[o] = false;
                    }
                    for c in plan.rules[r].balance.iter().flatten() {
                        kernel_only[c.output] = false;
                    }
                }
            }
        }
    }
    plan.outputs
        .iter()
        .zip(kernel_only)
        .map(|(o, k)| {
            if k {
                o.dest.interface().and_then(tx_dropped)
            } else {
                None
            }
        })
        .collect()
}

impl KernelTier {
    /// Places `plan`'s groups, loads the program and attaches it to every input. Without a
    /// mode, native -- except when an output is a veth: a native redirect into a veth is only
    /// delivered if its peer runs XDP or has GRO on, which vxspan cannot see from here, so
    /// generic is used (`--xdp-mode native` overrides).
    pub fn start(
        plan: &Plan,
        mode: Option<Mode>,
        userspace_only: bool,
    ) -> Result<(KernelTier, Mode, String), String> {
        let tables = Tables::build(plan, &ifindex, userspace_only)?;
        let mut why = String::new();
        let mode = match mode {
            Some(m) => Some(m),
            // Every group in userspace: nothing is redirected into an output, so a veth output
            // is no reason for generic mode (native reads the driver's VLAN hint).
            None if userspace_only => None,
            None => {
                let veth = plan
                    .outputs
                    .iter()
                    .filter_map(|o| o.dest.interface())
                    .find(|i| is_veth(i));
                // A tunnel whose route leaves by a veth is the same case.
                let veth = veth.map(str::to_owned).or_else(|| tunnel_veth(&tables));
                match veth {
                    Some(v) => {
                        why = format!("generic because output {v} is a veth (a native redirect into a veth needs XDP or GRO on its peer; --xdp-mode native if it has)");
                        Some(Mode::Generic)
                    }
                    None => None,
                }
            }
        };
        let mut dp = Datapath::load(tables)?;
        let names: Vec<String> = plan.inputs.iter().map(|i| i.interface.clone()).collect();
        let m = dp.attach(mode, &names)?;
        if why.is_empty() {
            why = format!("{} mode", m.as_str());
        }
        let attached = dp.tables().inputs.iter().filter(|i| i.ifindex != 0).count();
        why += &match (m, dp.vlan_hint_inputs()) {
            (Mode::Generic, _) => {
                "; VLAN tags the kernel carries out of band are not seen in generic mode".to_owned()
            }
            (Mode::Native, n) if n == attached => {
                "; out-of-band VLAN tags are put back from the driver's VLAN hint where the driver has one (veth does)".to_owned()
            }
            (Mode::Native, n) => format!(
                "; out-of-band VLAN tags are put back from the driver's VLAN hint on {n} of {attached} inputs, where the driver has one (veth does)"
            ),
        };
        Ok((KernelTier::new(dp, plan, userspace_only), m, why))
    }

    /// The tier running `dp`, whose tables were built from `plan`.
    fn new(dp: Datapath, plan: &Plan, userspace_only: bool) -> KernelTier {
        let feeder = crate::nexthop::Feeder::start(dp.shared(), dp.mode().unwrap_or(Mode::Native))
            .map_err(|e| crate::logging::warn(format!("next-hop thread: {e}")))
            .ok();
        KernelTier {
            dev_base: device_baseline(plan, dp.tables()),
            dp,
            userspace_only,
            retiring: Vec::new(),
            _feeder: feeder,
        }
    }

    /// Where each rule of `plan` takes its sampling count: the kernel tier's, for rules it
    /// samples (None: the engine's own).
    pub fn sample_cells(
        &self,
        plan: &Plan,
    ) -> Vec<Option<Arc<dyn vxspan_core::encap::SharedCount>>> {
        let sh = self.dp.shared();
        let sh = sh.lock().unwrap_or_else(|p| p.into_inner());
        plan.rules
            .iter()
            .map(|r| {
                let cell = sh.sample_cell(&r.name)?;
                Some(Arc::new(cell) as Arc<dyn vxspan_core::encap::SharedCount>)
            })
            .collect()
    }

    /// Where each output of `plan` takes its ERSPAN sequence numbers: the counters the XDP
    /// program shares, for outputs it can originate (None: the engine's own).
    pub fn sequence_cells(
        &self,
        plan: &Plan,
    ) -> Vec<Option<Arc<dyn vxspan_core::encap::SequenceCell>>> {
        let sh = self.dp.shared();
        let sh = sh.lock().unwrap_or_else(|p| p.into_inner());
        plan.outputs
            .iter()
            .map(|o| {
                let cell = sh.slot_of(&o.name).and_then(|s| sh.seq_cell(s))?;
                Some(Arc::new(cell) as Arc<dyn vxspan_core::encap::SequenceCell>)
            })
            .collect()
    }

    /// Takes over the kernel tier a previous image of this process handed over
    /// ([`KernelTier::handover`]): the inputs keep forwarding throughout, and their links are
    /// pointed at `plan`'s tables. Returns the tier, its mode, the placement note, and the old
    /// program's final counters reported against `old_plan` (the plan it ran).
    pub fn adopt(
        plan: &Plan,
        old_plan: &Plan,
        userspace_only: bool,
        h: vxspan_xdp::loader::Handover,
    ) -> Result<(KernelTier, Mode, String, Report), String> {
        let tables = Tables::build(plan, &ifindex, userspace_only)?;
        let (dp, raw) = Datapath::adopt(tables, h)?;
        let m = dp.mode().unwrap_or(Mode::Generic);
        let old = vxspan_core::engine::report(old_plan, &Tables::counters(old_plan, &raw));
        let why = format!(
            "{} mode, taken over from the previous image ({} input(s) never detached)",
            m.as_str(),
            dp.tables().inputs.iter().filter(|i| i.ifindex != 0).count()
        );
        Ok((KernelTier::new(dp, plan, userspace_only), m, why, old))
    }

    /// Leaves the program attached and forwarding, and hands its links and counter maps over
    /// for the next image of this process (`vxspan restart`); with the final counters of the
    /// objects replaced before, which are not handed over.
    pub fn handover(self) -> Result<(vxspan_xdp::loader::Handover, Report), String> {
        let mut k = self;
        let retired = k.retire(true);
        Ok((k.dp.handover()?, retired))
    }

    /// Marks output `o` up or down for the XDP program's balancing, as the engine is told.
    pub fn set_output_up(&mut self, o: usize, up: bool) -> Result<(), String> {
        self.dp.set_output_up(o, up)
    }

    pub fn mode(&self) -> Option<Mode> {
        self.dp.mode()
    }

    /// Inputs whose program reads the driver's VLAN hint.
    pub fn vlan_hint_inputs(&self) -> usize {
        self.dp.vlan_hint_inputs()
    }

    pub fn tables(&self) -> &Tables {
        self.dp.tables()
    }

    /// The kernel tier's counters for `plan` (the plan its tables were built from).
    pub fn report(&self, plan: &Plan) -> Report {
        self.snapshot(plan).0
    }

    /// [`KernelTier::report`], per input the frames the current program handed to the
    /// userspace tier, and per output those it handed up because a tunnel's next hop was not
    /// resolved, from one reading of the maps. Replaced objects not yet retired are in the
    /// report too.
    pub fn snapshot(&self, plan: &Plan) -> Snapshot {
        let raw = self.dp.counters();
        let handed = raw.userspace.iter().map(|u| u.0).collect();
        let unresolved = raw.outputs.iter().map(|o| o.unresolved_packets).collect();
        let now = device_counters(plan, &self.dev_base);
        let mut r = report_of(plan, &raw, (&self.dev_base, &now));
        for x in &self.retiring {
            r.add(&x.report());
        }
        (r, handed, unresolved)
    }

    /// What the next-hop thread last found for each kernel-originated tunnel output, by name.
    pub fn next_hops(&self) -> std::collections::BTreeMap<String, String> {
        self._feeder
            .as_ref()
            .map(|f| f.states())
            .unwrap_or_default()
    }

    /// What the heavy part of a swap of this tier's tables needs ([`KernelAsk::prepare`]).
    pub fn ask(&self) -> KernelAsk {
        KernelAsk {
            userspace_only: self.userspace_only,
            links: self.dp.links_key(),
            shared: self.dp.shared(),
        }
    }

    /// Swaps in a prepared object (the light part: map entries for the AF_XDP sockets and one
    /// bpf_link_update per input), built from `new`. The replaced object, which ran `old`,
    /// keeps being counted until [`KernelTier::retire`] finds it final. On error nothing
    /// changed (the inputs changed since the object was prepared).
    pub fn commit(&mut self, old: Arc<Plan>, new: &Plan, p: Prepared) -> Result<(), String> {
        let obj = self.dp.commit(p)?;
        let end = device_counters(&old, &self.dev_base);
        let base = std::mem::replace(&mut self.dev_base, device_baseline(new, self.dp.tables()));
        self.retiring.push(Retiring {
            obj,
            plan: old,
            at: Instant::now(),
            dev: (base, end),
        });
        Ok(())
    }

    /// The final counters of the replaced objects whose program can no longer run (all of
    /// them with `all`, waiting out the rest of [`RETIRE_AFTER`]), for the caller's history.
    pub fn retire(&mut self, all: bool) -> Report {
        let mut r = Report::default();
        if all {
            if let Some(last) = self.retiring.iter().map(|x| x.at).max() {
                std::thread::sleep(RETIRE_AFTER.saturating_sub(last.elapsed()));
            }
        }
        self.retiring.retain(|x| {
            if x.at.elapsed() < RETIRE_AFTER {
                return true;
            }
            r.add(&x.report());
            false
        });
        r
    }

    /// Detaches the program, then adds its final counters (reported against `plan`) and the
    /// replaced objects' to `history`: read after the detach, so no frame they counted is left
    /// out.
    pub fn detach(self, plan: &Plan, history: &mut Report) {
        let mut k = self;
        k.dp.detach();
        history.add(&k.retire(true));
        history.add(&k.report(plan));
    }

    pub fn userspace_only(&self) -> bool {
        self.userspace_only
    }

    /// Registers an AF_XDP socket for input `input`'s RX `queue`.
    pub fn bind_xsk(&mut self, input: usize, queue: u32, fd: i32) -> Result<(), String> {
        self.dp.bind_xsk(vxspan_xdp::loader::Xsk {
            input: input as u32,
            queue,
            fd,
        })
    }
}

impl Retiring {
    /// Its counters, reported against the plan its tables were built from.
    fn report(&self) -> Report {
        let raw = self.obj.counters();
        report_of(&self.plan, &raw, (&self.dev.0, &self.dev.1))
    }
}

/// Each output's device tx_dropped now, where `base` has a baseline.
fn device_counters(plan: &Plan, base: &[Option<u64>]) -> Vec<Option<u64>> {
    plan.outputs
        .iter()
        .zip(base)
        .map(|(o, b)| b.and_then(|_| o.dest.interface().and_then(tx_dropped)))
        .collect()
}

/// The kernel tier's counters `raw` in `plan`'s shape, with what the output devices dropped
/// after a redirect moved from tx to `tx_error`: per output, its tx_dropped `dev.1` less its
/// baseline `dev.0` (outputs only the kernel tier sends to).
fn report_of(
    plan: &Plan,
    raw: &vxspan_xdp::tables::RawCounters,
    dev: (&[Option<u64>], &[Option<u64>]),
) -> Report {
    let mut c = Tables::counters(plan, raw);
    for ((o, base), now) in plan.outputs.iter().zip(dev.0).zip(dev.1) {
        let (Some(base), Some(now)) = (base, now) else {
            continue;
        };
        let port = &mut c.ports[o.port];
        let lost = now.saturating_sub(*base).min(port.tx_packets);
        port.tx_packets -= lost;
        port.tx_dropped_packets += lost;
        port.tx_drop_reasons[vxspan_core::TxDrop::TxError as usize] += lost;
    }
    vxspan_core::engine::report(plan, &c)
}

/// The plan's groups with the tier that runs each and why: the one placement `check`, `run`
/// and `status` show. `tables` is the kernel tier's (what it runs); `None` means no kernel tier
/// (`--datapath afpacket`, or XDP unavailable): every group in userspace.
pub fn placed_groups(
    plan: &Plan,
    cfg: &vxspan_config::Config,
    tables: Option<&Tables>,
) -> Vec<vxspan_core::plan::GroupDescription> {
    let mut groups = plan.describe(cfg).groups;
    let actual: Vec<(vxspan_core::Tier, String)> = match tables {
        Some(t) => t
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

/// The tables the kernel tier would run `plan` with, for `vxspan check` (no interface is
/// looked up: every name is taken to exist, as `run` requires).
pub fn planned_tables(plan: &Plan) -> Result<Tables, String> {
    Tables::build(plan, &|_| Some(1), false)
}
