//! Counters keyed by packet contents stay bounded (issue #15): 20 inputs with `"10"` beside
//! `"any"` receiving every VID, one of them also 200,000 distinct GRE keys, 200,000 VXLAN VNIs
//! and 1,024 ERSPAN sessions. The counters must list what the configuration names and the
//! busiest others (`[counters]`, 64 each by default), sum the rest under `other` with an
//! estimate of how many ids it holds, and lose nothing: the JSON report stays under 1 MB and the
//! Prometheus rendering of it under 2 MB.

mod common;

use common::{scratch, vxspan};
use std::fmt::Write as _;
use std::path::Path;
use vxspan_core::wire::etherparse::{IpNumber, Ipv4Header, PacketBuilder};

const INPUTS: usize = 20;
const KEYS: u32 = 200_000;
const SESSIONS: u32 = 1024;

fn inner() -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([198, 18, 9, 1], [198, 18, 9, 2], 64)
        .udp(1, 2)
        .write(&mut f, &[0u8; 8])
        .unwrap();
    f
}

/// Ethernet / IPv4 / `ip_payload` with IP protocol `proto`.
fn over_ip(proto: IpNumber, ip_payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut h = Ipv4Header::new(
        ip_payload.len() as u16,
        64,
        proto,
        [198, 18, 0, 1],
        [198, 18, 0, 2],
    )
    .unwrap();
    h.header_checksum = h.calc_header_checksum();
    f.extend_from_slice(&h.to_bytes());
    f.extend_from_slice(ip_payload);
    f
}

fn gre_key(key: u32, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x20, 0x00, 0x65, 0x58]; // K, transparent Ethernet bridging
    g.extend_from_slice(&key.to_be_bytes());
    g.extend_from_slice(inner);
    over_ip(IpNumber::GRE, &g)
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner);
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(5000, 4789)
        .write(&mut f, &v)
        .unwrap();
    f
}

fn erspan2(session: u32, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1]; // S, ERSPAN II, sequence 1
    g.extend_from_slice(&(0x1000_0000 | session).to_be_bytes()); // version 1, VLAN 0
    g.extend_from_slice(&[0, 0, 0, 0]);
    g.extend_from_slice(inner);
    over_ip(IpNumber::GRE, &g)
}

/// Every VID once (and an untagged frame).
fn every_vlan() -> Vec<Vec<u8>> {
    let base = inner();
    (0..4096u16)
        .map(|vid| {
            if vid == 0 {
                return base.clone();
            }
            let mut f = base[..12].to_vec();
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&vid.to_be_bytes());
            f.extend_from_slice(&base[12..]);
            f
        })
        .collect()
}

fn write(path: &Path, frames: &[Vec<u8>]) {
    let mut w = vxspan_io::pcap::Writer::create(path).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(
            f,
            f.len() as u32,
            1_700_000_000_000_000_000 + i as u64 * 1000,
        )
        .unwrap();
    }
    w.flush().unwrap();
}

fn config() -> String {
    let mut s = String::from("[outputs.out]\ninterface = \"o1\"\n");
    for i in 0..INPUTS {
        let _ = write!(
            s,
            "[inputs.in{i}]\ninterface = \"i{i}\"\ndecap = [\"gre\", \"vxlan\", \"erspan\"]\n\
             [[rules]]\nfrom = \"in{i}\"\nvlan = [10]\nto = \"out\"\n\
             [[rules]]\nfrom = \"in{i}\"\nvlan = \"any\"\nto = \"out\"\n"
        );
    }
    // One rule names two VNIs and an ERSPAN session: always listed, busy or not.
    s.push_str("[[rules]]\nfrom = \"in0\"\nvni = [7, 1234567]\nerspan_session = 5\nto = \"out\"\n");
    s
}

