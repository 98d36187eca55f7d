//! Tunnel origination: every copy vxspan encapsulates is dissected by tshark with the intended
//! fields, and encapsulation followed by vxspan's own decapsulation gives back the original
//! frames byte for byte, for each tunnel type over IPv4 and IPv6.

mod common;

use common::{read_capture, scratch, vxspan};
use std::path::Path;
use std::process::Command;

const ENCAP: &str = r#"
[inputs.in]
interface = "eth1"

[outputs.erspan2-v4]
erspan = { version = 2, remote = "198.18.1.10", source = "198.18.0.1", session = 42, dscp = 8 }
[outputs.erspan2-v6]
erspan = { version = 2, remote = "2001:db8::10", source = "2001:db8::1", session = 43 }
[outputs.erspan3-v4]
erspan = { version = 3, remote = "198.18.1.10", session = 1023, dscp = 10 }
[outputs.erspan3-v6]
erspan = { version = 3, remote = "2001:db8::10", session = 0 }
[outputs.vxlan-v4]
vxlan = { remote = "198.18.1.11", vni = 7000, dscp = 46 }
[outputs.vxlan-v6]
vxlan = { remote = "2001:db8::11", vni = 16777215, port = 8472 }
[outputs.geneve-v4]
geneve = { remote = "198.18.1.13", vni = 5001, dscp = 34 }
[outputs.geneve-v6]
geneve = { remote = "2001:db8::13", vni = 0, port = 6082 }
[outputs.gre-v4]
gre = { remote = "198.18.1.12", key = 5 }
[outputs.gre-v6]
gre = { remote = "2001:db8::12" }

[[rules]]
from = "in"
to = ["erspan2-v4", "erspan2-v6", "erspan3-v4", "erspan3-v6", "vxlan-v4", "vxlan-v6", "geneve-v4", "geneve-v6", "gre-v4", "gre-v6"]
"#;

const DECAP: &str = r#"
[inputs.in]
interface = "eth1"
decap = ["vxlan", "geneve", "gre", "erspan"]
decap_ports = { vxlan = [8472], geneve = [6082] }
[outputs.out]
interface = "eth2"
[[rules]]
from = "in"
to = "out"
"#;

const OUTPUTS: [&str; 10] = [
    "erspan2-v4",
    "erspan2-v6",
    "erspan3-v4",
    "erspan3-v6",
    "vxlan-v4",
    "vxlan-v6",
    "geneve-v4",
    "geneve-v6",
    "gre-v4",
    "gre-v6",
];

