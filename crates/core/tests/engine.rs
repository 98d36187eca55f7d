//! Whole scenarios through the engine, in memory: config text in, frames in, copies and
//! counters out.

use std::path::Path;
use std::sync::Arc;
use vxspan_core::bpf::BpfInsn;
use vxspan_core::{Engine, FilterCompiler, Plan, RxFrame, Sink, Tier, TxDrop, TxFrame};

/// Stands in for libpcap in the pure core's tests: "vlan10" is `ether[14:2] & 0xfff = 10`
/// behind an 0x8100 check; "reject" rejects everything; anything else fails to compile.
struct FakeCompiler;

impl FilterCompiler for FakeCompiler {
    fn compile(&self, expr: &str) -> Result<Vec<BpfInsn>, String> {
        match expr {
            "reject" => Ok(vec![BpfInsn::new(0x06, 0, 0, 0)]),
            "udp" => Ok(vec![
                BpfInsn::new(0x28, 0, 0, 12),
                BpfInsn::new(0x15, 0, 3, 0x0800),
                BpfInsn::new(0x30, 0, 0, 23),
                BpfInsn::new(0x15, 0, 1, 17),
                BpfInsn::new(0x06, 0, 0, 65535),
                BpfInsn::new(0x06, 0, 0, 0),
            ]),
            _ => Err(format!("syntax error in {expr:?}")),
        }
    }
}

#[derive(Default)]
struct Collect {
    out: Vec<(usize, Vec<u8>, u32)>,
    fail: Option<(usize, TxDrop)>,
}

impl Sink for Collect {
    fn transmit(&mut self, output: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        if let Some((o, r)) = self.fail {
            if o == output {
                return Err(r);
            }
        }
        self.out.push((output, f.data.to_vec(), f.wire_len));
        Ok(())
    }
}

fn plan(text: &str, toml: bool) -> Plan {
    let syntax = if toml {
        vxspan_config::Syntax::Toml
    } else {
        vxspan_config::Syntax::Json
    };
    let cfg = vxspan_config::parse(text, syntax, Path::new("t")).unwrap();
    Plan::compile(&cfg, &FakeCompiler).unwrap()
}

fn frame(tags: &[(u16, u16)], ethertype: u16, len: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.resize(len, 0xab);
    f
}

fn udp(tags: &[(u16, u16)], sport: u16) -> Vec<u8> {
    let mut f = frame(tags, 0x0800, 14 + 4 * tags.len());
    let ip = [
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
    f
}

fn run(engine: &mut Engine, input: usize, frames: &[Vec<u8>], sink: &mut Collect) {
    let rx: Vec<RxFrame> = frames
        .iter()
        .enumerate()
        .map(|(i, d)| RxFrame {
            data: d,
            wire_len: d.len() as u32,
            ts: i as u64,
        })
        .collect();
    engine.process_batch(input, rx, sink);
}

/// rx = forwarded + dropped for every input, and drops add up to their reasons.
fn assert_conservation(engine: &Engine, forwarded: &[u64]) {
    let c = engine.counters();
    for (i, inp) in engine.plan().inputs.iter().enumerate() {
        let p = &c.ports[inp.port];
        assert_eq!(p.forwarded_packets, forwarded[i], "input {}", inp.name);
        assert_eq!(
            p.rx_packets,
            p.forwarded_packets + p.dropped_packets,
            "input {}",
            inp.name
        );
        assert_eq!(p.dropped_packets, p.drop_reasons.iter().sum::<u64>());
        let vl: u64 = c.vlans[i].iter().map(|v| v.packets).sum();
        let malformed = p.drop_reasons[vxspan_core::RxDrop::Malformed as usize];
        assert_eq!(vl + malformed, p.rx_packets);
    }
    for o in &engine.plan().outputs {
        let p = &c.ports[o.port];
        assert_eq!(p.tx_dropped_packets, p.tx_drop_reasons.iter().sum::<u64>());
    }
}

const VX: &str = r#"{"interfaces": {
    "eth0": {"redirect_map": {"none": "eth2"}},
    "eth1": {"redirect_map": {"10": "eth3", "11": "eth3", "12": "eth2", "any": "eth4"}}}}"#;

