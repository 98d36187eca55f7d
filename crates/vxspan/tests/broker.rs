//! Broker features in replay, with the packets' own timestamps as the clock: flow load balancing,
//! de-duplication and rate limiting.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use vxspan::gen::Rng;
use vxspan_core::wire::etherparse::PacketBuilder;
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

#[derive(Default)]
struct Collect(Vec<(usize, Vec<u8>, u64)>);

impl Sink for Collect {
    fn transmit(&mut self, o: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        self.0.push((o, f.data.to_vec(), f.ts));
        Ok(())
    }
}

fn engine(text: &str) -> Engine {
    let cfg =
        vxspan_config::parse(text, vxspan_config::Syntax::Toml, Path::new("broker.toml")).unwrap();
    Engine::new(Arc::new(
        Plan::compile(&cfg, &vxspan_io::filter::Libpcap).unwrap(),
    ))
}

/// A TCP packet of a flow, in one direction or the other, on a VLAN.
fn packet(flow: u32, reverse: bool, vid: u16) -> Vec<u8> {
    let a = [198, 18, (flow >> 8) as u8, flow as u8];
    let b = [198, 19, (flow >> 16) as u8, (flow >> 3) as u8];
    let (pa, pb) = (
        10_000 + (flow % 50_000) as u16,
        [80, 443, 22][(flow % 3) as usize],
    );
    let (src, dst, sp, dp) = if reverse {
        (b, a, pb, pa)
    } else {
        (a, b, pa, pb)
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(vid.try_into().unwrap())
        .ipv4(src, dst, 64)
        .tcp(sp, dp, flow, 1000)
        .write(&mut out, b"payload")
        .unwrap();
    out
}

fn balance_config(tools: &[&str]) -> String {
    let mut t = String::from("[inputs.span]\ninterface = \"eth1\"\n");
    for name in ["ids1", "ids2", "ids3"] {
        t += &format!("[outputs.{name}]\ninterface = \"{name}\"\n");
    }
    let list = tools
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    t += &format!(
        "[[rules]]\nfrom = \"span\"\nto = {{ balance = [{list}], hash = \"symmetric-5tuple\" }}\n"
    );
    t
}

/// Which output each (flow, direction) went to.
fn run_flows(e: &mut Engine, flows: u32) -> BTreeMap<(u32, bool), usize> {
    let mut out = BTreeMap::new();
    for f in 0..flows {
        for rev in [false, true] {
            let p = packet(f, rev, 10 + (f % 5) as u16);
            let mut s = Collect::default();
            e.process(
                0,
                RxFrame {
                    data: &p,
                    wire_len: p.len() as u32,
                    ts: u64::from(f),
                },
                &mut s,
            );
            assert_eq!(s.0.len(), 1, "one copy per frame");
            let name = &e.plan().outputs[s.0[0].0].name;
            out.insert(
                (f, rev),
                ["ids1", "ids2", "ids3"]
                    .iter()
                    .position(|n| n == name)
                    .unwrap(),
            );
        }
    }
    out
}

#[test]
fn balance_shares_symmetry_and_stability() {
    let mut e = engine(&balance_config(&["ids1", "ids2", "ids3"]));
    let got = run_flows(&mut e, 10_000);
    let mut share = [0u32; 3];
    for f in 0..10_000 {
        // Both directions of every flow land on the same tool.
        assert_eq!(got[&(f, false)], got[&(f, true)], "flow {f}");
        share[got[&(f, false)]] += 1;
    }
    // Each tool gets its share within 10%.
    for s in share {
        assert!(
            (f64::from(s) / (10_000.0 / 3.0) - 1.0).abs() < 0.10,
            "{share:?}"
        );
    }
    // Removing one tool moves only its flows.
    let mut e2 = engine(&balance_config(&["ids1", "ids3"]));
    let after = run_flows(&mut e2, 10_000);
    let mut moved = 0;
    for f in 0..10_000 {
        let (b, a) = (got[&(f, false)], after[&(f, false)]);
        if b == 1 {
            assert_ne!(a, 1);
            moved += 1;
        } else {
            assert_eq!(a, b, "flow {f} moved although its tool stayed");
        }
    }
    assert_eq!(moved, share[1]);
    // A tool whose link is down is taken out; its flows come back with it.
    let ids2 = e
        .plan()
        .outputs
        .iter()
        .position(|o| o.name == "ids2")
        .unwrap();
    e.set_output_up(ids2, false);
    let down = run_flows(&mut e, 2_000);
    assert!(down.values().all(|o| *o != 1));
    e.set_output_up(ids2, true);
    let back = run_flows(&mut e, 2_000);
    assert!(back.iter().all(|(k, v)| *v == got[k]));
}

#[test]
fn weights_and_fragments() {
    let text = "[inputs.span]\ninterface = \"eth1\"\n[outputs.a]\ninterface = \"a\"\n[outputs.b]\ninterface = \"b\"\n[[rules]]\nfrom = \"span\"\nto = { balance = [\"a\", \"b\"], weights = [1, 3] }\n";
    let mut e = engine(text);
    let mut s = Collect::default();
    for f in 0..8_000 {
        let p = packet(f, false, 10);
        e.process(
            0,
            RxFrame {
                data: &p,
                wire_len: p.len() as u32,
                ts: 0,
            },
            &mut s,
        );
    }
    let b =
        s.0.iter()
            .filter(|(o, _, _)| e.plan().outputs[*o].name == "b")
            .count();
    assert!(
        (b as f64 / 6_000.0 - 1.0).abs() < 0.05,
        "weight 3 of 4: {b} of 8000"
    );
    // All fragments of a datagram reach one tool (hashed on addresses and protocol only).
    let mut s = Collect::default();
    for f in 0..200 {
        let mut first = packet(f, false, 10);
        let mut later = first.clone();
        first[18 + 6] = 0x20; // MF, offset 0: carries the ports
        later[18 + 6] = 0x00;
        later[18 + 7] = 0x10; // offset 128 bytes, no transport header
        later[18 + 20..18 + 24].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        for p in [first, later] {
            e.process(
                0,
                RxFrame {
                    data: &p,
                    wire_len: p.len() as u32,
                    ts: 0,
                },
                &mut s,
            );
        }
    }
    for pair in s.0.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0);
    }
}

