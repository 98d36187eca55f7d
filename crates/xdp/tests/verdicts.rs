//! The XDP program against the userspace classifier: the same plan, the same fixture frames
//! (untagged, priority-tagged, tagged, QinQ, 0x9100, too many tags, runts, jumbo), run through
//! BPF_PROG_TEST_RUN and through vxspan-core's Engine. Verdicts, rewritten frames and counters
//! must agree. Needs root (BPF and a network namespace of its own); skipped otherwise.

use std::sync::Arc;

mod common;

use vxspan_core::counters::Report;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};
use vxspan_xdp::tables::{Action, Tables};
use vxspan_xdp::Datapath;

use common::{ifx, is_root, AcceptAll, XDP_DROP, XDP_PASS, XDP_REDIRECT};

const CONFIG: &str = r#"
[inputs.mirror]
interface = "in0"
[outputs.plain]
interface = "o1"
[outputs.rspan]
interface = "o2"
vlan = { push = 100 }
mtu = 1500
[outputs.popped]
interface = "o3"
vlan = { pop = true }
[outputs.renumbered]
interface = "o4"
vlan = { set = 300 }
[outputs.cut]
interface = "o5"
vlan = { push = 200 }
truncate = 96
[[rules]]
name = "untagged"
from = ["mirror"]
vlan = ["none"]
to = ["cut"]
[[rules]]
name = "ten"
from = ["mirror"]
vlan = [10]
to = ["plain", "rspan", "cut"]
[[rules]]
name = "eleven"
from = ["mirror"]
vlan = [11]
to = ["popped"]
[[rules]]
name = "twelve"
from = ["mirror"]
vlan = [12]
to = ["rspan"]
[[rules]]
name = "thirteen"
from = ["mirror"]
vlan = [13]
to = ["renumbered"]
[[rules]]
name = "filtered"
from = ["mirror"]
vlan = [20]
filter = "tcp"
to = ["plain"]
"#;

fn frame(tags: &[(u16, u16)], len: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut b = 0u8;
    while f.len() < len {
        f.push(b);
        b = b.wrapping_add(7);
    }
    f
}

fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("untagged", frame(&[], 64)),
        ("priority-tagged", frame(&[(0x8100, 0xa000)], 64)),
        ("vlan 10", frame(&[(0x8100, 10)], 128)),
        ("vlan 10 pcp 5", frame(&[(0x8100, 0xa00a)], 128)),
        ("vlan 11", frame(&[(0x8100, 11)], 100)),
        ("vlan 12", frame(&[(0x8100, 12)], 100)),
        ("vlan 13 pcp 3", frame(&[(0x8100, 0x600d)], 100)),
        ("untagged to set", frame(&[], 80)),
        ("vlan 20 (userspace)", frame(&[(0x8100, 20)], 100)),
        ("vlan 30 (no rule)", frame(&[(0x8100, 30)], 100)),
        (
            "QinQ 0x88a8 11 / 10",
            frame(&[(0x88a8, 11), (0x8100, 10)], 100),
        ),
        ("0x9100 10", frame(&[(0x9100, 10)], 100)),
        (
            "three tags 12",
            frame(&[(0x88a8, 12), (0x8100, 7), (0x8100, 8)], 100),
        ),
        ("eight tags", frame(&[(0x8100, 10); 8], 100)),
        ("nine tags (malformed)", frame(&[(0x8100, 10); 9], 100)),
        ("VID 4095", frame(&[(0x8100, 4095)], 100)),
        ("runt: tag cut", {
            let mut f = frame(&[(0x8100, 10)], 0);
            f.truncate(16);
            f
        }),
        ("runt: header only", {
            let mut f = frame(&[], 0);
            f.truncate(14);
            f
        }),
        ("jumbo vlan 10", frame(&[(0x8100, 10)], 9000)),
        ("jumbo vlan 12 (mtu)", frame(&[(0x8100, 12)], 9000)),
        ("jumbo untagged", frame(&[], 9014)),
    ]
}

#[derive(Default)]
struct Record {
    copies: Vec<(usize, Vec<u8>)>,
}

