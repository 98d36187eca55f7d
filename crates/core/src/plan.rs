//! The compiled plan: the configuration turned into lookup tables the engine uses per frame,
//! plus the tier placement `vxspan check` explains.

use crate::bpf::{BpfInsn, BpfProgram};
use crate::decap::{TunnelMeta, TunnelType};
use serde::Serialize;
use vxspan_config::{
    Config, Destination, Encap, Form, Oversize, Sample, SampleMode, VlanAction, VlanSet, XdpMode,
};

/// Compiles a tcpdump expression to cBPF for Ethernet frames (libpcap, in `vxspan-io`).
pub trait FilterCompiler {
    fn compile(&self, expr: &str) -> Result<Vec<BpfInsn>, String>;
}

/// A compile error: the key path of the offending value and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

/// A set of outputs, as a bitmap (at most [`vxspan_config::MAX_OUTPUTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutSet([u64; 4]);

impl OutSet {
    #[inline]
    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn union(&mut self, o: &OutSet) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The members, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            let mut b = *bits;
            core::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let t = b.trailing_zeros() as usize;
                b &= b - 1;
                Some(w * 64 + t)
            })
        })
    }
}

#[derive(Debug, Clone)]
pub struct RulePlan {
    pub name: String,
    pub filter: Option<BpfProgram>,
    pub filter_text: Option<String>,
    pub to: OutSet,
    pub sample: Option<Sample>,
    pub vni: Option<Vec<u32>>,
    pub erspan_session: Option<Vec<u32>>,
    pub tunnel: Option<Vec<TunnelType>>,
    pub outer_source: Option<Vec<(std::net::IpAddr, u8)>>,
    /// `to = { balance = ... }`: the outputs and their weights; each frame goes to one of them
    /// ([`crate::rendezvous`]).
    pub balance: Option<Vec<crate::rendezvous::Choice>>,
    pub dedup: Option<vxspan_config::Dedup>,
}

impl RulePlan {
    /// Whether the tunnel the frame came out of satisfies the rule's `vni` / `erspan_session`.
    #[inline]
    pub fn matches_tunnel(&self, meta: &TunnelMeta) -> bool {
        let ok = |want: &Option<Vec<u32>>, got: Option<u32>| {
            want.as_ref()
                .is_none_or(|w| got.is_some_and(|g| w.contains(&g)))
        };
        ok(&self.vni, meta.vni)
            && ok(&self.erspan_session, meta.erspan_session.map(u32::from))
            && self
                .tunnel
                .as_ref()
                .is_none_or(|t| meta.layers.iter().flatten().any(|l| t.contains(l)))
            && self.outer_source.as_ref().is_none_or(|p| {
                meta.outer_src
                    .is_some_and(|a| vxspan_config::prefixes_contain(p, a))
            })
    }
}

#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub name: String,
    /// Where its copies go.
    pub dest: Destination,
    pub oversize: Oversize,
    pub rate_limit: Option<vxspan_config::RateLimit>,
    /// Index of this output's port in [`Plan::ports`].
    pub port: usize,
    pub vlan: Option<VlanAction>,
    pub truncate: Option<u32>,
    pub mtu: Option<u32>,
    /// The id late send losses of its copies are recorded under ([`TxFrame::owner`]): its
    /// index here; `vxspan run` sets one interned by name, so that it survives a reload that
    /// renumbers the outputs.
    pub loss_id: u16,
}

/// Where a group of frames is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The XDP program: VLAN-selector redirect, fan-out, VLAN push / pop / set, drop.
    Xdp,
    /// The userspace workers (AF_XDP / AF_PACKET): everything else.
    Userspace,
}

/// The frames of one input whose outer VLAN falls in `vlans`: they meet the same rules.
#[derive(Debug, Clone)]
pub struct Group {
    pub vlans: VlanSet,
    pub rules: Vec<usize>,
    pub tier: Tier,
    /// Why this tier (the first rule feature that needs userspace, or what the kernel does).
    pub why: String,
}

