//! The XDP datapath live, in a network namespace: VxSPAN's example configuration in native and
//! generic mode forwards exactly the golden frames with no frame reaching the userspace tier,
//! counters equal the veths' own to the packet (also with two CPUs blasting at once), and
//! rules-only reloads swap the program without losing a frame.

mod common;

use common::daemon::{assert_example_accounting, counter, frames_in, sorted, Blast, Vxspan};
use common::live::{blast, blast_report, pass_object, xdp_pass_on};
use common::netns::{wait_for, Netns};
use common::{read_capture, root, scratch};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The namespace of these tests: eth0..eth3 (vxspan's) and their peers p0..p3; in native mode
/// the output peers run the pass program.
fn topology_mtu(tag: &str, dir: &Path, native: bool, mtu: u32) -> Netns {
    let ns = Netns::new(tag);
    for i in 0..4 {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), mtu);
    }
    if native {
        let obj = pass_object(dir);
        for p in ["p2", "p3"] {
            xdp_pass_on(&ns, p, &obj);
        }
    }
    ns
}

/// [`topology_mtu`] with jumbo frames (MTU 9500).
fn topology(tag: &str, dir: &Path, native: bool) -> Netns {
    topology_mtu(tag, dir, native, 9500)
}

/// The usual start of these tests: a scratch directory, the topology, and VxSPAN's example
/// configuration copied in; None when live tests are skipped.
fn example_lab(name: &str, tag: &str, native: bool, mtu: u32) -> Option<(PathBuf, Netns, PathBuf)> {
    if common::netns::skipped() {
        return None;
    }
    let dir = scratch(name);
    let ns = topology_mtu(tag, &dir, native, mtu);
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    Some((dir, ns, config))
}