/// The copies the userspace engine makes of `frame` received on input 0 (the reference).
fn reference(engine: &mut Engine, frame: &[u8]) -> Record {
    let mut rec = Record::default();
    engine.process(
        0,
        RxFrame {
            data: frame,
            wire_len: frame.len() as u32,
            ts: 0,
        },
        &mut rec,
    );
    rec
}

impl Sink for Record {
    fn transmit(&mut self, output: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.copies.push((output, f.data.to_vec()));
        Ok(())
    }
}

fn make_ports() {
    common::veths(
        &[
            ("in0", "in0p"),
            ("o1", "o1p"),
            ("o2", "o2p"),
            ("o3", "o3p"),
            ("o4", "o4p"),
            ("o5", "o5p"),
        ],
        9000,
    );
}

/// What every test here starts from, in its own namespace: the ports, the plan of CONFIG, its
/// kernel tables, in0's index and the program loaded with them (not attached).
struct Setup {
    plan: Plan,
    tables: Tables,
    in0: u32,
    dp: Datapath,
}

fn setup() -> Setup {
    make_ports();
    let plan = plan();
    let tables = Tables::build(&plan, &ifx, false).expect("tables");
    let in0 = ifx("in0").unwrap();
    let dp = Datapath::load(tables.clone()).expect("load");
    Setup {
        plan,
        tables,
        in0,
        dp,
    }
}

/// What the kernel tables say input 0 does with `f` (None: not even an Ethernet header).
fn action_of(tables: &Tables, f: &[u8]) -> Option<Action> {
    let vid = vxspan_core::wire::vlan::L2Info::parse(f).ok()?.outer_vid();
    Some(
        tables.inputs[0]
            .actions
            .iter()
            .find(|(v, _)| *v == vid)
            .map_or(Action::Drop, |(_, a)| *a),
    )
}

/// Asserts the program's counters equal the engine's, per interface and per VLAN; returns the
/// program's.
fn same_counters(plan: &Plan, dp: &Datapath, engine: &Engine) -> Report {
    let kernel = vxspan_core::engine::report(plan, &Tables::counters(plan, &dp.counters()));
    let reference = engine.report();
    assert_eq!(
        serde_json::to_value(&kernel.interfaces).unwrap(),
        serde_json::to_value(&reference.interfaces).unwrap(),
        "per-interface counters"
    );
    assert_eq!(
        serde_json::to_value(&kernel.vlans).unwrap(),
        serde_json::to_value(&reference.vlans).unwrap(),
        "per-VLAN counters"
    );
    kernel
}

fn plan() -> Plan {
    let cfg = vxspan_config::parse(
        CONFIG,
        vxspan_config::Syntax::Toml,
        std::path::Path::new("verdicts.toml"),
    )
    .expect("config");
    Plan::compile(&cfg, &AcceptAll).expect("plan")
}

#[test]
fn program_agrees_with_the_userspace_classifier() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // A thread of its own: the namespace belongs to the calling thread.
    std::thread::spawn(|| {
        let Setup {
            plan,
            tables,
            in0,
            mut dp,
        } = setup();
        let mut engine = Engine::new(Arc::new(plan.clone()));
        for (name, f) in fixtures() {
            let (verdict, out, _) = dp.run_frame(in0, &f, 1).expect("test run");
            let action = action_of(&tables, &f);
            if action == Some(Action::Userspace) {
                assert_eq!(verdict, XDP_PASS, "{name}: to userspace");
                continue;
            }
            // Only frames the kernel handles go through the reference engine: the counters
            // must then be equal.
            let rec = reference(&mut engine, &f);
            match action {
                None | Some(Action::Drop) | Some(Action::Userspace) => {
                    assert_eq!(verdict, XDP_DROP, "{name}: dropped");
                    assert!(rec.copies.is_empty(), "{name}");
                }
                Some(Action::Redirect(o)) => {
                    if rec.copies.is_empty() {
                        // the engine dropped the copy (mtu_exceeded): so does the program
                        assert_eq!(verdict, XDP_DROP, "{name}: copy dropped");
                    } else {
                        assert_eq!(verdict, XDP_REDIRECT, "{name}: redirected");
                        assert_eq!(rec.copies.len(), 1, "{name}");
                        assert_eq!(rec.copies[0].0, o as usize, "{name}: output");
                        assert_eq!(out, rec.copies[0].1, "{name}: the frame as rewritten");
                    }
                }
                Some(Action::Balance(_)) => panic!("{name}: this configuration does not balance"),
                Some(Action::Broadcast(_)) => {
                    assert_eq!(verdict, XDP_REDIRECT, "{name}: broadcast");
                    assert!(!rec.copies.is_empty(), "{name}");
                    // copies are rewritten by the egress program, not here
                    assert_eq!(out, f, "{name}: unchanged at ingress");
                }
            }
        }
        let kernel = same_counters(&plan, &dp, &engine);
        let rx = &kernel.interfaces["mirror"];
        assert!(
            rx.rx_packets > 0
                && rx.drop_reasons["malformed"] == 2
                && rx.drop_reasons["no_rule"] > 0
        );
        assert_eq!(
            kernel.interfaces["rspan"].tx_drop_reasons["mtu_exceeded"],
            2
        );
    })
    .join()
    .expect("test thread");
}

