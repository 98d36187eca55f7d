//! The engine: classify, transform, deliver and count, one batch at a time.
//!
//! Like quinn-proto, the engine does no I/O and reads no clock: the caller passes frames (with
//! their receive timestamps) in and receives the copies through a [`Sink`]. It allocates nothing
//! per frame: transformed copies are built in one scratch buffer that is reused.

use crate::broker::{dedup_key, DedupTable, TokenBucket};
use crate::counters::{
    vlan_key, Counters, PortReport, Report, RxDrop, Summed, TxDrop, VlanCounters,
};
use crate::decap::{Decapped, Decapsulator, TunnelMeta};
use crate::encap::{encapsulate, TunnelState};
use crate::plan::{OutSet, OutputPlan, Plan, NO_GROUP};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use vxspan_config::{Destination, Oversize, SampleMode, VlanAction};
use vxspan_wire::vlan::{pop_tag, push_tag, set_outer_vid};
use vxspan_wire::{EtherType, FlowKey, L2Info, VlanTag};

/// Nanoseconds since the Unix epoch.
pub type Timestamp = u64;

/// A received frame.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    pub data: &'a [u8],
    /// The frame's length on the wire (larger than `data` when a capture was truncated).
    pub wire_len: u32,
    pub ts: Timestamp,
}

/// A copy for an output.
#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    pub data: &'a [u8],
    pub wire_len: u32,
    pub ts: Timestamp,
    /// The input the frame was received on (an index into [`Plan::inputs`]).
    pub input: usize,
    /// For a tunnel output's copy: where the tunnel payload starts and its UDP source port.
    pub tunnel: Option<crate::encap::Encapsulated>,
    /// For an output's copy, its output's [`crate::plan::OutputPlan::loss_id`]: a transmitter
    /// that learns only later that the copy was lost (a batch send, an AF_XDP completion, a
    /// buffered file write) records the loss under it. `u16::MAX` for other frames.
    pub owner: u16,
}