fn status(vx: &Vxspan) -> serde_json::Value {
    let o = vx.cli(&["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// VxSPAN's example through `--datapath DATAPATH --xdp-mode MODE`: xdp runs every group in the
/// kernel, afxdp every group in userspace, fed by AF_XDP sockets.
fn forward_vxspan_example(datapath: &str, mode: &str) {
    // AF_XDP frames hold 1,792 bytes: the afxdp datapath refuses jumbo MTUs (tested below).
    let mtu = if datapath == "afxdp" { 1500 } else { 9500 };
    let Some((dir, ns, config)) = example_lab(
        &format!("live-{datapath}-{mode}"),
        &format!("{}{}", &datapath[..2], &mode[..3]),
        mode == "native",
        mtu,
    ) else {
        return;
    };
    // afxdp sends through AF_XDP TX rings by default (copy mode: veth has no zero-copy); the
    // generic run takes `--transmit afpacket` instead, so both are checked.
    let mut args = vec!["--datapath", datapath, "--xdp-mode", mode];
    let ring_tx = datapath == "afxdp" && mode == "native";
    if datapath == "afxdp" && !ring_tx {
        args.extend(["--transmit", "afpacket"]);
    }
    let vx = Vxspan::start_with(&ns, &config, &dir, &args);
    let st = status(&vx);
    assert_eq!(st["datapath"], format!("{datapath} ({mode})"), "{st}");
    let tier = if datapath == "xdp" {
        "xdp"
    } else {
        "userspace"
    };
    for g in st["groups"].as_array().unwrap() {
        assert_eq!(g["tier"], tier, "{g}");
    }
    // The accounting below holds through either.
    common::daemon::assert_outputs_transmit(&st, ring_tx);
    // What leaves p0 / p1 is what reaches eth0 / eth1: XDP sees every frame, before the stack.
    let caps: Vec<_> = ["p0", "p1", "p2", "p3"]
        .iter()
        .map(|p| ns.capture(p, &dir.join(format!("{p}.pcap"))))
        .collect();
    let base: Vec<u64> = ["p0", "p1"]
        .iter()
        .map(|p| ns.stat(p, "tx_packets"))
        .collect();
    let base_rx: Vec<u64> = ["p2", "p3"]
        .iter()
        .map(|p| ns.stat(p, "rx_packets"))
        .collect();
    let golden = root().join("tests/golden/vxspan-example");
    ns.replay_golden();
    let sent = [
        ns.stat("p0", "tx_packets") - base[0],
        ns.stat("p1", "tx_packets") - base[1],
    ];
    wait_for(Duration::from_secs(10), || {
        let s = vx.stats();
        counter(&s, "eth0", "rx_packets") == sent[0] && counter(&s, "eth1", "rx_packets") == sent[1]
    });
    let s = vx.stats();
    let _ = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        frames_in(&dir.join("p2.pcap")) >= counter(&s, "eth2", "tx_packets")
            && frames_in(&dir.join("p3.pcap")) >= counter(&s, "eth3", "tx_packets")
    });
    for c in caps {
        c.stop();
    }
    let st = status(&vx);
    let fin = vx.stop(&dir);

    for input in ["eth0", "eth1"] {
        let t = &st["tiers"][input];
        if datapath == "xdp" {
            // A VxSPAN-only configuration: nothing reaches the userspace tier, which does not
            // even open an AF_XDP socket.
            assert_eq!(t["userspace_rx_packets"], 0, "{st}");
            assert_eq!(t["afxdp_sockets"], 0, "{st}");
            assert_eq!(t["xdp_rx_packets"], counter(&fin, input, "rx_packets"));
        } else {
            // Every frame came up through the AF_XDP socket (tcpreplay is slow enough that
            // none overran it).
            assert_eq!(t["xdp_rx_packets"], 0, "{st}");
            assert_eq!(t["afxdp_sockets"], 1, "{st}");
            assert_eq!(
                t["afxdp_rx_packets"],
                counter(&fin, input, "rx_packets"),
                "{st}"
            );
        }
    }
    // The accounting, to the packet, against the veths' own counters.
    assert_example_accounting(&fin, &ns, sent, [base_rx[0], base_rx[1]]);

    // Exactly the golden frames, of those that were sent (tcpreplay skips runts).
    let mut sent_frames: Vec<Vec<u8>> = read_capture(&dir.join("p0.pcap"))
        .into_iter()
        .chain(read_capture(&dir.join("p1.pcap")))
        .map(|f| f.0)
        .collect();
    sent_frames.sort();
    for port in ["eth2", "eth3"] {
        let got: Vec<Vec<u8>> = read_capture(&dir.join(format!("p{}.pcap", &port[3..])))
            .into_iter()
            .map(|f| f.0)
            .collect();
        let want: Vec<Vec<u8>> = read_capture(&golden.join(format!("expected/{port}.pcap")))
            .into_iter()
            .map(|f| f.0)
            .filter(|f| sent_frames.binary_search(f).is_ok())
            .collect();
        assert!(!want.is_empty());
        // The far side's tcpdump sees what the veth delivered to its packet sockets: VLAN-tagged
        // runts are counted in the veth's rx_packets (compared above) but dropped by the
        // kernel's untagging before any socket. Those, and only those, may be missing.
        let got = sorted(got);
        let mut missing = Vec::new();
        let mut extra = got.clone();
        for f in &want {
            match extra.binary_search(f) {
                Ok(i) => {
                    extra.remove(i);
                }
                Err(_) => missing.push(f.clone()),
            }
        }
        assert!(
            extra.is_empty(),
            "{port}: {} frames not in the golden expectation",
            extra.len()
        );
        assert!(
            missing.len() <= 3
                && missing.iter().all(|f| f.len() < 64
                    && matches!(u16::from_be_bytes([f[12], f[13]]), 0x8100 | 0x88a8 | 0x9100)),
            "{port}: missing frames that are not tagged runts: {missing:02x?}"
        );
    }
}

#[test]
fn xdp_native_forwards_the_vxspan_example_exactly() {
    forward_vxspan_example("xdp", "native");
}

#[test]
fn xdp_generic_forwards_the_vxspan_example_exactly() {
    forward_vxspan_example("xdp", "generic");
}

#[test]
fn afxdp_native_forwards_the_vxspan_example_exactly() {
    forward_vxspan_example("afxdp", "native");
}

#[test]
fn afxdp_generic_forwards_the_vxspan_example_exactly() {
    forward_vxspan_example("afxdp", "generic");
}

/// A synthetic mix (vxspan gen, seed 1) in `dir`.
fn mix(dir: &Path, count: u64) -> PathBuf {
    let p = dir.join("mix.pcap");
    common::gen_mix(&p, count, 1);
    p
}

/// Two inputs blasted at once, one from each CPU, a million frames each: the per-CPU counters
/// lose nothing, and equal the veths' counters exactly.
#[test]
fn xdp_counters_are_exact_with_two_cpus_forwarding() {
    let Some((dir, ns, config)) = example_lab("live-xdp-cpus", "xcpu", true, 9500) else {
        return;
    };
    let pcap = mix(&dir, 2000);
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let tx0: Vec<u64> = ["p0", "p1"]
        .iter()
        .map(|p| ns.stat(p, "tx_packets"))
        .collect();
    let rx0: Vec<u64> = ["p2", "p3"]
        .iter()
        .map(|p| ns.stat(p, "rx_packets"))
        .collect();
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let a = blast(&ns, "p0", &pcap, 1_000_000, 0);
    let b = blast(&ns, "p1", &pcap, 1_000_000, 1 % ncpu);
    let (ra, rb) = (blast_report(a), blast_report(b));
    assert_eq!(ra["tx_dropped"], 0, "{ra}");
    assert_eq!(rb["tx_dropped"], 0, "{rb}");
    let sent = [
        ns.stat("p0", "tx_packets") - tx0[0],
        ns.stat("p1", "tx_packets") - tx0[1],
    ];
    assert!(sent[0] >= 1_000_000 && sent[1] >= 1_000_000, "{sent:?}");
    wait_for(Duration::from_secs(10), || {
        let s = vx.stats();
        counter(&s, "eth0", "rx_packets") == sent[0] && counter(&s, "eth1", "rx_packets") == sent[1]
    });
    let fin = vx.stop(&dir);
    assert_example_accounting(&fin, &ns, sent, [rx0[0], rx0[1]]);
    eprintln!(
        "blast: p0 {:.2} Mpps, p1 {:.2} Mpps",
        ra["mpps"].as_f64().unwrap(),
        rb["mpps"].as_f64().unwrap()
    );
}

/// 50 reloads during a blast (10 of them invalid files): rules-only reloads swap the XDP program (bpf_link_update) and lose
/// nothing; an invalid file changes nothing; the attachment stays throughout.
#[test]
fn xdp_reloads_during_a_blast_lose_nothing() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-xdp-reload");
    let ns = topology("xrl", &dir, true);
    let config = dir.join("reload.toml");
    // The same ports in both: a rules-only reload.
    let ports = "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth2\"\n[outputs.y]\ninterface = \"eth3\"\n";
    let a = format!("{ports}[[rules]]\nfrom = [\"in\"]\nto = [\"x\"]\n");
    let b = format!("{ports}[[rules]]\nfrom = [\"in\"]\nto = [\"y\"]\n");
    std::fs::write(&config, &a).unwrap();
    let pcap = mix(&dir, 500);
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let tx0 = ns.stat("p0", "tx_packets");
    let rx0: Vec<u64> = ["p2", "p3"]
        .iter()
        .map(|p| ns.stat(p, "rx_packets"))
        .collect();
    let mut child = blast(&ns, "p0", &pcap, 8_000_000, 0);
    let (mut ok, mut during) = (0, 0);
    for i in 0..50 {
        if child.try_wait().unwrap().is_none() {
            during += 1;
        }
        let text = match i % 5 {
            4 => "rules = 5",
            n if n % 2 == 0 => b.as_str(),
            _ => a.as_str(),
        };
        std::fs::write(&config, text).unwrap();
        let o = vx.cli(&["reload"]);
        if i % 5 == 4 {
            assert_eq!(o.status.code(), Some(2), "an invalid file is refused");
        } else {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("ports kept"),
                "{}",
                String::from_utf8_lossy(&o.stdout)
            );
            ok += 1;
        }
        let link = ns.exec_ok(&["ip", "link", "show", "eth0"]);
        assert!(String::from_utf8_lossy(&link.stdout).contains("prog/xdp"));
    }
    let r = blast_report(child);
    assert_eq!(r["tx_dropped"], 0, "{r}");
    let sent = ns.stat("p0", "tx_packets") - tx0;
    let _ = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        counter(&vx.stats(), "in", "rx_packets") == sent
    });
    let fin = vx.stop(&dir);
    assert_eq!(ok, 40);
    eprintln!("{during} of 50 reloads while the blast ran");
    assert!(
        during >= 10,
        "only {during} reloads happened during the blast"
    );
    // 'any' forwards everything, whichever plan ran: every frame sent was delivered.
    let delivered = ns.stat("p2", "rx_packets") - rx0[0] + ns.stat("p3", "rx_packets") - rx0[1];
    assert_eq!(counter(&fin, "in", "rx_packets"), sent);
    assert_eq!(counter(&fin, "in", "forwarded_packets"), sent);
    assert_eq!(delivered, sent);
    assert_eq!(
        counter(&fin, "x", "tx_packets") + counter(&fin, "y", "tx_packets"),
        delivered
    );
    assert!(counter(&fin, "x", "tx_packets") > 0 && counter(&fin, "y", "tx_packets") > 0);
}

