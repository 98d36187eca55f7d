//! Live tunnel interop in network namespaces, against the kernel's own VXLAN device: vxspan's
//! VXLAN output is accepted by a Linux `vxlan` device (the inner frames appear on it), and what a
//! Linux `vxlan` device sends is terminated by a vxspan `listen` input and delivered as inner
//! frames to an output veth. ERSPAN (no kernel device here) is checked with tshark on the wire.

mod common;

use common::netns::{wait_for, Netns};
use common::{read_capture, scratch};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
fn vxlan_with_the_kernel_both_ways_and_erspan_on_the_wire() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-tunnels");
    // Two hosts: A runs vxspan, B has the kernel's VXLAN device. One namespace each.
    let a = Netns::new("tuna");
    let b = Netns::new("tunb");
    ip(
        &a,
        &[
            "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", &b.name,
        ],
    );
    ip(&a, &["addr", "add", "198.18.0.1/24", "dev", "a0"]);
    ip(&a, &["link", "set", "a0", "up"]);
    ip(&b, &["addr", "add", "198.18.0.2/24", "dev", "b0"]);
    ip(&b, &["link", "set", "b0", "up"]);
    // A static neighbour entry: the first mirror copies would otherwise queue behind ARP
    // resolution, where the kernel silently drops what exceeds its queue.
    let mac = String::from_utf8(b.exec_ok(&["cat", "/sys/class/net/b0/address"]).stdout).unwrap();
    ip(
        &a,
        &[
            "neigh",
            "replace",
            "198.18.0.2",
            "lladdr",
            mac.trim(),
            "dev",
            "a0",
            "nud",
            "permanent",
        ],
    );
    ip(
        &b,
        &[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "7000",
            "remote",
            "198.18.0.1",
            "local",
            "198.18.0.2",
            "dstport",
            "4789",
            "dev",
            "b0",
        ],
    );
    ip(&b, &["link", "set", "vx0", "up"]);
    a.veth("eth1", "p1", 1500); // the mirror port vxspan reads
    a.veth("eth3", "p3", 1500); // where terminated tunnels are delivered

    let config = dir.join("tunnels.toml");
    std::fs::write(
        &config,
        r#"
[inputs.mirror]
interface = "eth1"

[inputs.cloud]
listen = "vxlan://198.18.0.1:4789"
allow = ["198.18.0.0/24"]

[outputs.to-b]
vxlan = { remote = "198.18.0.2", source = "198.18.0.1", vni = 7000, dscp = 8 }

[outputs.collector]
erspan = { version = 2, remote = "198.18.0.2", source = "198.18.0.1", session = 42 }

[outputs.tools]
interface = "eth3"

[[rules]]
from = "mirror"
to = ["to-b", "collector"]

[[rules]]
from = "cloud"
vni = 7000
to = "tools"
"#,
    )
    .unwrap();
    let control = dir.join("control.sock");
    let _vx = Proc(
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

    // Frames small enough for the VXLAN device's MTU (1450), none addressed to B's vx0 itself.
    let input = dir.join("in.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args([
            "gen",
            "-w",
            input.to_str().unwrap(),
            "--count",
            "200",
            "--seed",
            "8",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let sent: Vec<Vec<u8>> = read_capture(&input).into_iter().map(|f| f.0).collect();

    // 1. vxspan -> kernel: inner frames appear on B's vx0; ERSPAN is on B's wire (B has no GRE
    // endpoint, so it answers with ICMP errors quoting the packets: those are left out).
    let on_vx0 = b.capture("vx0", &dir.join("vx0.pcap"));
    let on_b0 = b.capture("b0", &dir.join("b0.pcap"));
    let rx_before = b.stat("vx0", "rx_packets");
    b.exec_ok(&["true"]);
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
    let mut want = sent.clone();
    got.sort();
    want.sort();
    assert!(
        got == want,
        "the inner frames on vx0 are the mirrored frames, unchanged"
    );
    let o = Command::new("tshark")
        .args([
            "-n",
            "-r",
            dir.join("b0.pcap").to_str().unwrap(),
            "-Y",
            "erspan and not icmp.type == 3",
            "-T",
            "fields",
            "-e",
            "erspan.spanid",
            "-e",
            "gre.sequence_number",
        ])
        .output()
        .unwrap();
    let rows: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(rows.len(), sent.len(), "ERSPAN packets on B's wire");
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| *r == format!("42\t{i}")),
        "session 42, sequence 0, 1, 2...: {:?}",
        &rows[..3]
    );

    // 2. kernel -> vxspan: what B's vx0 sends is terminated by the listen input and delivered.
    let on_p3 = a.capture("p3", &dir.join("p3.pcap"));
    b.exec_ok(&["tcpreplay", "-q", "-i", "vx0", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        stats(&control)["interfaces"]["tools"]["tx_packets"].as_u64() == Some(sent.len() as u64)
    });
    wait_for(Duration::from_secs(10), || {
        common::read_capture(&dir.join("p3.pcap")).len() >= sent.len()
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
