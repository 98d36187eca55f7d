//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub mod daemon;
pub mod netns;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `../shared` beside the checkout (or `$VXSPAN_SHARED`): read-only inputs every test run has.
pub fn shared() -> PathBuf {
    let p = std::env::var_os("VXSPAN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"));
    assert!(
        p.join("captures/captures").is_dir(),
        "{} has no captures/captures: set VXSPAN_SHARED",
        p.display()
    );
    p
}

pub fn vxspan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Writes `count` frames of `vxspan gen`'s tagged traffic mix, from generator seed `seed`, to
/// `path` (pcapng if it ends so).
pub fn gen_mix(path: &Path, count: u64, seed: u64) {
    let o = vxspan(&[
        "gen",
        "-w",
        path.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(
        o.status.success(),
        "vxspan gen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A fresh, empty directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every frame of a capture: (bytes, wire length, timestamp ns).
pub fn read_capture(path: &Path) -> Vec<(Vec<u8>, u32, u64)> {
    let mut r =
        vxspan_io::pcap::Reader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(rec) = r
        .next_into(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        out.push((std::mem::take(&mut buf), rec.wire_len, rec.ts));
    }
    out
}

/// A test fixture under tests/xdp (`name`.c) compiled for BPF into `dir`; returns the object.
pub fn bpf_object(dir: &Path, name: &str) -> PathBuf {
    let obj = dir.join(format!("{name}.o"));
    let o = Command::new("clang")
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(root().join(format!("tests/xdp/{name}.c")))
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang is installed by scripts/install-deps");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    obj
}
