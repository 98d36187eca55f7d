//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub mod daemon;
pub mod floods;
pub mod live;
pub mod netns;
pub mod tmux;

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

/// `n` 96-byte UDP frames (198.18.0.1 to 198.18.1.1) tagged with VLAN `vid`, numbered in
/// their payload.
pub fn tagged_udp(vid: u8, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = vec![0u8; 96];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 1]);
            f[12..16].copy_from_slice(&[0x81, 0x00, 0x00, vid]);
            f[16..18].copy_from_slice(&[0x08, 0x00]);
            f[18] = 0x45;
            f[20..22].copy_from_slice(&78u16.to_be_bytes());
            f[26] = 64;
            f[27] = 17;
            f[30..34].copy_from_slice(&[198, 18, 0, 1]);
            f[34..38].copy_from_slice(&[198, 18, 1, 1]);
            f[46..54].copy_from_slice(&(i as u64).to_be_bytes());
            f
        })
        .collect()
}

/// Writes `frames` to a pcap file, the first at 1.7e18 ns and each `step_ns` after the last.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>], step_ns: u64) {
    let mut w = vxspan_io::pcap::Writer::create(path).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(
            f,
            f.len() as u32,
            1_700_000_000_000_000_000 + i as u64 * step_ns,
        )
        .unwrap();
    }
    w.flush().unwrap();
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

/// Out-of-band VLAN tags, through `vxspan run` started with `args` in `ns` (eth0..eth3 and
/// peers p0..p3): tests/xdp/vlan_oob.c, a tc egress program on p1, moves each single 802.1Q tag
/// of the frames sent into eth1 out of the frame into skb metadata, as a VLAN sub-interface with
/// tx-vlan-offload on does (this kernel has no 8021q module), and the veth keeps it there. The
/// per-VLAN counters and the frames out of eth2 / eth3 must equal what `vxspan replay` makes of
/// the same frames with their tags in band.
pub fn out_of_band_tags(ns: &netns::Netns, dir: &Path, args: &[&str]) {
    use daemon::{counter, frames_in, sorted, Vxspan};
    use std::time::Duration;
    let obj = bpf_object(dir, "vlan_oob");
    ns.exec_ok(&["tc", "qdisc", "add", "dev", "p1", "clsact"]);
    ns.exec_ok(&[
        "tc",
        "filter",
        "add",
        "dev",
        "p1",
        "egress",
        "bpf",
        "da",
        "obj",
        obj.to_str().unwrap(),
        "sec",
        "tc",
    ]);
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let input = dir.join("mix.pcap");
    gen_mix(&input, 2000, 21);
    // What the frames should give, offline, with their tags in band.
    let expected = dir.join("expected");
    let o = vxspan(&[
        "replay",
        config.to_str().unwrap(),
        "-i",
        &format!("eth1={}", input.display()),
        "--out-dir",
        expected.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    let vx = Vxspan::start_with(ns, &config, dir, args);
    let cap2 = ns.capture("p2", &dir.join("p2.pcap"));
    let cap3 = ns.capture("p3", &dir.join("p3.pcap"));
    ns.exec_ok(&["tcpreplay", "-q", "-i", "p1", input.to_str().unwrap()]);
    netns::wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == 2000
    });
    netns::wait_for(Duration::from_secs(10), || {
        frames_in(&dir.join("p2.pcap")) == counter(&want, "eth2", "tx_packets")
            && frames_in(&dir.join("p3.pcap")) == counter(&want, "eth3", "tx_packets")
    });
    cap2.stop();
    cap3.stop();
    let s = vx.stats();
    // Some frames did travel out of band (every singly tagged one).
    let tagged = read_capture(&input)
        .iter()
        .filter(|(f, _, _)| {
            f.len() >= 18
                && f[12..14] == [0x81, 0]
                && !matches!(f[16..18], [0x81, 0] | [0x88, 0xa8] | [0x91, 0])
        })
        .count();
    assert!(tagged > 500, "{tagged}");
    let vlans = |v: &serde_json::Value| -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = v["vlans"]["eth1"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), c["packets"].as_u64().unwrap()))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort();
        out
    };
    assert_eq!(vlans(&s), vlans(&want), "per-VLAN counts, live vs offline");
    for (far, out) in [("p2", "eth2"), ("p3", "eth3")] {
        let got: Vec<Vec<u8>> = read_capture(&dir.join(format!("{far}.pcap")))
            .into_iter()
            .map(|f| f.0)
            .collect();
        let exp: Vec<Vec<u8>> = read_capture(&expected.join(format!("{out}.pcap")))
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(sorted(got), sorted(exp), "frames out of {out}");
    }
    vx.stop(dir);
}
