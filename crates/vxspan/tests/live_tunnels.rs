//! Live tunnel interop in network namespaces, against the kernel's own VXLAN device, over IPv4
//! and IPv6: vxspan's VXLAN output is accepted by a Linux `vxlan` device (the inner frames appear
//! on it), and what a Linux `vxlan` device sends is terminated by a vxspan `listen` input and
//! delivered as inner frames to an output veth. ERSPAN (this kernel has no GRE / ERSPAN device)
//! is checked with tshark on the receiving host's wire.

mod common;

use common::netns::{wait_for, Daemon, Netns};
use common::{read_capture, scratch};
use std::process::{Command, Stdio};
use std::time::Duration;

fn ip(ns: &Netns, args: &[&str]) {
    let mut a = vec!["ip"];
    a.extend(args);
    ns.exec_ok(&a);
}

fn stats(control: &std::path::Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args(["stats", "--json", "--control", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn vxlan_with_the_kernel_both_ways_and_erspan_on_the_wire_ipv4() {
    if !common::netns::skipped() {
        interop(false);
    }
}

#[test]
fn vxlan_with_the_kernel_both_ways_and_erspan_on_the_wire_ipv6() {
    if !common::netns::skipped() {
        interop(true);
    }
}

/// The packets of `protocol` that B received (not the ICMP errors quoting them: B has no
/// endpoint for ERSPAN or Geneve): per packet, each of `fields`, its first occurrence (the
/// outer header's) unless `all` (every occurrence, outer to inner, joined by commas).
fn on_the_wire(
    file: &std::path::Path,
    protocol: &str,
    fields: &[&str],
    all: bool,
) -> Vec<Vec<String>> {
    let mut args = vec![
        "-n".to_owned(),
        "-r".to_owned(),
        file.to_str().unwrap().to_owned(),
        "-Y".to_owned(),
        format!("{protocol} and not icmp.type == 3 and not icmpv6"),
        "-T".to_owned(),
        "fields".to_owned(),
        "-E".to_owned(),
        format!("occurrence={}", if all { "a" } else { "f" }),
    ];
    for f in fields {
        args.extend(["-e".to_owned(), (*f).to_owned()]);
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

fn interop(v6: bool) {
    let (a_addr, b_addr, plen, net, listen) = if v6 {
        (
            "2001:db8::1",
            "2001:db8::2",
            "64",
            "2001:db8::/64",
            "[2001:db8::1]:4789",
        )
    } else {
        (
            "198.18.0.1",
            "198.18.0.2",
            "24",
            "198.18.0.0/24",
            "198.18.0.1:4789",
        )
    };
    let tag = if v6 { "6" } else { "4" };
    let dir = scratch(&format!("live-tunnels-v{tag}"));
    // Two hosts: A runs vxspan, B has the kernel's VXLAN device. One namespace each.
    let a = Netns::new(&format!("tuna{tag}"));
    let b = Netns::new(&format!("tunb{tag}"));
    ip(
        &a,
        &[
            "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", &b.name,
        ],
    );
    if v6 {
        // The namespaces start with IPv6 off; the tunnel's own link needs it.
        a.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.a0.disable_ipv6=0"]);
        b.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.b0.disable_ipv6=0"]);
    }
    ip(
        &a,
        &[
            "addr",
            "add",
            &format!("{a_addr}/{plen}"),
            "dev",
            "a0",
            "nodad",
        ],
    );
    ip(&a, &["link", "set", "a0", "up"]);
    ip(
        &b,
        &[
            "addr",
            "add",
            &format!("{b_addr}/{plen}"),
            "dev",
            "b0",
            "nodad",
        ],
    );
    ip(&b, &["link", "set", "b0", "up"]);
    // A static neighbour entry: the first mirror copies would otherwise queue behind ARP / ND
    // resolution, where the kernel silently drops what exceeds its queue.
    let mac = String::from_utf8(b.exec_ok(&["cat", "/sys/class/net/b0/address"]).stdout).unwrap();
    ip(
        &a,
        &[
            "neigh",
            "replace",
            b_addr,
            "lladdr",
            mac.trim(),
            "dev",
            "a0",
            "nud",
            "permanent",
        ],
    );
    // udp6zerocsumrx: a Linux VXLAN device drops IPv6 VXLAN with a zero UDP checksum unless told
    // to accept it (vxspan's live sender lets the kernel fill the checksum in, so it is only a
    // precaution here; `vxspan replay`'s files carry checksum 0).
    let mut vx = vec![
        "link", "add", "vx0", "type", "vxlan", "id", "7000", "remote", a_addr, "local", b_addr,
        "dstport", "4789", "dev", "b0",
    ];
    if v6 {
        vx.push("udp6zerocsumrx");
    }
    ip(&b, &vx);
    ip(&b, &["link", "set", "vx0", "up"]);
    a.veth("eth1", "p1", 1500); // the mirror port vxspan reads
    a.veth("eth3", "p3", 1500); // where terminated tunnels are delivered

    let config = dir.join("tunnels.toml");
    let text = format!(
        r#"
[inputs.mirror]
interface = "eth1"

[inputs.cloud]
listen = "vxlan://{listen}"
allow = ["{net}"]

[outputs.to-b]
vxlan = {{ remote = "{b_addr}", source = "{a_addr}", vni = 7000, dscp = 8 }}

[outputs.collector]
erspan = {{ version = 2, remote = "{b_addr}", source = "{a_addr}", session = 42 }}

[outputs.geneve]
geneve = {{ remote = "{b_addr}", source = "{a_addr}", vni = 5001 }}

[outputs.tools]
interface = "eth3"

[[rules]]
from = "mirror"
to = ["to-b", "collector", "geneve"]

[[rules]]
from = "cloud"
vni = 7000
to = "tools"
"#
    );
    std::fs::write(&config, text).unwrap();
    let control = dir.join("control.sock");
    let _vx = Daemon(
        a.cmd(&[
            env!("CARGO_BIN_EXE_vxspan"),
            "run",
            config.to_str().unwrap(),
            "--control",
            control.to_str().unwrap(),
        ])
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("run.out")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("run.err")).unwrap(),
        ))
        .spawn()
        .unwrap(),
    );
    wait_for(Duration::from_secs(10), || control.exists());

    // Frames small enough for the VXLAN device's MTU.
    let input = dir.join("in.pcap");
    common::gen_mix(&input, 200, 8);
    let sent: Vec<Vec<u8>> = read_capture(&input).into_iter().map(|f| f.0).collect();
    let mut want = sent.clone();
    want.sort();

    // 1. vxspan -> kernel: the inner frames appear on B's vx0; ERSPAN is on B's wire (B has no
    // GRE endpoint, so it answers with ICMP / ICMPv6 errors quoting the packets: left out).
    let on_vx0 = b.capture("vx0", &dir.join("vx0.pcap"));
    let on_b0 = b.capture("b0", &dir.join("b0.pcap"));
    let rx_before = b.stat("vx0", "rx_packets");
    a.exec_ok(&["tcpreplay", "-q", "-i", "p1", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        b.stat("vx0", "rx_packets") - rx_before >= sent.len() as u64
    });
    std::thread::sleep(Duration::from_millis(300));
    on_vx0.stop();
    on_b0.stop();
    let s = stats(&control);
    assert_eq!(
        s["interfaces"]["to-b"]["tx_packets"].as_u64(),
        Some(sent.len() as u64)
    );
    assert_eq!(
        b.stat("vx0", "rx_packets") - rx_before,
        sent.len() as u64,
        "the kernel's VXLAN device took every frame"
    );
    let mut got: Vec<Vec<u8>> = read_capture(&dir.join("vx0.pcap"))
        .into_iter()
        .map(|f| f.0)
        .collect();
    got.sort();
    assert!(
        got == want,
        "the inner frames on vx0 are the mirrored frames, unchanged"
    );
    let b0 = dir.join("b0.pcap");
    let rows = on_the_wire(
        &b0,
        "erspan",
        &["erspan.spanid", "gre.sequence_number"],
        false,
    );
    assert_eq!(rows.len(), sent.len(), "ERSPAN packets on B's wire");
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| *r == ["42".to_owned(), i.to_string()]),
        "session 42, sequence 0, 1, 2...: {:?}",
        &rows[..3]
    );

    // VXLAN as RFC 7348 has it: UDP checksum 0, source ports spread by flow.
    let rows = on_the_wire(
        &b0,
        "vxlan",
        &["udp.checksum", "udp.srcport", "vxlan.vni"],
        false,
    );
    assert_eq!(rows.len(), sent.len());
    assert!(
        rows.iter().all(|r| r[0] == "0x0000" && r[2] == "7000"),
        "{:?}",
        &rows[..2]
    );
    let ports: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert!(
        ports.len() > 4,
        "flows spread over UDP source ports: {ports:?}"
    );

    // Geneve on B's wire (this kernel has no geneve module to terminate it): every copy,
    // version 0, no options, Ethernet payload, VNI 5001 (0x001389), with the mirrored frame
    // inside.
    let rows = on_the_wire(
        &b0,
        "geneve",
        &[
            "geneve.vni",
            "geneve.proto_type",
            "geneve.version",
            "udp.dstport",
            "eth.src",
            "geneve.options",
        ],
        true,
    );
    assert_eq!(rows.len(), sent.len(), "Geneve packets on B's wire");
    assert!(
        rows.iter().all(|r| r[0] == "0x001389"
            && r[1] == "0x6558"
            && r[2] == "0"
            && r[3].starts_with("6081")
            && r.get(5).is_none_or(|o| o.is_empty())),
        "{:?}",
        &rows[..2]
    );
    let inner: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r[4].split(',').nth(1).map(str::to_owned))
        .collect();
    let sources: std::collections::BTreeSet<String> = sent
        .iter()
        .map(|f| {
            f[6..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect();
    assert_eq!(inner, sources, "the mirrored frames ride inside");

    // 2. kernel -> vxspan: what B's vx0 sends is terminated by the listen input and delivered.
    let on_p3 = a.capture("p3", &dir.join("p3.pcap"));
    b.exec_ok(&["tcpreplay", "-q", "-i", "vx0", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        stats(&control)["interfaces"]["tools"]["tx_packets"].as_u64() == Some(sent.len() as u64)
    });
    wait_for(Duration::from_secs(10), || {
        read_capture(&dir.join("p3.pcap")).len() >= sent.len()
    });
    on_p3.stop();
    let mut got: Vec<Vec<u8>> = read_capture(&dir.join("p3.pcap"))
        .into_iter()
        .map(|f| f.0)
        .collect();
    got.sort();
    assert!(
        got == want,
        "the frames B's VXLAN device sent arrive on eth3, unchanged"
    );
    let s = stats(&control);
    assert_eq!(
        s["tunnels"]["cloud"]["vxlan/7000"]["packets"].as_u64(),
        Some(sent.len() as u64)
    );
    assert_eq!(
        s["interfaces"]["cloud"]["dropped_packets"].as_u64(),
        Some(0)
    );
}

/// Loop guard: a tunnel output whose route leaves through the very interface vxspan mirrors
/// from never re-captures its own packets (PACKET_IGNORE_OUTGOING on the input ring).
#[test]
fn own_tunnel_traffic_is_not_recaptured() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-tunnel-loop");
    let ns = Netns::new("loop");
    ns.veth("eth1", "p1", 1500);
    ns.route_to_peer("eth1", "198.18.0.1/24", "198.18.0.2", "p1");
    let config = dir.join("loop.toml");
    std::fs::write(&config, "[inputs.mirror]\ninterface = \"eth1\"\n[outputs.collector]\nvxlan = { remote = \"198.18.0.2\", vni = 5 }\n[[rules]]\nfrom = \"mirror\"\nto = \"collector\"\n").unwrap();
    let control = dir.join("control.sock");
    let _vx = Daemon(
        ns.cmd(&[
            env!("CARGO_BIN_EXE_vxspan"),
            "run",
            config.to_str().unwrap(),
            "--control",
            control.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("run.err")).unwrap(),
        ))
        .spawn()
        .unwrap(),
    );
    wait_for(Duration::from_secs(10), || control.exists());
    let input = dir.join("in.pcap");
    common::gen_mix(&input, 100, 2);
    let tx_before = ns.stat("eth1", "tx_packets");
    ns.exec_ok(&["tcpreplay", "-q", "-i", "p1", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        stats(&control)["interfaces"]["collector"]["tx_packets"].as_u64() == Some(100)
    });
    std::thread::sleep(Duration::from_millis(500));
    let s = stats(&control);
    assert_eq!(
        s["interfaces"]["mirror"]["rx_packets"].as_u64(),
        Some(100),
        "only the injected frames, not vxspan's own tunnel packets"
    );
    assert!(
        ns.stat("eth1", "tx_packets") - tx_before >= 100,
        "the tunnel packets did leave through eth1"
    );
}
