//! A worker never dies of a packet (issue #15): the tests' build of vxspan panics inside the
//! engine on a frame carrying `engine::fault_injection::MAGIC` (the `fault-injection` feature,
//! enabled by this crate's dev-dependencies only). Among 1,000 frames, that one frame is counted
//! as `internal_error`, every other frame is forwarded, and the counters still conserve: offline
//! with `vxspan replay`, and live with `--workers 1`, where the daemon must keep running.
//!
//! The same replay also carries issue #15's two-frame crash (an untagged first fragment and a
//! priority-tagged last fragment of one datagram) and its IPv6 twin, which no longer panic.

mod common;

use common::daemon::{counter, Vxspan};
use common::netns::Netns;
use common::{read_capture, scratch, vxspan};
use std::path::Path;
use std::time::Duration;
use vxspan_core::engine::fault_injection::MAGIC;

const CONFIG: &str = r#"
[inputs.in]
interface = "eth0"
decap = ["vxlan", "gre", "erspan", "geneve"]
[outputs.out]
interface = "eth1"
[[rules]]
from = "in"
to = "out"
"#;

/// An untagged UDP frame to port 9 with `payload`.
fn udp(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    vxspan_core::wire::etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1000, 9)
        .write(&mut f, payload)
        .unwrap();
    f
}

/// 1,000 frames: generated traffic, with the magic frame at position 500.
fn frames_with_fault(dir: &Path) -> Vec<Vec<u8>> {
    let mix = dir.join("mix.pcap");
    common::gen_mix(&mix, 1200, 3);
    let mut frames: Vec<Vec<u8>> = read_capture(&mix)
        .into_iter()
        .map(|(f, _, _)| f)
        .filter(|f| f.len() >= 60)
        .collect();
    frames.truncate(999);
    let mut magic = b"padding ".to_vec();
    magic.extend_from_slice(MAGIC);
    frames.insert(500, udp(&magic));
    assert_eq!(frames.len(), 1000);
    frames
}

/// The two-frame crash: the first fragment untagged, the last priority-tagged (VID 0).
fn two_frame_crash() -> Vec<Vec<u8>> {
    let whole = udp(&[0x5a; 1000]);
    let mut first = whole[..14 + 20 + 512].to_vec();
    first[16..18].copy_from_slice(&(20u16 + 512).to_be_bytes());
    first[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
    let mut last = whole[..14 + 20].to_vec();
    last.extend_from_slice(&whole[14 + 20 + 512..]);
    let ip_len = (last.len() - 14) as u16;
    last[16..18].copy_from_slice(&ip_len.to_be_bytes());
    last[20..22].copy_from_slice(&(512u16 / 8).to_be_bytes()); // offset 512, last
    for f in [&mut first, &mut last] {
        f[24..26].copy_from_slice(&[0, 0]);
        let sum = vxspan_core::reasm::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    let tag = |f: &[u8]| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x00]);
        t.extend_from_slice(&f[12..]);
        t
    };
    let (tagged_first, tagged_last) = (tag(&first), tag(&last));
    vec![first, tagged_last, tagged_first, last]
}

