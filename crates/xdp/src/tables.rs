//! What a compiled [`Plan`] becomes in the kernel tier: per (input, VID) an action, per output its
//! VLAN action and MTU, and the fan-out sets. Pure (no maps, no syscalls), so the placement and
//! the counter arithmetic are tested without root; [`crate::Datapath`] writes these into the maps.

use vxspan_config::{Oversize, VlanAction};
use vxspan_core::counters::{Counters, RxDrop, TxDrop};
use vxspan_core::plan::{OutSet, Plan, Tier, NO_GROUP};
use vxspan_core::rendezvous::Choice;

/// VIDs per input in the group table (0 = untagged and priority-tagged).
pub const NVID: usize = 4096;
/// Interface indexes the input table covers.
pub const MAX_IFINDEX: u32 = 4096;
/// Outputs the kernel tier can address.
pub const MAX_OUTPUTS: usize = 64;
/// Outputs in one fan-out set.
pub const MAX_FAN: usize = 16;
/// Distinct fan-out sets in one loaded plan (one devmap each: `fan0` .. `fan7`).
pub const FANSETS: usize = 8;
/// Distinct balance sets in one loaded plan (`balsets`, bpf/balance.h).
pub const BALSETS: usize = 8;

/// What the kernel does with the frames of one (input, VID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Dropped as `no_rule`.
    Drop,
    /// Sent to one output (an index into [`Plan::outputs`]).
    Redirect(u32),
    /// A copy to each output of fan-out set N.
    Broadcast(u32),
    /// Handed to the userspace tier.
    Userspace,
    /// To one output of balance set N, chosen by the frame's flow (bpf/balance.h).
    Balance(u32),
}

impl Action {
    /// (action, arg) as the C side's `struct vx_group` holds them.
    pub fn encode(self) -> (u32, u32) {
        match self {
            Action::Drop => (0, 0),
            Action::Redirect(o) => (1, o),
            Action::Broadcast(s) => (2, s),
            Action::Userspace => (3, 0),
            Action::Balance(s) => (4, s),
        }
    }
}

/// One input in the kernel tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputTable {
    pub ifindex: u32,
    /// Every frame goes to userspace (the input strips tunnels, listens, or has a passthru): the
    /// kernel does not even classify them, so that `malformed` is decided where the rules run.
    pub all_userspace: bool,
    /// The tier each of the plan's groups of this input runs in, and why.
    pub placement: Vec<(Tier, String)>,
    /// Action per VID, for VIDs whose action is not [`Action::Drop`].
    pub actions: Vec<(u16, Action)>,
    /// VIDs whose (one-rule, kernel-tier) group samples by count: (VID, N of `sample = N`, the
    /// rule's name, which owns its counter's slot).
    pub samples: Vec<(u16, u32, String)>,
    /// VIDs whose group samples whole flows (`mode = "flow"`): (VID, N). No shared counter:
    /// the flow hash decides.
    pub flow_samples: Vec<(u16, u32)>,
}

/// One output as the kernel tier sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputTable {
    /// 0: not an interface (a tunnel, archive...), never a kernel-tier destination.
    pub ifindex: u32,
    /// 0 none, 1 push, 2 pop, 3 set.
    pub vlan_op: u32,
    pub vid: u32,
    /// Largest layer 3 payload (0: no limit).
    pub mtu: u32,
    /// `oversize = "truncate"`: a copy over `mtu` is cut to fit instead of dropped.
    pub truncate: bool,
    /// `truncate`: the copy's largest length after its VLAN action (0: whole).
    pub cut_to: u32,
    /// A tunnel the XDP program originates (see [`TunnelTable::of`]); None for interfaces and
    /// for tunnels only the userspace tier sends.
    pub tunnel: Option<TunnelTable>,
    /// `rate_limit` of an interface output: (bytes per second, burst bytes), its token bucket
    /// in `buckets` (bpf/ratelimit.h).
    pub rate: Option<(u64, u64)>,
}

/// The kinds of tunnel the XDP program originates (`enum vx_tun_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    ErspanII = 1,
    ErspanIII = 2,
    Gre = 3,
    Vxlan = 4,
    Geneve = 5,
}