#[test]
fn dedup_drops_shifted_copies_only() {
    let text = "[inputs.span]\ninterface = \"eth1\"\n[outputs.out]\ninterface = \"eth2\"\n[[rules]]\nfrom = \"span\"\nto = \"out\"\ndedup = { window_ms = 10 }\n";
    let mut e = engine(text);
    // A capture merged with a copy of itself shifted by 1 ms, with TTL decremented (and the
    // IPv4 checksum fixed) and a different VLAN tag: every packet comes out exactly once.
    let mut rng = Rng::new(3);
    let mut frames: Vec<(Vec<u8>, u64)> = Vec::new();
    for i in 0..2_000u64 {
        let p = packet(rng.below(1_000_000) as u32, i % 2 == 0, 10);
        let ts = i * 20_000_000; // 20 ms apart
        let mut copy = p.clone();
        copy[15] = 99; // other VLAN
        copy[18 + 8] -= 1; // TTL
        let sum = u16::from_be_bytes([copy[28], copy[29]]).wrapping_add(0x0100);
        copy[28..30].copy_from_slice(&sum.to_be_bytes());
        frames.push((p, ts));
        frames.push((copy, ts + 1_000_000));
    }
    frames.sort_by_key(|f| f.1);
    let mut s = Collect::default();
    for (p, ts) in &frames {
        e.process(
            0,
            RxFrame {
                data: p,
                wire_len: p.len() as u32,
                ts: *ts,
            },
            &mut s,
        );
    }
    assert_eq!(s.0.len(), 2_000);
    let r = e.report();
    assert_eq!(r.interfaces["span"].drop_reasons["duplicate"], 2_000);
    assert_eq!(r.rules[0].duplicate_packets, 2_000);
    // Identical packets further apart than the window pass.
    let mut s = Collect::default();
    let p = packet(7, false, 10);
    for ts in [10_000_000_000u64, 10_011_000_000, 10_022_000_000] {
        e.process(
            0,
            RxFrame {
                data: &p,
                wire_len: p.len() as u32,
                ts,
            },
            &mut s,
        );
    }
    assert_eq!(s.0.len(), 3);
}