/// An input whose MTU does not fit an AF_XDP frame: `--datapath afxdp` refuses it, naming it,
/// before it takes anything over; `--datapath xdp` takes it.
#[test]
fn afxdp_refuses_jumbo_inputs_clearly() {
    let Some((dir, ns, config)) = example_lab("live-afxdp-jumbo", "afj", false, 9500) else {
        return;
    };
    let o = ns.exec(&[
        env!("CARGO_BIN_EXE_vxspan"),
        "run",
        config.to_str().unwrap(),
        "--datapath",
        "afxdp",
        "--control",
        dir.join("c.sock").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("MTU 9500 of eth0 does not fit an AF_XDP frame"),
        "{err}"
    );
    assert!(!dir.join("c.sock").exists());
    let link = ns.exec_ok(&["ip", "link", "show", "eth0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "detached on the way out"
    );
}

/// One input, two groups: VLAN 10 forwards in the kernel, VLAN 20 has a filter and runs in
/// userspace, fed by AF_XDP. Each tier counts its own frames; together they are exact.
#[test]
fn xdp_and_afxdp_tiers_share_an_input() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-xdp-hybrid");
    let ns = topology_mtu("xhy", &dir, true, 1500);
    let config = dir.join("hybrid.toml");
    std::fs::write(
        &config,
        "[inputs.in]\ninterface = \"eth0\"\n[outputs.fast]\ninterface = \"eth2\"\n[outputs.slow]\ninterface = \"eth3\"\n\
         [[rules]]\nname = \"kernel\"\nfrom = [\"in\"]\nvlan = [10]\nto = [\"fast\"]\n\
         [[rules]]\nname = \"filtered\"\nfrom = [\"in\"]\nvlan = [20]\nfilter = \"vlan and udp\"\nto = [\"slow\"]\n",
    )
    .unwrap();
    let pcap = mix(&dir, 2000);
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let st = status(&vx);
    let tiers: Vec<(&str, &str)> = st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["vlan"].as_str().unwrap(), g["tier"].as_str().unwrap()))
        .collect();
    assert_eq!(tiers, vec![("10", "xdp"), ("20", "userspace")], "{st}");
    assert_eq!(st["tiers"]["in"]["afxdp_sockets"], 1, "{st}");
    let tx0 = ns.stat("p0", "tx_packets");
    let rx0 = [ns.stat("p2", "rx_packets"), ns.stat("p3", "rx_packets")];
    let r = blast_report(
        ns.cmd(&[
            env!("CARGO_BIN_EXE_vxspan"),
            "blast",
            "p0",
            pcap.to_str().unwrap(),
            "--count",
            "20000",
            "--rate",
            "40000",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap(),
    );
    assert_eq!(r["tx_dropped"], 0, "{r}");
    let sent = ns.stat("p0", "tx_packets") - tx0;
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "in", "rx_packets") == sent
    });
    let st = status(&vx);
    let s = vx.stats();
    let vlan = |v: &str, k: &str| s["vlans"]["in"][v][k].as_u64().unwrap_or(0);
    // What came up through AF_XDP is exactly VLAN 20's frames; the rest stayed in the kernel.
    assert_eq!(
        st["tiers"]["in"]["afxdp_rx_packets"],
        vlan("20", "packets"),
        "{st}"
    );
    assert_eq!(
        st["tiers"]["in"]["userspace_rx_packets"],
        vlan("20", "packets"),
        "{st}"
    );
    assert_eq!(
        st["tiers"]["in"]["xdp_to_userspace_packets"],
        vlan("20", "packets"),
        "{st}"
    );
    assert!(vlan("20", "packets") > 0 && vlan("10", "packets") > 0);
    assert_eq!(counter(&s, "in", "rx_packets"), sent);
    assert_eq!(
        counter(&s, "in", "rx_packets"),
        counter(&s, "in", "forwarded_packets") + counter(&s, "in", "dropped_packets")
    );
    assert_eq!(
        s["interfaces"]["in"]["drop_reasons"]["ring_overrun"], 0,
        "paced: no overrun"
    );
    let fin = vx.stop(&dir);
    assert_eq!(
        counter(&fin, "fast", "tx_packets"),
        ns.stat("p2", "rx_packets") - rx0[0]
    );
    assert_eq!(
        counter(&fin, "slow", "tx_packets"),
        ns.stat("p3", "rx_packets") - rx0[1]
    );
    assert_eq!(counter(&fin, "fast", "tx_packets"), vlan("10", "packets"));
    assert!(counter(&fin, "slow", "tx_packets") > 0);
}