/// A tunnel output in the kernel tier: its fixed header fields. The outer source address,
/// MAC addresses and egress device come from the route and neighbour tables at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTable {
    pub kind: TunnelKind,
    /// GRE key.
    pub key: Option<u32>,
    /// VXLAN / Geneve: the VNI and the UDP destination port (0 for the GRE kinds).
    pub vni: u32,
    pub port: u16,
    /// ERSPAN session id.
    pub session: u16,
    pub dscp: u8,
    pub ttl: u8,
    pub remote: std::net::Ipv4Addr,
    /// The configured source address (None: the route's preferred source).
    pub source: Option<std::net::Ipv4Addr>,
    /// The output's name: what its slot in the shared maps belongs to.
    pub name: String,
}

impl TunnelTable {
    /// The kernel tier's form of `e`, or why only the userspace tier can originate it
    /// (vxspan_core::plan::kernel_tunnel decides placement by the same function).
    pub fn of(e: &vxspan_config::Encap) -> Result<TunnelTable, String> {
        use vxspan_config::Encap;
        vxspan_core::plan::kernel_tunnel(e)?;
        let (kind, key, session, vni, port) = match e {
            Encap::Erspan {
                version: 2,
                session,
                ..
            } => (TunnelKind::ErspanII, None, *session, 0, 0),
            Encap::Erspan { session, .. } => (TunnelKind::ErspanIII, None, *session, 0, 0),
            Encap::Gre { key, .. } => (TunnelKind::Gre, *key, 0, 0, 0),
            Encap::Vxlan { vni, port, .. } => (TunnelKind::Vxlan, None, 0, *vni, *port),
            Encap::Geneve { vni, port, .. } => (TunnelKind::Geneve, None, 0, *vni, *port),
        };
        let o = e.outer();
        let (std::net::IpAddr::V4(remote), source) = (o.remote, o.source) else {
            return Err("an IPv6 remote is not originated in XDP".into());
        };
        let source = match source {
            None => None,
            Some(std::net::IpAddr::V4(s)) => Some(s),
            Some(std::net::IpAddr::V6(_)) => return Err("IPv6 source for an IPv4 remote".into()),
        };
        Ok(TunnelTable {
            kind,
            key,
            vni,
            port,
            session,
            dscp: o.dscp,
            ttl: o.ttl,
            remote,
            source,
            name: String::new(),
        })
    }
}

impl OutputTable {
    /// Whether copies leaving through `other` get the same truncation, MTU and VLAN action.
    fn same_transforms(&self, other: &OutputTable) -> bool {
        self.tunnel.is_none()
            && other.tunnel.is_none()
            && self.rate.is_none()
            && other.rate.is_none()
            && (self.vlan_op, self.vid, self.mtu, self.truncate, self.cut_to)
                == (
                    other.vlan_op,
                    other.vid,
                    other.mtu,
                    other.truncate,
                    other.cut_to,
                )
    }
}

/// The kernel tier's tables for one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub inputs: Vec<InputTable>,
    pub outputs: Vec<OutputTable>,
    /// Output indexes of each fan-out set.
    pub fansets: Vec<Vec<u32>>,
    /// The outputs, weights and name ids of each balance set.
    pub balsets: Vec<Vec<Choice>>,
    /// The flow hash's key as SipHash's two words (`HashKey::sip_words`): the program hashes
    /// flows as the engine does.
    pub hash_key: (u64, u64),
}

impl Tables {
    /// Places every group. `ifindex` resolves interface names (None: no such interface). With
    /// `userspace_only`, every group goes to userspace (the `afxdp` datapath).
    pub fn build(
        plan: &Plan,
        ifindex: &dyn Fn(&str) -> Option<u32>,
        userspace_only: bool,
    ) -> Result<Tables, String> {
        // An output's token bucket lives in one tier: once a rate-limited output is reached
        // from the userspace tier, every group reaching it goes there too, which may send
        // another rate-limited output's groups there (at most one round per output).
        let mut shared = vec![false; plan.outputs.len()];
        loop {
            let t = Self::build_with(plan, ifindex, userspace_only, &shared)?;
            let mut more = false;
            for (inp, ti) in plan.inputs.iter().zip(&t.inputs) {
                for (g, (tier, _)) in inp.groups.iter().zip(&ti.placement) {
                    if *tier != Tier::Userspace {
                        continue;
                    }
                    for &r in &g.rules {
                        for o in plan.rules[r].to.iter() {
                            if t.outputs[o].rate.is_some() && !shared[o] {
                                shared[o] = true;
                                more = true;
                            }
                        }
                    }
                }
            }
            if !more {
                return Ok(t);
            }
        }
    }

