//! Outer reassembly against an independent reassembler (issue #15): `tests/defrag/check.py`
//! replays the two-frame crash in its IPv4, IPv6, QinQ and reversed variants, and every fragment
//! sent twice, and compares vxspan's reassembled frames byte for byte with scapy's
//! `defragment()` / `defragment6()`, and its counters with the exact expected values.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn reassembly_equals_scapy_defragment() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/defrag/check.py");
    let dir = common::scratch("defrag-scapy");
    let o = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_vxspan"))
        .arg(&dir)
        .output()
        .expect("/usr/bin/python3 with scapy (scripts/install-deps installs python3-scapy)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("vxspan equals scapy"), "{out}");
}
