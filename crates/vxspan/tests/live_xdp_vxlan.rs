//! VXLAN and Geneve origination in the kernel tier, live: `vxspan run --datapath xdp` places
//! both groups in XDP, and on the collector (a namespace of its own, 198.18.0.2) the kernel's own
//! `vxlan` interface takes the VXLAN copies in and gives out the mirrored frames unchanged, byte
//! for byte. This kernel has no Geneve module: the Geneve copies' payloads, after their 50 bytes of
//! outer headers, are compared with the mirrored frames instead. tshark dissects the VNIs and
//! ports on the collector's wire; the UDP source ports are 49152 and up, one per flow, both
//! directions of a flow alike; counters equal the veths' own.

mod common;

use common::daemon::{counter, Vxspan};
use common::netns::{wait_for, Netns};
use common::scratch;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
[inputs.mirror]
interface = "eth0"

[outputs.vx]
vxlan = { remote = "198.18.0.2", vni = 5001, dscp = 10 }
[outputs.gn]
geneve = { remote = "198.18.0.2", vni = 77 }

[[rules]]
name = "to-vxlan"
from = "mirror"
vlan = 10
to = "vx"
[[rules]]
name = "to-geneve"
from = "mirror"
vlan = 20
to = "gn"
"#;

/// `n` tagged UDP frames in 8 flows, each flow in both directions.
fn flows(vid: u8, n: usize) -> Vec<Vec<u8>> {
    common::tagged_udp(vid, n)
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            let (flow, back) = ((i / 2) % 8, i % 2 == 1);
            let (a, b) = (2000 + flow as u16, 53u16);
            let (sp, dp) = if back { (b, a) } else { (a, b) };
            if back {
                let (s, d) = (f[30..34].to_vec(), f[34..38].to_vec());
                f[30..34].copy_from_slice(&d);
                f[34..38].copy_from_slice(&s);
            }
            f[38..40].copy_from_slice(&sp.to_be_bytes());
            f[40..42].copy_from_slice(&dp.to_be_bytes());
            f
        })
        .collect()
}

