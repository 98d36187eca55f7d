//! `vxspan run` as a child process of a live test, and what tests read from it.

use super::netns::{wait_for, Netns};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Vxspan {
    pub child: Child,
    pub control: std::path::PathBuf,
}

impl Vxspan {
    /// `vxspan run CONFIG --datapath afpacket` in `ns`.
    pub fn start(ns: &Netns, config: &std::path::Path, dir: &std::path::Path) -> Vxspan {
        Vxspan::start_with(ns, config, dir, &["--datapath", "afpacket"])
    }

    /// `vxspan run CONFIG ARGS...` in `ns`, once its control socket is up.
    pub fn start_with(
        ns: &Netns,
        config: &std::path::Path,
        dir: &std::path::Path,
        args: &[&str],
    ) -> Vxspan {
        Vxspan::start_bin(ns, env!("CARGO_BIN_EXE_vxspan"), config, dir, args)
    }

    /// [`Vxspan::start_with`], running the binary `bin`.
    pub fn start_bin(
        ns: &Netns,
        bin: &str,
        config: &std::path::Path,
        dir: &std::path::Path,
        args: &[&str],
    ) -> Vxspan {
        let control = dir.join("control.sock");
        let mut argv = vec![bin, "run", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        argv.extend(["--control", control.to_str().unwrap()]);
        let child = ns
            .cmd(&argv)
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("run.out")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("run.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let c = control.clone();
        let log = dir.join("run.err");
        wait_for(Duration::from_secs(10), || {
            c.exists() || std::fs::read_to_string(&log).is_ok_and(|s| s.contains("error"))
        });
        assert!(
            control.exists(),
            "vxspan did not start: {}",
            std::fs::read_to_string(dir.join("run.err")).unwrap_or_default()
        );
        Vxspan { child, control }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--control", self.control.to_str().unwrap()]);
        Command::new(env!("CARGO_BIN_EXE_vxspan"))
            .args(&a)
            .output()
            .unwrap()
    }

    pub fn stats(&self) -> serde_json::Value {
        let o = self.cli(&["stats", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// SIGTERM, then the final counters it prints.
    pub fn stop(mut self, dir: &std::path::Path) -> serde_json::Value {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let mut status = None;
        wait_for(Duration::from_secs(10), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(status.unwrap().success());
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.out")).unwrap()).unwrap()
    }
}

impl Drop for Vxspan {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn counter(v: &serde_json::Value, port: &str, key: &str) -> u64 {
    v["interfaces"][port][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{port}.{key} in {v}"))
}

/// Complete records in a capture that may still be being written.
pub fn frames_in(path: &std::path::Path) -> u64 {
    let Ok(mut r) = vxspan_io::pcap::Reader::open(path) else {
        return 0;
    };
    let mut buf = Vec::new();
    let mut n = 0;
    while let Ok(Some(_)) = r.next_into(&mut buf) {
        buf.clear();
        n += 1;
    }
    n
}

pub fn sorted(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.sort();
    frames
}

/// Frames each userspace worker read, from a `vxspan status` reply.
pub fn worker_rx(status: &serde_json::Value) -> Vec<u64> {
    status["worker_rx_packets"]
        .as_array()
        .expect("worker_rx_packets in the status")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// The accounting of VxSPAN's example topology (inputs eth0 / eth1, outputs eth2 / eth3 with
/// peers p2 / p3), to the packet, from final counters `fin`: the inputs received `rx`, each
/// frame was forwarded or dropped, and each output sent what its peer received since `far0`
/// (p2's and p3's rx_packets before the traffic).
pub fn assert_example_accounting(
    fin: &serde_json::Value,
    ns: &super::netns::Netns,
    rx: [u64; 2],
    far0: [u64; 2],
) {
    for (p, n) in ["eth0", "eth1"].into_iter().zip(rx) {
        assert_eq!(counter(fin, p, "rx_packets"), n, "{p}");
        assert_eq!(
            n,
            counter(fin, p, "forwarded_packets") + counter(fin, p, "dropped_packets"),
            "{p}"
        );
    }
    for ((out, peer), base) in [("eth2", "p2"), ("eth3", "p3")].into_iter().zip(far0) {
        assert_eq!(
            counter(fin, out, "tx_packets"),
            ns.stat(peer, "rx_packets") - base,
            "{out}"
        );
    }
}

/// 20,000 frames of the mix at 10,000 a second out of p1 (into eth1), in the background, and
/// the counters they are checked against.
pub struct Blast {
    child: std::process::Child,
    rx0: u64,
    far0: u64,
}

impl Blast {
    pub fn start(ns: &Netns, dir: &std::path::Path, seed: u64) -> Blast {
        let input = dir.join("blast.pcap");
        super::gen_mix(&input, 20000, seed);
        let rx0 = ns.stat("eth1", "rx_packets");
        let far0 = ns.stat("p2", "rx_packets") + ns.stat("p3", "rx_packets");
        let child = ns.replay_at("p1", 10_000, &input);
        Blast { child, rx0, far0 }
    }

    /// Waits for the blast, then checks the accounting against the veths: vxspan counted every
    /// frame eth1 received, each was forwarded or dropped with a reason, each forwarded frame
    /// went to eth2 or eth3 or is a counted drop, and the far ends got what vxspan sent.
    /// Returns (frames delivered to eth1, frames forwarded).
    pub fn finish(mut self, ns: &Netns, vx: &Vxspan) -> (u64, u64) {
        let _ = self.child.wait();
        let delivered = ns.stat("eth1", "rx_packets") - self.rx0;
        assert!(delivered >= 19_000, "{delivered}");
        wait_for(Duration::from_secs(10), || {
            counter(&vx.stats(), "eth1", "rx_packets") == delivered
        });
        std::thread::sleep(Duration::from_millis(300));
        let s = vx.stats();
        let fwd = counter(&s, "eth1", "forwarded_packets");
        assert_eq!(counter(&s, "eth1", "rx_packets"), delivered);
        assert_eq!(delivered, fwd + counter(&s, "eth1", "dropped_packets"));
        let sent = counter(&s, "eth2", "tx_packets") + counter(&s, "eth3", "tx_packets");
        let lost =
            counter(&s, "eth2", "tx_dropped_packets") + counter(&s, "eth3", "tx_dropped_packets");
        assert_eq!(
            fwd,
            sent + lost,
            "each forwarded frame went to exactly one output or is a counted drop"
        );
        assert_eq!(
            ns.stat("p2", "rx_packets") + ns.stat("p3", "rx_packets") - self.far0,
            sent,
            "the far ends got what vxspan sent"
        );
        (delivered, fwd)
    }
}

/// Checks that every output of `status` (`vxspan status`) sends through AF_XDP TX rings in copy
/// mode on its one TX queue (`ring`) or else through AF_PACKET.
pub fn assert_outputs_transmit(status: &serde_json::Value, ring: bool) {
    let want = if ring {
        "AF_XDP on 1 TX queue(s), copy mode"
    } else {
        "AF_PACKET"
    };
    for p in status["ports"].as_array().unwrap() {
        if p["role"] == "output" {
            assert_eq!(p["transmit"], want, "{p}");
            if ring {
                assert_eq!(p["afxdp_invalid_completions"], 0, "{p}");
            }
        }
    }
}
