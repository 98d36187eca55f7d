//! The kernel tier live, in network namespaces: `vxspan restart` executes the binary again in
//! the same process while a blast runs through the kernel tier; no frame is lost (the inputs'
//! program is swapped, never detached), the counters continue from the old totals (also when
//! the rules changed between restarts), a binary that cannot start is refused without stopping
//! anything, and a replaced binary (an upgrade) is what the restart runs. Also reloads the
//! restart code shares (prepared off the first worker), and the per-output transforms of fan-out
//! copies (truncation, VLAN actions) that the devmap egress program applies.

mod common;

use common::daemon::{counter, sorted, Vxspan};
use common::netns::{wait_for, Netns};
use common::scratch;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// eth0 (input) and eth2 / eth3 (outputs), with peers p0, p2, p3; in native mode the output
/// peers run the pass program (a native redirect into a veth needs XDP on its peer).
fn topology(tag: &str, dir: &Path, native: bool) -> Netns {
    let ns = Netns::new(tag);
    for i in [0, 2, 3] {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), 1500);
    }
    if native {
        let obj = common::bpf_object(dir, "pass");
        for p in ["p2", "p3"] {
            ns.exec_ok(&[
                "ip",
                "link",
                "set",
                "dev",
                p,
                "xdpdrv",
                "obj",
                obj.to_str().unwrap(),
                "sec",
                "xdp.frags",
            ]);
        }
    }
    ns
}

const PORTS: &str = "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth2\"\n[outputs.y]\ninterface = \"eth3\"\n";

fn rules_to(out: &str) -> String {
    format!("{PORTS}[[rules]]\nname = \"r\"\nfrom = [\"in\"]\nto = [\"{out}\"]\n")
}

fn attached(ns: &Netns, dev: &str) -> bool {
    let o = ns.exec_ok(&["ip", "link", "show", dev]);
    String::from_utf8_lossy(&o.stdout).contains("prog/xdp")
}

