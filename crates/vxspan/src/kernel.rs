//! The kernel tier inside `vxspan run`: the XDP program of vxspan-xdp, attached to every input,
//! runs the (input, VLAN) groups it can; the frames of the other groups pass up to the
//! AF_PACKET rings the userspace tier reads. Its counters are merged with the userspace tier's
//! in every report, and a reload swaps its tables atomically.

use vxspan_core::{Plan, Report};
use vxspan_xdp::{Datapath, Mode, Tables};

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
}

impl KernelTier {
    /// Places `plan`'s groups, loads the program and attaches it to every input. Without a
    /// mode, native -- except when an output is a veth: a native redirect into a veth is only
    /// delivered if its peer runs XDP or has GRO on, which vxspan cannot see from here, so
    /// generic is used (`--xdp-mode native` overrides).
    pub fn start(plan: &Plan, mode: Option<Mode>) -> Result<(KernelTier, Mode, String), String> {
        let tables = Tables::build(plan, &ifindex, false)?;
        let mut why = String::new();
        let mode = match mode {
            Some(m) => Some(m),
            None => {
                let veth = plan
                    .outputs
                    .iter()
                    .filter_map(|o| o.interface.as_deref())
                    .find(|i| is_veth(i));
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
        Ok((KernelTier { dp }, m, why))
    }

    pub fn mode(&self) -> Option<Mode> {
        self.dp.mode()
    }

    pub fn tables(&self) -> &Tables {
        self.dp.tables()
    }

    /// The kernel tier's counters for `plan` (the plan its tables were built from).
    pub fn report(&self, plan: &Plan) -> Report {
        vxspan_core::engine::report(plan, &self.dp.tables().counters(plan, &self.dp.counters()))
    }

    /// Swaps in the tables of `new` (same inputs). Returns the final counters of the replaced
    /// tables, reported against `old`, the plan they were built from. On error nothing changed.
    pub fn reload(&mut self, old: &Plan, new: &Plan) -> Result<Report, String> {
        let tables = Tables::build(new, &ifindex, false)?;
        let old_tables = self.dp.tables().clone();
        let raw = self.dp.replace(tables)?;
        Ok(vxspan_core::engine::report(
            old,
            &old_tables.counters(old, &raw),
        ))
    }

    /// Detaches the program, then adds its final counters (reported against `plan`) to
    /// `history`: read after the detach, so no frame it counted is left out.
    pub fn detach(self, plan: &Plan, history: &mut Report) {
        let KernelTier { mut dp } = self;
        dp.detach();
        history.add(&vxspan_core::engine::report(
            plan,
            &dp.tables().counters(plan, &dp.counters()),
        ));
    }

    /// Whether the frames of any group go to the userspace tier.
    pub fn needs_userspace(&self) -> bool {
        self.dp.tables().needs_userspace()
    }
}
