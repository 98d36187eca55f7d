//! Classify + forward per packet, beside baselines measured in the same run.
//!
//! - `vxspan-example`: VxSPAN's example configuration (VLAN-selector redirect) on the generated
//!   traffic mix; baseline: copying each frame into a scratch buffer (the least a forwarder does).
//! - `filters-100`: 100 rules with tcpdump filters, all evaluated per frame by vxspan's cBPF
//!   interpreter; baseline: the same 100 programs run by libpcap's own `pcap_offline_filter`.
//! - `tunnels`: ERSPAN III + VXLAN encapsulation of each frame, and VXLAN decapsulation;
//!   baseline: plain forwarding of the same frames.
//!
//! Figures are printed by criterion (time per batch of 4096 frames and elements per second).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

struct Null(u64);

impl Sink for Null {
    fn transmit(&mut self, _: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0 += f.data.len() as u64;
        Ok(())
    }
}

fn frames() -> Vec<(Vec<u8>, u64)> {
    vxspan::gen::frames(4096, 1, 20)
        .map(|f| (f.data, f.ts))
        .collect()
}

fn engine(text: &str, toml: bool) -> Engine {
    let syntax = if toml {
        vxspan_config::Syntax::Toml
    } else {
        vxspan_config::Syntax::Json
    };
    let cfg = vxspan_config::parse(text, syntax, Path::new("bench")).unwrap();
    Engine::new(Arc::new(
        Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap(),
    ))
}

fn hundred_filters() -> (String, Vec<String>) {
    let mut text =
        String::from("[inputs.in]\ninterface = \"e1\"\n[outputs.out]\ninterface = \"e2\"\n");
    let mut exprs = Vec::new();
    for i in 0..100 {
        let e = match i % 4 {
            0 => format!("vlan {} and udp port {}", 1 + i % 20, 1000 + i),
            1 => format!("vlan and tcp dst port {}", 2000 + i),
            2 => format!("vlan and net 198.{}.{}.0/24", 18 + i % 2, i),
            _ => format!("ip6 and udp port {}", 3000 + i),
        };
        text.push_str(&format!(
            "[[rules]]\nfrom = \"in\"\nfilter = \"{e}\"\nto = \"out\"\n"
        ));
        exprs.push(e);
    }
    (text, exprs)
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let rx: Vec<RxFrame> = frames
        .iter()
        .map(|(d, ts)| RxFrame {
            data: d,
            wire_len: d.len() as u32,
            ts: *ts,
        })
        .collect();

    let mut g = c.benchmark_group("vxspan-example");
    g.throughput(Throughput::Elements(rx.len() as u64));
    let mut e = engine(include_str!("../../../examples/vxspan.json"), false);
    g.bench_function("engine", |b| {
        let mut sink = Null(0);
        b.iter(|| e.process_batch(1, rx.iter().copied(), &mut sink));
    });
    g.bench_function("baseline-copy", |b| {
        let mut scratch = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            for f in &rx {
                scratch.clear();
                scratch.extend_from_slice(f.data);
                black_box(&scratch);
            }
        });
    });
    g.finish();

    let (text, exprs) = hundred_filters();
    let mut g = c.benchmark_group("filters-100");
    g.throughput(Throughput::Elements(rx.len() as u64));
    let mut e = engine(&text, true);
    g.bench_function("engine", |b| {
        let mut sink = Null(0);
        b.iter(|| e.process_batch(0, rx.iter().copied(), &mut sink));
    });
    let oracles: Vec<_> = exprs
        .iter()
        .map(|x| vxspan_io::filter::LibpcapOracle::new(x).unwrap())
        .collect();
    g.bench_function("baseline-libpcap", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for f in &rx {
                for o in &oracles {
                    n += u32::from(o.matches(f.data));
                }
            }
            black_box(n)
        });
    });
    g.finish();
}

const ENCAP: &str = r#"
[inputs.in]
interface = "e1"
[outputs.erspan3]
erspan = { version = 3, remote = "198.18.1.10", session = 42 }
[outputs.vxlan]
vxlan = { remote = "198.18.1.11", vni = 7000 }
[[rules]]
from = "in"
to = "erspan3"
[[rules]]
from = "in"
to = "vxlan"
"#;

const DECAP: &str = r#"
[inputs.in]
interface = "e1"
decap = ["vxlan", "erspan"]
[outputs.out]
interface = "e2"
[[rules]]
from = "in"
to = "out"
"#;

/// Keeps the copies of one output (to build the decapsulation benchmark's input).
struct Keep(usize, Vec<(Vec<u8>, u64)>);

impl Sink for Keep {
    fn transmit(&mut self, o: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        if o == self.0 {
            self.1.push((f.data.to_vec(), f.ts));
        }
        Ok(())
    }
}

/// Encapsulation (ERSPAN III and VXLAN copies of each frame) and decapsulation (of the VXLAN
/// copies), per frame, beside the plain forwarding of the same frames measured in this run.
fn tunnels(c: &mut Criterion) {
    let frames = frames();
    let rx: Vec<RxFrame> = frames
        .iter()
        .map(|(d, ts)| RxFrame {
            data: d,
            wire_len: d.len() as u32,
            ts: *ts,
        })
        .collect();
    let mut g = c.benchmark_group("tunnels");
    g.throughput(Throughput::Elements(rx.len() as u64));
    let mut e = engine(ENCAP, true);
    g.bench_function("encap-erspan3-and-vxlan", |b| {
        let mut sink = Null(0);
        b.iter(|| e.process_batch(0, rx.iter().copied(), &mut sink));
    });
    let mut keep = Keep(1, Vec::new());
    engine(ENCAP, true).process_batch(0, rx.iter().copied(), &mut keep);
    let vx: Vec<RxFrame> = keep
        .1
        .iter()
        .map(|(d, ts)| RxFrame {
            data: d,
            wire_len: d.len() as u32,
            ts: *ts,
        })
        .collect();
    let mut d = engine(DECAP, true);
    g.bench_function("decap-vxlan", |b| {
        let mut sink = Null(0);
        b.iter(|| d.process_batch(0, vx.iter().copied(), &mut sink));
    });
    let mut plain = engine(include_str!("../../../examples/vxspan-any.json"), false);
    g.bench_function("baseline-forward", |b| {
        let mut sink = Null(0);
        b.iter(|| plain.process_batch(0, rx.iter().copied(), &mut sink));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, tunnels
}
criterion_main!(benches);
