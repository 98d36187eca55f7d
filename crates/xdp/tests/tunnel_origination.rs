//! Tunnel origination in the XDP program against vxspan-core's `encapsulate`: ERSPAN II, ERSPAN
//! III and GRE (with a key) over IPv4, each with a VLAN action, truncation and an MTU with
//! `oversize = "truncate"` on some outputs. Every frame of the shared captures (and a
//! truncated copy of each) goes through BPF_PROG_TEST_RUN of the ingress program, whose group
//! table is pointed at one tunnel output at a time, and through the engine: the verdicts agree
//! and every copy is byte-identical, sequence numbers included (both count from 0 per output),
//! except the ERSPAN III timestamp, which the program takes from the real-time clock (checked
//! within 2 s of it) where the engine takes the frame's receive time. Needs root; skipped
//! otherwise.
//!
//! The daemon's next-hop thread (vxspan::nexthop) writes the next hops from the kernel's
//! tables; this test writes them itself.

use std::sync::Arc;

mod common;

use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};
use vxspan_xdp::maps::VxNexthop;
use vxspan_xdp::tables::{Action, Tables};
use vxspan_xdp::Datapath;

use common::{ifx, is_root, NoFilters, XDP_DROP, XDP_PASS, XDP_REDIRECT};

const CONFIG: &str = r#"
[inputs.mirror]
interface = "tin0"
[outputs.e2]
erspan = { remote = "198.18.7.2", source = "198.18.7.1", version = 2, session = 513, dscp = 10, ttl = 33, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
vlan = { push = 100 }
truncate = 100
[outputs.e2m]
erspan = { remote = "198.18.7.2", source = "198.18.7.1", version = 2, session = 1023, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
mtu = 500
oversize = "truncate"
[outputs.e3]
erspan = { remote = "198.18.7.2", source = "198.18.7.1", version = 3, session = 7, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
truncate = 128
[outputs.g]
gre = { remote = "198.18.7.2", source = "198.18.7.1", key = 4242, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
vlan = { pop = true }
mtu = 600
oversize = "truncate"
[outputs.gd]
gre = { remote = "198.18.7.2", source = "198.18.7.1", src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
mtu = 1000
[outputs.vx]
vxlan = { remote = "198.18.7.2", source = "198.18.7.1", vni = 5001, dscp = 8, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
vlan = { push = 300 }
truncate = 96
[outputs.gn]
geneve = { remote = "198.18.7.2", source = "198.18.7.1", vni = 16777215, port = 6082, src_mac = "02:00:00:00:07:01", dst_mac = "02:00:00:00:07:02" }
mtu = 400
oversize = "truncate"
[[rules]]
name = "all"
from = ["mirror"]
vlan = ["any"]
to = ["e2"]
"#;

#[derive(Default)]
struct Record {
    copies: Vec<(usize, Vec<u8>)>,
}

impl Sink for Record {
    fn transmit(&mut self, output: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.copies.push((output, f.data.to_vec()));
        Ok(())
    }
}

/// The tables of `plan` with every VID of its input sent to output `o` (plan_to's rule has
/// been repointed after placement, so the tables are pointed by hand too).
fn redirect_all(plan: &Plan, o: usize) -> Tables {
    let mut t = Tables::build(plan, &ifx, false).expect("tables");
    t.inputs[0].all_userspace = false;
    t.inputs[0].actions = (0..4096u16)
        .map(|v| (v, Action::Redirect(o as u32)))
        .collect();
    t
}

/// The plan of CONFIG with its one rule sending to output `o` instead.
fn plan_to(o: usize) -> Plan {
    let cfg = vxspan_config::parse(
        CONFIG,
        vxspan_config::Syntax::Toml,
        std::path::Path::new("tunnels.toml"),
    )
    .expect("config");
    let mut plan = Plan::compile(&cfg, &NoFilters).expect("plan");
    let mut to = vxspan_core::plan::OutSet::default();
    to.insert(o);
    plan.rules[0].to = to;
    plan
}

fn shared_frames() -> Vec<Vec<u8>> {
    common::shared_variants()
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect()
}

/// Where the ERSPAN III timestamp sits in a copy (outer Ethernet 14, IPv4 20, GRE 8, then the
/// first word of the ERSPAN header).
const TS_AT: usize = 14 + 20 + 8 + 4;

#[test]
fn xdp_originates_erspan_and_gre_as_the_engine_does() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let frames = shared_frames();
    assert!(frames.len() > 3000, "only {} frames", frames.len());
    std::thread::spawn(move || {
        common::veths(&[("tin0", "tin0p"), ("tun0", "tun0p")], 9000);
        let in0 = ifx("tin0").unwrap();
        let egress = ifx("tun0").unwrap();
        for o in 0..7 {
            let plan = plan_to(o);
            let tables = redirect_all(&plan, o);
            assert!(
                tables.outputs[o].tunnel.is_some(),
                "output {o} originated in XDP"
            );
            let mut dp = Datapath::load(tables).expect("load");
            let nh = VxNexthop {
                ifindex: egress,
                // The configured source wins over the route's.
                src4: [198, 18, 7, 99],
                smac: [2, 0, 0, 0, 7, 1],
                dmac: [2, 0, 0, 0, 7, 2],
                mtu: 0,
            };
            // Not resolved yet: handed to the userspace tier.
            let (v, _, _) = dp.run_frame(in0, &frames[0], 1).expect("test run");
            assert_eq!(v, 2, "an unresolved next hop passes the frame up");
            dp.set_nexthop(o as u32, Some(nh)).expect("nexthop");
            let mut engine = Engine::new(Arc::new(plan.clone()));
            let (mut copies, mut drops, mut up) = (0u64, 0u64, 0u64);
            for f in &frames {
                let (verdict, out, _) = dp.run_frame(in0, f, 1).expect("test run");
                if verdict == XDP_PASS && o >= 5 {
                    // A frame the program cannot key as the engine does (IPv6 extension
                    // headers, an IPv4 authentication header): the userspace tier sends it.
                    up += 1;
                    continue;
                }
                let mut rec = Record::default();
                engine.process(
                    0,
                    RxFrame {
                        data: f,
                        wire_len: f.len() as u32,
                        ts: 0,
                    },
                    &mut rec,
                );
                match &rec.copies[..] {
                    [] => {
                        assert_eq!(verdict, XDP_DROP, "output {o}: {f:02x?}");
                        drops += 1;
                    }
                    [(_, want)] => {
                        assert_eq!(verdict, XDP_REDIRECT, "output {o}: {f:02x?}");
                        let mut got = out.clone();
                        if o == 2 {
                            let ts = u32::from_be_bytes(got[TS_AT..TS_AT + 4].try_into().unwrap());
                            let now = (std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_nanos()
                                / 100) as u32;
                            assert!(
                                now.wrapping_sub(ts) < 20_000_000,
                                "timestamp {ts} vs now {now}"
                            );
                            got[TS_AT..TS_AT + 4].copy_from_slice(&want[TS_AT..TS_AT + 4]);
                        }
                        assert_eq!(&got, want, "output {o}: copy of {f:02x?}");
                        copies += 1;
                    }
                    more => panic!("{} copies", more.len()),
                }
            }
            assert!(copies > 1000, "output {o}: {copies} copies");
            assert!(up * 20 < copies, "output {o}: {up} frames handed up");
            let kernel =
                vxspan_core::engine::report(&plan, &Tables::counters(&plan, &dp.counters()));
            let reference = engine.report();
            assert_eq!(
                serde_json::to_value(&kernel.interfaces).unwrap(),
                serde_json::to_value(&reference.interfaces).unwrap(),
                "output {o}: counters"
            );
            eprintln!(
                "output {o}: {copies} copies byte-identical, {drops} drops, {up} to userspace, counters equal"
            );
        }
    })
    .join()
    .expect("test thread");
}

/// The GRE sequence number of an ERSPAN copy (outer Ethernet 14, IPv4 20, GRE flags 4).
fn seq_of(copy: &[u8]) -> u32 {
    u32::from_be_bytes(copy[38..42].try_into().unwrap())
}

/// Both tiers take an output's ERSPAN numbers from one counter, which a reload keeps: frames
/// alternating between the XDP program and a worker's engine, across a table swap that
/// renumbers the outputs, are numbered 0..N-1, each once. The next hop's MTU bounds copies.
#[test]
fn tiers_and_reloads_share_erspan_sequences() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(move || {
        common::veths(&[("tin0", "tin0p"), ("tun0", "tun0p")], 9000);
        let in0 = ifx("tin0").unwrap();
        let plan = plan_to(0);
        let mut dp = Datapath::load(redirect_all(&plan, 0)).expect("load");
        let mut nh = VxNexthop {
            ifindex: ifx("tun0").unwrap(),
            src4: [198, 18, 7, 1],
            smac: [2, 0, 0, 0, 7, 1],
            dmac: [2, 0, 0, 0, 7, 2],
            mtu: 0,
        };
        dp.set_nexthop(0, Some(nh)).expect("nexthop");
        let cells = |dp: &Datapath, plan: &Plan| {
            let sh = dp.shared();
            let sh = sh.lock().unwrap();
            plan.outputs
                .iter()
                .map(|o| {
                    sh.slot_of(&o.name)
                        .and_then(|s| sh.seq_cell(s))
                        .map(|c| Arc::new(c) as Arc<dyn vxspan_core::encap::SequenceCell>)
                })
                .collect::<Vec<_>>()
        };
        let mut engine = Engine::new(Arc::new(plan.clone()));
        let c = cells(&dp, &plan);
        engine.share_sequences(|o, _| c[o].clone());
        let frame: Vec<u8> = {
            let mut f = vec![0u8; 200];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f
        };
        let mut seen = Vec::new();
        let mut run = |dp: &mut Datapath, engine: &mut Engine, i: usize| {
            if i.is_multiple_of(3) {
                let mut rec = Record::default();
                let rx = RxFrame {
                    data: &frame,
                    wire_len: frame.len() as u32,
                    ts: 0,
                };
                engine.process(0, rx, &mut rec);
                seen.push(seq_of(&rec.copies[0].1));
            } else {
                let (v, out, _) = dp.run_frame(in0, &frame, 1).expect("test run");
                assert_eq!(v, XDP_REDIRECT);
                seen.push(seq_of(&out));
            }
        };
        for i in 0..300 {
            run(&mut dp, &mut engine, i);
        }
        // A reload whose plan puts another output first: e2 is output 1 now, and keeps its
        // slot (and its sequence) by name.
        let mut reloaded = vxspan_config::parse(
            CONFIG,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("tunnels.toml"),
        )
        .expect("config");
        reloaded.outputs.rotate_left(1);
        let e2 = reloaded
            .outputs
            .iter()
            .position(|o| o.name == "e2")
            .unwrap();
        reloaded.rules[0].to = vec![e2];
        let plan2 = Plan::compile(&reloaded, &NoFilters).expect("plan");
        let p = Datapath::prepare(redirect_all(&plan2, e2), &dp.links_key(), &dp.shared())
            .expect("prepare");
        dp.commit(p).expect("commit");
        let mut engine = Engine::new(Arc::new(plan2.clone()));
        let c = cells(&dp, &plan2);
        engine.share_sequences(|o, _| c[o].clone());
        for i in 300..600 {
            run(&mut dp, &mut engine, i);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<u32>>(), "each number once");

        // The route's MTU bounds the outer packet as `mtu` does (e2 does not truncate past
        // its cut to 100 bytes: a 60-byte MTU leaves no room, the copy is dropped).
        nh.mtu = 60;
        dp.set_nexthop(e2 as u32, Some(nh)).expect("nexthop");
        let (v, _, _) = dp.run_frame(in0, &frame, 1).expect("test run");
        assert_eq!(v, XDP_DROP, "over the route's MTU");
        let raw = dp.counters();
        let r = vxspan_core::engine::report(&plan2, &Tables::counters(&plan2, &raw));
        let dropped = serde_json::to_value(&r.interfaces["e2"]).unwrap();
        assert_eq!(dropped["tx_drop_reasons"]["mtu_exceeded"], 1, "{dropped}");
    })
    .join()
    .expect("test thread");
}