fn assert_conserves(c: &serde_json::Value, port: &str) {
    let p = &c["interfaces"][port];
    let sum: u64 = p["drop_reasons"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(p["dropped_packets"].as_u64(), Some(sum), "{p}");
    assert_eq!(
        p["rx_packets"].as_u64(),
        Some(p["forwarded_packets"].as_u64().unwrap() + sum),
        "{p}"
    );
}

#[test]
fn a_panic_costs_one_frame_offline() {
    let dir = scratch("fault-replay");
    std::fs::write(dir.join("c.toml"), CONFIG).unwrap();
    let mut frames = frames_with_fault(&dir);
    frames.extend(two_frame_crash());
    common::write_pcap(&dir.join("in.pcap"), &frames, 1_000_000);
    let o = vxspan(&[
        "replay",
        dir.join("c.toml").to_str().unwrap(),
        "-i",
        &format!("in={}", dir.join("in.pcap").display()),
        "-o",
        &format!("out={}", dir.join("out.pcap").display()),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_conserves(&c, "in");
    let p = &c["interfaces"]["in"];
    assert_eq!(p["rx_packets"], 1004);
    assert_eq!(p["drop_reasons"]["internal_error"], 1, "{p}");
    // The crash frames: the untagged first and the tagged last fragment are two datagrams;
    // each completes with its own other half (tagged first, untagged last).
    assert_eq!(c["reassembly"]["in"]["completed"], 2, "{c}");
    assert_eq!(p["forwarded_packets"], 999 + 2);
    let out = read_capture(&dir.join("out.pcap"));
    assert_eq!(out.len(), 1001);
    assert!(!out
        .iter()
        .any(|(f, _, _)| f.windows(MAGIC.len()).any(|w| w == MAGIC)));
    // The reassembled datagrams are the original (without DF, which the fragments did not
    // have), untagged and tagged.
    let mut whole = udp(&[0x5a; 1000]);
    whole[20..22].copy_from_slice(&[0, 0]);
    whole[24..26].copy_from_slice(&[0, 0]);
    let sum = vxspan_core::reasm::checksum(&whole[14..34]);
    whole[24..26].copy_from_slice(&sum.to_be_bytes());
    let mut tagged = whole[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x00]);
    tagged.extend_from_slice(&whole[12..]);
    let tail: Vec<&Vec<u8>> = out[999..].iter().map(|(f, _, _)| f).collect();
    assert!(
        tail[0] == &tagged && tail[1] == &whole,
        "reassembled frames differ"
    );
}

/// The daemon's counters once the input has counted `n` frames (within 5 s).
fn counted(vx: &Vxspan, n: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = (0..250).any(|_| {
        last = vx.stats();
        std::thread::sleep(Duration::from_millis(20));
        counter(&last, "in", "rx_packets") >= n
    });
    assert!(done, "the daemon counted {last}");
    last
}

#[test]
fn a_panic_costs_one_frame_live_with_one_worker() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("fault-live");
    let ns = Netns::new("flt");
    ns.veth("eth0", "p0", 1500);
    ns.veth("eth1", "p1", 1500);
    std::fs::write(dir.join("c.toml"), CONFIG).unwrap();
    let mut frames = frames_with_fault(&dir);
    frames.extend(two_frame_crash());
    common::write_pcap(&dir.join("in.pcap"), &frames, 1_000_000);
    let vx = Vxspan::start_with(
        &ns,
        &dir.join("c.toml"),
        &dir,
        &["--datapath", "afpacket", "--workers", "1"],
    );
    let tx = ns.stat("p1", "rx_packets");
    // 2,000 frames a second: well inside what a debug build forwards, so any loss is the panic's.
    let input = dir.join("in.pcap");
    let send = || {
        ns.replay_paced("p0", 2000, &input);
    };
    send();
    // 1,000 frames (one the fault), then the two-frame crash's four fragments: two datagrams.
    let mut last = counted(&vx, 1004);
    assert_conserves(&last, "in");
    assert_eq!(counter(&last, "in", "rx_packets"), 1004);
    let reasons = &last["interfaces"]["in"]["drop_reasons"];
    assert_eq!(reasons["internal_error"], 1, "{last}");
    assert_eq!(reasons["fragment_held"], 2, "{last}");
    assert_eq!(last["reassembly"]["in"]["completed"], 2, "{last}");
    assert_eq!(counter(&last, "in", "forwarded_packets"), 999 + 2, "{last}");
    // Still running, still forwarding: a second pass counts again.
    send();
    last = counted(&vx, 2008);
    assert_eq!(
        last["interfaces"]["in"]["drop_reasons"]["internal_error"],
        2
    );
    assert_eq!(last["reassembly"]["in"]["completed"], 4, "{last}");
    assert_eq!(counter(&last, "out", "tx_packets"), 2 * 1001);
    let delivered = ns.stat("p1", "rx_packets") - tx;
    assert!(delivered >= 2 * 1001, "p1 received {delivered}");
    let end = vx.stop(&dir);
    assert_conserves(&end, "in");
}