#[test]
fn rate_limit_by_packet_time() {
    // 8 Mbit/s = 1,000,000 bytes/s, burst 20,000 bytes; offered: 1000-byte frames every 0.5 ms
    // (2,000,000 bytes/s) for 2 s.
    let text = "[inputs.span]\ninterface = \"eth1\"\n[outputs.slow]\ninterface = \"eth2\"\nrate_limit = \"8Mbit\"\nrate_burst = 20000\n[outputs.fast]\ninterface = \"eth3\"\n[[rules]]\nfrom = \"span\"\nto = [\"slow\", \"fast\"]\n";
    let mut e = engine(text);
    let mut frame = packet(1, false, 10);
    frame.resize(1000, 0);
    let mut s = Collect::default();
    let n = 4_000u64;
    for i in 0..n {
        e.process(
            0,
            RxFrame {
                data: &frame,
                wire_len: 1000,
                ts: 5_000_000_000 + i * 500_000,
            },
            &mut s,
        );
    }
    let r = e.report();
    let slow = &r.interfaces["slow"];
    let duration = (n - 1) as f64 * 0.0005;
    let carried = slow.tx_bytes as f64;
    let expected = 1_000_000.0 * duration;
    assert!(
        (carried - expected).abs() <= 20_000.0 + 1000.0,
        "carried {carried} bytes, expected {expected} +/- one burst"
    );
    assert_eq!(
        slow.tx_packets + slow.tx_drop_reasons["rate_limited"],
        n,
        "the rest is counted"
    );
    assert_eq!(
        r.interfaces["fast"].tx_packets, n,
        "other outputs are not limited"
    );
}

#[test]
fn broker_config_errors() {
    let dir = common::scratch("broker-errors");
    let base = "[inputs.span]\ninterface = \"eth1\"\n[outputs.a]\ninterface = \"a\"\n[outputs.b]\ninterface = \"b\"\n";
    let cases = [
        ("[[rules]]\nfrom = \"span\"\nto = { balance = [\"a\"] }\n", "rules[0].to.balance", "at least two"),
        ("[[rules]]\nfrom = \"span\"\nto = { balance = [\"a\", \"c\"] }\n", "rules[0].to.balance[1]", "unknown output"),
        ("[[rules]]\nfrom = \"span\"\nto = { balance = [\"a\", \"b\"], weights = [1] }\n", "rules[0].to.weights", "1 weights for 2 outputs"),
        ("[[rules]]\nfrom = \"span\"\nto = { balance = [\"a\", \"b\"], hash = \"random\" }\n", "rules[0].to.hash", "unknown hash"),
        ("[[rules]]\nfrom = \"span\"\nto = \"a\"\ndedup = { window_ms = 0 }\n", "rules[0].dedup.window_ms", "1 to 60000"),
        ("[[rules]]\nfrom = \"span\"\nto = \"a\"\ndedup = { table_size = 3000, window_ms = 5 }\n", "rules[0].dedup.table_size", "power of two"),
    ];
    for (i, (rule, path, needle)) in cases.iter().enumerate() {
        let f = dir.join(format!("b{i}.toml"));
        std::fs::write(&f, format!("{base}{rule}")).unwrap();
        let o = common::vxspan(&["check", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{rule}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{path}: ")) && err.contains(needle),
            "{err}"
        );
    }
    let f = dir.join("rate.toml");
    std::fs::write(&f, "[inputs.span]\ninterface = \"eth1\"\n[outputs.a]\ninterface = \"a\"\nrate_limit = \"fast\"\n").unwrap();
    let o = common::vxspan(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("outputs.a.rate_limit"));
}

fn tshark_count(file: &std::path::Path) -> (usize, Vec<String>) {
    let o = std::process::Command::new("tshark")
        .args([
            "-n",
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.interface_description",
        ])
        .output()
        .expect("tshark");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines.len(), lines)
}