#[test]
fn reload_swaps_tables_and_keeps_counts() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(|| {
        let Setup {
            plan: _,
            tables,
            in0,
            mut dp,
        } = setup();
        let mode = dp
            .attach(None, &["in0".to_string()])
            .expect("attach to a veth");
        assert_eq!(mode, vxspan_xdp::Mode::Native);
        let f = frame(&[(0x8100, 30)], 100);
        for _ in 0..5 {
            assert_eq!(dp.run_frame(in0, &f, 1).unwrap().0, XDP_DROP);
        }
        // A second program on the same interface is refused with a clear message.
        let mut other = Datapath::load(tables.clone()).expect("load");
        let e = other.attach(None, &["in0".to_string()]).unwrap_err();
        assert!(
            e.contains("in0") && e.contains("already has an XDP program"),
            "{e}"
        );
        drop(other);
        // VLAN 30 now goes somewhere: the new tables apply, the old counts come back.
        let text =
            CONFIG.to_string() + "[[rules]]\nfrom = [\"mirror\"]\nvlan = [30]\nto = [\"plain\"]\n";
        let cfg = vxspan_config::parse(
            &text,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("v2.toml"),
        )
        .unwrap();
        let plan2 = Plan::compile(&cfg, &AcceptAll).unwrap();
        let old = dp
            .replace(Tables::build(&plan2, &ifx, false).unwrap())
            .expect("replace");
        assert_eq!(old.groups[0][30].dropped_packets, 5);
        assert_eq!(dp.run_frame(in0, &f, 1).unwrap().0, XDP_REDIRECT);
        assert_eq!(dp.counters().groups[0][30].packets, 1);
    })
    .join()
    .expect("test thread");
}

/// Differential: every frame of the 61 shared captures (Ethernet link type), and a truncated
/// and a bit-flipped copy of each, through the XDP program and through the engine. For frames
/// the kernel tier handles, verdicts agree, a single-output copy is byte-identical, and the
/// counters of both are equal at the end.
#[test]
fn program_agrees_with_the_engine_on_every_shared_capture() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(move || {
        let Setup {
            plan,
            tables,
            in0,
            mut dp,
        } = setup();
        let mut engine = Engine::new(Arc::new(plan.clone()));
        let mut checked = 0u64;
        for (path, variants) in common::shared_variants() {
            for frame in variants {
                let (verdict, out, _) = dp.run_frame(in0, &frame, 1).expect("test run");
                let action = action_of(&tables, &frame).unwrap_or(Action::Drop);
                if action == Action::Userspace {
                    assert_eq!(verdict, XDP_PASS, "{}", path.display());
                    continue;
                }
                let rec = reference(&mut engine, &frame);
                let want = if rec.copies.is_empty() {
                    XDP_DROP
                } else {
                    XDP_REDIRECT
                };
                assert_eq!(verdict, want, "{}: {frame:02x?}", path.display());
                if let (Action::Redirect(_), [(_, copy)]) = (action, &rec.copies[..]) {
                    assert_eq!(&out, copy, "{}: rewritten frame", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked > 3000, "only {checked} frames checked");
        same_counters(&plan, &dp, &engine);
        eprintln!("{checked} frames: verdicts, copies and counters agree");
    })
    .join()
    .expect("test thread");
}