#[derive(Debug, Clone)]
pub struct InputPlan {
    pub name: String,
    pub interface: String,
    /// What the input strips: its `decap`, plus, for a `listen` input, the listened tunnel type.
    pub decap: Option<vxspan_config::Decap>,
    pub listen: Option<vxspan_config::Listen>,
    /// Whether a rule of this input matches on `outer_source`.
    pub needs_outer_source: bool,
    /// Passthru sections on this input: (index into `Plan::passthru`, MAC, VLAN).
    pub passthru: Vec<(usize, [u8; 6], Option<u16>)>,
    pub port: usize,
    /// Outer VID (0 = untagged) -> index into `groups`, or `NO_GROUP`.
    pub group_of_vid: Box<[u16]>,
    pub groups: Vec<Group>,
}

pub const NO_GROUP: u16 = u16::MAX;

/// A rule's VLAN set with this many selectors or more names no VLAN in particular (see
/// [`Plan::configured_vids`]).
pub const VLANS_NAMED_MAX: usize = 2048;

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub form: Form,
    pub xdp_mode: Option<XdpMode>,
    /// Port names: inputs first, then outputs (counters are kept per port).
    pub ports: Vec<String>,
    pub inputs: Vec<InputPlan>,
    pub outputs: Vec<OutputPlan>,
    pub rules: Vec<RulePlan>,
    /// Per input, the VIDs the configuration names (always listed in the VLAN counters): those
    /// of rules whose VLAN set has fewer than [`VLANS_NAMED_MAX`] selectors.
    pub configured_vids: Vec<VlanSet>,
    /// Per input, the tunnel ids the rules name (always listed in the tunnel counters).
    pub configured_tunnels: Vec<Vec<crate::counters::TunnelKey>>,
    /// How many other packet-chosen ids the counters list (`[counters]`).
    pub counter_limits: vxspan_config::CounterLimits,
    /// The key of the flow and dedup hashes: [`crate::hashkey::HashKey::replay`] from
    /// [`Plan::compile`], or the configuration's `management.hash_key_file`; `vxspan run` sets
    /// its own when the configuration has none.
    pub hash_key: crate::hashkey::HashKey,
    pub passthru: Vec<vxspan_config::Passthru>,
}

fn rules_of(cfg: &Config, input: usize) -> Vec<&vxspan_config::Rule> {
    cfg.rules
        .iter()
        .filter(|r| r.from.contains(&input))
        .collect()
}