/// `fields` of every frame of `file` that `filter` selects (first occurrence: the outer one).
fn dissect(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-Y",
        filter,
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

fn frames_of(file: &Path) -> BTreeSet<Vec<u8>> {
    common::read_capture(file)
        .into_iter()
        .map(|(b, _, _)| b)
        .collect()
}

#[test]
fn xdp_vxlan_and_geneve_reach_the_kernels_own_devices_unchanged() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-xdp-vxlan");
    let ns = Netns::new("xvx");
    let col = Netns::new("xvxc");
    ns.veth("eth0", "p0", 1500);
    ns.veth("eth1", "p1", 1500);
    ns.exec_ok(&["ip", "link", "set", "p1", "netns", &col.name]);
    col.exec_ok(&["ip", "addr", "add", "198.18.0.2/24", "dev", "p1"]);
    col.exec_ok(&["ip", "link", "set", "p1", "up"]);
    let mac = col.exec_ok(&["cat", "/sys/class/net/p1/address"]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_owned();
    ns.exec_ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", "eth1"]);
    ns.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        "198.18.0.2",
        "lladdr",
        &mac,
        "dev",
        "eth1",
        "nud",
        "permanent",
    ]);
    // The collector's tunnel devices (Linux's own decapsulation).
    col.exec_ok(&[
        "ip",
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "5001",
        "dstport",
        "4789",
        "local",
        "198.18.0.2",
        "dev",
        "p1",
        "nolearning",
    ]);
    col.exec_ok(&["ip", "link", "set", "vx0", "up"]);
    let config = dir.join("vxlan.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "generic"],
    );
    let status = vx.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        !text.contains("is a tunnel"),
        "VXLAN and Geneve groups placed in XDP: {text}"
    );
    let log = dir.join("run.err");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|s| s.matches("copies leave from the XDP program").count() == 2)
    });

    let n = 400usize;
    let (v10, v20) = (flows(10, n), flows(20, n));
    let (in10, in20) = (dir.join("vlan10.pcap"), dir.join("vlan20.pcap"));
    common::write_pcap(&in10, &v10, 1000);
    common::write_pcap(&in20, &v20, 1000);
    let (on_wire, out_vx) = (dir.join("collector.pcap"), dir.join("vx0.pcap"));
    let caps = [col.capture("p1", &on_wire), col.capture("vx0", &out_vx)];
    let wire0 = col.stat("p1", "rx_packets");
    ns.replay_paced("p0", 2000, &in10);
    ns.replay_paced("p0", 2000, &in20);
    let want = 2 * n as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while col.stat("vx0", "rx_packets") + col.stat("p1", "rx_packets") - wire0 < want + n as u64
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    for c in caps {
        c.stop();
    }
    let s = vx.stats();
    assert_eq!(counter(&s, "mirror", "rx_packets"), want, "{s}");
    assert_eq!(counter(&s, "vx", "tx_packets"), n as u64, "{s}");
    assert_eq!(counter(&s, "gn", "tx_packets"), n as u64, "{s}");
    assert_eq!(
        col.stat("vx0", "rx_packets"),
        n as u64,
        "vx0 took every copy"
    );
    // The wire also carries the collector's ARP exchange (it answers the Geneve copies, for
    // which it has no listener, with ICMP): every copy arrived, and at most those two more.
    let wire = col.stat("p1", "rx_packets") - wire0;
    assert!(
        (want..=want + 2).contains(&wire),
        "{wire} frames on the collector's wire"
    );
    // The kernel tier sent them: none was handed to the userspace tier.
    let st: serde_json::Value = serde_json::from_slice(&vx.cli(&["status"]).stdout).unwrap();
    assert!(
        !st.to_string().contains("\"xdp_unresolved_packets\":1"),
        "{st}"
    );

    // What the kernel's devices decapsulated is what was mirrored.
    assert_eq!(frames_of(&out_vx), v10.iter().cloned().collect());
    let geneve: BTreeSet<Vec<u8>> = common::read_capture(&on_wire)
        .into_iter()
        .filter(|(b, _, _)| b.len() > 50 && b[23] == 17 && b[36..38] == 6081u16.to_be_bytes())
        .map(|(b, _, _)| b[50..].to_vec())
        .collect();
    assert_eq!(geneve, v20.iter().cloned().collect());

    // On the wire: VNI, DSCP, destination port; one source port per flow, both directions alike.
    let rows = dissect(
        &on_wire,
        "vxlan and not icmp",
        &[
            "vxlan.vni",
            "ip.dsfield.dscp",
            "udp.dstport",
            "udp.srcport",
            "udp.checksum",
        ],
    );
    assert_eq!(rows.len(), n, "VXLAN copies on the wire");
    let mut ports = BTreeSet::new();
    for r in &rows {
        assert_eq!(&r[..3], ["5001", "10", "4789"], "{r:?}");
        let sp: u16 = r[3].parse().unwrap();
        assert!(sp >= 49152, "{r:?}");
        ports.insert(sp);
    }
    assert!(ports.len() > 1 && ports.len() <= 8, "{ports:?}");
    let g = dissect(
        &on_wire,
        "geneve and not icmp",
        &[
            "geneve.vni",
            "udp.dstport",
            "geneve.proto_type",
            "udp.srcport",
        ],
    );
    assert_eq!(g.len(), n, "Geneve copies on the wire");
    let mut by_port: BTreeMap<String, usize> = BTreeMap::new();
    for r in &g {
        assert_eq!(&r[..3], ["0x00004d", "6081", "0x6558"], "VNI 77: {r:?}");
        *by_port.entry(r[3].clone()).or_default() += 1;
    }
    // Each flow's 50 frames (25 each way) share a port.
    assert!(by_port.values().all(|c| c % 50 == 0), "{by_port:?}");
    let fin = vx.stop(&dir);
    assert_eq!(counter(&fin, "vx", "tx_packets"), n as u64);
}