#[test]
fn vxspan_selectors_and_precedence() {
    let mut e = Engine::new(Arc::new(plan(VX, false)));
    let mut s = Collect::default();
    let eth1 = vec![
        frame(&[(0x8100, 10)], 0x0800, 60),
        frame(&[(0x88a8, 11), (0x8100, 99)], 0x0800, 60),
        frame(&[(0x9100, 0xe00c)], 0x0800, 60), // PCP 7, VID 12
        frame(&[(0x8100, 13)], 0x0800, 60),     // any
        frame(&[], 0x0800, 60),                 // any (untagged)
        frame(&[(0x8100, 99), (0x8100, 10)], 0x0800, 60), // outer 99: any, not 10
        vec![0u8; 10],                          // malformed
    ];
    run(&mut e, 1, &eth1, &mut s);
    let outs: Vec<&str> = s
        .out
        .iter()
        .map(|(o, _, _)| e.plan().outputs[*o].name.as_str())
        .collect();
    assert_eq!(outs, ["eth3", "eth3", "eth2", "eth4", "eth4", "eth4"]);
    // Unchanged.
    for ((_, d, _), f) in s.out.iter().zip(&eth1) {
        assert_eq!(d, f);
    }
    let eth0 = vec![
        frame(&[], 0x86dd, 60),
        frame(&[(0x8100, 0xa000)], 0x0800, 64),
        frame(&[(0x8100, 10)], 0x0800, 60),
    ];
    s.out.clear();
    run(&mut e, 0, &eth0, &mut s);
    assert_eq!(s.out.len(), 2);
    let c = e.report();
    assert_eq!(c.interfaces["eth0"].drop_reasons["no_rule"], 1);
    assert_eq!(c.interfaces["eth1"].drop_reasons["malformed"], 1);
    assert_eq!(c.interfaces["eth3"].tx_packets, 2);
    assert_eq!(c.vlans["eth0"]["none"].packets, 2);
    assert_eq!(c.vlans["eth0"]["10"].dropped_packets, 1);
    assert_conservation(&e, &[2, 6]);
}

const NATIVE: &str = r#"
[inputs.m]
interface = "eth1"
[outputs.a]
interface = "eth3"
[outputs.push]
interface = "eth4"
vlan = { push = 100 }
[outputs.pop]
interface = "eth5"
vlan = { pop = true }
[outputs.set]
interface = "eth6"
vlan = { set = 200 }
truncate = 20
[outputs.small]
interface = "eth7"
mtu = 100

[[rules]]
name = "all"
from = "m"
to = ["a", "push", "pop", "set", "small"]

[[rules]]
name = "again"
from = "m"
vlan = 10
to = ["a"]
"#;

#[test]
fn fan_out_is_a_union_with_one_copy_per_output() {
    let mut e = Engine::new(Arc::new(plan(NATIVE, true)));
    let mut s = Collect::default();
    let f = frame(&[(0x8100, 0x200a)], 0x0800, 60); // PCP 1, VID 10
    run(&mut e, 0, std::slice::from_ref(&f), &mut s);
    assert_eq!(
        s.out.len(),
        5,
        "one copy per output even though two rules match"
    );
    let by = |name: &str| {
        let o = e
            .plan()
            .outputs
            .iter()
            .position(|o| o.name == name)
            .unwrap();
        s.out.iter().find(|(x, _, _)| *x == o).unwrap().1.clone()
    };
    assert_eq!(by("a"), f);
    assert_eq!(
        by("push"),
        frame(&[(0x8100, 100), (0x8100, 0x200a)], 0x0800, 64)
    );
    assert_eq!(by("pop"), frame(&[], 0x0800, 56));
    let set = by("set");
    assert_eq!(set.len(), 20);
    assert_eq!(&set[..16], &frame(&[(0x8100, 0x20c8)], 0x0800, 60)[..16]);
    let c = e.report();
    assert_eq!(c.rules[0].matched_packets, 1);
    assert_eq!(c.rules[1].matched_packets, 1);
}

#[test]
fn mtu_and_tx_failures_are_counted_on_the_output() {
    let mut e = Engine::new(Arc::new(plan(NATIVE, true)));
    let small = e
        .plan()
        .outputs
        .iter()
        .position(|o| o.name == "small")
        .unwrap();
    let pop = e
        .plan()
        .outputs
        .iter()
        .position(|o| o.name == "pop")
        .unwrap();
    let mut s = Collect {
        fail: Some((pop, TxDrop::QueueFull)),
        ..Default::default()
    };
    let big = frame(&[(0x8100, 5)], 0x0800, 18 + 101);
    let fits = frame(&[(0x8100, 5)], 0x0800, 18 + 100);
    run(&mut e, 0, &[big, fits], &mut s);
    let c = e.report();
    assert_eq!(c.interfaces["small"].tx_drop_reasons["mtu_exceeded"], 1);
    assert_eq!(c.interfaces["small"].tx_packets, 1);
    assert_eq!(c.interfaces["pop"].tx_drop_reasons["queue_full"], 2);
    assert_eq!(c.interfaces["pop"].tx_dropped_packets, 2);
    assert_eq!(c.interfaces["m"].dropped_packets, 0);
    assert!(s
        .out
        .iter()
        .all(|(o, _, _)| *o != pop && (*o != small || s.out.len() == 7)));
    assert_conservation(&e, &[2]);
}

