//! `sample = N` in the kernel tier: the XDP program and the userspace tier's engine keep exactly
//! 1 in N of a rule's frames between them (one shared count), across a reload, and the two
//! tiers' counters add up to what one engine counts for the same frames; `mode = "flow"` keeps
//! in the XDP program exactly the frames the engine keeps. Needs root (the
//! program runs through BPF_PROG_TEST_RUN); skipped otherwise.

use std::sync::Arc;

use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};
use vxspan_xdp::tables::Tables;
use vxspan_xdp::{Action, Datapath};

mod common;

use common::{ifx, is_root, NoFilters, XDP_DROP, XDP_PASS, XDP_REDIRECT};

const CONFIG: &str = r#"
[inputs.mirror]
interface = "sin0"
[outputs.tool]
interface = "sout0"
[outputs.other]
interface = "sout0"
[[rules]]
name = "one-in-three"
from = "mirror"
vlan = 10
sample = 3
to = "tool"
[[rules]]
name = "flows"
from = "mirror"
vlan = 20
sample = { one_in = 4, mode = "flow" }
to = "tool"
[[rules]]
name = "shared-vlans-a"
from = "mirror"
vlan = 30
sample = 2
to = "tool"
[[rules]]
name = "shared-vlans-b"
from = "mirror"
vlan = 30
to = "other"
"#;

#[derive(Default)]
struct Count(u64);

impl Sink for Count {
    fn transmit(&mut self, _: usize, _: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0 += 1;
        Ok(())
    }
}

fn frame(vid: u8, i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 80];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 1]);
    f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, vid]);
    f[16..18].copy_from_slice(&[0x08, 0x00]);
    f[18] = 0x45;
    f[20..22].copy_from_slice(&62u16.to_be_bytes());
    f[26] = 64;
    f[27] = 17;
    f[30..34].copy_from_slice(&[198, 18, 9, 1]);
    f[34..38].copy_from_slice(&[198, 18, 9, 2]);
    f[46..50].copy_from_slice(&i.to_be_bytes());
    f
}

fn plan() -> Plan {
    let cfg = vxspan_config::parse(
        CONFIG,
        vxspan_config::Syntax::Toml,
        std::path::Path::new("sampling.toml"),
    )
    .expect("config");
    Plan::compile(&cfg, &NoFilters).expect("plan")
}

#[test]
fn placement_says_which_samples_run_in_the_kernel() {
    let plan = plan();
    let g = &plan.inputs[0].groups;
    let why = |r: &str| {
        let i = plan.rules.iter().position(|x| x.name == r).unwrap();
        g.iter().find(|g| g.rules.contains(&i)).unwrap()
    };
    assert_eq!(why("one-in-three").tier, vxspan_core::Tier::Xdp);
    // The XDP program hashes flows as the engine does (bpf/flowhash.h).
    assert_eq!(why("flows").tier, vxspan_core::Tier::Xdp);
    let shared = why("shared-vlans-a");
    assert_eq!(shared.tier, vxspan_core::Tier::Userspace);
    assert!(shared.why.contains("shares its VLANs"), "{}", shared.why);
}