/// More than one userspace worker can carry, through AF_XDP: nothing crashes, and what the
/// socket could not take is counted as `ring_overrun` (from XDP_STATISTICS), exactly.
#[test]
fn afxdp_overload_keeps_exact_accounting() {
    let Some((dir, ns, config)) = example_lab("live-afxdp-overload", "afo", true, 1500) else {
        return;
    };
    let pcap = mix(&dir, 1000);
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "afxdp", "--xdp-mode", "native"],
    );
    let tx0 = ns.stat("p1", "tx_packets");
    let r = blast_report(blast(&ns, "p1", &pcap, 500_000, 0));
    assert_eq!(r["tx_dropped"], 0, "{r}");
    let sent = ns.stat("p1", "tx_packets") - tx0;
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == sent
    });
    // Every frame the program handed up was read or counted as an overrun.
    let st = status(&vx);
    assert_eq!(
        st["tiers"]["eth1"]["xdp_to_userspace_packets"], sent,
        "{st}"
    );
    // The socket got every frame back after the overload: a paced replay is read whole. (A
    // frame that missed the fill ring once was lost to the socket for good, and after a blast
    // it could starve.)
    let overrun = |s: &serde_json::Value| {
        s["interfaces"]["eth1"]["drop_reasons"]["ring_overrun"]
            .as_u64()
            .unwrap()
    };
    let before = vx.stats();
    let _ = ns.replay_at("p1", 2000, &pcap).wait();
    let paced = ns.stat("p1", "tx_packets") - tx0 - sent;
    assert!(paced > 900, "{paced}");
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == sent + paced
    });
    assert_eq!(
        overrun(&vx.stats()),
        overrun(&before),
        "paced frames overran"
    );
    let sent = sent + paced;
    let fin = vx.stop(&dir);
    let overruns = fin["interfaces"]["eth1"]["drop_reasons"]["ring_overrun"]
        .as_u64()
        .unwrap();
    assert_eq!(counter(&fin, "eth1", "rx_packets"), sent);
    assert_eq!(
        counter(&fin, "eth1", "rx_packets"),
        counter(&fin, "eth1", "forwarded_packets") + counter(&fin, "eth1", "dropped_packets")
    );
    assert!(overruns > 0, "a blast at full speed overruns one worker");
    eprintln!("afxdp overload: {sent} sent, {overruns} counted as ring_overrun");
}

