//! Tunnel termination against the independent oracle of ../shared/captures (tshark-derived,
//! cross-checked by a separate header walker): for every capture, every frame whose oracle inner
//! payload is complete must come out of vxspan byte-identical (SHA-256), and the number of frames
//! vxspan strips per tunnel type must equal the oracle's count.

mod common;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

const CONFIG: &str = r#"
[inputs.in]
interface = "eth1"
decap = ["vxlan", "geneve", "gre", "erspan", "mpls"]
decap_ports = { vxlan = [8472] }
[outputs.out]
interface = "eth2"
[[rules]]
from = "in"
to = "out"
"#;

#[derive(Default)]
struct Last(Option<Vec<u8>>);

impl Sink for Last {
    fn transmit(&mut self, _: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0 = Some(f.data.to_vec());
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Oracle rows: (frame number, column -> value).
fn oracle(name: &str) -> Vec<BTreeMap<String, String>> {
    let path = common::shared()
        .join("captures/oracle")
        .join(format!("{name}.oracle.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    lines
        .map(|l| {
            // The CSV has no quoted commas in the columns used here except chain/vlan lists,
            // which are quoted; split respecting quotes.
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in l.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            fields.push(cur);
            cols.iter().map(|c| c.to_string()).zip(fields).collect()
        })
        .collect()
}

/// Oracle encap names as vxspan counts them (types vxspan does not strip are absent).
fn our_type(oracle_encap: &str) -> Option<&'static str> {
    Some(match oracle_encap {
        "vxlan" => "vxlan",
        "vxlan-gpe" => "vxlan-gpe",
        "geneve" => "geneve",
        "erspan-I" => "erspan-i",
        "erspan-II" => "erspan-ii",
        "erspan-III" => "erspan-iii",
        "gre-teb" => "gre-teb",
        "gre-ipv4" => "gre-ipv4",
        "gre-ipv6" => "gre-ipv6",
        "gre-in-udp" => "gre-in-udp",
        "mpls-in-udp" => "mpls-in-udp",
        _ => return None,
    })
}

#[test]
fn inner_frames_match_the_oracle() {
    let cfg =
        vxspan_config::parse(CONFIG, vxspan_config::Syntax::Toml, Path::new("decap.toml")).unwrap();
    let plan = Arc::new(Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap());
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(common::shared().join("captures/captures")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let rows = oracle(&name);
        if rows.is_empty() {
            continue;
        }
        files += 1;
        let frames = common::read_capture(&path);
        assert_eq!(frames.len(), rows.len(), "{name}: oracle rows");
        let mut engine = Engine::new(plan.clone());
        let mut our_counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut oracle_counts: BTreeMap<String, u64> = BTreeMap::new();
        for ((data, wire, ts), row) in frames.iter().zip(&rows) {
            let mut sink = Last::default();
            engine.process(
                0,
                RxFrame {
                    data,
                    wire_len: *wire,
                    ts: *ts,
                },
                &mut sink,
            );
            let inner_type = row["inner_type"].as_str();
            // Layers whose payload vxspan can deliver as a frame: Ethernet, or IP / ARP behind a
            // synthetic Ethernet header. (NSH, PPP and non-Ethernet ERSPAN III payloads pass
            // unchanged; a header cut short before its payload is dropped as malformed.)
            if let (Some(t), "ethernet" | "ipv4" | "ipv6" | "arp") =
                (our_type(&row["encap"]), inner_type)
            {
                *oracle_counts.entry(t.to_owned()).or_default() += 1;
            }
            if row["inner_status"] != "ok"
                || !matches!(inner_type, "ethernet" | "ipv4" | "ipv6" | "arp")
                || our_type(&row["encap"]).is_none()
            {
                continue;
            }
            checked += 1;
            let Some(out) = sink.0 else {
                failures.push(format!(
                    "{name} frame {}: {} -> nothing emitted",
                    row["frame"], row["encap"]
                ));
                continue;
            };
            // Bare IP / ARP payloads get vxspan's synthetic Ethernet header: compare after it.
            let payload = if inner_type == "ethernet" {
                &out[..]
            } else {
                out.get(14..).unwrap_or(&[])
            };
            let got = hex(&Sha256::digest(payload));
            if got != row["inner_sha256"] {
                failures.push(format!(
                    "{name} frame {}: {} {inner_type}: emitted {} bytes, oracle {} bytes",
                    row["frame"],
                    row["encap"],
                    payload.len(),
                    row["inner_len"]
                ));
            }
        }
        let report = engine.report();
        for (key, c) in &report.tunnels["in"] {
            let kind = key.split('/').next().unwrap();
            if our_type_reverse(kind) {
                *our_counts.entry(kind.to_owned()).or_default() += c.packets;
            }
        }
        // tshark cannot dissect BIG TCP tunnels (UDP length 0), so these have no oracle; vxspan
        // strips them (a zero UDP length means "to the end of the IP payload").
        let no_oracle = name.starts_with("tcpdump-bigtcp-");
        if our_counts != oracle_counts && !no_oracle {
            failures.push(format!(
                "{name}: per-type counts: vxspan {our_counts:?}, oracle {oracle_counts:?}"
            ));
        }
    }
    assert!(files > 40, "{files} captures with an oracle");
    assert!(checked > 1200, "only {checked} frames compared");
    assert!(
        failures.is_empty(),
        "{} of {checked} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn our_type_reverse(kind: &str) -> bool {
    [
        "vxlan",
        "vxlan-gpe",
        "geneve",
        "erspan-i",
        "erspan-ii",
        "erspan-iii",
        "gre-teb",
        "gre-ipv4",
        "gre-ipv6",
        "gre-in-udp",
        "mpls-in-udp",
    ]
    .contains(&kind)
}
