//! Counters, exactly as CONFIG.md section 3 defines them.
//!
//! Every input frame is counted in `rx_packets`, and then either reaches at least one output or
//! is counted once in `dropped_packets` under the reason that stopped it. Every copy handed to
//! an output is counted in that output's `tx_packets` or, if the output could not send it, in
//! `tx_dropped_packets` under its reason. Each reason is counted where it happens; nothing is
//! derived by subtraction. Counters are plain `u64`s owned by one worker; the control plane
//! merges workers' snapshots (so nothing here needs atomics).

use crate::decap::{TunnelMeta, TunnelType};
use crate::topk::{Count, TopTable};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why an input frame was dropped (input side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RxDrop {
    /// No rule selected the frame.
    NoRule,
    /// The frame is shorter than its Ethernet header and tags, or has too many tags.
    Malformed,
    /// Rules selected the frame but sampling kept none of the copies.
    SampledOut,
    /// The kernel or NIC dropped the frame before vxspan saw it (read from socket statistics).
    RingOverrun,
    /// An outer IP fragment of a tunnel packet, held until its datagram is reassembled (the
    /// datagram is then processed with the fragment that completes it).
    FragmentHeld,
    /// An outer IP fragment refused by reassembly (overlapping, too big, over the bounds).
    ReassemblyFailed,
    /// A tunnel sent to a `listen` input from a source outside its `allow` list.
    NotAllowed,
    /// A copy of a packet a rule with `dedup` already forwarded within its window.
    Duplicate,
    /// The kernel handed over a ring entry (an AF_XDP descriptor, an AF_PACKET block or frame
    /// header) whose address, offset or length is out of range: its frame is not read.
    InvalidRingEntry,
    /// Processing the frame failed inside vxspan (a bug: the worker caught a panic). The frame
    /// is counted here and the worker goes on with the next one.
    InternalError,
}

impl RxDrop {
    pub const ALL: [RxDrop; 10] = [
        RxDrop::NoRule,
        RxDrop::Malformed,
        RxDrop::SampledOut,
        RxDrop::RingOverrun,
        RxDrop::FragmentHeld,
        RxDrop::ReassemblyFailed,
        RxDrop::NotAllowed,
        RxDrop::Duplicate,
        RxDrop::InvalidRingEntry,
        RxDrop::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RxDrop::NoRule => "no_rule",
            RxDrop::Malformed => "malformed",
            RxDrop::SampledOut => "sampled_out",
            RxDrop::RingOverrun => "ring_overrun",
            RxDrop::FragmentHeld => "fragment_held",
            RxDrop::ReassemblyFailed => "reassembly_failed",
            RxDrop::NotAllowed => "not_allowed",
            RxDrop::Duplicate => "duplicate",
            RxDrop::InvalidRingEntry => "invalid_ring_entry",
            RxDrop::InternalError => "internal_error",
        }
    }
}

/// Why a copy could not be sent (output side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxDrop {
    /// Larger than the output's MTU.
    MtuExceeded,
    /// The output's queue or ring was full.
    QueueFull,
    /// The output's link is down.
    LinkDown,
    /// The back-end failed to send it (an I/O error).
    TxError,
    /// Over the output's `rate_limit`.
    RateLimited,
}