/// AF_XDP with two workers: an input with two RX queues gets a socket per queue, one read by
/// each worker; both read frames, and together they count every frame exactly, which the far
/// side received.
#[test]
fn afxdp_sockets_are_spread_over_the_workers() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-afxdp-workers");
    let ns = Netns::new("axw");
    ns.exec_ok(&[
        "ip",
        "link",
        "add",
        "eth1",
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "p1",
        "numtxqueues",
        "2",
        "numrxqueues",
        "2",
    ]);
    ns.veth("eth3", "p3", 1500);
    for dev in ["eth1", "p1"] {
        ns.exec_ok(&["ip", "link", "set", dev, "up"]);
    }
    let config = dir.join("any.json");
    std::fs::write(
        &config,
        r#"{"interfaces": {"eth1": {"redirect_map": {"any": "eth3"}}}}"#,
    )
    .unwrap();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &[
            "--datapath",
            "afxdp",
            "--xdp-mode",
            "native",
            "--workers",
            "2",
        ],
    );
    let input = mix(&dir, 2000);
    let (tx0, r3) = (ns.stat("p1", "tx_packets"), ns.stat("p3", "rx_packets"));
    // From each CPU: the veth hands a frame to the RX queue of the sender's TX queue.
    for cpu in ["0", "1"] {
        ns.exec_ok(&[
            "taskset",
            "-c",
            cpu,
            "tcpreplay",
            "-q",
            "-i",
            "p1",
            input.to_str().unwrap(),
        ]);
    }
    let sent = ns.stat("p1", "tx_packets") - tx0;
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == sent
    });
    let st = status(&vx);
    let per_worker = common::daemon::worker_rx(&st);
    eprintln!("{sent} frames sent; per worker {per_worker:?}");
    assert_eq!(st["tiers"]["eth1"]["afxdp_sockets"].as_u64(), Some(2));
    assert_eq!(st["tiers"]["eth1"]["afxdp_rx_packets"].as_u64(), Some(sent));
    assert!(
        per_worker.len() == 2 && per_worker.iter().all(|&n| n > 0),
        "{per_worker:?}"
    );
    assert_eq!(per_worker.iter().sum::<u64>(), sent);
    let s = vx.stats();
    assert_eq!(counter(&s, "eth3", "tx_packets"), sent);
    wait_for(Duration::from_secs(5), || {
        ns.stat("p3", "rx_packets") - r3 == sent
    });
    vx.stop(&dir);
}

