//! `to = { balance = [...] }` in the kernel tier: every frame of the shared captures (and their
//! variants) and 4,000 UDP flows in both directions, through the XDP program (BPF_PROG_TEST_RUN)
//! and through the engine, goes to the same output, rewritten to the same bytes, with the same
//! counters. With one output's interface gone, only that output's flows move, to the outputs
//! the engine moves them to. Needs root; skipped otherwise.

use std::sync::Arc;

use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};
use vxspan_xdp::tables::Tables;
use vxspan_xdp::{Action, Datapath};

mod common;

use common::{ifx, is_root, NoFilters, XDP_DROP, XDP_PASS, XDP_REDIRECT};

const CONFIG: &str = r#"
[inputs.mirror]
interface = "bin0"
[outputs.ids1]
interface = "bo1"
[outputs.ids2]
interface = "bo2"
vlan = { push = 300 }
[outputs.ids3]
interface = "bo3"
truncate = 128
[[rules]]
name = "tools"
from = "mirror"
vlan = ["any"]
to = { balance = ["ids1", "ids2", "ids3"], weights = [1, 1, 2] }
"#;

/// The engine's copies: (output, bytes).
#[derive(Default)]
struct Copies(Vec<(usize, Vec<u8>)>);

impl Sink for Copies {
    fn transmit(&mut self, output: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0.push((output, f.data.to_vec()));
        Ok(())
    }
}

fn udp(i: u32, back: bool) -> Vec<u8> {
    let mut f = vec![0u8; 80];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&66u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    let (a, b) = ([198, 18, (i >> 8) as u8, i as u8], [198, 19, 0, 1]);
    let (pa, pb) = ((1024 + i as u16).to_be_bytes(), 53u16.to_be_bytes());
    let (src, dst, sp, dp) = if back { (b, a, pb, pa) } else { (a, b, pa, pb) };
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sp);
    f[36..38].copy_from_slice(&dp);
    f
}

/// Which output the program sent the frame to: the one whose tx count moved.
fn sent_to(before: &[u64], dp: &Datapath) -> (Vec<u64>, Option<usize>) {
    let now: Vec<u64> = dp.counters().outputs.iter().map(|o| o.tx_packets).collect();
    let moved = now.iter().zip(before).position(|(a, b)| a != b);
    if let Some(o) = moved {
        assert_eq!(now[o], before[o] + 1);
    }
    (now, moved)
}

#[test]
fn balance_in_xdp_chooses_the_engines_output() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut frames = common::shared_frames();
    let flows = 2000u32;
    for i in 0..flows {
        frames.push(udp(i, false));
        frames.push(udp(i, true));
    }
    std::thread::spawn(move || {
        common::veths(
            &[
                ("bin0", "bin0p"),
                ("bo1", "bo1p"),
                ("bo2", "bo2p"),
                ("bo3", "bo3p"),
            ],
            9000,
        );
        let in0 = ifx("bin0").unwrap();
        let cfg = vxspan_config::parse(
            CONFIG,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("balance.toml"),
        )
        .expect("config");
        let plan = Plan::compile(&cfg, &NoFilters).expect("plan");
        let tables = Tables::build(&plan, &ifx, false).expect("tables");
        assert!(
            tables.inputs[0]
                .actions
                .iter()
                .all(|(_, a)| matches!(a, Action::Balance(0))),
            "{:?}",
            tables.inputs[0].placement
        );
        let mut dp = Datapath::load(tables).expect("load");
        let mut engine = Engine::new(Arc::new(plan.clone()));
        let mut tx: Vec<u64> = vec![0; plan.outputs.len()];
        let mut per_output = [0u64; 3];
        let (mut dropped, mut up) = (0u64, 0u64);
        // The outputs of each synthetic flow, both directions.
        let mut chosen = Vec::new();
        for f in &frames {
            let (v, out, _) = dp.run_frame(in0, f, 1).expect("test run");
            if v == XDP_PASS {
                // Not keyed as the engine keys it here (IPv6 extension headers, an IPv4
                // authentication header): the userspace tier decides.
                up += 1;
                continue;
            }
            let mut c = Copies::default();
            engine.process(
                0,
                RxFrame {
                    data: f,
                    wire_len: f.len() as u32,
                    ts: 0,
                },
                &mut c,
            );
            let moved;
            (tx, moved) = sent_to(&tx, &dp);
            match v {
                XDP_REDIRECT => {
                    assert_eq!(c.0.len(), 1, "sent by XDP only: {f:02x?}");
                    let o = moved.expect("a redirect counts its output");
                    assert_eq!(c.0[0].0, o, "output of {f:02x?}");
                    assert_eq!(out, c.0[0].1, "the copy as rewritten: {f:02x?}");
                    per_output[o] += 1;
                    chosen.push(o);
                }
                XDP_DROP => {
                    assert!(c.0.is_empty(), "sent by the engine only: {f:02x?}");
                    dropped += 1;
                }
                v => panic!("verdict {v}"),
            }
        }
        eprintln!("per output {per_output:?}; {dropped} dropped (malformed), {up} to userspace");
        assert!(up * 50 < frames.len() as u64, "{up} handed up");
        // Weights 1:1:2 over the synthetic flows; both directions of a flow alike.
        let synth = &chosen[chosen.len() - 2 * flows as usize..];
        let mut share = [0u32; 3];
        for pair in synth.chunks(2) {
            assert_eq!(pair[0], pair[1], "the two directions of a flow part");
            share[pair[0]] += 1;
        }
        for (o, want) in [500.0, 500.0, 1000.0].iter().enumerate() {
            assert!((f64::from(share[o]) / want - 1.0).abs() < 0.15, "{share:?}");
        }
        // The kernel's counters are the engine's.
        let kernel = vxspan_core::engine::report(&plan, &Tables::counters(&plan, &dp.counters()));
        let user = engine.report();
        assert_eq!(
            serde_json::to_value(&kernel).unwrap(),
            serde_json::to_value(&user).unwrap()
        );

        // ids2's interface goes away (the kernel takes it out of the devmap): its flows, and
        // only those, move, where the engine moves them.
        vxspan_io::netdev::Rtnl::open()
            .unwrap()
            .del_link("bo2")
            .expect("delete bo2");
        engine.set_output_up(1, false);
        dp.set_output_up(1, false).expect("out_up");
        let mut moved = 0;
        for (i, before) in (0..flows).zip(synth.chunks(2).map(|p| p[0])) {
            let f = udp(i, false);
            let (v, _, _) = dp.run_frame(in0, &f, 1).expect("test run");
            assert_eq!(v, XDP_REDIRECT);
            let mut c = Copies::default();
            engine.process(
                0,
                RxFrame {
                    data: &f,
                    wire_len: f.len() as u32,
                    ts: 0,
                },
                &mut c,
            );
            let o;
            (tx, o) = sent_to(&tx, &dp);
            let o = o.expect("counted");
            assert_eq!(c.0[0].0, o, "flow {i}");
            assert_ne!(o, 1);
            if before != 1 {
                assert_eq!(o, before, "flow {i} of a remaining output moved");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, share[1]);
    })
    .join()
    .expect("test thread");
}