/// The (type, id) pairs the rules of an input name with `vni` and `erspan_session`, for the
/// tunnel types the input strips.
fn configured_tunnels(
    input: &InputPlan,
    rules: &[&vxspan_config::Rule],
) -> Vec<crate::counters::TunnelKey> {
    use vxspan_config::TunnelKind;
    let Some(d) = &input.decap else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in rules {
        for &vni in r.vni.iter().flatten() {
            if d.allows(TunnelKind::Vxlan) {
                out.push((TunnelType::Vxlan, Some(vni)));
            }
            if d.allows(TunnelKind::Geneve) {
                out.push((TunnelType::Geneve, Some(vni)));
            }
        }
        for &s in r.erspan_session.iter().flatten() {
            if d.allows(TunnelKind::Erspan) {
                out.push((TunnelType::ErspanII, Some(s)));
                out.push((TunnelType::ErspanIII, Some(s)));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A `listen` input always strips the tunnel it listens for (on its port), on top of `decap`.
fn effective_decap(input: &vxspan_config::Input) -> Option<vxspan_config::Decap> {
    let Some(l) = &input.listen else {
        return input.decap.clone();
    };
    let mut d = input.decap.clone().unwrap_or(vxspan_config::Decap {
        kinds: Vec::new(),
        depth: 1,
        ports: vxspan_config::DecapPorts::default(),
        reassembly: vxspan_config::Reassembly::default(),
        mpls: vxspan_config::Mpls::default(),
    });
    if !d.kinds.contains(&l.kind) {
        d.kinds.push(l.kind);
    }
    if let Some(port) = l.port {
        let list = match l.kind {
            vxspan_config::TunnelKind::Geneve => &mut d.ports.geneve,
            _ => &mut d.ports.vxlan,
        };
        if !list.contains(&port) {
            list.push(port);
        }
    }
    Some(d)
}

/// The largest `rate_burst` (bytes) and `rate_limit` (bytes per second) the kernel tier's 64-bit
/// token bucket takes.
pub const KERNEL_MAX_BURST: u64 = 1 << 32;
pub const KERNEL_MAX_RATE: u64 = 1 << 40;

/// The shortest `truncate` the kernel tier runs.
pub const KERNEL_MIN_TRUNCATE: u32 = 64;

/// Whether the kernel tier originates `e`, or why not. ERSPAN II / III and GRE over IPv4 run
/// there; VXLAN and Geneve (their UDP source port) and IPv6 outer headers (their flow label)
/// carry the inner flow's hash, which the XDP program does not compute yet.
pub fn kernel_tunnel(e: &vxspan_config::Encap) -> Result<(), String> {
    use vxspan_config::Encap;
    match e {
        // VXLAN and Geneve take their UDP source port from the flow hash, which the XDP
        // program computes as the engine does (bpf/flowhash.h).
        Encap::Erspan { .. } | Encap::Gre { .. } | Encap::Vxlan { .. } | Encap::Geneve { .. } => {}
    }
    if e.outer().remote.is_ipv6() {
        return Err(format!(
            "{} over IPv6 (the flow label comes from the inner flow's hash, computed in userspace)",
            e.kind()
        ));
    }
    if e.outer().source.is_some_and(|s| s.is_ipv6()) {
        return Err(format!("{}: IPv6 source for an IPv4 remote", e.kind()));
    }
    Ok(())
}

/// What the kernel tier needs of a group beyond each rule's [`kernel_capable`]: it samples
/// only a group of one rule (one counter decides for the whole group), and balances only a
/// group of one rule (one output per frame).
fn kernel_group(cfg: &Config, rules: &[usize]) -> Result<(), String> {
    if rules.len() > 1 {
        if let Some(&r) = rules.iter().find(|&&r| cfg.rules[r].balance.is_some()) {
            return Err(format!(
                "rule {} balances and shares its VLANs with another rule (the kernel tier balances groups of one rule)",
                cfg.rules[r].name
            ));
        }
        if let Some(&r) = rules.iter().find(|&&r| cfg.rules[r].sample.is_some()) {
            return Err(format!(
                "rule {} samples and shares its VLANs with another rule (the kernel tier samples groups of one rule)",
                cfg.rules[r].name
            ));
        }
    }
    Ok(())
}

fn kernel_capable(cfg: &Config, rule: &vxspan_config::Rule) -> Result<(), String> {
    if rule.filter.is_some() {
        return Err(format!("rule {} has a filter", rule.name));
    }
    if rule.dedup.is_some() {
        return Err(format!("rule {} de-duplicates", rule.name));
    }
    if rule.vni.is_some()
        || rule.erspan_session.is_some()
        || rule.tunnel.is_some()
        || rule.outer_source.is_some()
    {
        return Err(format!("rule {} matches tunnel metadata", rule.name));
    }
    for &o in &rule.to {
        // The XDP program cuts a copy's tail before its VLAN action, which is the engine's
        // order (VLAN action, then truncation) as long as the cut stays clear of the layer 2
        // header: at most 14 + 8 tags of 4 bytes, below 64.
        if let Some(t) = cfg.outputs[o].truncate.filter(|t| *t < KERNEL_MIN_TRUNCATE) {
            return Err(format!(
                "output {} truncates to {t} bytes (the kernel tier cuts to {KERNEL_MIN_TRUNCATE} or more)",
                cfg.outputs[o].name
            ));
        }
        let out = &cfg.outputs[o];
        match &out.dest {
            Destination::Interface(_) => {}
            Destination::Tunnel(e) => {
                // The XDP program originates these; copies whose next hop is not resolved
                // yet go to the userspace tier from there (vxspan::nexthop).
                kernel_tunnel(e)
                    .map_err(|why| format!("output {} is a tunnel: {why}", out.name))?;
            }
            Destination::Archive(_) => {
                return Err(format!("output {} is a capture archive", out.name))
            }
        }
        if let Some(r) = out.rate_limit {
            // The XDP program's token bucket (bpf/ratelimit.h) is one per interface output, in
            // 64 bits.
            if !matches!(out.dest, Destination::Interface(_)) {
                return Err(format!("output {} is a rate-limited tunnel", out.name));
            }
            if r.burst_bytes > KERNEL_MAX_BURST || r.bytes_per_sec > KERNEL_MAX_RATE {
                return Err(format!(
                    "output {}'s rate_limit or rate_burst is beyond the kernel tier's token bucket (burst 4 GiB, 8 Tbit/s)",
                    out.name
                ));
            }
        }
    }
    Ok(())
}

impl Plan {
    /// Compiles a validated configuration. Filters are compiled with `compiler`; a filter that
    /// does not compile is an error naming the rule's `filter` key.
    pub fn compile(cfg: &Config, compiler: &dyn FilterCompiler) -> Result<Plan, PlanError> {
        let mut ports: Vec<String> = cfg.inputs.iter().map(|i| i.name.clone()).collect();
        ports.extend(cfg.outputs.iter().map(|o| o.name.clone()));
        let n_in = cfg.inputs.len();
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            let filter = match &r.filter {
                Some(expr) => {
                    let path = format!("{}.filter", r.path);
                    let insns = compiler.compile(expr).map_err(|m| PlanError {
                        path: path.clone(),
                        message: format!("cannot compile filter {expr:?}: {m}"),
                    })?;
                    Some(BpfProgram::new(insns).map_err(|e| PlanError {
                        path,
                        message: e.to_string(),
                    })?)
                }
                None => None,
            };
            let mut to = OutSet::default();
            for &o in &r.to {
                to.insert(o);
            }
            rules.push(RulePlan {
                name: r.name.clone(),
                filter,
                filter_text: r.filter.clone(),
                to,
                sample: r.sample,
                vni: r.vni.clone(),
                erspan_session: r.erspan_session.clone(),
                tunnel: r
                    .tunnel
                    .as_ref()
                    .map(|t| t.iter().filter_map(|n| TunnelType::from_name(n)).collect()),
                outer_source: r.outer_source.clone(),
                balance: r.balance.as_ref().map(|b| {
                    r.to.iter()
                        .copied()
                        .zip(b.weights.iter().copied())
                        .map(|(output, weight)| crate::rendezvous::Choice {
                            output,
                            weight,
                            name_id: crate::rendezvous::name_id(&cfg.outputs[output].name),
                        })
                        .collect()
                }),
                dedup: r.dedup,
            });
        }

        let mut inputs = Vec::with_capacity(n_in);
        let mut configured_vids = Vec::with_capacity(n_in);
        for (ii, input) in cfg.inputs.iter().enumerate() {
            let mut group_of_vid = vec![NO_GROUP; 4096].into_boxed_slice();
            let mut groups: Vec<Group> = Vec::new();
            let mut configured = VlanSet::empty();
            let candidates: Vec<usize> = cfg
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.from.contains(&ii))
                .map(|(i, _)| i)
                .collect();
            for r in &candidates {
                let vl = &cfg.rules[*r].vlans;
                // A set of half the VIDs or more names no VLAN in particular: `any`, or VxSPAN's
                // `any` beside specific VIDs (every VID but those). Its VLANs are listed as seen,
                // within `[counters] vlans`, not all 4,096 of them.
                if vl.len() < VLANS_NAMED_MAX {
                    for vid in 0..4096 {
                        if vl.contains(vid) {
                            configured.insert(vid);
                        }
                    }
                }
            }
            for vid in 0..4096u16 {
                let set: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&r| cfg.rules[r].vlans.contains(vid))
                    .collect();
                if set.is_empty() {
                    continue;
                }
                let g = match groups.iter().position(|g| g.rules == set) {
                    Some(g) => g,
                    None => {
                        let placement = match (&input.decap, &input.listen) {
                            (_, Some(_)) => Err(format!(
                                "input {} terminates tunnels sent to this host",
                                input.name
                            )),
                            (Some(_), None) => Err(format!("input {} strips tunnels", input.name)),
                            (None, None) => set
                                .iter()
                                .try_for_each(|&r| kernel_capable(cfg, &cfg.rules[r]))
                                .and_then(|()| kernel_group(cfg, &set)),
                        };
                        let (tier, why) = match placement {
                            Ok(()) => (
                                Tier::Xdp,
                                "forward / VLAN rewrite / truncate / ERSPAN / GRE / sample only"
                                    .to_string(),
                            ),
                            Err(why) => (Tier::Userspace, why),
                        };
                        groups.push(Group {
                            vlans: VlanSet::empty(),
                            rules: set,
                            tier,
                            why,
                        });
                        groups.len() - 1
                    }
                };
                groups[g].vlans.insert(vid);
                group_of_vid[usize::from(vid)] = g as u16;
            }
            inputs.push(InputPlan {
                name: input.name.clone(),
                interface: input.interface.clone(),
                decap: effective_decap(input),
                listen: input.listen.clone(),
                needs_outer_source: cfg
                    .rules
                    .iter()
                    .any(|r| r.from.contains(&ii) && r.outer_source.is_some()),
                passthru: cfg
                    .passthru
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.input == ii)
                    .map(|(i, p)| (i, p.mac, p.vlan))
                    .collect(),
                port: ii,
                group_of_vid,
                groups,
            });
            configured_vids.push(configured);
        }

        let outputs = cfg
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| OutputPlan {
                name: o.name.clone(),
                dest: o.dest.clone(),
                oversize: o.oversize,
                rate_limit: o.rate_limit,
                port: n_in + i,
                vlan: o.vlan,
                truncate: o.truncate,
                mtu: o.mtu,
                loss_id: u16::try_from(i).unwrap_or(u16::MAX),
            })
            .collect();
        let configured_tunnels = (0..n_in)
            .map(|ii| configured_tunnels(&inputs[ii], &rules_of(cfg, ii)))
            .collect();
        Ok(Plan {
            configured_tunnels,
            form: cfg.form,
            xdp_mode: cfg.xdp_mode,
            ports,
            inputs,
            outputs,
            rules,
            configured_vids,
            counter_limits: cfg.counters,
            hash_key: match cfg.hash_key {
                Some(k) => crate::hashkey::HashKey::new(k),
                None => crate::hashkey::HashKey::replay(),
            },
            passthru: cfg.passthru.clone(),
        })
    }

    /// (name, description) of each input, for the interface blocks of pcapng archives: what the
    /// input reads and which tunnels it strips.
    pub fn input_descriptions(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .map(|i| {
                let mut d = format!("vxspan input {} from {}", i.name, i.interface);
                if let Some(dc) = &i.decap {
                    let kinds: Vec<&str> = dc.kinds.iter().map(|k| k.as_str()).collect();
                    d += &format!(
                        ", tunnels stripped: {} (depth {})",
                        kinds.join(", "),
                        dc.depth
                    );
                }
                (i.name.clone(), d)
            })
            .collect()
    }

    /// A description for `vxspan check`: rules, and the tier of every (input, VLAN) group.
    pub fn describe(&self, cfg: &Config) -> PlanDescription {
        let out_name = |o: usize| self.outputs[o].name.clone();
        PlanDescription {
            file: cfg.file.display().to_string(),
            form: self.form,
            xdp_mode: self.xdp_mode,
            inputs: self
                .inputs
                .iter()
                .map(|i| PortDescription {
                    name: i.name.clone(),
                    interface: Some(i.interface.clone()),
                    tunnel: None,
                    vlan: None,
                    truncate: None,
                    mtu: None,
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|o| PortDescription {
                    name: o.name.clone(),
                    interface: o.dest.interface().map(str::to_owned),
                    tunnel: match &o.dest {
                        Destination::Interface(_) => None,
                        Destination::Tunnel(e) => Some(describe_encap(e)),
                        Destination::Archive(a) => Some(format!("pcapng archive {}", a.path)),
                    },
                    vlan: o.vlan.map(|a| match a {
                        VlanAction::Push(v) => format!("push {v}"),
                        VlanAction::Pop => "pop".into(),
                        VlanAction::Set(v) => format!("set {v}"),
                    }),
                    truncate: o.truncate,
                    mtu: o.mtu,
                })
                .collect(),
            rules: cfg
                .rules
                .iter()
                .zip(&self.rules)
                .map(|(r, p)| RuleDescription {
                    name: r.name.clone(),
                    from: r
                        .from
                        .iter()
                        .map(|&i| self.inputs[i].name.clone())
                        .collect(),
                    vlan: r.vlans.describe(),
                    filter: r.filter.clone(),
                    filter_insns: p.filter.as_ref().map(|f| f.insns().len()),
                    to: r.to.iter().map(|&o| out_name(o)).collect(),
                    sample: r.sample.map(|s| SampleDescription {
                        one_in: s.one_in,
                        mode: s.mode,
                    }),
                    balance: p
                        .balance
                        .as_ref()
                        .map(|b| b.iter().map(|c| c.weight).collect()),
                })
                .collect(),
            groups: self
                .inputs
                .iter()
                .flat_map(|i| {
                    i.groups.iter().map(move |g| {
                        let mut to = OutSet::default();
                        for &r in &g.rules {
                            to.union(&self.rules[r].to);
                        }
                        GroupDescription {
                            input: i.name.clone(),
                            vlan: g.vlans.describe(),
                            rules: g
                                .rules
                                .iter()
                                .map(|&r| self.rules[r].name.clone())
                                .collect(),
                            to: to.iter().map(out_name).collect(),
                            tier: g.tier,
                            why: g.why.clone(),
                        }
                    })
                })
                .collect(),
            warnings: warnings(cfg),
            unmatched: self
                .inputs
                .iter()
                .filter_map(|i| {
                    let mut rest = VlanSet::empty();
                    for vid in 0..4096u16 {
                        if i.group_of_vid[usize::from(vid)] == NO_GROUP {
                            rest.insert(vid);
                        }
                    }
                    (!rest.is_empty()).then(|| UnmatchedDescription {
                        input: i.name.clone(),
                        vlan: rest.describe(),
                    })
                })
                .collect(),
        }
    }
}