/// Out-of-band VLAN tags in native mode: the device-bound program reads the driver's VLAN hint
/// and puts the tag back in the frame, so the kernel tier counts and forwards it as sent
/// (common::out_of_band_tags; the AF_PACKET datapath's own test is in live_afpacket.rs).
#[test]
fn xdp_native_restores_out_of_band_tags() {
    let Some((dir, ns, _)) = example_lab("live-xdp-oob", "xob", true, 1500) else {
        return;
    };
    common::out_of_band_tags(&ns, &dir, &["--datapath", "xdp", "--xdp-mode", "native"]);
}

/// The same through AF_XDP: the frames reach the socket with their tag back in place.
#[test]
fn afxdp_native_restores_out_of_band_tags() {
    let Some((dir, ns, _)) = example_lab("live-afxdp-oob", "aob", true, 1500) else {
        return;
    };
    common::out_of_band_tags(&ns, &dir, &["--datapath", "afxdp", "--xdp-mode", "native"]);
}

/// AF_XDP transmit when an output cannot take the copies, during a blast: first its far end
/// goes down (no carrier: the device drops each copy, and the kick reports it with EBUSY),
/// then the output itself is set down (the kernel refuses the socket: what waits on its ring
/// is counted, and the socket is reopened once the output is up). Every copy is sent or
/// counted, and the far end's byte count equals what vxspan says it sent there.
#[test]
fn afxdp_transmit_counts_what_the_kernel_drops() {
    transmit_counts_what_the_kernel_drops(
        "atd",
        &[
            "--datapath",
            "afxdp",
            "--xdp-mode",
            "generic",
            "--transmit",
            "afxdp",
        ],
        "AF_XDP on 1 TX queue(s), copy mode",
    );
}

