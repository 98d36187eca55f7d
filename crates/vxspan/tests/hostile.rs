//! The hostile-traffic corpus (tests/hostile, GitHub issue #15 item 6) replayed through
//! tests/hostile/decap-all.toml: one input stripping every tunnel family to depth "all", every
//! frame sent to a plain output and to ERSPAN III, VXLAN and GRE tunnel outputs.
//!
//! What is checked (every failure is collected, then reported together, each with the corpus
//! case it came from: cases.txt, via the frame's timestamp):
//!
//! 1. `vxspan replay` exits 0 and prints no panic; no frame is counted as `internal_error`.
//! 2. Conservation: on the input, rx = forwarded + dropped and dropped = the sum of the drop
//!    reasons; every output was handed exactly one copy of each forwarded frame
//!    (tx + tx_dropped = forwarded, although two rules match VLAN 10); each output's
//!    tx_packets equals the number of frames in its capture.
//! 3. The plain output: every frame is an input frame unchanged, or one of the frames a correct
//!    decapsulator may deliver, which make.py wrote beside the corpus: expected/required.pcap
//!    (inner frames of valid tunnels at the depth vxspan stops, IP payloads behind vxspan's
//!    synthetic Ethernet header, whole reassembled datagrams) and expected/allowed.pcap (inner
//!    frames of tunnels with odd but decodable headers). Byte equality, not "a substring of an
//!    input": a layer boundary found a few bytes off (an MPLS pseudowire taken for IP, a
//!    reassembled header rewritten at the wrong offset) fails. Every required frame must come
//!    out at least once. Frames vxspan built (not input frames) must also dissect in tshark
//!    without a malformed-packet or error-level expert item (make.sh checks the expected
//!    frames are clean, so this only fails if vxspan built something else).
//! 4. The tunnel outputs: vxspan builds every byte of their outer headers, so each frame must
//!    dissect as the right outer stack (Ethernet / IPv4 / GRE / ERSPAN, UDP / VXLAN, GRE) with
//!    the mirrored frame right after vxspan's fixed header, byte-identical to the plain
//!    output's frame at the same position (copies go out in the same order; a copy a tunnel
//!    output dropped is skipped), with the same timestamp. The mirrored frame is the attacker's
//!    and may be garbage, so tshark's errors are allowed in a tunnel frame only as far as
//!    tshark reports the same errors for its mirrored frame on its own (in the plain output):
//!    the tunnel frame's error-level expert messages must be a sub-multiset of the mirrored
//!    frame's. An error vxspan's headers cause (a bad outer length, a truncated header) is one
//!    more message and fails.
//!
//! Whether tests/hostile/hostile.pcap and expected/ are what make.py produces is checked by
//! scripts/test (as for the golden fixture), so this test does not need python3 or scapy. It
//! needs tshark (scripts/install-deps installs it) and fails without it.

mod common;

use common::{read_capture, root, scratch, vxspan};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

const BASE_NS: u64 = 1_700_000_000 * 1_000_000_000;
const STEP_NS: u64 = 1_000_000;
/// tshark's PI_ERROR severity.
const SEVERITY_ERROR: u64 = 0x0080_0000;

/// Outputs of decap-all.toml: name, bytes vxspan puts in front of the mirrored frame, and the
/// protocol stack tshark must see up to the mirrored frame's Ethernet header.
const TUNNELS: [(&str, usize, &str); 3] = [
    (
        "erspan",
        14 + 20 + 8 + 12,
        "eth:ethertype:ip:gre:erspan:eth",
    ),
    ("vxlan", 14 + 20 + 8 + 8, "eth:ethertype:ip:udp:vxlan:eth"),
    ("gre", 14 + 20 + 8, "eth:ethertype:ip:gre:eth"),
];

/// Failures of one kind: a count and the first few descriptions.
#[derive(Default)]
struct Failures(Vec<(String, Vec<String>)>);

