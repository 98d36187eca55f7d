//! Tunnel origination in the kernel tier, live: `vxspan run --datapath xdp` with ERSPAN II,
//! ERSPAN III and GRE outputs places their groups in XDP, the next-hop thread learns the route
//! and neighbour, and the XDP program encapsulates. On the collector's wire tshark dissects
//! each with its configured session, key and DSCP; the ERSPAN II sequence numbers of frames
//! sent from two CPUs at once are 0..N-1, each exactly once; counters equal the veths' own, in
//! generic and native mode.

mod common;

use common::daemon::{counter, Vxspan};
use common::netns::{wait_for, Netns};
use common::scratch;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
[inputs.mirror]
interface = "eth0"

[outputs.e2]
erspan = { remote = "198.18.0.2", version = 2, session = 100, dscp = 10 }
[outputs.e3]
erspan = { remote = "198.18.0.2", version = 3, session = 7, dscp = 46 }
[outputs.g]
gre = { remote = "198.18.0.2", key = 4242 }

[[rules]]
name = "to-e2"
from = "mirror"
vlan = 10
to = "e2"
[[rules]]
name = "to-e3"
from = "mirror"
vlan = 20
to = "e3"
[[rules]]
name = "to-g"
from = "mirror"
vlan = 30
to = "g"
"#;