fn describe_encap(e: &Encap) -> String {
    let o = e.outer();
    let detail = match e {
        Encap::Erspan { session, .. } => format!(" session {session}"),
        Encap::Vxlan { vni, port, .. } | Encap::Geneve { vni, port, .. } => {
            format!(" vni {vni} port {port}")
        }
        Encap::Gre { key: Some(k), .. } => format!(" key {k}"),
        Encap::Gre { key: None, .. } => String::new(),
    };
    format!("{}{detail} to {} dscp {}", e.kind(), o.remote, o.dscp)
}

/// Valid configurations that probably do not do what their author meant.
fn warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    for r in &cfg.rules {
        if let Some(f) = &r.filter {
            // tcpdump semantics: the filter sees the VLAN tags, so an expression that never says
            // `vlan` (or `mpls`, or uses raw offsets) cannot match inside a tagged frame.
            // Only a rule that selects nothing but tagged frames is certainly wrong: with
            // `any`, the filter still matches untagged frames.
            let tagged = !r.vlans.contains(0) && (1..4096).any(|v| r.vlans.contains(v));
            let mentions = ["vlan", "ether[", "mpls", "pppoe"]
                .iter()
                .any(|k| f.contains(k));
            if tagged && !mentions {
                w.push(format!(
                    "{}: rule {:?} selects only tagged VLANs ({}) but its filter {f:?} does not mention `vlan`: like tcpdump, a filter sees the tags, so it matches only untagged frames and this rule never matches; write \"vlan and {f}\" to look inside tagged frames",
                    r.path,
                    r.name,
                    r.vlans.describe()
                ));
            }
        }
    }
    if cfg.rules.is_empty() {
        w.push("no rules: every frame will be dropped as no_rule".into());
    }
    w
}