    /// [`Tables::build`], with the groups that reach an output `user_rate` marks placed in
    /// the userspace tier.
    fn build_with(
        plan: &Plan,
        ifindex: &dyn Fn(&str) -> Option<u32>,
        userspace_only: bool,
        user_rate: &[bool],
    ) -> Result<Tables, String> {
        if plan.outputs.len() > MAX_OUTPUTS {
            return Err(format!(
                "the XDP tier addresses at most {MAX_OUTPUTS} outputs; this configuration has {}",
                plan.outputs.len()
            ));
        }
        let mut outputs = Vec::with_capacity(plan.outputs.len());
        for o in &plan.outputs {
            let mut t = OutputTable::default();
            // Only interface outputs are redirect targets; the others stay 0 (the groups that
            // send to them are placed in userspace).
            if let Some(name) = o.dest.interface() {
                t.ifindex = ifindex(name)
                    .ok_or_else(|| format!("output {}: no interface {name:?}", o.name))?;
            }
            if let Some(e) = o.dest.encap() {
                t.tunnel = TunnelTable::of(e).ok().map(|t| TunnelTable {
                    name: o.name.clone(),
                    ..t
                });
            }
            (t.vlan_op, t.vid) = match o.vlan {
                None => (0, 0),
                Some(VlanAction::Push(v)) => (1, u32::from(v)),
                Some(VlanAction::Pop) => (2, 0),
                Some(VlanAction::Set(v)) => (3, u32::from(v)),
            };
            t.mtu = o.mtu.unwrap_or(0);
            t.truncate = o.oversize == Oversize::Truncate;
            t.cut_to = o.truncate.unwrap_or(0);
            t.rate = o
                .rate_limit
                .map(|r| (r.bytes_per_sec, r.burst_bytes))
                .filter(|_| o.dest.interface().is_some());
            outputs.push(t);
        }

        let mut fansets: Vec<Vec<u32>> = Vec::new();
        let mut balsets: Vec<Vec<Choice>> = Vec::new();
        let mut inputs = Vec::with_capacity(plan.inputs.len());
        for inp in &plan.inputs {
            let ifx = if inp.listen.is_some() {
                0
            } else {
                let i = ifindex(&inp.interface).ok_or_else(|| {
                    format!("input {}: no interface {:?}", inp.name, inp.interface)
                })?;
                if i >= MAX_IFINDEX {
                    return Err(format!(
                        "input {}: interface index {i} of {:?} is beyond the XDP tier's table ({MAX_IFINDEX})",
                        inp.name, inp.interface
                    ));
                }
                i
            };
            let whole = if userspace_only {
                Some("datapath afxdp: every group in userspace".to_string())
            } else if inp.listen.is_some() {
                Some(format!(
                    "input {} terminates tunnels sent to this host",
                    inp.name
                ))
            } else if inp.decap.is_some() {
                Some(format!("input {} strips tunnels", inp.name))
            } else if !inp.passthru.is_empty() {
                Some(format!(
                    "input {} has a passthru (control traffic to a TAP)",
                    inp.name
                ))
            } else {
                None
            };
            let mut placement = Vec::with_capacity(inp.groups.len());
            let mut group_action = Vec::with_capacity(inp.groups.len());
            for g in &inp.groups {
                let (tier, why, action) = match (&whole, g.tier) {
                    (Some(why), _) => (Tier::Userspace, why.clone(), Action::Userspace),
                    (None, Tier::Userspace) => (Tier::Userspace, g.why.clone(), Action::Userspace),
                    (None, Tier::Xdp) => 'xdp: {
                        let mut dest = OutSet::default();
                        for &r in &g.rules {
                            dest.union(&plan.rules[r].to);
                        }
                        // A group that balances has one rule (plan.rs).
                        let balance = g.rules.iter().find_map(|&r| plan.rules[r].balance.as_ref());
                        // Balancing and flow sampling hand the frames the program cannot key
                        // as the engine does to the userspace tier: a rate-limited output
                        // would then have a bucket in each tier.
                        let punts = balance.is_some()
                            || g.rules.iter().any(|&r| {
                                plan.rules[r]
                                    .sample
                                    .is_some_and(|s| s.mode == vxspan_config::SampleMode::Flow)
                            });
                        if let Some(o) = dest.iter().find(|&o| punts && outputs[o].rate.is_some()) {
                            break 'xdp (
                                Tier::Userspace,
                                format!(
                                    "output {} is rate-limited and the group balances or samples by flow (frames the XDP program cannot key go to userspace, which would keep a second bucket)",
                                    plan.outputs[o].name
                                ),
                                Action::Userspace,
                            );
                        }
                        if let Some(o) = dest.iter().find(|&o| user_rate[o]) {
                            break 'xdp (
                                Tier::Userspace,
                                format!(
                                    "output {} is rate-limited and reached from the userspace tier too (one token bucket per output)",
                                    plan.outputs[o].name
                                ),
                                Action::Userspace,
                            );
                        }
                        let action = match balance {
                            Some(choices) => balance_action(choices, &outputs, &mut balsets),
                            None => kernel_action(&dest, &outputs, &mut fansets),
                        };
                        match action {
                            Ok(a) => (Tier::Xdp, g.why.clone(), a),
                            Err(why) => (Tier::Userspace, why, Action::Userspace),
                        }
                    }
                };
                placement.push((tier, why));
                group_action.push(action);
            }
            let mut actions = Vec::new();
            let mut samples = Vec::new();
            let mut flow_samples = Vec::new();
            for vid in 0..NVID {
                let g = inp.group_of_vid[vid];
                let a = if whole.is_some() {
                    Action::Userspace
                } else if g == NO_GROUP {
                    Action::Drop
                } else {
                    group_action[usize::from(g)]
                };
                if a != Action::Drop {
                    actions.push((vid as u16, a));
                    if a != Action::Userspace {
                        // A kernel-tier group that samples has one rule (plan.rs).
                        let rule = inp.groups[usize::from(g)].rules[0];
                        let r = &plan.rules[rule];
                        match r.sample {
                            Some(smp) if smp.mode == vxspan_config::SampleMode::Flow => {
                                flow_samples.push((vid as u16, smp.one_in));
                            }
                            Some(smp) => samples.push((vid as u16, smp.one_in, r.name.clone())),
                            None => {}
                        }
                    }
                }
            }
            inputs.push(InputTable {
                ifindex: ifx,
                all_userspace: whole.is_some(),
                placement,
                actions,
                samples,
                flow_samples,
            });
        }
        Ok(Tables {
            inputs,
            outputs,
            fansets,
            balsets,
            hash_key: plan.hash_key.sip_words(),
        })
    }

    /// Whether frames of input `i` can reach the userspace tier: its groups placed there, and
    /// the frames of kernel-tier tunnels whose next hop is not resolved yet, and those that
    /// balancing and flow sampling cannot key as the engine does.
    pub fn input_needs_userspace(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|t| {
            t.all_userspace
                || !t.flow_samples.is_empty()
                || t.actions.iter().any(|(_, a)| self.reaches_userspace(*a))
        })
    }

    fn reaches_userspace(&self, a: Action) -> bool {
        match a {
            Action::Userspace => true,
            Action::Redirect(o) => self
                .outputs
                .get(o as usize)
                .is_some_and(|t| t.tunnel.is_some()),
            // A frame the program cannot key as the engine does goes up (bpf/flowhash.h).
            Action::Balance(_) => true,
            Action::Drop | Action::Broadcast(_) => false,
        }
    }

    /// Whether any frame can reach the userspace tier.
    pub fn needs_userspace(&self) -> bool {
        (0..self.inputs.len()).any(|i| self.input_needs_userspace(i))
    }

    /// The kernel tier's counters in the plan's shape, ready to merge with the userspace tier's.
    /// Frames handed to userspace are left out: the userspace tier counts them.
    /// (A function of the plan alone: the tables a plan's counters were read from need not be
    /// at hand, e.g. after a restart in place.)
    pub fn counters(plan: &Plan, raw: &RawCounters) -> Counters {
        let mut c = Counters::for_plan(plan);
        for (ii, inp) in plan.inputs.iter().enumerate() {
            let Some(vids) = raw.groups.get(ii) else {
                continue;
            };
            let port = &mut c.ports[inp.port];
            for (vid, g) in vids.iter().enumerate() {
                if g.packets == 0 {
                    continue;
                }
                let (dp, db) = (
                    g.dropped_packets + g.sampled_packets,
                    g.dropped_bytes + g.sampled_bytes,
                );
                let vc = &mut c.vlans[ii][vid];
                vc.packets += g.packets;
                vc.bytes += g.bytes;
                vc.dropped_packets += dp;
                vc.dropped_bytes += db;
                port.rx_packets += g.packets;
                port.rx_bytes += g.bytes;
                port.forwarded_packets += g.packets - dp;
                port.forwarded_bytes += g.bytes - db;
                port.dropped_packets += dp;
                port.dropped_bytes += db;
                port.drop_reasons[RxDrop::NoRule as usize] += g.dropped_packets;
                port.drop_reasons[RxDrop::SampledOut as usize] += g.sampled_packets;
                // Kernel-tier rules have no filter: each rule of the group matched every frame
                // the group did not drop for want of a rule, and forwarded those not sampled
                // out (a group that samples has one rule).
                let grp = inp.group_of_vid[vid];
                if grp != NO_GROUP {
                    for &r in &inp.groups[usize::from(grp)].rules {
                        let rc = &mut c.rules[r];
                        rc.matched_packets += g.packets - g.dropped_packets;
                        rc.matched_bytes += g.bytes - g.dropped_bytes;
                        rc.forwarded_packets += g.packets - dp;
                        rc.sampled_out_packets += g.sampled_packets;
                    }
                }
            }
            if let Some(m) = raw.malformed.get(ii) {
                port.rx_packets += m.0;
                port.rx_bytes += m.1;
                port.dropped_packets += m.0;
                port.dropped_bytes += m.1;
                port.drop_reasons[RxDrop::Malformed as usize] += m.0;
            }
        }
        for (o, out) in plan.outputs.iter().enumerate() {
            let Some(r) = raw.outputs.get(o) else {
                continue;
            };
            let port = &mut c.ports[out.port];
            port.tx_packets += r.tx_packets;
            port.tx_bytes += r.tx_bytes;
            port.tx_dropped_packets += r.link_down_packets + r.mtu_exceeded_packets;
            port.tx_dropped_bytes += r.link_down_bytes + r.mtu_exceeded_bytes;
            port.tx_dropped_packets += r.tx_error_packets;
            port.tx_dropped_bytes += r.tx_error_bytes;
            port.tx_drop_reasons[TxDrop::LinkDown as usize] += r.link_down_packets;
            port.tx_drop_reasons[TxDrop::MtuExceeded as usize] += r.mtu_exceeded_packets;
            port.tx_dropped_packets += r.rate_limited_packets;
            port.tx_dropped_bytes += r.rate_limited_bytes;
            port.tx_drop_reasons[TxDrop::RateLimited as usize] += r.rate_limited_packets;
            port.tx_drop_reasons[TxDrop::TxError as usize] += r.tx_error_packets;
        }
        c
    }
}

