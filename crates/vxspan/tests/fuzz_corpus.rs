//! Replays the committed fuzz corpus (fuzz/corpus/TARGET/*) through the fuzz targets' bodies on
//! stable Rust, plus every shared capture through the pcap and wire targets, so a finding once
//! minimised into the corpus stays fixed.

mod common;

use vxspan::fuzzing;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = common::root().join("fuzz/corpus").join(target);
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!v.is_empty(), "{} is empty", dir.display());
    v.sort();
    v
}

#[test]
fn wire() {
    for input in corpus("wire") {
        fuzzing::wire(&input);
    }
    for path in std::fs::read_dir(common::shared().join("captures/captures")).unwrap() {
        for (frame, _, _) in common::read_capture(&path.unwrap().path()) {
            fuzzing::wire(&frame);
        }
    }
}

#[test]
fn bpf() {
    for input in corpus("bpf") {
        fuzzing::bpf(&input);
    }
}

#[test]
fn pcap() {
    for input in corpus("pcap") {
        fuzzing::pcap(&input);
    }
    for path in std::fs::read_dir(common::shared().join("captures/captures")).unwrap() {
        let bytes = std::fs::read(path.unwrap().path()).unwrap();
        fuzzing::pcap(&bytes);
        // Every prefix of the first 4 KiB, to exercise truncated headers and records.
        for n in (0..bytes.len().min(4096)).step_by(7) {
            fuzzing::pcap(&bytes[..n]);
        }
    }
}

#[test]
fn config() {
    for input in corpus("config") {
        fuzzing::config(&input);
    }
}

#[test]
fn engine() {
    for input in corpus("engine") {
        fuzzing::engine(&input);
    }
}

#[test]
fn tunnel_wire() {
    for input in corpus("tunnel_wire") {
        fuzzing::tunnel_wire(&input);
    }
}

#[test]
fn decap() {
    for input in corpus("decap") {
        fuzzing::decap(&input);
    }
    // Every shared capture as one input to the decap target (frames length-prefixed), and every
    // frame's tunnel headers through the parsers at each offset of its first 80 bytes.
    for path in std::fs::read_dir(common::shared().join("captures/captures")).unwrap() {
        let mut blob = Vec::new();
        for (frame, _, _) in common::read_capture(&path.unwrap().path()) {
            let len = frame.len().min(usize::from(fuzzing::FRAME_TO_END) - 1);
            blob.extend_from_slice(&fuzzing::decap_prefix(len as u16, fuzzing::TagOp::Keep));
            blob.extend_from_slice(&frame[..len]);
            for off in 0..frame.len().min(80) {
                fuzzing::tunnel_wire(&frame[off..]);
            }
        }
        fuzzing::decap(&blob);
    }
}

#[test]
fn agentx() {
    let seeds = corpus("agentx");
    assert!(seeds.len() >= 7);
    for input in seeds {
        fuzzing::agentx(&input);
    }
}

#[test]
fn reasm() {
    for input in corpus("reasm") {
        fuzzing::reasm(&input);
    }
    // And a deterministic sweep of inputs, so the reference check runs on many shapes here too.
    let mut rng = vxspan_core::wire::XorShift(0x2545_f491_4f6c_dd1d);
    let mut input = [0u8; 64];
    for _ in 0..2000 {
        rng.fill(&mut input);
        fuzzing::reasm(&input);
    }
}

#[test]
fn control() {
    for input in corpus("control") {
        fuzzing::control_requests(&input);
    }
    // The limits' edges: every request word with junk around it.
    for line in [
        "stats",
        " status ",
        "capture",
        "capture  ",
        "capture a b",
        "reload\r",
        "x",
    ] {
        fuzzing::control_requests(line.as_bytes());
    }
}
