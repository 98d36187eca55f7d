//! Every real capture in ../shared/captures goes through the engine with an `any` rule: no
//! panic, and the counters add up exactly. Then again with random bit flips and truncations.

mod common;

use std::path::Path;
use std::sync::Arc;
use vxspan::gen::Rng;
use vxspan::replay::{drive, Outputs};
use vxspan_core::{Engine, Plan, Report};
use vxspan_io::mem::{MemoryInput, MemoryOutput};
use vxspan_io::pcap::FileInput;
use vxspan_io::FrameSource;

const ANY: &str = r#"
[inputs.in]
interface = "eth1"
[outputs.out]
interface = "eth2"
[outputs.tagged]
interface = "eth3"
vlan = { push = 300 }
truncate = 64
[outputs.small]
interface = "eth4"
mtu = 576
[[rules]]
name = "any"
from = "in"
to = ["out", "small"]
[[rules]]
name = "tagged-udp"
from = "in"
vlan = "1-4094"
filter = "vlan and udp"
to = "tagged"
sample = { one_in = 2, mode = "flow" }
"#;

fn engine() -> Engine {
    let cfg =
        vxspan_config::parse(ANY, vxspan_config::Syntax::Toml, Path::new("any.toml")).unwrap();
    Engine::new(Arc::new(
        Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap(),
    ))
}

fn run(port: Box<dyn FrameSource>) -> (Report, u64) {
    let mut e = engine();
    let mut sink = Outputs { ports: Vec::new() };
    for _ in 0..3 {
        sink.ports.push(Some(Box::new(MemoryOutput::default())));
    }
    let n = drive(&mut e, vec![(0, port)], &mut sink, |_| {}).unwrap();
    (e.report(), n)
}

/// CONFIG.md section 3: rx = forwarded + dropped, drops = sum of reasons, and each output's
/// sent + dropped copies equal what the rules routed to it.
fn assert_adds_up(r: &Report, frames: u64, what: &str) {
    let i = &r.interfaces["in"];
    assert_eq!(i.rx_packets, frames, "{what}");
    assert_eq!(
        i.rx_packets,
        i.forwarded_packets + i.dropped_packets,
        "{what}"
    );
    assert_eq!(
        i.dropped_packets,
        i.drop_reasons.values().sum::<u64>(),
        "{what}"
    );
    assert_eq!(i.rx_bytes, i.forwarded_bytes + i.dropped_bytes, "{what}");
    let any = &r.rules[0];
    let out = &r.interfaces["out"];
    assert_eq!(
        out.tx_packets + out.tx_dropped_packets,
        any.forwarded_packets,
        "{what}"
    );
    let small = &r.interfaces["small"];
    assert_eq!(
        small.tx_packets + small.tx_dropped_packets,
        any.forwarded_packets,
        "{what}"
    );
    assert_eq!(
        small.tx_dropped_packets, small.tx_drop_reasons["mtu_exceeded"],
        "{what}"
    );
    let tagged = &r.interfaces["tagged"];
    assert_eq!(tagged.tx_packets, r.rules[1].forwarded_packets, "{what}");
    // Every well-formed frame matches `any`.
    assert_eq!(
        any.matched_packets,
        i.rx_packets - i.drop_reasons["malformed"],
        "{what}"
    );
    let vlan_total: u64 = r.vlans["in"].values().map(|v| v.packets).sum();
    assert_eq!(vlan_total, any.matched_packets, "{what}");
}

fn captures() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(common::shared().join("captures/captures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(
        v.len() >= 50,
        "expected the shared captures, found {}",
        v.len()
    );
    v
}

#[test]
fn every_shared_capture_replays_and_adds_up() {
    let mut total = 0;
    for path in captures() {
        let frames = common::read_capture(&path).len() as u64;
        let (r, n) = run(Box::new(FileInput::open(&path).unwrap()));
        assert_eq!(n, frames, "{}", path.display());
        assert_adds_up(&r, frames, &path.display().to_string());
        total += frames;
    }
    assert!(total > 1500, "{total}");
}

#[test]
fn bit_flips_and_truncations_never_panic_and_add_up() {
    let mut rng = Rng::new(42);
    for path in captures() {
        let mut frames = common::read_capture(&path);
        for (data, wire, _) in frames.iter_mut() {
            match rng.below(4) {
                0 if !data.is_empty() => {
                    let cut = rng.below(data.len() as u64) as usize;
                    data.truncate(cut);
                }
                1 | 2 => {
                    for _ in 0..1 + rng.below(8) {
                        if data.is_empty() {
                            break;
                        }
                        let i = rng.below(data.len() as u64) as usize;
                        data[i] ^= 1 << rng.below(8);
                    }
                }
                _ => {
                    // Flip bits in the first 64 bytes, where the headers are.
                    let n = data.len().min(64);
                    if n > 0 {
                        let i = rng.below(n as u64) as usize;
                        data[i] = rng.next_u64() as u8;
                    }
                }
            }
            *wire = (*wire).max(data.len() as u32);
        }
        let n = frames.len() as u64;
        let (r, got) = run(Box::new(MemoryInput::new(frames)));
        assert_eq!(got, n);
        assert_adds_up(&r, n, &format!("mutated {}", path.display()));
    }
}

/// The core's cBPF interpreter agrees with libpcap's own on every frame of every capture
/// (and on their mutated copies), for a spread of tcpdump expressions.
#[test]
fn filter_interpreter_agrees_with_libpcap() {
    let exprs = [
        "vlan 10",
        "vlan",
        "vlan and udp",
        "tcp port 80",
        "udp port 4789",
        "ip proto 47",
        "ip6",
        "arp",
        "icmp or icmp6",
        "net 10.0.0.0/8",
        "host 192.168.1.1",
        "tcp[tcpflags] & tcp-syn != 0",
        "len > 1000",
        "ether[12:2] = 0x88a8",
        "ip[6:2] & 0x3fff != 0",
        "mpls",
        "greater 200 and not ip",
        "udp dst portrange 6000-7000",
        "ip6 and ip6[6] = 17",
        "ether host ff:ff:ff:ff:ff:ff",
    ];
    let compiled: Vec<_> = exprs
        .iter()
        .map(|e| {
            let p =
                vxspan_core::bpf::BpfProgram::new(vxspan_io::filter::compile(e).unwrap()).unwrap();
            (e, p, vxspan_io::filter::LibpcapOracle::new(e).unwrap())
        })
        .collect();
    let mut rng = Rng::new(7);
    let mut checked = 0u64;
    let mut matched = 0u64;
    for path in captures() {
        for (mut data, _, _) in common::read_capture(&path) {
            for round in 0..2 {
                if round == 1 && !data.is_empty() {
                    let i = rng.below(data.len().min(80) as u64) as usize;
                    data[i] ^= rng.next_u64() as u8;
                }
                for (e, ours, theirs) in &compiled {
                    let a = ours.matches(&data, data.len() as u32);
                    assert_eq!(
                        a,
                        theirs.matches(&data),
                        "{e} on a frame of {}",
                        path.display()
                    );
                    checked += 1;
                    matched += u64::from(a);
                }
            }
        }
    }
    assert!(
        matched > 1000 && matched < checked,
        "{matched} of {checked}"
    );
}