fn status(vx: &Vxspan) -> serde_json::Value {
    let o = vx.cli(&["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn restart(vx: &Vxspan) -> std::process::Output {
    vx.cli(&["restart"])
}

/// Three restarts while 6 M frames are blasted into the input, the rules changed before the
/// second: every frame sent is delivered and counted once, in the same process.
#[test]
fn restarts_during_a_blast_lose_nothing_and_counters_continue() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-restart-blast");
    let ns = topology("rst", &dir, true);
    let config = dir.join("restart.toml");
    std::fs::write(&config, rules_to("x")).unwrap();
    let pcap = dir.join("mix.pcap");
    common::gen_mix(&pcap, 500, 1);
    let offloads = || {
        let o = ns.exec_ok(&["ethtool", "-k", "eth0"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("segmentation-offload") || l.contains("vlan-offload"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = offloads();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let pid = vx.child.id();
    let tx0 = ns.stat("p0", "tx_packets");
    let (rx2, rx3) = (ns.stat("p2", "rx_packets"), ns.stat("p3", "rx_packets"));
    let mut child = ns
        .cmd(&[
            env!("CARGO_BIN_EXE_vxspan"),
            "blast",
            "p0",
            pcap.to_str().unwrap(),
            "--count",
            "6000000",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut during = 0;
    for i in 0..3 {
        if i == 1 {
            // The plan the old program ran (to x) differs from the new one (to y): the old
            // program's last counters are reported through the old plan.
            std::fs::write(&config, rules_to("y")).unwrap();
        }
        if child.try_wait().unwrap().is_none() {
            during += 1;
        }
        let o = restart(&vx);
        assert!(
            o.status.success(),
            "restart {i}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(attached(&ns, "eth0"), "the program stays attached");
        assert!(
            vx.child.id() == pid && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok(),
            "the same process runs on"
        );
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "blast failed");
    let sent = ns.stat("p0", "tx_packets") - tx0;
    eprintln!("{during} of 3 restarts while the blast ran; {sent} frames sent");
    assert!(
        during >= 2,
        "only {during} restarts happened during the blast"
    );
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "in", "rx_packets") == sent
    });
    let st = status(&vx);
    assert_eq!(st["restarts"], 3, "{st}");
    let log = std::fs::read_to_string(dir.join("run.err")).unwrap();
    assert_eq!(
        log.matches("taken over from the previous image").count(),
        3,
        "{log}"
    );
    let fin = vx.stop(&dir);
    let (to_x, to_y) = (
        ns.stat("p2", "rx_packets") - rx2,
        ns.stat("p3", "rx_packets") - rx3,
    );
    let delivered = to_x + to_y;
    assert_eq!(delivered, sent, "every frame sent was delivered");
    assert_eq!(counter(&fin, "in", "rx_packets"), sent);
    assert_eq!(counter(&fin, "in", "forwarded_packets"), sent);
    let (x, y) = (
        counter(&fin, "x", "tx_packets"),
        counter(&fin, "y", "tx_packets"),
    );
    assert_eq!(
        (x, y),
        (to_x, to_y),
        "each output's counter equals its wire's"
    );
    assert!(x > 0 && y > 0, "x {x}, y {y}: both plans forwarded");
    assert!(!attached(&ns, "eth0"), "SIGTERM still detaches");
    assert_eq!(
        offloads(),
        before,
        "the first image's offload changes are undone at the end"
    );
}

/// An upgrade: the daemon runs a copy of the binary; a replacement that cannot start is refused
/// and nothing stops; the real binary put in its place is what the next restart executes, and
/// the counters of frames replayed before and after add up.
#[test]
fn a_broken_binary_is_refused_and_a_replaced_one_is_run() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-restart-upgrade");
    let ns = topology("rsu", &dir, false);
    let config = dir.join("restart.toml");
    std::fs::write(&config, rules_to("x")).unwrap();
    let bin = dir.join("vxspan");
    std::fs::copy(env!("CARGO_BIN_EXE_vxspan"), &bin).unwrap();
    let vx = Vxspan::start_bin(
        &ns,
        bin.to_str().unwrap(),
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "generic"],
    );
    let pcap = dir.join("mix.pcap");
    common::gen_mix(&pcap, 100, 2);
    ns.replay_paced("p0", 1000, &pcap);
    wait_for(Duration::from_secs(5), || {
        counter(&vx.stats(), "in", "rx_packets") == 100
    });
    // A replacement that does not run (renamed into place, as a package manager does).
    let broken = dir.join("vxspan.new");
    std::fs::write(&broken, "#!/bin/sh\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &bin).unwrap();
    let o = restart(&vx);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--version failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        counter(&vx.stats(), "in", "rx_packets"),
        100,
        "still running"
    );
    assert_eq!(status(&vx)["restarts"], 0);
    // The real binary back in place: the restart runs it.
    let fresh = dir.join("vxspan.new");
    std::fs::copy(env!("CARGO_BIN_EXE_vxspan"), &fresh).unwrap();
    std::fs::rename(&fresh, &bin).unwrap();
    let o = restart(&vx);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("restarted in place"));
    let exe = std::fs::read_link(format!("/proc/{}/exe", vx.child.id())).unwrap();
    assert_eq!(
        exe, bin,
        "the process runs the file now at the binary's path"
    );
    ns.replay_paced("p0", 1000, &pcap);
    wait_for(Duration::from_secs(5), || {
        counter(&vx.stats(), "in", "rx_packets") == 200
    });
    let s = vx.stats();
    assert_eq!(counter(&s, "in", "rx_packets"), 200, "{s}");
    assert_eq!(counter(&s, "x", "tx_packets"), 200, "{s}");
    // A client that is neither root nor the service user may not restart the daemon.
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_vxspan"))
        .args(["restart", "--control", vx.control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let _ = vx.stop(&dir);
}

/// A reload that removes an output while the kernel tier runs (it crashed the daemon: the
/// device baselines kept the old plan's length), and a rules-only one: both applied, the
/// daemon answers, and the frames replayed after them go to the one output left.
#[test]
fn an_xdp_reload_that_removes_an_output_is_applied() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-reload-fewer");
    let ns = topology("rlf", &dir, false);
    let config = dir.join("reload.toml");
    std::fs::write(&config, rules_to("x")).unwrap();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "generic"],
    );
    std::fs::write(&config, rules_to("y")).unwrap();
    let o = vx.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(
        &config,
        "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth3\"\n[[rules]]\nfrom = [\"in\"]\nto = [\"x\"]\n",
    )
    .unwrap();
    let o = vx.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("output y: removed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let pcap = dir.join("mix.pcap");
    common::gen_mix(&pcap, 100, 3);
    let rx3 = ns.stat("p3", "rx_packets");
    ns.replay_paced("p0", 1000, &pcap);
    wait_for(Duration::from_secs(5), || {
        counter(&vx.stats(), "in", "rx_packets") == 100
    });
    let s = vx.stats();
    assert_eq!(counter(&s, "in", "rx_packets"), 100, "{s}");
    assert_eq!(counter(&s, "x", "tx_packets"), 100, "{s}");
    assert_eq!(ns.stat("p3", "rx_packets") - rx3, 100);
    let _ = vx.stop(&dir);
}

/// Fan-out in the kernel tier with per-output transforms: one output truncates to 100 bytes
/// after pushing a tag, the other forwards whole. The copies at both far ends are
/// byte-identical to what the engine makes of the same frames (`vxspan replay`), the group runs
/// in the kernel tier, and each output's counters equal its wire's.
#[test]
fn fanout_copies_are_truncated_and_tagged_in_the_kernel_as_in_the_engine() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-kernel-truncate");
    let ns = topology("ktr", &dir, true);
    let config = dir.join("truncate.toml");
    std::fs::write(
        &config,
        "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth2\"\ntruncate = 100\nvlan = { push = 300 }\n[outputs.y]\ninterface = \"eth3\"\n[[rules]]\nname = \"r\"\nfrom = [\"in\"]\nto = [\"x\", \"y\"]\n",
    )
    .unwrap();
    let pcap = dir.join("mix.pcap");
    common::gen_mix(&pcap, 300, 4);
    let o = common::vxspan(&[
        "replay",
        config.to_str().unwrap(),
        "-i",
        &format!("in={}", pcap.display()),
        "--out-dir",
        dir.join("engine").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let st = status(&vx);
    for g in st["groups"].as_array().unwrap() {
        assert_eq!(g["tier"], "xdp", "{g}");
    }
    let caps: Vec<_> = ["p2", "p3"]
        .iter()
        .map(|p| ns.capture(p, &dir.join(format!("{p}.pcap"))))
        .collect();
    let (rx2, rx3) = (ns.stat("p2", "rx_packets"), ns.stat("p3", "rx_packets"));
    ns.replay_paced("p0", 2000, &pcap);
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "in", "rx_packets") == 300
            && common::daemon::frames_in(&dir.join("p2.pcap")) >= 300
            && common::daemon::frames_in(&dir.join("p3.pcap")) >= 300
    });
    for c in caps {
        c.stop();
    }
    let frames = |p: std::path::PathBuf| -> Vec<Vec<u8>> {
        common::read_capture(&p).into_iter().map(|f| f.0).collect()
    };
    let (got_x, got_y) = (frames(dir.join("p2.pcap")), frames(dir.join("p3.pcap")));
    let (want_x, want_y) = (
        frames(dir.join("engine/x.pcap")),
        frames(dir.join("engine/y.pcap")),
    );
    assert_eq!(want_x.len(), 300);
    assert!(want_x.iter().all(|f| f.len() <= 100));
    assert!(
        sorted(got_x.clone()) == sorted(want_x),
        "x: the kernel's copies are the engine's ({} frames)",
        got_x.len()
    );
    assert!(sorted(got_y) == sorted(want_y), "y: whole copies");
    let s = vx.stats();
    assert_eq!(
        counter(&s, "x", "tx_packets"),
        ns.stat("p2", "rx_packets") - rx2
    );
    assert_eq!(
        counter(&s, "y", "tx_packets"),
        ns.stat("p3", "rx_packets") - rx3
    );
    let bytes: u64 = got_x.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        counter(&s, "x", "tx_bytes"),
        bytes,
        "tx_bytes counts the truncated copies"
    );
    let _ = vx.stop(&dir);
}