#[derive(Debug, Clone, Serialize)]
pub struct PortDescription {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// A tunnel output's encapsulation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleDescription {
    pub one_in: u32,
    pub mode: SampleMode,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleDescription {
    pub name: String,
    pub from: Vec<String>,
    pub vlan: String,
    pub filter: Option<String>,
    /// Length of the compiled cBPF program.
    pub filter_insns: Option<usize>,
    pub to: Vec<String>,
    pub sample: Option<SampleDescription>,
    /// `to = { balance = ... }`: the weight of each output of `to` (each frame goes to one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    pub input: String,
    pub vlan: String,
    pub rules: Vec<String>,
    pub to: Vec<String>,
    pub tier: Tier,
    pub why: String,
}

/// VLANs of an input that no rule selects: dropped as `no_rule` (in the kernel tier).
#[derive(Debug, Clone, Serialize)]
pub struct UnmatchedDescription {
    pub input: String,
    pub vlan: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanDescription {
    pub file: String,
    pub form: Form,
    pub xdp_mode: Option<XdpMode>,
    pub inputs: Vec<PortDescription>,
    pub outputs: Vec<PortDescription>,
    pub rules: Vec<RuleDescription>,
    pub groups: Vec<GroupDescription>,
    pub unmatched: Vec<UnmatchedDescription>,
    /// Things that are valid but probably not what was meant.
    pub warnings: Vec<String>,
}