/// Where copies go: the back-end behind each output.
pub trait Sink {
    /// Sends `frame` on output `output` (an index into [`Plan::outputs`]). A copy that cannot be
    /// sent is reported with its reason and counted by the engine.
    fn transmit(&mut self, output: usize, frame: TxFrame<'_>) -> Result<(), TxDrop>;

    /// Whether the sink wants [`Sink::tap`] calls (a live capture is attached).
    fn tapping(&self) -> bool {
        false
    }

    /// A frame (as received, after decapsulation) that `rules` (indices into [`Plan::rules`])
    /// forwarded, for live captures.
    fn tap(&mut self, _rules: &[usize], _frame: TxFrame<'_>) {}

    /// A frame for passthru `index` (an index into [`Plan::passthru`]), its VLAN tag already
    /// removed if the passthru has one. Offline (replay) there is no TAP: the default drops it.
    fn passthru(&mut self, _index: usize, _frame: TxFrame<'_>) {}
}

/// One worker's engine: a plan, its counters and its sampling state.
///
/// Several workers (threads, each reading its share of the inputs' frames) each run an engine
/// made with [`Engine::worker`]: they count apart (their reports add up) and keep their own
/// scratch buffers and tunnel reassembly, but share what must be one for the whole instance:
/// each rule's 1-in-N sampling count and dedup table, each output's token bucket and ERSPAN
/// sequence numbers. The shared parts are behind atomics and mutexes touched only by rules
/// and outputs that use those features.
pub struct Engine {
    plan: Arc<Plan>,
    counters: Counters,
    /// Per rule: frames seen by counter sampling (shared by the workers).
    sample_seen: Arc<Vec<Arc<dyn crate::encap::SharedCount>>>,
    egress: Egress,
    /// Per input: tunnel termination state, for inputs with `decap`.
    decaps: Vec<Option<Decapsulator>>,
    /// Per rule with `dedup`: its table of recently seen packets (shared by the workers).
    dedups: Vec<Option<Arc<Mutex<DedupTable>>>>,
    /// Per output: whether its link is up (balancing skips outputs that are down).
    output_up: Vec<bool>,
    /// The rules that forwarded the current frame, when a capture is attached.
    tap_rules: Vec<usize>,
}

/// A lock that a panicked worker left poisoned still guards consistent data (every update
/// under these locks is a single call).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn flow_hash(k: &crate::hashkey::HashKey, key: &FlowKey) -> u64 {
    k.flow(&key.symmetric().to_bytes())
}

/// What the workers running one plan share: cloning it shares it.
struct Shared {
    sample_seen: Arc<Vec<Arc<dyn crate::encap::SharedCount>>>,
    dedups: Vec<Option<Arc<Mutex<DedupTable>>>>,
    buckets: Vec<Option<Arc<Mutex<TokenBucket>>>>,
    tunnels: Vec<TunnelState>,
}

impl Engine {
    pub fn new(plan: Arc<Plan>) -> Self {
        let shared = Shared {
            sample_seen: Arc::new(
                plan.rules
                    .iter()
                    .map(|_| Arc::new(AtomicU64::new(0)) as Arc<dyn crate::encap::SharedCount>)
                    .collect(),
            ),
            dedups: plan
                .rules
                .iter()
                .map(|r| r.dedup.map(|d| Arc::new(Mutex::new(DedupTable::new(d)))))
                .collect(),
            buckets: plan
                .outputs
                .iter()
                .map(|o| {
                    o.rate_limit
                        .map(|r| Arc::new(Mutex::new(TokenBucket::new(r))))
                })
                .collect(),
            tunnels: plan
                .outputs
                .iter()
                .map(|_| TunnelState::default())
                .collect(),
        };
        let output_up = vec![true; plan.outputs.len()];
        Engine::with_shared(plan, shared, output_up)
    }

    /// Another worker's engine for the same plan: counters from zero, its own scratch space and
    /// tunnel reassembly, and this engine's sampling counts, dedup tables, token buckets and
    /// ERSPAN sequences shared.
    pub fn worker(&self) -> Engine {
        let shared = Shared {
            sample_seen: self.sample_seen.clone(),
            dedups: self.dedups.clone(),
            buckets: self.egress.buckets.clone(),
            tunnels: self.egress.tunnels.clone(),
        };
        Engine::with_shared(self.plan.clone(), shared, self.output_up.clone())
    }

    /// An engine with its own counters, scratch space and tunnel reassembly, on `shared`.
    fn with_shared(plan: Arc<Plan>, shared: Shared, output_up: Vec<bool>) -> Engine {
        Engine {
            counters: Counters::for_plan(&plan),
            egress: Egress {
                vlan_buf: Vec::with_capacity(16 * 1024),
                tunnel_buf: Vec::with_capacity(16 * 1024),
                tunnels: shared.tunnels,
                buckets: shared.buckets,
                hash_key: plan.hash_key.clone(),
            },
            sample_seen: shared.sample_seen,
            dedups: shared.dedups,
            output_up,
            tap_rules: Vec::new(),
            decaps: plan
                .inputs
                .iter()
                .map(|i| {
                    i.decap
                        .clone()
                        .map(|d| Decapsulator::new(d, i.listen.clone(), plan.hash_key.clone()))
                })
                .collect(),
            plan,
        }
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts frames the back-end lost before they reached the engine (ring overruns).
    pub fn count_rx_drop(&mut self, input: usize, reason: RxDrop, packets: u64, bytes: u64) {
        let port = &mut self.counters.ports[self.plan.inputs[input].port];
        port.rx_packets += packets;
        port.rx_bytes += bytes;
        port.dropped_packets += packets;
        port.dropped_bytes += bytes;
        port.drop_reasons[reason as usize] += packets;
    }

    /// Processes a batch of frames received on `input`.
    pub fn process_batch<'a>(
        &mut self,
        input: usize,
        frames: impl IntoIterator<Item = RxFrame<'a>>,
        sink: &mut dyn Sink,
    ) {
        for f in frames {
            self.process(input, f, sink);
        }
    }

    /// Processes one frame received on `input`.
    ///
    /// A panic while processing it (a bug; no input should cause one) is caught here: the frame
    /// is counted once in `rx_packets` and, unless it was already counted as forwarded or
    /// dropped, as dropped with reason `internal_error`; the input's tunnel state (reassembly)
    /// is started afresh, since the panic may have left it half updated. The worker goes on.
    pub fn process(&mut self, input: usize, frame: RxFrame<'_>, sink: &mut dyn Sink) {
        let port = self.plan.inputs[input].port;
        let c = &self.counters.ports[port];
        let before = (c.rx_packets, c.forwarded_packets, c.dropped_packets);
        let run = std::panic::AssertUnwindSafe(|| self.process_frame(input, frame, sink));
        if std::panic::catch_unwind(run).is_ok() {
            return;
        }
        let bytes = frame.data.len() as u64;
        let c = &mut self.counters.ports[port];
        if c.rx_packets == before.0 {
            c.rx_packets += 1;
            c.rx_bytes += bytes;
        }
        if (c.forwarded_packets, c.dropped_packets) == (before.1, before.2) {
            c.dropped_packets += 1;
            c.dropped_bytes += bytes;
            c.drop_reasons[RxDrop::InternalError as usize] += 1;
        }
        if let Some(d) = &mut self.decaps[input] {
            d.reset();
        }
    }

    fn process_frame(&mut self, input: usize, frame: RxFrame<'_>, sink: &mut dyn Sink) {
        #[cfg(feature = "fault-injection")]
        fault_injection::check(frame.data);
        let Engine {
            plan,
            counters,
            sample_seen,
            egress,
            decaps,
            dedups,
            output_up,
            tap_rules,
        } = self;
        let plan = &**plan;
        let inp = &plan.inputs[input];
        let outer_bytes = frame.data.len() as u64;
        let port = &mut counters.ports[inp.port];
        port.rx_packets += 1;
        port.rx_bytes += outer_bytes;
        let drop = |counters: &mut Counters, reason: RxDrop| {
            let port = &mut counters.ports[inp.port];
            port.dropped_packets += 1;
            port.dropped_bytes += outer_bytes;
            port.drop_reasons[reason as usize] += 1;
        };

        // Passthru: control traffic for this host's TAP. Frames to its MAC go there alone;
        // broadcast / multicast control frames (ARP, IPv6 ND, LLDP) go there and are mirrored too.
        if !inp.passthru.is_empty() {
            if let Ok(l2) = L2Info::parse(frame.data) {
                let vid = l2.outer.map(|t| t.vid());
                for &(pi, mac, vlan) in &inp.passthru {
                    if vid.filter(|v| *v != 0) != vlan {
                        continue;
                    }
                    let dst = &frame.data[..6];
                    let control = dst[0] & 1 == 1
                        && matches!(u16::from(l2.ethertype), 0x0806 | 0x86dd | 0x88cc);
                    if dst != mac && !control {
                        continue;
                    }
                    let stripped;
                    let data = if vlan.is_some() {
                        let mut v = Vec::with_capacity(frame.data.len());
                        let _ = vxspan_wire::vlan::pop_tag(frame.data, &mut v);
                        stripped = v;
                        &stripped[..]
                    } else {
                        frame.data
                    };
                    sink.passthru(
                        pi,
                        TxFrame {
                            data,
                            wire_len: data.len() as u32,
                            ts: frame.ts,
                            input,
                            tunnel: None,
                            owner: u16::MAX,
                        },
                    );
                    if dst == mac {
                        let port = &mut counters.ports[inp.port];
                        port.forwarded_packets += 1;
                        port.forwarded_bytes += outer_bytes;
                        port.passthru_packets += 1;
                        return;
                    }
                    counters.ports[inp.port].passthru_packets += 1;
                }
            }
        }

        // Tunnel termination: what follows sees the inner frame.
        let mut meta = TunnelMeta::default();
        let outer_src = if inp.needs_outer_source {
            crate::decap::ip_source(frame.data)
        } else {
            None
        };
        let frame = match &mut decaps[input] {
            None => frame,
            Some(d) => match d.run(frame.data, frame.wire_len, frame.ts) {
                Decapped::Frame(data, wire_len, m) => {
                    meta = m;
                    meta.outer_src = outer_src;
                    if m.depth > 0 {
                        counters.count_tunnel(input, &m, data.len() as u64);
                    }
                    RxFrame {
                        data,
                        wire_len,
                        ts: frame.ts,
                    }
                }
                Decapped::Held => return drop(counters, RxDrop::FragmentHeld),
                Decapped::ReassemblyFailed => return drop(counters, RxDrop::ReassemblyFailed),
                Decapped::Malformed => return drop(counters, RxDrop::Malformed),
                Decapped::NotAllowed => return drop(counters, RxDrop::NotAllowed),
            },
        };
        meta.outer_src = outer_src;
        let bytes = frame.data.len() as u64;

        let Ok(l2) = L2Info::parse(frame.data) else {
            return drop(counters, RxDrop::Malformed);
        };
        let vid = l2.outer_vid();
        let vc = &mut counters.vlans[input][usize::from(vid)];
        vc.packets += 1;
        vc.bytes += bytes;

        let g = inp.group_of_vid[usize::from(vid)];
        let mut dest = OutSet::default();
        let mut reason = RxDrop::NoRule;
        let tapping = sink.tapping();
        tap_rules.clear();
        if g != NO_GROUP {
            let mut flow: Option<u64> = None;
            for &r in &inp.groups[usize::from(g)].rules {
                let rule = &plan.rules[r];
                if !rule.matches_tunnel(&meta) {
                    continue;
                }
                if let Some(f) = &rule.filter {
                    if !f.matches(frame.data, frame.wire_len) {
                        continue;
                    }
                }
                let rc = &mut counters.rules[r];
                rc.matched_packets += 1;
                rc.matched_bytes += bytes;
                if let Some(t) = &dedups[r] {
                    let (duplicate, evicted) = {
                        let mut t = locked(t);
                        let before = t.evictions;
                        let d = t.seen(dedup_key(&plan.hash_key, frame.data, &l2), frame.ts);
                        (d, t.evictions - before)
                    };
                    rc.dedup_evictions += evicted;
                    if duplicate {
                        rc.duplicate_packets += 1;
                        reason = RxDrop::Duplicate;
                        continue;
                    }
                }
                let keep = match rule.sample {
                    None => true,
                    Some(s) => match s.mode {
                        SampleMode::Counter => {
                            let seen = sample_seen[r].take();
                            seen.is_multiple_of(u64::from(s.one_in))
                        }
                        SampleMode::Flow => {
                            let h = *flow.get_or_insert_with(|| {
                                flow_hash(&plan.hash_key, &FlowKey::extract(frame.data, &l2))
                            });
                            h.is_multiple_of(u64::from(s.one_in))
                        }
                    },
                };
                if keep {
                    rc.forwarded_packets += 1;
                    if tapping {
                        tap_rules.push(r);
                    }
                    match &rule.balance {
                        None => dest.union(&rule.to),
                        Some(choices) => {
                            let h = *flow.get_or_insert_with(|| {
                                flow_hash(&plan.hash_key, &FlowKey::extract(frame.data, &l2))
                            });
                            dest.insert(crate::rendezvous::choose(h, choices, |o| output_up[o]));
                        }
                    }
                } else {
                    rc.sampled_out_packets += 1;
                    reason = RxDrop::SampledOut;
                }
            }
        }
        if dest.is_empty() {
            drop(counters, reason);
            let vc = &mut counters.vlans[input][usize::from(vid)];
            vc.dropped_packets += 1;
            vc.dropped_bytes += bytes;
            return;
        }
        let port = &mut counters.ports[inp.port];
        port.forwarded_packets += 1;
        port.forwarded_bytes += outer_bytes;
        if tapping {
            sink.tap(
                tap_rules,
                TxFrame {
                    data: frame.data,
                    wire_len: frame.wire_len,
                    ts: frame.ts,
                    input,
                    tunnel: None,
                    owner: u16::MAX,
                },
            );
        }
        for o in dest.iter() {
            let out = &plan.outputs[o];
            let result = deliver(out, frame, input, egress, sink, o);
            let port = &mut counters.ports[out.port];
            match result {
                Ok(n) => {
                    port.tx_packets += 1;
                    port.tx_bytes += n as u64;
                }
                Err((reason, n)) => {
                    port.tx_dropped_packets += 1;
                    port.tx_dropped_bytes += n as u64;
                    port.tx_drop_reasons[reason as usize] += 1;
                }
            }
        }
    }

    /// Marks an output's link up or down: balancing sends flows only to outputs that are up (a
    /// tool whose link went down gets its flows back when it comes back).
    pub fn set_output_up(&mut self, output: usize, up: bool) {
        if let Some(u) = self.output_up.get_mut(output) {
            *u = up;
        }
    }

    /// Reassembly counters of each input that strips tunnels.
    /// The next ERSPAN sequence number of each session this engine originates.
    pub fn erspan_sequences(&self) -> BTreeMap<u16, u32> {
        let mut m = BTreeMap::new();
        for (o, st) in self.plan.outputs.iter().zip(&self.egress.tunnels) {
            if let Some(vxspan_config::Encap::Erspan { session, .. }) = o.dest.encap() {
                let e = m.entry(*session).or_insert(0);
                *e = (*e).max(st.sequence.peek());
            }
        }
        m
    }

    /// Continues ERSPAN sequence numbers from a previous engine (a reload): each session's
    /// numbers keep increasing instead of starting again at 0.
    pub fn continue_erspan_sequences(&mut self, from: &BTreeMap<u16, u32>) {
        for (o, st) in self.plan.outputs.iter().zip(self.egress.tunnels.iter_mut()) {
            if let Some(vxspan_config::Encap::Erspan { session, .. }) = o.dest.encap() {
                if let Some(&next) = from.get(session) {
                    st.sequence.raise(next);
                }
            }
        }
    }

    /// Takes each tunnel output's ERSPAN sequence numbers from the cell `cell` gives for it
    /// (the kernel tier's shared counter), from now on and in every worker made from this
    /// engine afterwards; None keeps the engine's own. Call it before [`Engine::worker`].
    pub fn share_sequences(
        &mut self,
        cell: impl Fn(usize, &crate::plan::OutputPlan) -> Option<Arc<dyn crate::encap::SequenceCell>>,
    ) {
        for (o, (out, st)) in self
            .plan
            .outputs
            .iter()
            .zip(self.egress.tunnels.iter_mut())
            .enumerate()
        {
            if let Some(c) = cell(o, out) {
                st.sequence = c;
            }
        }
    }

    /// Takes each sampling rule's count from the counter `cell` gives for it (the kernel
    /// tier's, shared with its program), for this engine and every worker made from it
    /// afterwards; None keeps the engine's own. Call it before [`Engine::worker`].
    pub fn share_samples(
        &mut self,
        cell: impl Fn(usize, &crate::plan::RulePlan) -> Option<Arc<dyn crate::encap::SharedCount>>,
    ) {
        let cells = self
            .plan
            .rules
            .iter()
            .enumerate()
            .zip(self.sample_seen.iter())
            .map(|((r, rule), own)| cell(r, rule).unwrap_or_else(|| own.clone()))
            .collect();
        self.sample_seen = Arc::new(cells);
    }

    pub fn reassembly_stats(&self) -> Vec<Option<crate::reasm::ReasmStats>> {
        self.decaps
            .iter()
            .map(|d| d.as_ref().map(Decapsulator::reassembly_stats))
            .collect()
    }

    /// The counters in the form of CONFIG.md section 3. VLAN counters list every VID that was
    /// seen or that the configuration names.
    pub fn report(&self) -> Report {
        let mut r = report(&self.plan, &self.counters);
        for (inp, d) in self.plan.inputs.iter().zip(&self.decaps) {
            if let Some(d) = d {
                r.reassembly.insert(inp.name.clone(), d.reassembly_stats());
                r.decap.insert(inp.name.clone(), d.stats);
            }
        }
        r
    }
}

/// Scratch space and per-output state for building copies.
struct Egress {
    /// Per output with `rate_limit`: its token bucket (shared by the workers).
    buckets: Vec<Option<Arc<Mutex<TokenBucket>>>>,
    /// A copy with its VLAN rewritten.
    vlan_buf: Vec<u8>,
    /// A copy with its tunnel headers.
    tunnel_buf: Vec<u8>,
    tunnels: Vec<TunnelState>,
    /// The flow hash's key (a tunnel copy's UDP source port, IPv6 flow label).
    hash_key: crate::hashkey::HashKey,
}

/// Applies the output's transforms (VLAN action, truncation, encapsulation, MTU) and hands the
/// copy to the sink. Returns the bytes sent, or the drop reason and the bytes not sent.
fn deliver(
    out: &OutputPlan,
    frame: RxFrame<'_>,
    input: usize,
    eg: &mut Egress,
    sink: &mut dyn Sink,
    o: usize,
) -> Result<usize, (TxDrop, usize)> {
    let mut data = frame.data;
    let mut wire_len = frame.wire_len as usize;
    if let Some(action) = out.vlan {
        let scratch = &mut eg.vlan_buf;
        scratch.clear();
        let before = data.len();
        // The frame's layer 2 was parsed already, so these cannot fail; if they ever did, the
        // copy is sent unchanged rather than lost.
        let ok = match action {
            VlanAction::Push(vid) => {
                push_tag(data, VlanTag::new(EtherType::Vlan, 0, false, vid), scratch).is_ok()
            }
            VlanAction::Pop => pop_tag(data, scratch).is_ok(),
            VlanAction::Set(vid) => set_outer_vid(data, vid, scratch).is_ok(),
        };
        if ok {
            data = &scratch[..];
            wire_len = (wire_len + data.len()).saturating_sub(before);
        }
    }
    if let Some(t) = out.truncate {
        data = &data[..data.len().min(t as usize)];
    }
    let mut tunnel = None;
    if let Destination::Tunnel(e) = &out.dest {
        // The flow hash of the copy as it is sent (the kernel tier's, bpf/flowhash.h).
        let flow = flow_hash(
            &eg.hash_key,
            &FlowKey::extract(
                data,
                &L2Info::parse(data).unwrap_or(L2Info {
                    n_tags: 0,
                    outer: None,
                    ethertype: EtherType::Unknown(0),
                    l3_offset: data.len(),
                }),
            ),
        );
        eg.tunnel_buf.clear();
        tunnel = Some(
            encapsulate(
                e,
                out.mtu,
                out.oversize,
                data,
                wire_len as u32,
                frame.ts,
                flow,
                &eg.tunnels[o],
                &mut eg.tunnel_buf,
            )
            .map_err(|r| (r, data.len()))?,
        );
        data = &eg.tunnel_buf[..];
        wire_len = data.len();
    } else if let Some(mtu) = out.mtu {
        // The layer 3 size of what is sent: a copy cut by `truncate` fits where its original
        // would not.
        let l2_len =
            L2Info::parse(data).map_or(vxspan_wire::ethernet::HEADER_LEN, |l2| l2.l3_offset);
        if data.len().saturating_sub(l2_len) > mtu as usize {
            match out.oversize {
                Oversize::Drop => return Err((TxDrop::MtuExceeded, data.len())),
                Oversize::Truncate => data = &data[..l2_len + mtu as usize],
            }
        }
    }
    let n = data.len();
    if let Some(b) = &eg.buckets[o] {
        if !locked(b).take(n, frame.ts) {
            return Err((TxDrop::RateLimited, n));
        }
    }
    sink.transmit(
        o,
        TxFrame {
            data,
            wire_len: wire_len as u32,
            ts: frame.ts,
            input,
            tunnel,
            owner: out.loss_id,
        },
    )
    .map(|_| n)
    .map_err(|r| (r, n))
}

/// One input's VLAN counters as reported: every VID the configuration names, the `limit` busiest
/// others that were seen, and the rest summed under `other` (with their number).
fn vlan_report(
    c: &[VlanCounters],
    configured: &vxspan_config::VlanSet,
    limit: usize,
) -> BTreeMap<String, VlanCounters> {
    let mut m = BTreeMap::new();
    let mut seen: Vec<(u16, &VlanCounters)> = Vec::new();
    for (vid, v) in c.iter().enumerate() {
        let vid = vid as u16;
        if configured.contains(vid) {
            m.insert(vlan_key(vid), *v);
        } else if v.packets > 0 {
            seen.push((vid, v));
        }
    }
    // Busiest first; equal counts by VID, so the listing is stable.
    seen.sort_by_key(|(vid, v)| (std::cmp::Reverse(v.packets), *vid));
    let mut other = VlanCounters::default();
    for (n, (vid, v)) in seen.into_iter().enumerate() {
        if n < limit {
            m.insert(vlan_key(vid), *v);
        } else {
            other.fold_in(v);
        }
    }
    if other.vlans.is_some() {
        m.insert(crate::counters::OTHER.to_owned(), other);
    }
    m
}

fn tunnel_report(
    t: &crate::topk::TopTable<crate::counters::TunnelKey>,
) -> BTreeMap<String, crate::counters::TunnelCounters> {
    let mut m: BTreeMap<String, crate::counters::TunnelCounters> = t
        .entries()
        .map(|((kind, id), c)| {
            (
                id.map_or_else(
                    || kind.as_str().to_owned(),
                    |id| format!("{}/{id}", kind.as_str()),
                ),
                crate::counters::TunnelCounters {
                    packets: c.packets,
                    bytes: c.bytes,
                    ids: None,
                },
            )
        })
        .collect();
    let (other, ids) = t.other();
    if other.packets > 0 {
        m.insert(
            crate::counters::OTHER.to_owned(),
            crate::counters::TunnelCounters {
                packets: other.packets,
                bytes: other.bytes,
                ids: Some(ids),
            },
        );
    }
    m
}

/// Builds the report of `counters` (one engine's or several merged) for `plan`.
pub fn report(plan: &Plan, counters: &Counters) -> Report {
    let mut interfaces: BTreeMap<String, PortReport> = BTreeMap::new();
    for (name, c) in plan.ports.iter().zip(&counters.ports) {
        interfaces.insert(name.clone(), c.report());
    }
    let mut vlans = BTreeMap::new();
    for (i, inp) in plan.inputs.iter().enumerate() {
        vlans.insert(
            inp.name.clone(),
            vlan_report(
                &counters.vlans[i],
                &plan.configured_vids[i],
                plan.counter_limits.vlans as usize,
            ),
        );
    }
    let mut tunnels = BTreeMap::new();
    for (i, inp) in plan.inputs.iter().enumerate() {
        if inp.decap.is_some() {
            tunnels.insert(inp.name.clone(), tunnel_report(&counters.tunnels[i]));
        }
    }
    Report {
        interfaces,
        vlans,
        rules: counters.rules.clone(),
        tunnels,
        reassembly: BTreeMap::new(),
        decap: BTreeMap::new(),
    }
}

/// A test-only fault: with the `fault-injection` feature, a frame that contains
/// [`fault_injection::MAGIC`] makes the engine panic, so tests can prove a panic costs one
/// frame, counted as `internal_error`, and nothing else. Never enabled in a release build.
#[cfg(feature = "fault-injection")]
pub mod fault_injection {
    /// The bytes that trigger the panic.
    pub const MAGIC: &[u8] = b"vxspan-fault-injection:panic-now";

    pub(crate) fn check(frame: &[u8]) {
        if frame.windows(MAGIC.len()).any(|w| w == MAGIC) {
            panic!("fault injection: a frame carried the magic bytes");
        }
    }
}