#[test]
fn truncate_keeps_wire_length() {
    let mut e = Engine::new(Arc::new(plan(NATIVE, true)));
    let mut s = Collect::default();
    run(&mut e, 0, &[frame(&[], 0x0800, 500)], &mut s);
    let set = e
        .plan()
        .outputs
        .iter()
        .position(|o| o.name == "set")
        .unwrap();
    let (_, d, wire) = s.out.iter().find(|(o, _, _)| *o == set).unwrap();
    assert_eq!((d.len(), *wire), (20, 504));
}

const SAMPLED: &str = r#"
[inputs.m]
interface = "eth1"
[outputs.a]
interface = "eth3"
[outputs.b]
interface = "eth4"
[[rules]]
name = "counter"
from = "m"
to = "a"
sample = 4
[[rules]]
name = "flow"
from = "m"
filter = "udp"
to = "b"
sample = { one_in = 3, mode = "flow" }
"#;

#[test]
fn sampling_counter_and_flow() {
    let mut e = Engine::new(Arc::new(plan(SAMPLED, true)));
    let mut s = Collect::default();
    let frames: Vec<Vec<u8>> = (0..300u16).map(|i| udp(&[], 1000 + i % 30)).collect();
    run(&mut e, 0, &frames, &mut s);
    let c = e.report();
    assert_eq!(c.rules[0].matched_packets, 300);
    assert_eq!(c.rules[0].forwarded_packets, 75, "exactly 1 in 4");
    assert_eq!(c.rules[1].matched_packets, 300);
    // Flow sampling keeps whole flows: each of the 30 flows is either always or never kept.
    let b = e.plan().outputs.iter().position(|o| o.name == "b").unwrap();
    let mut kept = std::collections::BTreeMap::new();
    for (o, d, _) in &s.out {
        if *o == b {
            *kept.entry(u16::from_be_bytes([d[34], d[35]])).or_insert(0) += 1;
        }
    }
    assert!(kept.values().all(|n| *n == 10), "{kept:?}");
    assert!(
        !kept.is_empty() && kept.len() < 30,
        "{} of 30 flows kept",
        kept.len()
    );
    // The reverse direction of a kept flow is kept too (symmetric hash).
    let port = *kept.keys().next().unwrap();
    let mut rev = udp(&[], 53);
    rev[26..30].copy_from_slice(&[198, 18, 0, 2]);
    rev[30..34].copy_from_slice(&[198, 18, 0, 1]);
    rev[34..36].copy_from_slice(&53u16.to_be_bytes());
    rev[36..38].copy_from_slice(&port.to_be_bytes());
    s.out.clear();
    run(&mut e, 0, &[rev], &mut s);
    assert!(s.out.iter().any(|(o, _, _)| *o == b));
    let p = &e.report().interfaces["m"];
    assert_eq!(p.rx_packets, 301);
    assert_eq!(p.dropped_packets, p.drop_reasons["sampled_out"]);
}

#[test]
fn filters_and_placement() {
    let text = r#"
[inputs.m]
interface = "eth1"
[outputs.a]
interface = "eth3"
[[rules]]
from = "m"
vlan = [10]
to = "a"
[[rules]]
from = "m"
vlan = ["20-21"]
filter = "reject"
to = "a"
"#;
    let p = plan(text, true);
    let groups = &p.inputs[0].groups;
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].tier, Tier::Xdp);
    assert_eq!(groups[1].tier, Tier::Userspace);
    assert!(groups[1].why.contains("filter"));
    let mut e = Engine::new(Arc::new(p));
    let mut s = Collect::default();
    run(&mut e, 0, &[frame(&[(0x8100, 20)], 0x0800, 60)], &mut s);
    assert!(s.out.is_empty());
    assert_eq!(e.report().interfaces["m"].drop_reasons["no_rule"], 1);

    let bad = text.replace("\"reject\"", "\"nonsense\"");
    let cfg = vxspan_config::parse(&bad, vxspan_config::Syntax::Toml, Path::new("t")).unwrap();
    let err = Plan::compile(&cfg, &FakeCompiler).unwrap_err();
    assert_eq!(err.path, "rules[1].filter");
}

/// VID 4095 is reserved, but frames carrying it reach a SPAN port all the same: counted, and
/// selected by `any` (found by the engine fuzz target: the tables stopped at 4094).
#[test]
fn reserved_vid_4095() {
    let mut e = Engine::new(Arc::new(plan(VX, false)));
    let mut s = Collect::default();
    run(&mut e, 1, &[frame(&[(0x8100, 0x0fff)], 0x0800, 60)], &mut s);
    assert_eq!(s.out.len(), 1, "eth1's any rule takes it");
    assert_eq!(e.report().vlans["eth1"]["4095"].packets, 1);
    run(&mut e, 0, &[frame(&[(0x8100, 0xefff)], 0x0800, 60)], &mut s);
    assert_eq!(e.report().interfaces["eth0"].drop_reasons["no_rule"], 1);
    assert_conservation(&e, &[0, 1]);
}