impl Failures {
    fn add(&mut self, kind: &str, what: String) {
        match self.0.iter_mut().find(|(k, _)| k == kind) {
            Some((_, v)) => v.push(what),
            None => self.0.push((kind.to_owned(), vec![what])),
        }
    }

    fn report(&self) -> String {
        let mut s = String::new();
        for (kind, v) in &self.0 {
            s += &format!("\n== {kind}: {} frame(s)\n", v.len());
            for w in v.iter().take(12) {
                s += &format!("   {w}\n");
            }
            if v.len() > 12 {
                s += &format!("   ... and {} more\n", v.len() - 12);
            }
        }
        s
    }
}

/// cases.txt: (first, last, name), frame numbers 1-based and inclusive.
struct Cases(Vec<(u64, u64, String)>);

impl Cases {
    fn load(path: &Path, frames: u64) -> Cases {
        let text = std::fs::read_to_string(path).unwrap();
        let mut v = Vec::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let mut it = l.splitn(3, ' ');
            let a: u64 = it.next().unwrap().parse().unwrap();
            let b: u64 = it.next().unwrap().parse().unwrap();
            v.push((a, b, it.next().unwrap().to_owned()));
        }
        // The cases cover the corpus exactly, in order.
        let mut next = 1;
        for (a, b, name) in &v {
            assert!(
                *a == next && b >= a,
                "cases.txt: {a}-{b} {name}, expected to start at {next}"
            );
            next = b + 1;
        }
        assert_eq!(next - 1, frames, "cases.txt covers hostile.pcap");
        Cases(v)
    }

    /// The case of a frame with timestamp `ts` (an input frame's, or the frame that completed
    /// or carried an output frame).
    fn of_ts(&self, ts: u64) -> String {
        let n = ts.saturating_sub(BASE_NS) / STEP_NS + 1;
        self.0
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&n))
            .map_or_else(
                || format!("frame time {ts} (no case)"),
                |(_, _, name)| format!("#{n} [{name}]"),
            )
    }
}

/// tshark's view of every frame of a capture: (protocols, error-level expert messages), the
/// malformed-packet exception included (it is an error-level item too).
fn tshark(path: &Path) -> Vec<(String, Vec<String>)> {
    let o = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=\u{1f}",
            "-E",
            "separator=\t",
            "-e",
            "frame.protocols",
            "-e",
            "_ws.expert.severity",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    assert!(
        o.status.success(),
        "tshark {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let protocols = f.next().unwrap_or("").to_owned();
            let sev: Vec<&str> = f.next().unwrap_or("").split('\u{1f}').collect();
            let msg: Vec<&str> = f.next().unwrap_or("").split('\u{1f}').collect();
            let mut errors: Vec<String> = sev
                .iter()
                .zip(msg.iter())
                .filter(|(s, _)| s.parse::<u64>().is_ok_and(|s| s >= SEVERITY_ERROR))
                .map(|(_, m)| m.to_string())
                .collect();
            errors.sort();
            (protocols, errors)
        })
        .collect()
}