/// The same through AF_PACKET, whose copies leave in batches (`sendmmsg`): a copy the device
/// drops (ENOBUFS) or refuses (ENETDOWN) ends the call at that message, and is counted.
#[test]
fn afpacket_batched_transmit_counts_what_the_kernel_drops() {
    transmit_counts_what_the_kernel_drops("aptd", &["--datapath", "afpacket"], "AF_PACKET");
}

fn transmit_counts_what_the_kernel_drops(tag: &str, args: &[&str], transmit: &str) {
    let Some((dir, ns, config)) = example_lab(&format!("live-txdrop-{tag}"), tag, false, 1500)
    else {
        return;
    };
    let vx = Vxspan::start_with(&ns, &config, &dir, args);
    let bytes0 = ns.stat("p2", "rx_bytes");
    let blast = Blast::start(&ns, &dir, 11);
    let pause = || std::thread::sleep(Duration::from_millis(300));
    pause();
    ns.exec_ok(&["ip", "link", "set", "p2", "down"]);
    pause();
    ns.exec_ok(&["ip", "link", "set", "p2", "up"]);
    pause();
    ns.exec_ok(&["ip", "link", "set", "eth2", "down"]);
    pause();
    ns.exec_ok(&["ip", "link", "set", "eth2", "up"]);
    let (delivered, fwd) = blast.finish(&ns, &vx);
    let s = vx.stats();
    let reason = |r: &str| {
        s["interfaces"]["eth2"]["tx_drop_reasons"][r]
            .as_u64()
            .unwrap_or(0)
    };
    eprintln!(
        "{delivered} delivered, {fwd} forwarded; eth2: {} sent, {} queue_full, {} link_down",
        counter(&s, "eth2", "tx_packets"),
        reason("queue_full"),
        reason("link_down")
    );
    assert!(reason("queue_full") > 0, "{s}");
    assert!(reason("link_down") > 0, "{s}");
    assert_eq!(
        counter(&s, "eth2", "tx_bytes"),
        ns.stat("p2", "rx_bytes") - bytes0,
        "bytes of the copies the kernel dropped were taken off what was sent"
    );
    // The output works again (through new sockets, for AF_XDP).
    wait_for(Duration::from_secs(5), || {
        status(&vx)["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["interface"] == "eth2" && p["transmit"] == transmit)
    });
    let sent0 = counter(&vx.stats(), "eth2", "tx_packets");
    let rx0 = ns.stat("p2", "rx_packets");
    ns.replay_golden();
    wait_for(Duration::from_secs(5), || {
        counter(&vx.stats(), "eth2", "tx_packets") > sent0
    });
    let fin = vx.stop(&dir);
    assert!(counter(&fin, "eth2", "tx_packets") > sent0);
    assert_eq!(
        counter(&fin, "eth2", "tx_packets") - sent0,
        ns.stat("p2", "rx_packets") - rx0
    );
}

/// `vxspan capture --rule RULE -w FILE` against `vx`, started.
fn capture_rule(vx: &Vxspan, rule: &str, file: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args([
            "capture",
            "--control",
            vx.control.to_str().unwrap(),
            "--rule",
            rule,
            "-w",
        ])
        .arg(file)
        .spawn()
        .unwrap()
}

/// `vxspan capture` of a rule the kernel tier runs: attached before a burst of N frames and
/// detached after, the file holds exactly those N frames, byte-identical to what the far end
/// received; while it runs the rule's group is in userspace (status says why), and after it
/// goes back to XDP.
#[test]
fn capture_of_a_kernel_tier_rule_records_every_frame() {
    let Some((dir, ns, config)) = example_lab("live-xdp-capture", "xcap", false, 1500) else {
        return;
    };
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "generic"],
    );
    let tier_of_vlan10 = || {
        let st = status(&vx);
        let g = st["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["input"] == "eth1" && g["vlan"] == "10")
            .cloned()
            .unwrap();
        (
            g["tier"].as_str().unwrap().to_owned(),
            g["why"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(tier_of_vlan10().0, "xdp");
    let file = dir.join("captured.pcapng");
    let mut cap = capture_rule(&vx, "eth1/10", &file);
    wait_for(Duration::from_secs(10), || {
        tier_of_vlan10().0 == "userspace"
    });
    assert!(
        tier_of_vlan10().1.contains("capture"),
        "{:?}",
        tier_of_vlan10()
    );
    let far = dir.join("far.pcap");
    let tcpdump = ns.capture("p3", &far);
    let n = 500;
    let burst = dir.join("burst.pcap");
    common::write_pcap(&burst, &common::tagged_udp(10, n), 1_000_000);
    let rx0 = ns.stat("p3", "rx_packets");
    ns.replay_paced("p1", 2000, &burst);
    wait_for(Duration::from_secs(10), || {
        ns.stat("p3", "rx_packets") - rx0 >= n as u64
    });
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL: a test run in the background may have SIGINT ignored (and the client writes
    // each chunk to the file as it comes).
    let _ = cap.kill();
    let _ = cap.wait();
    tcpdump.stop();
    // Back in the kernel tier once the capture is gone (checked every second).
    wait_for(Duration::from_secs(5), || tier_of_vlan10().0 == "xdp");
    let captured: Vec<Vec<u8>> = read_capture(&file).into_iter().map(|f| f.0).collect();
    let want = common::tagged_udp(10, n);
    let at_far_end: Vec<Vec<u8>> = read_capture(&far)
        .into_iter()
        .map(|f| f.0)
        .filter(|f| want.contains(f))
        .collect();
    assert_eq!(at_far_end.len(), n, "the far end got the burst");
    assert_eq!(captured.len(), n, "the capture holds exactly the burst");
    assert!(
        sorted(captured) == sorted(at_far_end),
        "byte-identical to the far end"
    );
    let st = status(&vx);
    assert_eq!(st["capture_dropped"], 0, "{st}");
    let log = std::fs::read_to_string(dir.join("run.err")).unwrap();
    assert!(log.contains("in userspace while captured"), "{log}");
    // A reload ends the captures: the client sees the end of its stream and exits.
    let mut second = capture_rule(&vx, "eth1/10", &dir.join("second.pcapng"));
    wait_for(Duration::from_secs(10), || {
        tier_of_vlan10().0 == "userspace"
    });
    let o = vx.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(Duration::from_secs(5), || {
        second.try_wait().unwrap().is_some()
    });
    wait_for(Duration::from_secs(5), || tier_of_vlan10().0 == "xdp");
    vx.stop(&dir);
}