/// ERSPAN sequence numbers keep increasing across a reload (a new engine for a new plan).
#[test]
fn erspan_sequences_continue_across_reloads() {
    let text = r#"
[inputs.m]
interface = "eth1"
[outputs.c]
erspan = { version = 2, remote = "198.18.1.10", session = 9 }
[[rules]]
from = "m"
to = "c"
"#;
    let seq = |d: &[u8]| u32::from_be_bytes([d[38], d[39], d[40], d[41]]);
    let mut e = Engine::new(Arc::new(plan(text, true)));
    let mut s = Collect::default();
    run(
        &mut e,
        0,
        &[frame(&[], 0x0800, 60), frame(&[], 0x0800, 60)],
        &mut s,
    );
    let carried = e.erspan_sequences();
    assert_eq!(carried.get(&9), Some(&2));
    let mut e2 = Engine::new(Arc::new(plan(
        &text.replace("[[rules]]", "[outputs.d]\ninterface = \"eth5\"\n[[rules]]"),
        true,
    )));
    e2.continue_erspan_sequences(&carried);
    run(&mut e2, 0, &[frame(&[], 0x0800, 60)], &mut s);
    let seqs: Vec<u32> = s.out.iter().map(|(_, d, _)| seq(d)).collect();
    assert_eq!(seqs, [0, 1, 2]);
}

/// Two workers' engines (one made from the other) count apart and add up, and share what must
/// be one per instance: 1-in-N sampling counts, dedup tables, token buckets and ERSPAN
/// sequence numbers. Each frame goes to one worker, alternately, as a fanout would spread them.
#[test]
fn workers_share_sampling_dedup_buckets_and_sequences() {
    let text = r#"
[inputs.m]
interface = "eth1"
[outputs.a]
interface = "eth3"
[outputs.c]
erspan = { version = 2, remote = "198.18.1.10", session = 9 }
[outputs.r]
interface = "eth4"
rate_limit = 8000
rate_burst = 600
[[rules]]
name = "counter"
from = "m"
to = "a"
sample = 3
[[rules]]
name = "dedup"
from = "m"
to = "c"
dedup = { window_ms = 10 }
[[rules]]
name = "limited"
from = "m"
to = "r"
"#;
    let mut w0 = Engine::new(Arc::new(plan(text, true)));
    let mut w1 = w0.worker();
    let (mut s0, mut s1) = (Collect::default(), Collect::default());
    // 100 distinct frames, each seen twice in a row (a second SPAN copy): the copy goes to
    // the other worker. Timestamps 1 µs apart: no refill worth a frame.
    for i in 0..100u16 {
        let f = udp(&[], 2000 + i);
        for copy in 0..2u64 {
            let ts = u64::from(i) * 2_000 + copy * 1_000;
            let rx = RxFrame {
                data: &f,
                wire_len: f.len() as u32,
                ts,
            };
            if (u64::from(i) + copy) % 2 == 0 {
                w0.process(0, rx, &mut s0);
            } else {
                w1.process(0, rx, &mut s1);
            }
        }
    }
    let (r0, r1) = (w0.report(), w1.report());
    assert_eq!(r0.interfaces["m"].rx_packets, 100);
    assert_eq!(r1.interfaces["m"].rx_packets, 100);
    let mut total = r0.clone();
    total.add(&r1);
    let rule = |name: &str| total.rules.iter().find(|r| r.name == name).unwrap().clone();
    // 1 in 3 of 200: the 1st, 4th, ... 199th (67), where two counts of 100 would give 68.
    assert_eq!(rule("counter").forwarded_packets, 67);
    // Every second copy is a duplicate, whichever worker saw the first.
    assert_eq!(rule("dedup").forwarded_packets, 100);
    assert_eq!(rule("dedup").duplicate_packets, 100);
    // One bucket of 600 bytes for both: as many 42-byte frames as fit, once.
    let limited = total.interfaces["r"].tx_packets;
    assert_eq!(limited, 600 / 42);
    // ERSPAN sequence numbers: 0..100, each once, across both workers.
    let seq = |d: &[u8]| u32::from_be_bytes([d[38], d[39], d[40], d[41]]);
    let mut seqs: Vec<u32> = s0
        .out
        .iter()
        .chain(&s1.out)
        .filter(|(o, _, _)| *o == 1)
        .map(|(_, d, _)| seq(d))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..100).collect::<Vec<u32>>());
    assert_eq!(w1.erspan_sequences().get(&9), Some(&100));
}