/// `small` is a sub-multiset of `big` (both sorted).
fn sub_multiset(small: &[String], big: &[String]) -> bool {
    let mut rest: Vec<&String> = big.iter().collect();
    small
        .iter()
        .all(|s| match rest.iter().position(|b| *b == s) {
            Some(i) => {
                rest.remove(i);
                true
            }
            None => false,
        })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where `f` sits inside an input frame, if it does: a hint for the report.
fn found_in(f: &[u8], inputs: &[(Vec<u8>, u32, u64)], cases: &Cases) -> String {
    for (d, _, ts) in inputs {
        if f.len() > 14 && d.len() >= f.len() {
            if let Some(at) = d.windows(f.len()).position(|w| w == f) {
                return format!("; it is bytes {at}.. of input {}", cases.of_ts(*ts));
            }
        }
    }
    if f.len() > 28 {
        // Behind a synthetic Ethernet header, or with its first bytes wrong?
        let tail = &f[14..];
        for (d, _, ts) in inputs {
            if d.len() >= tail.len() {
                if let Some(at) = d.windows(tail.len()).position(|w| w == tail) {
                    return format!(
                        "; its bytes 14.. are bytes {at}.. of input {}",
                        cases.of_ts(*ts)
                    );
                }
            }
        }
    }
    String::new()
}

fn count(v: &serde_json::Value, port: &str, key: &str) -> u64 {
    v["interfaces"][port][key]
        .as_u64()
        .unwrap_or_else(|| panic!("interfaces.{port}.{key} in the counters"))
}

#[test]
fn hostile_corpus_decap_all() {
    // VXSPAN_HOSTILE_DIR: another directory laid out like tests/hostile (make.py --out DIR,
    // e.g. with --skip), to try a modified corpus.
    let dir = std::env::var_os("VXSPAN_HOSTILE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("tests/hostile"));
    let out = scratch("hostile");
    let corpus = dir.join("hostile.pcap");
    let inputs = read_capture(&corpus);
    let cases = Cases::load(&dir.join("cases.txt"), inputs.len() as u64);
    let required = read_capture(&dir.join("expected/required.pcap"));
    let allowed = read_capture(&dir.join("expected/allowed.pcap"));
    let mut fail = Failures::default();

    // -- 1. The replay.
    let o = vxspan(&[
        "replay",
        root()
            .join("tests/hostile/decap-all.toml")
            .to_str()
            .unwrap(),
        "-i",
        &format!("a={}", corpus.display()),
        "--out-dir",
        out.to_str().unwrap(),
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "vxspan replay failed ({}):\n{stderr}",
        o.status
    );
    if stderr.contains("panicked") {
        fail.add(
            "vxspan panicked (stderr)",
            stderr.trim().replace('\n', "\n   "),
        );
    }
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    // -- 2. Conservation.
    let (rx, fwd, dropped) = (
        count(&c, "a", "rx_packets"),
        count(&c, "a", "forwarded_packets"),
        count(&c, "a", "dropped_packets"),
    );
    let reasons = c["interfaces"]["a"]["drop_reasons"].as_object().unwrap();
    let reason_sum: u64 = reasons.values().map(|v| v.as_u64().unwrap()).sum();
    let mut counters = Vec::new();
    if rx != inputs.len() as u64 {
        counters.push(format!(
            "input a: rx_packets {rx}, the corpus has {}",
            inputs.len()
        ));
    }
    if rx != fwd + dropped {
        counters.push(format!(
            "input a: rx {rx} != forwarded {fwd} + dropped {dropped}"
        ));
    }
    if dropped != reason_sum {
        counters.push(format!(
            "input a: dropped {dropped} != sum of drop_reasons {reason_sum} {reasons:?}"
        ));
    }
    if let Some(n) = reasons.get("internal_error").and_then(|v| v.as_u64()) {
        if n > 0 {
            counters.push(format!(
                "input a: {n} frame(s) dropped as internal_error (a caught panic)"
            ));
        }
    }
    let mut files = HashMap::new();
    for name in ["plain", "erspan", "vxlan", "gre"] {
        let frames = read_capture(&out.join(format!("{name}.pcap")));
        let (tx, txd) = (
            count(&c, name, "tx_packets"),
            count(&c, name, "tx_dropped_packets"),
        );
        if tx != frames.len() as u64 {
            counters.push(format!(
                "output {name}: tx_packets {tx}, its capture has {} frames",
                frames.len()
            ));
        }
        if tx + txd != fwd {
            counters.push(format!(
                "output {name}: tx {tx} + tx_dropped {txd} != the input's forwarded {fwd} (one copy per forwarded frame)"
            ));
        }
        files.insert(name, frames);
    }
    for what in counters {
        fail.add("counters do not add up", what);
    }

    // -- 3. The plain output.
    let input_set: HashSet<&[u8]> = inputs.iter().map(|f| &f.0[..]).collect();
    let expected: HashSet<&[u8]> = required.iter().chain(&allowed).map(|f| &f.0[..]).collect();
    let plain = &files["plain"];
    let plain_tshark = tshark(&out.join("plain.pcap"));
    assert_eq!(
        plain_tshark.len(),
        plain.len(),
        "tshark frames of plain.pcap"
    );
    let mut plain_seen: HashSet<&[u8]> = HashSet::new();
    for (i, ((f, _, ts), (protos, errors))) in plain.iter().zip(&plain_tshark).enumerate() {
        plain_seen.insert(f);
        if input_set.contains(&f[..]) {
            continue;
        }
        let at = format!(
            "plain #{} from {} ({} bytes)",
            i + 1,
            cases.of_ts(*ts),
            f.len()
        );
        if !expected.contains(&f[..]) {
            fail.add(
                "plain output: neither an input frame nor an expected inner frame",
                format!(
                    "{at}: {}{}",
                    hex(&f[..f.len().min(48)]),
                    found_in(f, &inputs, &cases)
                ),
            );
        }
        if !errors.is_empty() {
            fail.add(
                "plain output: a frame vxspan built does not dissect cleanly",
                format!("{at}: {protos}: {}", errors.join("; ")),
            );
        }
    }
    for (f, _, ts) in &required {
        if !plain_seen.contains(&f[..]) {
            fail.add(
                "plain output: a required inner frame / datagram never came out",
                format!(
                    "{} ({} bytes): {}",
                    cases.of_ts(*ts),
                    f.len(),
                    hex(&f[..f.len().min(32)])
                ),
            );
        }
    }

    // -- 4. The tunnel outputs.
    for (name, overhead, stack) in TUNNELS {
        let frames = &files[name];
        let dissected = tshark(&out.join(format!("{name}.pcap")));
        assert_eq!(
            dissected.len(),
            frames.len(),
            "tshark frames of {name}.pcap"
        );
        let kind = format!("{name} output");
        let mut p = 0; // the next plain frame this output's copies may be of
        for (i, ((f, _, ts), (protos, errors))) in frames.iter().zip(&dissected).enumerate() {
            let at = format!(
                "{name} #{} from {} ({} bytes)",
                i + 1,
                cases.of_ts(*ts),
                f.len()
            );
            let inner = f.get(overhead..).unwrap_or(&[]);
            // The copy of which plain frame: the next one with these bytes and this time.
            let Some(k) = (p..plain.len()).find(|&k| plain[k].0 == inner && plain[k].2 == *ts)
            else {
                fail.add(
                    &format!("{kind}: the mirrored frame is not the plain output's next copy"),
                    format!("{at}: {}", hex(&f[..f.len().min(64)])),
                );
                continue;
            };
            p = k + 1;
            if !protos.starts_with(stack) {
                fail.add(
                    &format!("{kind}: outer headers do not dissect as {stack}"),
                    format!("{at}: {protos}"),
                );
            }
            if !sub_multiset(errors, &plain_tshark[k].1) {
                fail.add(
                    &format!("{kind}: tshark errors beyond those of the mirrored frame"),
                    format!(
                        "{at}: tunnel frame: {errors:?}; mirrored frame alone: {:?}",
                        plain_tshark[k].1
                    ),
                );
            }
        }
    }

    let r = &c["reassembly"]["a"];
    eprintln!(
        "hostile corpus: {} frames in, {fwd} forwarded, {dropped} dropped {:?}; reassembly {r}; plain output {} frames",
        inputs.len(),
        reasons,
        plain.len()
    );
    assert!(
        fail.0.is_empty(),
        "the hostile corpus fails:{}",
        fail.report()
    );
}