impl TxDrop {
    pub const ALL: [TxDrop; 5] = [
        TxDrop::MtuExceeded,
        TxDrop::QueueFull,
        TxDrop::LinkDown,
        TxDrop::TxError,
        TxDrop::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxDrop::MtuExceeded => "mtu_exceeded",
            TxDrop::QueueFull => "queue_full",
            TxDrop::LinkDown => "link_down",
            TxDrop::TxError => "tx_error",
            TxDrop::RateLimited => "rate_limited",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Input frames sent to at least one output.
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Of those, frames handed to a passthru TAP.
    pub passthru_packets: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub drop_reasons: [u64; RxDrop::ALL.len()],
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped_packets: u64,
    pub tx_dropped_bytes: u64,
    pub tx_drop_reasons: [u64; TxDrop::ALL.len()],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VlanCounters {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    /// On the `other` entry: how many VLANs are summed in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleCounters {
    pub name: String,
    /// Frames whose input, VLAN and filter the rule matched.
    pub matched_packets: u64,
    pub matched_bytes: u64,
    /// Matched frames that sampling kept (the rule sent them to its outputs).
    pub forwarded_packets: u64,
    /// Matched frames that sampling dropped for this rule.
    pub sampled_out_packets: u64,
    /// Matched frames `dedup` recognised as copies seen within the window.
    #[serde(default)]
    pub duplicate_packets: u64,
    /// Packets `dedup` forgot before their window ended, to make room (table too small).
    #[serde(default)]
    pub dedup_evictions: u64,
}

/// All counters of one engine. Ports are indexed like [`crate::Plan::ports`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub ports: Vec<PortCounters>,
    /// Per input: 4096 entries, index 0 = untagged ("none"), 1 to 4095 = VID.
    pub vlans: Vec<Vec<VlanCounters>>,
    pub rules: Vec<RuleCounters>,
    /// Per input: frames decapsulated, by tunnel type and id (VNI, ERSPAN session, GRE key):
    /// the ids the rules name and the busiest others, the rest summed (see [`crate::topk`]).
    pub tunnels: Vec<TopTable<TunnelKey>>,
}

/// A tunnel counter's key: the layer's type and its id (VNI, ERSPAN session, GRE key), if any.
pub type TunnelKey = (TunnelType, Option<u32>);

/// The key of the tunnel counter that sums the ids not listed.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TunnelCounters {
    pub packets: u64,
    /// Bytes of the inner frames.
    pub bytes: u64,
    /// On the `other` entry: the estimated number of distinct ids summed in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<u64>,
}

impl Counters {
    /// Counts one decapsulated frame under each layer that was stripped.
    pub fn count_tunnel(&mut self, input: usize, meta: &TunnelMeta, inner_bytes: u64) {
        for kind in meta.layers.iter().flatten() {
            let id = match kind {
                TunnelType::Vxlan | TunnelType::VxlanGpe | TunnelType::Geneve => meta.vni,
                TunnelType::ErspanII | TunnelType::ErspanIII => meta.erspan_session.map(u32::from),
                TunnelType::GreTeb
                | TunnelType::GreIpv4
                | TunnelType::GreIpv6
                | TunnelType::GreMpls => meta.gre_key,
                _ => None,
            };
            self.tunnels[input].add(
                (*kind, id),
                Count {
                    packets: 1,
                    bytes: inner_bytes,
                },
            );
        }
    }