#[test]
fn tiers_share_one_count_per_sampling_rule() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(move || {
        common::veths(&[("sin0", "sin0p"), ("sout0", "sout0p")], 1500);
        let in0 = ifx("sin0").unwrap();
        let plan = plan();
        let tables = Tables::build(&plan, &ifx, false).expect("tables");
        assert!(tables.inputs[0]
            .actions
            .iter()
            .any(|&(v, a)| v == 10 && matches!(a, Action::Redirect(_))));
        let mut dp = Datapath::load(tables).expect("load");
        let with_cells = |dp: &Datapath, plan: &Plan| {
            let sh = dp.shared();
            let sh = sh.lock().unwrap();
            let cells: Vec<_> = plan
                .rules
                .iter()
                .map(|r| {
                    sh.sample_cell(&r.name)
                        .map(|c| Arc::new(c) as Arc<dyn vxspan_core::encap::SharedCount>)
                })
                .collect();
            let mut e = Engine::new(Arc::new(plan.clone()));
            e.share_samples(|r, _| cells[r].clone());
            e
        };
        let mut engine = with_cells(&dp, &plan);
        let mut reference = Engine::new(Arc::new(plan.clone()));
        let (mut kept, mut sent) = (0u64, 0u64);
        let n = 3000u32;
        for i in 0..n {
            if i == n / 2 {
                // A reload keeps the rule's count (its slot belongs to the rule's name).
                let t = Tables::build(&plan, &ifx, false).expect("tables");
                let p = Datapath::prepare(t, &dp.links_key(), &dp.shared()).expect("prepare");
                let old = dp.commit(p).expect("commit");
                std::thread::sleep(vxspan_xdp::loader::RETIRE_AFTER);
                let raw = old.counters();
                let r = vxspan_core::engine::report(&plan, &Tables::counters(&plan, &raw));
                sent += r.rules[0].matched_packets;
                kept += r.rules[0].forwarded_packets;
            }
            let f = frame(10, i);
            let rx = RxFrame {
                data: &f,
                wire_len: f.len() as u32,
                ts: u64::from(i) * 1000,
            };
            reference.process(0, rx, &mut Count::default());
            let was_kept = if i % 4 == 0 {
                let mut c = Count::default();
                engine.process(0, rx, &mut c);
                c.0 == 1
            } else {
                let (v, _, _) = dp.run_frame(in0, &f, 1).expect("test run");
                assert!(v == XDP_REDIRECT || v == XDP_DROP, "verdict {v}");
                v == XDP_REDIRECT
            };
            // One count between the tiers: the rule's 0th, 3rd, 6th... frame is kept,
            // whichever tier sees it.
            assert_eq!(was_kept, i % 3 == 0, "frame {i}");
        }
        let raw = dp.counters();
        let kernel = vxspan_core::engine::report(&plan, &Tables::counters(&plan, &raw));
        let user = engine.report();
        sent += kernel.rules[0].matched_packets + user.rules[0].matched_packets;
        kept += kernel.rules[0].forwarded_packets + user.rules[0].forwarded_packets;
        assert_eq!(sent, u64::from(n));
        assert_eq!(
            kept,
            u64::from(n).div_ceil(3),
            "exactly 1 in 3 between the tiers"
        );
        // One engine seeing every frame keeps the same number.
        let r = reference.report();
        assert_eq!(r.rules[0].forwarded_packets, u64::from(n).div_ceil(3));
        assert_eq!(
            r.rules[0].sampled_out_packets,
            u64::from(n) - u64::from(n).div_ceil(3)
        );
        let k = &kernel.interfaces["mirror"];
        let k = serde_json::to_value(k).unwrap();
        assert!(
            k["drop_reasons"]["sampled_out"].as_u64().unwrap() > 0,
            "{k}"
        );
        assert_eq!(
            kernel.rules[0].matched_packets,
            kernel.rules[0].forwarded_packets + kernel.rules[0].sampled_out_packets
        );
    })
    .join()
    .expect("test thread");
}

const FLOWS: &str = r#"
[inputs.mirror]
interface = "fin0"
[outputs.tool]
interface = "fout0"
[[rules]]
name = "flows"
from = "mirror"
vlan = ["any"]
sample = { one_in = 4, mode = "flow" }
to = "tool"
"#;

/// Flow sampling decided in the kernel tier: every frame of the shared captures (and their
/// variants) and 4,000 UDP flows in both directions, through the XDP program and through the
/// engine, is kept by both or by neither. Frames the program cannot key as the engine does
/// (IPv6 extension headers, an IPv4 authentication header) go to userspace, where the engine
/// decides; they are few.
#[test]
fn flow_sampling_in_xdp_keeps_the_engines_flows() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut frames = common::shared_frames();
    for i in 0..2000u32 {
        let mut f = frame(20, i);
        f[38..40].copy_from_slice(&(1024 + i as u16).to_be_bytes());
        f[40..42].copy_from_slice(&53u16.to_be_bytes());
        let mut back = f.clone();
        back[30..34].copy_from_slice(&f[34..38]);
        back[34..38].copy_from_slice(&f[30..34]);
        back[38..40].copy_from_slice(&f[40..42]);
        back[40..42].copy_from_slice(&f[38..40]);
        frames.push(f);
        frames.push(back);
    }
    std::thread::spawn(move || {
        common::veths(&[("fin0", "fin0p"), ("fout0", "fout0p")], 9000);
        let in0 = ifx("fin0").unwrap();
        let cfg = vxspan_config::parse(
            FLOWS,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("flows.toml"),
        )
        .expect("config");
        let plan = Plan::compile(&cfg, &NoFilters).expect("plan");
        let tables = Tables::build(&plan, &ifx, false).expect("tables");
        assert!(!tables.inputs[0].flow_samples.is_empty());
        let mut dp = Datapath::load(tables).expect("load");
        let mut engine = Engine::new(Arc::new(plan.clone()));
        let (mut kept, mut dropped, mut up) = (0u64, 0u64, 0u64);
        for f in &frames {
            let (v, _, _) = dp.run_frame(in0, f, 1).expect("test run");
            let mut c = Count::default();
            engine.process(
                0,
                RxFrame {
                    data: f,
                    wire_len: f.len() as u32,
                    ts: 0,
                },
                &mut c,
            );
            match v {
                XDP_PASS => up += 1,
                XDP_REDIRECT => {
                    assert_eq!(c.0, 1, "kept by XDP only: {f:02x?}");
                    kept += 1;
                }
                XDP_DROP => {
                    assert_eq!(c.0, 0, "kept by the engine only: {f:02x?}");
                    dropped += 1;
                }
                v => panic!("verdict {v}"),
            }
        }
        eprintln!("{kept} kept, {dropped} dropped by both; {up} to userspace");
        assert!(
            kept > 500 && dropped > 3 * kept / 2,
            "{kept} kept, {dropped} dropped"
        );
        assert!(up * 50 < kept + dropped, "{up} handed up");
    })
    .join()
    .expect("test thread");
}
