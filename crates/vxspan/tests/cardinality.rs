//! Counters keyed by packet contents stay bounded (issue #15): 20 inputs with `"10"` beside
//! `"any"` receiving every VID, one of them also 200,000 distinct GRE keys, 200,000 VXLAN VNIs
//! and 1,024 ERSPAN sessions. The counters must list what the configuration names and the
//! busiest others (`[counters]`, 64 each by default), sum the rest under `other` with an
//! estimate of how many ids it holds, and lose nothing: the JSON report stays under 1 MB and the
//! Prometheus rendering of it under 2 MB.

mod common;

use common::floods::{every_vlan, key_flood};
use common::{scratch, vxspan};
use std::fmt::Write as _;

const INPUTS: usize = 20;
const KEYS: u32 = 200_000;
const SESSIONS: u32 = 1024;

/// `vxspan replay ARGS`: its JSON counters, which must be under 1 MB.
fn replay_report(args: &[String]) -> vxspan_core::Report {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = vxspan(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("stats JSON: {} bytes", o.stdout.len());
    assert!(o.stdout.len() < 1 << 20, "{} bytes", o.stdout.len());
    serde_json::from_slice(&o.stdout).unwrap()
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
    common::write_pcap(&dir.join("vlans.pcap"), &vlans, 1000);
    // With a heavy hitter among the flood.
    common::write_pcap(&dir.join("flood.pcap"), &key_flood(), 1000);
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
    let r = replay_report(&args);

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
        vxspan::metrics::render(&r, vxspan::process::Process::default(), &Default::default());
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
    common::write_pcap(&dir.join("vlans.pcap"), &every_vlan(), 1000);
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
    let r = replay_report(&args);
    for n in 0..INPUTS {
        let v = &r.vlans[&format!("eth{n}")];
        assert_eq!(v.len(), 1 + 64 + 1, "eth{n}: {} VLAN entries", v.len());
        assert_eq!(v.values().map(|c| c.packets).sum::<u64>(), 4096);
    }
}