/// Sends `count` frames of `pcap` into eth0 from CPU `cpu`: `vxspan blast` in native mode; in
/// generic mode tcpreplay (the blaster's native redirect into p0 reaches eth0 only if eth0 runs
/// XDP natively), `pcap` holding `count` frames.
fn send(ns: &Netns, native: bool, pcap: &Path, count: u64, cpu: usize) -> std::process::Child {
    if !native {
        return ns
            .cmd(&[
                "taskset",
                "-c",
                &cpu.to_string(),
                "tcpreplay",
                "-q",
                "--topspeed",
                "-i",
                "p0",
                pcap.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }
    ns.cmd(&[
        env!("CARGO_BIN_EXE_vxspan"),
        "blast",
        "p0",
        pcap.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--cpu",
        &cpu.to_string(),
        "--json",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap()
}

/// tshark's `fields` of every GRE packet in `file`, one row per packet.
fn dissect(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    // The first occurrence of a field is the outer header's.
    let mut args = vec![
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "gre",
        "-T",
        "fields",
        "-E",
        "occurrence=f",
    ];
    for f in fields {
        args.extend(["-e", f]);
    }
    let o = Command::new("tshark")
        .args(&args)
        .output()
        .expect("tshark is installed by scripts/install-deps");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// tcpdump on `iface` into `file`, with a large buffer and a short snap length (the outer
/// headers are what is dissected), so that a blast's burst fits: returns once it captures.
fn capture(ns: &Netns, iface: &str, file: &Path) -> std::process::Child {
    let log = file.with_extension("log");
    let child = ns
        .cmd(&[
            "tcpdump",
            "-n",
            "-B",
            "262144",
            "-s",
            "200",
            "-i",
            iface,
            "-w",
            file.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::from(
            std::fs::File::create(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
    });
    child
}

/// Stops tcpdump with SIGINT (it flushes and prints its counts), bounded.
fn stop_capture(mut c: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .output();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn originate(tag: &str, native: bool) {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch(&format!("live-xdp-tunnels-{tag}"));
    let ns = Netns::new(tag);
    ns.veth("eth0", "p0", 1500);
    ns.veth("eth1", "p1", 1500);
    // The collector 198.18.0.2 is p1's end of eth1, known without ARP.
    ns.route_to_peer("eth1", "198.18.0.1/24", "198.18.0.2", "p1");
    if native {
        // A native redirect into a veth is delivered only if its peer runs XDP.
        let obj = common::bpf_object(&dir, "pass");
        ns.exec_ok(&[
            "ip",
            "link",
            "set",
            "dev",
            "p1",
            "xdpdrv",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp.frags",
        ]);
    }
    let config = dir.join("tunnels.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mode = if native { "native" } else { "generic" };
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", mode],
    );
    let status = vx.cli(&["status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let text = status.to_string();
    assert!(
        !text.contains("is a tunnel"),
        "tunnel groups placed in XDP: {text}"
    );
    // The next-hop thread has written every output's entry.
    let log = dir.join("run.err");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|s| s.matches("copies leave from the XDP program").count() == 3)
    });

    let (n2_nominal, n_other) = (10_000u64, 200u64);
    let n2 = n2_nominal;
    let e2_in = dir.join("vlan10.pcap");
    let e2_frames = if native { 64 } else { n2 as usize / 2 };
    common::write_pcap(&e2_in, &common::tagged_udp(10, e2_frames), 1000);
    let (e3_in, g_in) = (dir.join("vlan20.pcap"), dir.join("vlan30.pcap"));
    common::write_pcap(&e3_in, &common::tagged_udp(20, n_other as usize), 1000);
    common::write_pcap(&g_in, &common::tagged_udp(30, n_other as usize), 1000);

    let wire = dir.join("collector.pcap");
    let cap = capture(&ns, "p1", &wire);
    let rx0 = ns.stat("p1", "rx_packets");
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    // What p0 sent is what eth0 received (the blaster may find eth0's ring full).
    let tx0 = ns.stat("p0", "tx_packets");
    let a = send(&ns, native, &e2_in, n2 / 2, 0);
    let b = send(&ns, native, &e2_in, n2 / 2, 1 % ncpu);
    for c in [a, b] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "sender failed");
    }
    let tx1 = ns.stat("p0", "tx_packets");
    let c = send(&ns, native, &e3_in, n_other, 0);
    assert!(c.wait_with_output().unwrap().status.success());
    let tx2 = ns.stat("p0", "tx_packets");
    let c = send(&ns, native, &g_in, n_other, 1 % ncpu);
    assert!(c.wait_with_output().unwrap().status.success());
    let (n2, sent3, sentg) = (tx1 - tx0, tx2 - tx1, ns.stat("p0", "tx_packets") - tx2);
    let sent_other = sent3 + sentg;
    assert!(n2 > n2_nominal / 2, "only {n2} frames sent");
    let total = n2 + sent_other;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ns.stat("p1", "rx_packets") - rx0 < total && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let delivered = ns.stat("p1", "rx_packets") - rx0;
    // tcpdump reads its ring a block at a time: give it time to write the last one.
    std::thread::sleep(Duration::from_secs(1));
    stop_capture(cap);
    let log = std::fs::read_to_string(wire.with_extension("log")).unwrap();
    let line = |what: &str| {
        log.lines()
            .find(|l| l.ends_with(what))
            .and_then(|l| l.split(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(
        line("packets dropped by kernel"),
        Some(0),
        "capture lost frames: {log}"
    );
    assert_eq!(line("packets captured"), Some(total), "capture: {log}");
    let s = vx.stats();
    assert_eq!(counter(&s, "e2", "tx_packets"), n2, "{s}");
    let (n3, ng) = (
        counter(&s, "e3", "tx_packets"),
        counter(&s, "g", "tx_packets"),
    );
    assert_eq!((n3, ng), (sent3, sentg), "{s}");
    assert!(n3 > 0 && ng > 0, "{s}");
    assert_eq!(delivered, total, "the collector's veth received every copy");
    assert_eq!(counter(&s, "mirror", "rx_packets"), total);
    // Nothing went through the userspace tier.
    let st: serde_json::Value = serde_json::from_slice(&vx.cli(&["status"]).stdout).unwrap();
    eprintln!("status: {st}");

    // ERSPAN II: session, DSCP, each sequence number once.
    let rows = dissect(
        &wire,
        &[
            "erspan.spanid",
            "ip.dsfield.dscp",
            "gre.sequence_number",
            "erspan.version",
        ],
    );
    let mut seqs: Vec<u64> = rows
        .iter()
        .filter(|r| r[0] == "100")
        .map(|r| {
            assert_eq!((r[1].as_str(), r[3].as_str()), ("10", "1"), "{r:?}");
            r[2].parse().unwrap()
        })
        .collect();
    assert_eq!(seqs.len() as u64, n2, "ERSPAN II copies on the wire");
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..n2).collect::<Vec<_>>(),
        "sequence numbers 0..N-1, each once"
    );
    // ERSPAN III: session 7, DSCP 46, a timestamp.
    let e3: Vec<_> = rows.iter().filter(|r| r[0] == "7").collect();
    assert_eq!(e3.len() as u64, n3);
    assert!(
        e3.iter().all(|r| r[1] == "46" && r[3] == "2"),
        "{:?}",
        e3[0]
    );
    // GRE: key 4242, transparent Ethernet bridging.
    let g = dissect(&wire, &["gre.key", "gre.proto"]);
    let g: Vec<_> = g.iter().filter(|r| r[0] == "0x00001092").collect();
    assert_eq!(g.len() as u64, ng, "GRE copies with key 4242");
    assert!(g.iter().all(|r| r[1] == "0x6558"), "{:?}", g[0]);
    let fin = vx.stop(&dir);
    assert_eq!(counter(&fin, "e2", "tx_packets"), n2);
}

#[test]
fn xdp_generic_originates_erspan_and_gre() {
    originate("xtung", false);
}

#[test]
fn xdp_native_originates_erspan_and_gre() {
    originate("xtunn", true);
}