fn setup(name: &str, count: u64) -> (std::path::PathBuf, Vec<(Vec<u8>, u32, u64)>) {
    let dir = scratch(name);
    std::fs::write(dir.join("encap.toml"), ENCAP).unwrap();
    std::fs::write(dir.join("decap.toml"), DECAP).unwrap();
    let input = dir.join("in.pcap");
    common::gen_mix(&input, count, 3);
    let o = vxspan(&[
        "replay",
        dir.join("encap.toml").to_str().unwrap(),
        "-i",
        &format!("in={}", input.display()),
        "--out-dir",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir.clone(), read_capture(&input))
}

#[test]
fn encap_then_decap_gives_back_every_frame() {
    let (dir, original) = setup("tunnels-roundtrip", 400);
    for out in OUTPUTS {
        let file = dir.join("out").join(format!("{out}.pcap"));
        let encapsulated = read_capture(&file);
        assert_eq!(encapsulated.len(), original.len(), "{out}");
        let back = dir.join(format!("{out}-back.pcap"));
        let o = vxspan(&[
            "replay",
            dir.join("decap.toml").to_str().unwrap(),
            "-i",
            &format!("in={}", file.display()),
            "-o",
            &format!("out={}", back.display()),
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{out}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let decapped: u64 = v["tunnels"]["in"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["packets"].as_u64().unwrap())
            .sum();
        assert_eq!(
            decapped,
            original.len() as u64,
            "{out}: every frame stripped"
        );
        let got = read_capture(&back);
        assert_eq!(got.len(), original.len(), "{out}");
        for (i, (g, w)) in got.iter().zip(&original).enumerate() {
            assert!(
                g.0 == w.0 && g.2 == w.2,
                "{out}: frame {i} differs after the round trip"
            );
        }
    }
}

/// `tshark -T fields` of a capture, one Vec of columns per frame.
fn tshark(file: &Path, fields: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args([
        "-n",
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    cmd.args(extra);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let o = cmd
        .output()
        .expect("tshark is installed by scripts/install-deps");
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn tshark_dissects_what_vxspan_sends() {
    let (dir, original) = setup("tunnels-tshark", 300);
    let outer_vid = |f: &[u8]| vxspan_core::wire::L2Info::parse(f).unwrap().outer_vid();
    for out in OUTPUTS {
        let file = dir.join("out").join(format!("{out}.pcap"));
        let extra: &[&str] = match out {
            "vxlan-v6" => &["-d", "udp.port==8472,vxlan"],
            "geneve-v6" => &["-d", "udp.port==6082,geneve"],
            _ => &[],
        };
        let rows = tshark(
            &file,
            &[
                "erspan.version",
                "erspan.spanid",
                "erspan.vlan",
                "erspan.timestamp",
                "erspan.truncated",
                "gre.sequence_number",
                "gre.key",
                "vxlan.vni",
                "ip.dsfield.dscp",
                "eth.src",
                "_ws.malformed",
                "ipv6.tclass",
                "geneve.vni",
                "geneve.proto_type",
                "geneve.version",
                "geneve.options",
            ],
            extra,
        );
        assert_eq!(rows.len(), original.len(), "{out}");
        for (i, (row, (frame, _, ts))) in rows.iter().zip(&original).enumerate() {
            let first = |col: usize| row[col].split(',').next().unwrap_or("").to_owned();
            let ctx = format!("{out} frame {i}: {row:?}");
            assert!(row[10].is_empty(), "malformed: {ctx}");
            // The inner frame is there: its source MAC is the second Ethernet source tshark saw.
            assert_eq!(
                row[9].split(',').nth(1),
                Some(mac(&frame[6..12]).as_str()),
                "{ctx}"
            );
            match out {
                o if o.starts_with("erspan") => {
                    let v3 = o.starts_with("erspan3");
                    assert_eq!(first(0), if v3 { "2" } else { "1" }, "{ctx}");
                    let session = match o {
                        "erspan2-v4" => "42",
                        "erspan2-v6" => "43",
                        "erspan3-v4" => "1023",
                        _ => "0",
                    };
                    assert_eq!(first(1), session, "{ctx}");
                    assert_eq!(first(2), outer_vid(frame).to_string(), "{ctx}");
                    assert_eq!(
                        first(5),
                        i.to_string(),
                        "sequence numbers count up from 0: {ctx}"
                    );
                    assert_eq!(first(4), "0", "not truncated: {ctx}");
                    if v3 {
                        assert_eq!(
                            first(3),
                            ((ts / 100) as u32).to_string(),
                            "100 ns timestamp: {ctx}"
                        );
                    }
                }
                "vxlan-v4" => assert_eq!(first(7), "7000", "{ctx}"),
                "vxlan-v6" => assert_eq!(first(7), "16777215", "{ctx}"),
                o if o.starts_with("geneve") => {
                    // tshark 4.0 shows the VNI in hexadecimal: 5001 is 0x001389.
                    let vni = if o == "geneve-v4" {
                        "0x001389"
                    } else {
                        "0x000000"
                    };
                    assert_eq!(first(12), vni, "{ctx}");
                    assert_eq!(first(13), "0x6558", "transparent Ethernet: {ctx}");
                    assert_eq!(
                        (first(14).as_str(), first(15).as_str()),
                        ("0", ""),
                        "version 0, no options: {ctx}"
                    );
                }
                "gre-v4" => assert_eq!(first(6), "0x00000005", "{ctx}"),
                _ => assert_eq!(first(6), "", "{ctx}"),
            }
            match out {
                "erspan2-v4" => assert_eq!(first(8), "8", "{ctx}"),
                "erspan3-v4" => assert_eq!(first(8), "10", "{ctx}"),
                "vxlan-v4" => assert_eq!(first(8), "46", "{ctx}"),
                "geneve-v4" => assert_eq!(first(8), "34", "{ctx}"),
                _ => {}
            }
        }
    }
}

#[test]
fn outer_mtu_truncates_with_the_t_bit_or_drops() {
    let dir = scratch("tunnels-mtu");
    let cfg = dir.join("mtu.toml");
    std::fs::write(
        &cfg,
        r#"
[inputs.in]
interface = "eth1"
[outputs.cut]
erspan = { version = 2, remote = "198.18.1.10", session = 7 }
mtu = 120
oversize = "truncate"
[outputs.drop]
vxlan = { remote = "198.18.1.11", vni = 1 }
mtu = 120
[[rules]]
from = "in"
to = ["cut", "drop"]
"#,
    )
    .unwrap();
    let input = dir.join("in.pcap");
    common::gen_mix(&input, 200, 4);
    let o = vxspan(&[
        "replay",
        cfg.to_str().unwrap(),
        "-i",
        &format!("in={}", input.display()),
        "--out-dir",
        dir.join("out").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let original = read_capture(&input);
    // 120-byte outer IPv4 packets: 20 IP + 8 GRE + 8 ERSPAN leave 84 bytes of frame.
    let big = original.iter().filter(|f| f.0.len() > 84).count() as u64;
    assert!(big > 0 && big < 200);
    assert_eq!(v["interfaces"]["cut"]["tx_packets"], 200);
    assert_eq!(
        v["interfaces"]["drop"]["tx_drop_reasons"]["mtu_exceeded"]
            .as_u64()
            .unwrap(),
        original.iter().filter(|f| f.0.len() > 120 - 36).count() as u64
    );
    let rows = tshark(
        &dir.join("out/cut.pcap"),
        &["erspan.truncated", "ip.len"],
        &[],
    );
    let truncated = rows.iter().filter(|r| r[0] == "1").count() as u64;
    assert_eq!(truncated, big);
    assert!(rows
        .iter()
        .all(|r| r[1].split(',').next().unwrap().parse::<u32>().unwrap() <= 120));
}