    /// Zeroed counters in the shape of `plan`.
    pub fn for_plan(plan: &crate::Plan) -> Self {
        let cap = plan.counter_limits.tunnel_ids as usize;
        Counters {
            ports: vec![PortCounters::default(); plan.ports.len()],
            vlans: vec![vec![VlanCounters::default(); 4096]; plan.inputs.len()],
            tunnels: plan
                .configured_tunnels
                .iter()
                .map(|pinned| TopTable::new(cap, pinned.iter().copied()))
                .collect(),
            rules: plan
                .rules
                .iter()
                .map(|r| RuleCounters {
                    name: r.name.clone(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Adds `other` (another worker's counters for the same plan) into `self`.
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.ports.iter_mut().zip(&other.ports) {
            a.rx_packets += b.rx_packets;
            a.rx_bytes += b.rx_bytes;
            a.forwarded_packets += b.forwarded_packets;
            a.forwarded_bytes += b.forwarded_bytes;
            a.passthru_packets += b.passthru_packets;
            a.dropped_packets += b.dropped_packets;
            a.dropped_bytes += b.dropped_bytes;
            a.tx_packets += b.tx_packets;
            a.tx_bytes += b.tx_bytes;
            a.tx_dropped_packets += b.tx_dropped_packets;
            a.tx_dropped_bytes += b.tx_dropped_bytes;
            for (x, y) in a.drop_reasons.iter_mut().zip(&b.drop_reasons) {
                *x += y;
            }
            for (x, y) in a.tx_drop_reasons.iter_mut().zip(&b.tx_drop_reasons) {
                *x += y;
            }
        }
        for (va, vb) in self.vlans.iter_mut().zip(&other.vlans) {
            for (a, b) in va.iter_mut().zip(vb) {
                a.add(b);
            }
        }
        for (a, b) in self.tunnels.iter_mut().zip(&other.tunnels) {
            a.merge(b);
        }
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            a.matched_packets += b.matched_packets;
            a.matched_bytes += b.matched_bytes;
            a.forwarded_packets += b.forwarded_packets;
            a.sampled_out_packets += b.sampled_out_packets;
            a.duplicate_packets += b.duplicate_packets;
            a.dedup_evictions += b.dedup_evictions;
        }
    }
}

/// The JSON form of one port (CONFIG.md section 3; every reason is listed, zero or not).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PortReport {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Input frames sent to at least one output: `rx_packets = forwarded_packets + dropped_packets`.
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Of those, frames handed to a passthru TAP (control traffic for this host).
    #[serde(default)]
    pub passthru_packets: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub drop_reasons: BTreeMap<String, u64>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped_packets: u64,
    pub tx_dropped_bytes: u64,
    pub tx_drop_reasons: BTreeMap<String, u64>,
}

/// The counters as printed by `vxspan replay --json` and `vxspan stats --json`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Report {
    pub interfaces: BTreeMap<String, PortReport>,
    pub vlans: BTreeMap<String, BTreeMap<String, VlanCounters>>,
    pub rules: Vec<RuleCounters>,
    /// Per input that strips tunnels: `TYPE` or `TYPE/ID` (VNI, ERSPAN session, GRE key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tunnels: BTreeMap<String, BTreeMap<String, TunnelCounters>>,
    /// Per input that strips tunnels: outer IP reassembly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reassembly: BTreeMap<String, crate::reasm::ReasmStats>,
    /// Per input that strips tunnels: what decapsulation left undone (`mpls_undecided`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decap: BTreeMap<String, crate::decap::DecapStats>,
}

impl Report {
    /// Adds `other` into `self`, matching ports, VLANs, rules and tunnels by name: counters stay
    /// monotonic across a reload that swaps the plan (names that disappear keep their totals).
    pub fn add(&mut self, other: &Report) {
        for (name, p) in &other.interfaces {
            match self.interfaces.get_mut(name) {
                None => {
                    self.interfaces.insert(name.clone(), p.clone());
                }
                Some(a) => {
                    a.rx_packets += p.rx_packets;
                    a.rx_bytes += p.rx_bytes;
                    a.forwarded_packets += p.forwarded_packets;
                    a.forwarded_bytes += p.forwarded_bytes;
                    a.passthru_packets += p.passthru_packets;
                    a.dropped_packets += p.dropped_packets;
                    a.dropped_bytes += p.dropped_bytes;
                    a.tx_packets += p.tx_packets;
                    a.tx_bytes += p.tx_bytes;
                    a.tx_dropped_packets += p.tx_dropped_packets;
                    a.tx_dropped_bytes += p.tx_dropped_bytes;
                    for (k, v) in &p.drop_reasons {
                        *a.drop_reasons.entry(k.clone()).or_default() += v;
                    }
                    for (k, v) in &p.tx_drop_reasons {
                        *a.tx_drop_reasons.entry(k.clone()).or_default() += v;
                    }
                }
            }
        }
        for (name, vl) in &other.vlans {
            add_bounded(self.vlans.entry(name.clone()).or_default(), vl);
        }
        for r in &other.rules {
            match self.rules.iter_mut().find(|x| x.name == r.name) {
                Some(a) => {
                    a.matched_packets += r.matched_packets;
                    a.matched_bytes += r.matched_bytes;
                    a.forwarded_packets += r.forwarded_packets;
                    a.sampled_out_packets += r.sampled_out_packets;
                    a.duplicate_packets += r.duplicate_packets;
                    a.dedup_evictions += r.dedup_evictions;
                }
                None => self.rules.push(r.clone()),
            }
        }
        for (name, t) in &other.tunnels {
            add_bounded(self.tunnels.entry(name.clone()).or_default(), t);
        }
        for (name, r) in &other.reassembly {
            self.reassembly.entry(name.clone()).or_default().add(r);
        }
        for (name, d) in &other.decap {
            self.decap.entry(name.clone()).or_default().add(d);
        }
    }
}

/// A counter of a table keyed by packet contents, whose entries past its bound are summed
/// under [`OTHER`], which also counts how many entries it holds.
pub trait Summed: Default + Clone {
    fn add(&mut self, o: &Self);
    fn packets(&self) -> u64;
    /// Adds `o` as one more entry summed here.
    fn fold_in(&mut self, o: &Self);
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// Adds `from` into `into` by key and keeps at most as many entries as the larger of the two
/// had (the `other` entry included): the smallest are folded into `other`. Summing reports
/// (across reloads) stays bounded this way.
fn add_bounded<C: Summed>(into: &mut BTreeMap<String, C>, from: &BTreeMap<String, C>) {
    let keep = into.len().max(from.len()).max(1);
    for (k, v) in from {
        into.entry(k.clone()).or_default().add(v);
    }
    while into.len() > keep {
        let Some(k) = into
            .iter()
            .filter(|(k, _)| k.as_str() != OTHER)
            .min_by_key(|(_, c)| c.packets())
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        let c = into.remove(&k).unwrap_or_default();
        into.entry(OTHER.to_owned()).or_default().fold_in(&c);
    }
}

impl Summed for TunnelCounters {
    fn add(&mut self, o: &TunnelCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.ids = add_opt(self.ids, o.ids);
    }

    fn packets(&self) -> u64 {
        self.packets
    }

    fn fold_in(&mut self, o: &TunnelCounters) {
        self.add(o);
        self.ids = Some(self.ids.unwrap_or(0) + 1);
    }
}

impl Summed for VlanCounters {
    fn add(&mut self, o: &VlanCounters) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.dropped_packets += o.dropped_packets;
        self.dropped_bytes += o.dropped_bytes;
        self.vlans = add_opt(self.vlans, o.vlans);
    }

    fn packets(&self) -> u64 {
        self.packets
    }

    fn fold_in(&mut self, o: &VlanCounters) {
        self.add(o);
        self.vlans = Some(self.vlans.unwrap_or(0) + 1);
    }
}

/// The key of a VLAN counter: `none` for untagged, else the VID.
pub fn vlan_key(vid: u16) -> String {
    if vid == 0 {
        "none".into()
    } else {
        vid.to_string()
    }
}

impl PortCounters {
    pub fn report(&self) -> PortReport {
        PortReport {
            rx_packets: self.rx_packets,
            rx_bytes: self.rx_bytes,
            forwarded_packets: self.forwarded_packets,
            forwarded_bytes: self.forwarded_bytes,
            passthru_packets: self.passthru_packets,
            dropped_packets: self.dropped_packets,
            dropped_bytes: self.dropped_bytes,
            drop_reasons: RxDrop::ALL
                .iter()
                .zip(self.drop_reasons)
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            tx_dropped_packets: self.tx_dropped_packets,
            tx_dropped_bytes: self.tx_dropped_bytes,
            tx_drop_reasons: TxDrop::ALL
                .iter()
                .zip(self.tx_drop_reasons)
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
        }
    }
}
