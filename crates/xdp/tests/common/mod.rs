//! What the XDP program's tests share: the verdict codes, root and namespace set-up, and the
//! frames of the shared captures. Each test file uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// BPF_PROG_TEST_RUN verdicts.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// A filter compiler for configurations without filters.
pub struct NoFilters;

impl vxspan_core::FilterCompiler for NoFilters {
    fn compile(&self, _: &str) -> Result<Vec<vxspan_core::bpf::BpfInsn>, String> {
        Err("no filters here".into())
    }
}

/// A filter compiler whose every filter accepts everything (placement only cares that a rule
/// has one: it runs in userspace).
pub struct AcceptAll;

impl vxspan_core::FilterCompiler for AcceptAll {
    fn compile(&self, _: &str) -> Result<Vec<vxspan_core::bpf::BpfInsn>, String> {
        Ok(vec![vxspan_core::bpf::BpfInsn::new(0x06, 0, 0, 65535)])
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread into a new network namespace with the veth pairs `pairs`, each
/// with `mtu` (they vanish with the namespace).
pub fn veths(pairs: &[(&str, &str)], mtu: u32) {
    vxspan_io::netdev::unshare_network().expect("unshare");
    let mut rtnl = vxspan_io::netdev::Rtnl::open().expect("rtnetlink");
    for (a, b) in pairs {
        rtnl.add_veth(a, b, mtu).expect("veth");
    }
}

pub fn ifx(name: &str) -> Option<u32> {
    vxspan_xdp::loader::ifindex(name).ok()
}

/// `../shared` beside the checkout (or `$VXSPAN_SHARED`).
pub fn shared_captures() -> PathBuf {
    std::env::var_os("VXSPAN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("captures/captures")
}

/// [`shared_variants`] as one list of frames.
pub fn shared_frames() -> Vec<Vec<u8>> {
    shared_variants().into_iter().flat_map(|(_, v)| v).collect()
}

/// Every frame of the shared captures (Ethernet link type) that BPF_PROG_TEST_RUN takes, each
/// as it is, with one bit flipped in its first 64 bytes and cut at a random length, in file
/// order: (file, [frame, flipped, cut]).
pub fn shared_variants() -> Vec<(PathBuf, [Vec<u8>; 3])> {
    let dir = shared_captures();
    assert!(dir.is_dir(), "{} missing: set VXSPAN_SHARED", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for path in files {
        let Ok(mut r) = vxspan_io::pcap::Reader::open(&path) else {
            continue;
        };
        let mut buf = Vec::new();
        while let Ok(Some(_)) = r.next_into(&mut buf) {
            let f = std::mem::take(&mut buf);
            // BPF_PROG_TEST_RUN needs an Ethernet header's worth of data, and takes at most
            // what one XDP buffer with fragments holds (the BIG TCP captures' 80 KB frames
            // exist only as GSO packets, never as one frame on a wire).
            if f.len() < 14 || f.len() > 65_535 {
                continue;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut flipped = f.clone();
            let bit = (seed % (8 * f.len().min(64) as u64)) as usize;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let cut = f[..14 + (seed as usize % (f.len() - 13)).min(f.len() - 14)].to_vec();
            out.push((path.clone(), [f, flipped, cut]));
        }
    }
    out
}