/// Counters read from the maps, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCounters {
    /// Per input, per VID.
    pub groups: Vec<Vec<GroupCounters>>,
    /// Per input: (packets, bytes) dropped as malformed.
    pub malformed: Vec<(u64, u64)>,
    /// Per input: (packets, bytes) handed to the userspace tier.
    pub userspace: Vec<(u64, u64)>,
    pub outputs: Vec<OutputCounters>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounters {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// Sampled out (`sample = N`), counted in `packets` too.
    pub sampled_packets: u64,
    pub sampled_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub link_down_packets: u64,
    pub link_down_bytes: u64,
    pub mtu_exceeded_packets: u64,
    pub mtu_exceeded_bytes: u64,
    /// Over the output's `rate_limit`.
    pub rate_limited_packets: u64,
    pub rate_limited_bytes: u64,
    /// A kernel-originated tunnel: frames handed to the userspace tier because the next hop
    /// was not resolved (not a loss: that tier sends them, and counts them).
    pub unresolved_packets: u64,
    pub unresolved_bytes: u64,
    /// A kernel-originated tunnel: copies that could not be written (no headroom): `tx_error`.
    pub tx_error_packets: u64,
    pub tx_error_bytes: u64,
}

/// The kernel action for a group balancing over `choices`, or why it has to run in userspace.
fn balance_action(
    choices: &[Choice],
    outputs: &[OutputTable],
    balsets: &mut Vec<Vec<Choice>>,
) -> Result<Action, String> {
    if choices.len() > MAX_FAN {
        return Err(format!(
            "balance over {} outputs (the XDP tier balances over at most {MAX_FAN})",
            choices.len()
        ));
    }
    if choices.iter().any(|c| c.output >= MAX_OUTPUTS) {
        return Err(format!("an output beyond the XDP tier's {MAX_OUTPUTS}"));
    }
    if let Some(c) = choices
        .iter()
        .find(|c| outputs[c.output].ifindex == 0 && outputs[c.output].tunnel.is_none())
    {
        return Err(format!("balanced output {} is not an interface", c.output));
    }
    if let Some(s) = balsets.iter().position(|s| s == choices) {
        return Ok(Action::Balance(s as u32));
    }
    if balsets.len() == BALSETS {
        return Err(format!(
            "more than {BALSETS} distinct balance sets in the XDP tier"
        ));
    }
    balsets.push(choices.to_vec());
    Ok(Action::Balance(balsets.len() as u32 - 1))
}