/// The archive output: rotation by packet time and by size produces the configured files, the
/// retention count removes the oldest, every file is pcapng readable by tshark with the right
/// packet count and its input's name and description.
#[test]
fn archive_rotation_and_retention() {
    let dir = common::scratch("archive");
    // 50 frames, 100 ms apart: 5 seconds of packet time.
    let input = dir.join("in.pcap");
    let mut w = vxspan_io::pcap::Writer::create(&input).unwrap();
    for i in 0..50u64 {
        let p = packet(i as u32, false, 10);
        w.write(
            &p,
            p.len() as u32,
            1_700_000_000_000_000_000 + i * 100_000_000,
        )
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let cfg = dir.join("archive.toml");
    let pattern = dir.join("t/mirror-%Y%m%dT%H%M%S-%N.pcapng");
    std::fs::write(
        &cfg,
        format!("[inputs.span]\ninterface = \"eth1\"\ndecap = [\"vxlan\"]\n[outputs.archive]\npcap = {{ path = \"{}\", rotate_s = 1, keep = 3 }}\n[[rules]]\nfrom = \"span\"\nto = \"archive\"\n", pattern.display()),
    )
    .unwrap();
    let o = common::vxspan(&[
        "replay",
        cfg.to_str().unwrap(),
        "-i",
        &format!("span={}", input.display()),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<_> = std::fs::read_dir(dir.join("t"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Seconds 20 to 24 of 22:13; five files were written, the last three kept.
    assert_eq!(
        names,
        [
            "mirror-20231114T221322-2.pcapng",
            "mirror-20231114T221323-3.pcapng",
            "mirror-20231114T221324-4.pcapng"
        ]
    );
    for f in &files {
        let (n, lines) = tshark_count(f);
        assert_eq!(n, 10, "{}", f.display());
        assert!(
            lines.iter().all(|l| l.starts_with(
                "span\tvxspan input span from eth1, tunnels stripped: vxlan (depth 1)"
            )),
            "{lines:?}"
        );
    }

    // By size: 3,000 frames of 1,000 bytes into files of at most 1 MiB.
    let input = dir.join("big.pcap");
    let mut w = vxspan_io::pcap::Writer::create(&input).unwrap();
    for i in 0..3000u64 {
        let mut p = packet(i as u32, false, 10);
        p.resize(1000, 0);
        w.write(&p, 1000, 1_700_000_000_000_000_000 + i).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let pattern = dir.join("s/part-%N.pcapng");
    std::fs::write(&cfg, format!("[inputs.span]\ninterface = \"eth1\"\n[outputs.archive]\npcap = {{ path = \"{}\", rotate_mb = 1 }}\n[[rules]]\nfrom = \"span\"\nto = \"archive\"\n", pattern.display())).unwrap();
    let o = common::vxspan(&[
        "replay",
        cfg.to_str().unwrap(),
        "-i",
        &format!("span={}", input.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut total = 0;
    for i in 0..3 {
        let f = dir.join(format!("s/part-{i}.pcapng"));
        assert!(
            std::fs::metadata(&f).unwrap().len() <= (1 << 20) + 1100,
            "{}",
            f.display()
        );
        total += tshark_count(&f).0;
    }
    assert!(!dir.join("s/part-3.pcapng").exists());
    assert_eq!(total, 3000);
}

/// The balancing hash is keyed (issue #15): `vxspan replay` uses its fixed key by default (the
/// same outputs every time), `--hash-key` another (other flows on each tool), and a malformed
/// key is refused with exit 2.
#[test]
fn replay_hash_key_decides_the_balance() {
    let dir = common::scratch("hash-key");
    std::fs::write(
        dir.join("b.toml"),
        balance_config(&["ids1", "ids2", "ids3"]),
    )
    .unwrap();
    common::gen_mix(&dir.join("mix.pcap"), 3000, 9);
    let run = |key: Option<&str>| {
        let out = dir.join(format!("out-{}", key.unwrap_or("default")));
        let mut args = vec![
            "replay".to_string(),
            dir.join("b.toml").display().to_string(),
            "-i".into(),
            format!("span={}", dir.join("mix.pcap").display()),
            "--out-dir".into(),
            out.display().to_string(),
        ];
        if let Some(k) = key {
            args.extend(["--hash-key".into(), k.into()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = common::vxspan(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ["ids1", "ids2", "ids3"].map(|t| std::fs::read(out.join(format!("{t}.pcap"))).unwrap())
    };
    let a = run(None);
    assert_eq!(a, run(None), "the replay key is fixed");
    assert_eq!(
        a,
        run(Some("76787370616e2d7265706c61792d6b31")),
        "and documented"
    );
    assert_ne!(a, run(Some("00112233445566778899aabbccddeeff")));
    let o = common::vxspan(&[
        "replay",
        dir.join("b.toml").to_str().unwrap(),
        "-i",
        &format!("span={}", dir.join("mix.pcap").display()),
        "--hash-key",
        "xyz",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--hash-key"));
}
