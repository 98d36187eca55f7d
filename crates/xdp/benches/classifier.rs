//! Micro-benchmark of the XDP classifier through BPF_PROG_TEST_RUN: the kernel runs the program
//! a million times per frame and reports the mean time per run, beside the XDP_PASS stub of
//! bpf/blast.c measured in the same run on the same frames. Needs root (prints a note otherwise).
//! `cargo bench -p vxspan-xdp --bench classifier`

use vxspan_core::{FilterCompiler, Plan};
use vxspan_xdp::blast::Blaster;
use vxspan_xdp::{Datapath, Tables};

struct NoFilters;
impl FilterCompiler for NoFilters {
    fn compile(&self, e: &str) -> Result<Vec<vxspan_core::bpf::BpfInsn>, String> {
        Err(format!("no filters here: {e}"))
    }
}

fn frame(tags: &[(u16, u16)], len: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.resize(len, 0x5a);
    f
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("classifier benchmark: needs root (BPF_PROG_TEST_RUN); skipped");
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let repeat = 1_000_000;
    std::thread::spawn(move || {
        vxspan_io::netdev::unshare_network().expect("unshare");
        let mut rtnl = vxspan_io::netdev::Rtnl::open().expect("rtnetlink");
        for (a, b) in [
            ("eth0", "p0"),
            ("eth1", "p1"),
            ("eth2", "p2"),
            ("eth3", "p3"),
        ] {
            rtnl.add_veth(a, b, 1500).expect("veth");
        }
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/vxspan.json"
        ))
        .expect("examples/vxspan.json");
        let cfg = vxspan_config::parse(
            &text,
            vxspan_config::Syntax::Json,
            std::path::Path::new("vxspan.json"),
        )
        .expect("config");
        let plan = Plan::compile(&cfg, &NoFilters).expect("plan");
        let ifx = |n: &str| vxspan_xdp::loader::ifindex(n).ok();
        let mut dp = Datapath::load(Tables::build(&plan, &ifx, false).unwrap()).unwrap();
        let mut stub = Blaster::open("p0").unwrap();
        let eth1 = ifx("eth1").unwrap();
        println!("XDP classifier (VxSPAN example), BPF_PROG_TEST_RUN x {repeat}, ns per frame");
        println!("{:<28} {:>10} {:>16}", "frame", "vxspan", "XDP_PASS stub");
        for (name, f) in [
            ("untagged, 64 B (drop)", frame(&[], 64)),
            ("vlan 10, 64 B (redirect)", frame(&[(0x8100, 10)], 64)),
            (
                "QinQ 11/5, 128 B (redirect)",
                frame(&[(0x88a8, 11), (0x8100, 5)], 128),
            ),
            ("vlan 99, 64 B (no rule)", frame(&[(0x8100, 99)], 64)),
            ("vlan 12, 1500 B (redirect)", frame(&[(0x8100, 12)], 1500)),
        ] {
            let (_, _, t) = dp.run_frame(eth1, &f, repeat).expect("test run");
            let base = stub.pass_ns(&f, repeat).expect("test run");
            println!(
                "{name:<28} {:>10.1} {:>16.1}",
                t.as_nanos() as f64,
                base.as_nanos() as f64
            );
        }
    })
    .join()
    .unwrap();
}