#[test]
fn packet_chosen_ids_stay_bounded() {
    let dir = scratch("cardinality");
    std::fs::write(dir.join("c.toml"), config()).unwrap();
    let vlans = every_vlan();
    write(&dir.join("vlans.pcap"), &vlans);
    let i = inner();
    let mut flood: Vec<Vec<u8>> = Vec::new();
    for k in 0..KEYS {
        flood.push(gre_key(k, &i));
        flood.push(vxlan(k + 1000, &i));
    }
    for s in 0..SESSIONS {
        flood.push(erspan2(s, &i));
    }
    // A heavy hitter among the flood.
    for _ in 0..5000 {
        flood.push(gre_key(999_999_999, &i));
    }
    write(&dir.join("flood.pcap"), &flood);
    let mut args = vec![
        "replay".to_string(),
        dir.join("c.toml").display().to_string(),
    ];
    args.push("-i".into());
    args.push(format!("in0={}", dir.join("flood.pcap").display()));
    for n in 1..INPUTS {
        args.push("-i".into());
        args.push(format!("in{n}={}", dir.join("vlans.pcap").display()));
    }
    args.extend([
        "-o".into(),
        format!("out={}", dir.join("out.pcap").display()),
    ]);
    args.push("--json".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = vxspan(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("stats JSON: {} bytes", o.stdout.len());
    assert!(o.stdout.len() < 1 << 20, "{} bytes", o.stdout.len());
    let r: vxspan_core::Report = serde_json::from_slice(&o.stdout).unwrap();

    // VLANs: 10 (configured) + 64 busiest + other, on every input fed the VLAN sweep.
    for n in 1..INPUTS {
        let v = &r.vlans[&format!("in{n}")];
        assert_eq!(v.len(), 1 + 64 + 1, "in{n}: {} VLAN entries", v.len());
        assert_eq!(v["10"].packets, 1);
        let other = &v["other"];
        assert_eq!(other.vlans, Some(4096 - 65));
        let total: u64 = v.values().map(|c| c.packets).sum();
        assert_eq!(total, 4096, "in{n}: nothing lost");
    }

    // Tunnels: pinned ids, the 64 busiest, and other with an estimate of the distinct ids.
    let t = &r.tunnels["in0"];
    let listed = t.len() - 1;
    assert!(listed <= 64 + 6, "{listed} tunnel entries");
    for pinned in ["vxlan/7", "vxlan/1234567", "erspan-ii/5", "erspan-iii/5"] {
        assert!(t.contains_key(pinned), "{pinned} listed");
    }
    assert_eq!(t["vxlan/1234567"].packets, 0);
    assert!(
        t.get("gre-teb/999999999")
            .is_some_and(|c| c.packets >= 4000),
        "the heavy hitter is listed"
    );
    let total: u64 = t.values().map(|c| c.packets).sum();
    assert_eq!(total, u64::from(2 * KEYS + SESSIONS + 5000), "nothing lost");
    let ids = t["other"].ids.unwrap() as f64;
    let folded = f64::from(2 * KEYS + SESSIONS) - 64.0;
    assert!(
        (ids - folded).abs() / folded < 0.1,
        "other holds about {folded} ids, estimated {ids}"
    );

    // The Prometheus page of this report.
    let page =
        vxspan::metrics::render(&r, vxspan::metrics::Process::default(), &Default::default());
    eprintln!("metrics page: {} bytes", page.len());
    assert!(page.len() < 2 << 20, "{} bytes", page.len());
}

/// VxSPAN's own form: `"10"` beside `"any"` on 20 interfaces, every VID arriving. The `any`
/// entry takes every VID but 10, which names no VLAN in particular: 10, the 64 busiest and
/// `other` are listed per input, not 4,096.
#[test]
fn vxspan_any_beside_a_vid_lists_a_bounded_set() {
    let dir = scratch("cardinality-vxspan");
    let ifaces: Vec<String> = (0..INPUTS)
        .map(|i| {
            format!(
                "\"eth{i}\": {{ \"redirect_map\": {{ \"10\": \"eth99\", \"any\": \"eth99\" }} }}"
            )
        })
        .collect();
    let cfg = format!("{{ \"interfaces\": {{ {} }} }}", ifaces.join(", "));
    std::fs::write(dir.join("c.json"), cfg).unwrap();
    write(&dir.join("vlans.pcap"), &every_vlan());
    let mut args = vec![
        "replay".to_string(),
        dir.join("c.json").display().to_string(),
    ];
    for n in 0..INPUTS {
        args.push("-i".into());
        args.push(format!("eth{n}={}", dir.join("vlans.pcap").display()));
    }
    args.extend([
        "--out-dir".into(),
        dir.display().to_string(),
        "--json".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = vxspan(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("stats JSON: {} bytes", o.stdout.len());
    assert!(o.stdout.len() < 1 << 20, "{} bytes", o.stdout.len());
    let r: vxspan_core::Report = serde_json::from_slice(&o.stdout).unwrap();
    for n in 0..INPUTS {
        let v = &r.vlans[&format!("eth{n}")];
        assert_eq!(v.len(), 1 + 64 + 1, "eth{n}: {} VLAN entries", v.len());
        assert_eq!(v.values().map(|c| c.packets).sum::<u64>(), 4096);
    }
}
