//! `rate_limit` in the kernel tier: the XDP program's token bucket passes a burst's worth of
//! copies and drops the rest as `rate_limited`, counted as the engine counts them; an output
//! also reached from the userspace tier keeps its one bucket there. Needs root (the program runs
//! through BPF_PROG_TEST_RUN); skipped otherwise.

use std::time::Instant;

use vxspan_core::Plan;
use vxspan_xdp::tables::Tables;
use vxspan_xdp::{Action, Datapath};

mod common;

use common::{ifx, is_root, AcceptAll, XDP_DROP, XDP_REDIRECT};

const CONFIG: &str = r#"
[inputs.mirror]
interface = "rin0"
[outputs.slow]
interface = "rout0"
rate_limit = 8000
rate_burst = 1000
vlan = { push = 7 }
[outputs.shared]
interface = "rout1"
rate_limit = "1Mbit"
[outputs.plain]
interface = "rout1"
[[rules]]
name = "limited"
from = "mirror"
vlan = 10
to = "slow"
[[rules]]
name = "kernel-side"
from = "mirror"
vlan = 20
to = "shared"
[[rules]]
name = "filtered"
from = "mirror"
vlan = 30
filter = "tcp"
to = ["shared", "plain"]
"#;

fn frame(vid: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 1]);
    f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, vid]);
    f[16..18].copy_from_slice(&[0x08, 0x06]);
    f
}

#[test]
fn the_kernel_tiers_bucket_passes_its_burst_and_counts_the_rest() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(|| {
        common::veths(
            &[("rin0", "rin0p"), ("rout0", "rout0p"), ("rout1", "rout1p")],
            1500,
        );
        let in0 = ifx("rin0").unwrap();
        let cfg = vxspan_config::parse(
            CONFIG,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("ratelimit.toml"),
        )
        .expect("config");
        let plan = Plan::compile(&cfg, &AcceptAll).expect("plan");
        let tables = Tables::build(&plan, &ifx, false).expect("tables");
        let action = |vid: u16| {
            tables.inputs[0]
                .actions
                .iter()
                .find(|(v, _)| *v == vid)
                .map(|(_, a)| *a)
        };
        assert_eq!(action(10), Some(Action::Redirect(0)));
        // `shared` is reached by a filtered (userspace) group: its bucket is there, and the
        // group that would send to it from the kernel goes there too.
        assert_eq!(action(20), Some(Action::Userspace));
        let why = &tables.inputs[0].placement;
        assert!(
            why.iter().any(|(_, w)| w
                .contains("output shared is rate-limited and reached from the userspace tier")),
            "{why:?}"
        );
        let mut dp = Datapath::load(tables).expect("load");
        // 100-byte frames, 104 with the pushed tag: the 1,000-byte burst passes 9 of them; at
        // 1,000 bytes/s, the bucket refills 104 bytes in 104 ms.
        let f = frame(10, 100);
        let start = Instant::now();
        let mut passed = 0u64;
        let n = 40u64;
        for _ in 0..n {
            let (v, out, _) = dp.run_frame(in0, &f, 1).expect("test run");
            match v {
                XDP_REDIRECT => {
                    assert_eq!(out.len(), 104);
                    passed += 1;
                }
                XDP_DROP => {}
                v => panic!("verdict {v}"),
            }
        }
        let refill = (start.elapsed().as_secs_f64() * 1000.0 / 104.0).ceil() as u64;
        assert!(
            (9..=9 + refill).contains(&passed),
            "{passed} passed (refill {refill})"
        );
        let raw = dp.counters();
        let r = vxspan_core::engine::report(&plan, &Tables::counters(&plan, &raw));
        let slow = &r.interfaces["slow"];
        assert_eq!(slow.tx_packets, passed);
        assert_eq!(slow.tx_bytes, passed * 104);
        assert_eq!(slow.tx_drop_reasons["rate_limited"], n - passed);
        assert_eq!(slow.tx_dropped_bytes, (n - passed) * 104);
        assert_eq!(r.rules[0].forwarded_packets, n);
    })
    .join()
    .expect("test thread");
}