/// The kernel action for a group sending to `dest`, or why it has to run in userspace.
fn kernel_action(
    dest: &OutSet,
    outputs: &[OutputTable],
    fansets: &mut Vec<Vec<u32>>,
) -> Result<Action, String> {
    let members: Vec<u32> = dest.iter().map(|o| o as u32).collect();
    for &o in &members {
        let t = &outputs[o as usize];
        if t.ifindex == 0 && t.tunnel.is_none() {
            return Err(format!("output {o} is not an interface"));
        }
        if t.rate.is_some() && members.len() > 1 {
            return Err(format!(
                "fan-out to a rate-limited output (output {o}): the XDP tier rate-limits single-output and balanced groups"
            ));
        }
        if t.tunnel.is_some() && members.len() > 1 {
            return Err(format!(
                "fan-out with a tunnel (output {o}): the XDP tier originates a tunnel for single-output groups only"
            ));
        }
    }
    match members.len() {
        0 => Ok(Action::Drop),
        1 => Ok(Action::Redirect(members[0])),
        n if n > MAX_FAN => Err(format!(
            "fan-out to {n} outputs (the XDP tier broadcasts to at most {MAX_FAN})"
        )),
        _ => {
            // The egress program knows a copy only by the interface it leaves through: two
            // outputs on one interface must treat copies alike, in this set and in every other
            // (the egress table has one entry per interface).
            for (i, &a) in members.iter().enumerate() {
                for &b in &members[i + 1..] {
                    let (x, y) = (&outputs[a as usize], &outputs[b as usize]);
                    if x.ifindex == y.ifindex {
                        return Err("fan-out to two outputs on the same interface".to_string());
                    }
                }
                let x = &outputs[a as usize];
                let clash = fansets.iter().flatten().any(|&b| {
                    let y = &outputs[b as usize];
                    b != a && y.ifindex == x.ifindex && !y.same_transforms(x)
                });
                if clash {
                    return Err(format!(
                        "output {a} shares its interface with another fan-out output that transforms copies differently"
                    ));
                }
            }
            if let Some(s) = fansets.iter().position(|s| *s == members) {
                return Ok(Action::Broadcast(s as u32));
            }
            if fansets.len() == FANSETS {
                return Err(format!(
                    "more than {FANSETS} distinct fan-out sets in the XDP tier"
                ));
            }
            fansets.push(members);
            Ok(Action::Broadcast(fansets.len() as u32 - 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every filter accepts everything (placement only cares that there is one).
    struct AcceptAll;
    impl vxspan_core::FilterCompiler for AcceptAll {
        fn compile(&self, _: &str) -> Result<Vec<vxspan_core::bpf::BpfInsn>, String> {
            Ok(vec![vxspan_core::bpf::BpfInsn::new(0x06, 0, 0, 65535)])
        }
    }

    fn plan(text: &str) -> Plan {
        let cfg = vxspan_config::parse(
            text,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        Plan::compile(&cfg, &AcceptAll).expect("plan")
    }

    fn ifx(name: &str) -> Option<u32> {
        name.strip_prefix("eth")
            .and_then(|n| n.parse::<u32>().ok())
            .map(|n| n + 10)
    }

    #[test]
    fn a_rate_limited_output_keeps_one_bucket() {
        // ids1 is rate-limited and balanced over: frames the program cannot key would reach
        // the engine's bucket too, so the group runs in userspace, and with it the single-output
        // group that also reaches ids1; ids3's group stays in the kernel.
        let p = plan(
            r#"
[inputs.in]
interface = "eth0"
[outputs.ids1]
interface = "eth2"
rate_limit = "1Mbit"
[outputs.ids2]
interface = "eth3"
[outputs.ids3]
interface = "eth4"
rate_limit = "1Mbit"
[[rules]]
from = "in"
vlan = 10
to = { balance = ["ids1", "ids2"] }
[[rules]]
from = "in"
vlan = 20
to = "ids1"
[[rules]]
from = "in"
vlan = 30
to = "ids3"
[[rules]]
from = "in"
vlan = 40
to = { balance = ["ids2", "ids3"] }
"#,
        );
        let t = Tables::build(&p, &ifx, false).unwrap();
        let action = |vid: u16| {
            t.inputs[0]
                .actions
                .iter()
                .find(|(v, _)| *v == vid)
                .unwrap()
                .1
        };
        assert_eq!(action(10), Action::Userspace);
        assert_eq!(action(20), Action::Userspace);
        // ids3 is balanced over by vid 40: userspace, and so vid 30's group too.
        assert_eq!(action(40), Action::Userspace);
        assert_eq!(action(30), Action::Userspace);
        let why: Vec<&str> = t.inputs[0]
            .placement
            .iter()
            .map(|(_, w)| w.as_str())
            .collect();
        assert!(
            why.iter()
                .any(|w| w.contains("output ids1 is rate-limited and the group balances")),
            "{why:?}"
        );
        assert!(
            why.iter()
                .any(|w| w
                    .contains("output ids1 is rate-limited and reached from the userspace tier")),
            "{why:?}"
        );
        // Without the balancing, a rate-limited single-output group runs in the kernel.
        let p = plan(
            "[inputs.in]\ninterface = \"eth0\"\n[outputs.o]\ninterface = \"eth2\"\nrate_limit = \"1Mbit\"\n[[rules]]\nfrom = \"in\"\nto = \"o\"\n",
        );
        let t = Tables::build(&p, &ifx, false).unwrap();
        assert!(t.inputs[0]
            .actions
            .iter()
            .all(|(_, a)| *a == Action::Redirect(0)));
        assert_eq!(t.outputs[0].rate, Some((125_000, 18_432)));
    }

    #[test]
    fn fanout_outputs_sharing_an_interface_must_transform_alike() {
        // a and b leave through eth2 with different transforms; each is in a fan-out set.
        let p = plan(
            r#"
[inputs.in]
interface = "eth0"
[outputs.a]
interface = "eth2"
vlan = { push = 100 }
[outputs.b]
interface = "eth2"
truncate = 128
[outputs.c]
interface = "eth3"
[outputs.d]
interface = "eth4"
truncate = 128
[[rules]]
from = ["in"]
vlan = [10]
to = ["a", "c"]
[[rules]]
from = ["in"]
vlan = [20]
to = ["b", "c"]
[[rules]]
from = ["in"]
vlan = [30]
to = ["b"]
[[rules]]
from = ["in"]
vlan = [40]
to = ["d", "c"]
"#,
        );
        let t = Tables::build(&p, &ifx, false).unwrap();
        let tier_of = |vid: u16| {
            let inp = &p.inputs[0];
            let g = inp.group_of_vid[usize::from(vid)];
            t.inputs[0].placement[usize::from(g)].clone()
        };
        assert_eq!(tier_of(10).0, Tier::Xdp);
        let (tier, why) = tier_of(20);
        assert_eq!(tier, Tier::Userspace);
        assert!(why.contains("transforms copies differently"), "{why}");
        // A single output is rewritten by the ingress program: no clash.
        assert_eq!(tier_of(30).0, Tier::Xdp);
        // Truncation alone is no reason for userspace.
        assert_eq!(tier_of(40).0, Tier::Xdp);
        assert_eq!(t.outputs[3].cut_to, 128);
    }

    #[test]
    fn vxspan_example_runs_in_the_kernel() {
        let p = plan(
            r#"
[inputs.a]
interface = "eth0"
[outputs.x]
interface = "eth2"
[outputs.y]
interface = "eth3"
vlan = { push = 100 }
[[rules]]
from = ["a"]
vlan = [10]
to = ["x"]
[[rules]]
from = ["a"]
vlan = [11]
to = ["x", "y"]
[[rules]]
from = ["a"]
vlan = [12]
filter = "tcp"
to = ["y"]
"#,
        );
        let t = Tables::build(&p, &ifx, false).unwrap();
        let i = &t.inputs[0];
        assert_eq!(i.ifindex, 10);
        assert!(!i.all_userspace);
        assert_eq!(
            i.actions,
            vec![
                (10, Action::Redirect(0)),
                (11, Action::Broadcast(0)),
                (12, Action::Userspace)
            ]
        );
        assert_eq!(t.fansets, vec![vec![0, 1]]);
        assert_eq!(t.outputs[1].vlan_op, 1);
        assert_eq!(t.outputs[1].vid, 100);
        assert!(t.needs_userspace());
        let all = Tables::build(&p, &ifx, true).unwrap();
        assert!(all.inputs[0].all_userspace);
        assert!(all.inputs[0]
            .actions
            .iter()
            .all(|(_, a)| *a == Action::Userspace));
        assert_eq!(all.inputs[0].actions.len(), NVID);
    }

    #[test]
    fn counters_follow_the_accounting() {
        let p = plan(
            r#"
[inputs.a]
interface = "eth0"
[outputs.x]
interface = "eth2"
[[rules]]
name = "ten"
from = ["a"]
vlan = [10]
to = ["x"]
"#,
        );
        Tables::build(&p, &ifx, false).unwrap();
        let mut raw = RawCounters {
            groups: vec![vec![GroupCounters::default(); NVID]],
            malformed: vec![(2, 20)],
            userspace: vec![(0, 0)],
            outputs: vec![OutputCounters {
                tx_packets: 5,
                tx_bytes: 500,
                mtu_exceeded_packets: 1,
                mtu_exceeded_bytes: 100,
                ..Default::default()
            }],
        };
        raw.groups[0][10] = GroupCounters {
            packets: 6,
            bytes: 600,
            ..Default::default()
        };
        raw.groups[0][0] = GroupCounters {
            packets: 3,
            bytes: 300,
            dropped_packets: 3,
            dropped_bytes: 300,
            ..Default::default()
        };
        let c = Tables::counters(&p, &raw);
        let inp = &c.ports[0];
        assert_eq!(inp.rx_packets, 11);
        assert_eq!(inp.rx_packets, inp.forwarded_packets + inp.dropped_packets);
        assert_eq!(inp.drop_reasons[RxDrop::NoRule as usize], 3);
        assert_eq!(inp.drop_reasons[RxDrop::Malformed as usize], 2);
        assert_eq!(c.rules[0].matched_packets, 6);
        let out = &c.ports[1];
        assert_eq!((out.tx_packets, out.tx_dropped_packets), (5, 1));
        assert_eq!(out.tx_drop_reasons[TxDrop::MtuExceeded as usize], 1);
        assert_eq!(c.vlans[0][0].dropped_packets, 3);
    }

    #[test]
    fn too_many_fanout_sets_go_to_userspace() {
        let mut text = String::from("[inputs.a]\ninterface = \"eth0\"\n");
        for o in 0..5 {
            text += &format!("[outputs.o{o}]\ninterface = \"eth{}\"\n", o + 1);
        }
        // 10 distinct pairs of 5 outputs: 8 fit, 2 do not.
        let mut vid = 1;
        for a in 0..5 {
            for b in a + 1..5 {
                text += &format!(
                    "[[rules]]\nfrom = [\"a\"]\nvlan = [{vid}]\nto = [\"o{a}\", \"o{b}\"]\n"
                );
                vid += 1;
            }
        }
        let t = Tables::build(&plan(&text), &ifx, false).unwrap();
        let ups: Vec<_> = t.inputs[0]
            .placement
            .iter()
            .filter(|(tier, _)| *tier == Tier::Userspace)
            .collect();
        assert_eq!(t.fansets.len(), FANSETS);
        assert_eq!(ups.len(), 2);
        assert!(ups[0].1.contains("fan-out sets"), "{}", ups[0].1);
    }

    #[test]
    fn missing_interface_is_an_error() {
        let p = plan("[inputs.a]\ninterface = \"wlan0\"\n[outputs.x]\ninterface = \"eth2\"\n[[rules]]\nfrom = [\"a\"]\nto = [\"x\"]\n");
        let e = Tables::build(&p, &ifx, false).unwrap_err();
        assert!(e.contains("wlan0"), "{e}");
    }
}
