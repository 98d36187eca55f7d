//! What the live XDP tests share: the pass program on an output's peer and `vxspan blast` in
//! the background.
#![allow(dead_code)]

use super::netns::Netns;
use std::path::{Path, PathBuf};

/// tests/xdp/pass.c compiled into `dir`.
pub fn pass_object(dir: &Path) -> PathBuf {
    super::bpf_object(dir, "pass")
}

/// A native-mode redirect into a veth is delivered only if the veth's peer runs XDP.
pub fn xdp_pass_on(ns: &Netns, dev: &str, obj: &Path) {
    ns.exec_ok(&[
        "ip",
        "link",
        "set",
        "dev",
        dev,
        "xdpdrv",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "xdp.frags",
    ]);
}

/// `vxspan blast` from `port`, pinned to `cpu`, in the background.
pub fn blast(ns: &Netns, port: &str, pcap: &Path, count: u64, cpu: usize) -> std::process::Child {
    ns.cmd(&[
        env!("CARGO_BIN_EXE_vxspan"),
        "blast",
        port,
        pcap.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--cpu",
        &cpu.to_string(),
        "--json",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap()
}

pub fn blast_report(child: std::process::Child) -> serde_json::Value {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "blast failed");
    serde_json::from_slice(&o.stdout).unwrap()
}
