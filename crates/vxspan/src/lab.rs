//! `vxspan lab`: a throw-away topology, live.
//!
//! The process moves itself into a new network namespace, creates a veth pair for each
//! interface of VxSPAN's example configuration (`eth0` .. `eth3`, each with a `-peer` end),
//! starts `vxspan run` on it, sends the demo's generated traffic mix into the inputs' peers,
//! captures on the outputs' peers and prints what went where: sent by the lab, counted by
//! vxspan, captured on the tool side, and expected by the generator's own bookkeeping. The
//! namespace, and every device in it, disappears when the lab exits, however it exits.

use crate::gen;
use crate::replay::DEMO_CONFIG;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use vxspan_core::wire::vlan::L2Info;
use vxspan_core::{Report, TxDrop, TxFrame};
use vxspan_io::afpacket::{RxRing, TxSocket};
use vxspan_io::netdev::{unshare_network, Rtnl};
use vxspan_io::{Batch, RxPort, TxPort};

const INPUTS: [&str; 2] = ["eth0", "eth1"];
const OUTPUTS: [&str; 2] = ["eth2", "eth3"];
/// Frames sent on each input before the tool sides are drained and the sender pauses.
const BURST: usize = 32;
const LAB_MTU: u32 = 9000;

fn peer(name: &str) -> String {
    format!("{name}-peer")
}

/// A `vxspan run` child, stopped (SIGTERM, then SIGKILL) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SAFETY: kill takes a pid and a signal number and touches no memory of ours.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tool side of one output: a capture ring on the output's peer and what it saw, by the
/// frame's outer VLAN (0 = untagged or priority-tagged).
struct Tool {
    ring: RxRing,
    batch: Batch,
    by_vlan: BTreeMap<u16, u64>,
    total: u64,
}

impl Tool {
    fn drain(&mut self) -> Result<()> {
        loop {
            self.batch.clear();
            self.ring.recv(&mut self.batch, 256)?;
            if self.batch.is_empty() {
                return Ok(());
            }
            for i in 0..self.batch.len() {
                if let Some(f) = self.batch.get(i) {
                    let vid = L2Info::parse(f.data).map_or(0, |l2| l2.outer_vid());
                    *self.by_vlan.entry(vid).or_default() += 1;
                    self.total += 1;
                }
            }
        }
    }
}

pub fn lab(count: u64) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the vxspan binary")?;
    unshare_network().context("creating the lab's network namespace")?;
    let mut rtnl = Rtnl::open().context("opening a route netlink socket")?;
    for name in INPUTS.iter().chain(OUTPUTS.iter()) {
        rtnl.add_veth(name, &peer(name), LAB_MTU)?;
    }
    println!("vxspan lab: VxSPAN's example configuration, live, in a private network namespace\n");
    println!("  traffic  eth0-peer ==veth==> eth0 --+                +--> eth2 ==veth==> eth2-peer  capture");
    println!("  traffic  eth1-peer ==veth==> eth1 --+-- vxspan run --+--> eth3 ==veth==> eth3-peer  capture\n");
    println!("{DEMO_CONFIG}");

    let dir = std::env::temp_dir().join(format!("vxspan-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_lab(&exe, &dir, count);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nTorn down: vxspan stopped; the namespace and its four veth pairs went with the lab."
    );
    result
}

fn run_lab(exe: &Path, dir: &Path, count: u64) -> Result<ExitCode> {
    let config = dir.join("vxspan.json");
    let control = dir.join("control.sock");
    let log = dir.join("vxspan.log");
    std::fs::write(&config, DEMO_CONFIG)?;

    // The tool sides listen before anything is sent.
    let mut tools = Vec::new();
    for name in OUTPUTS {
        tools.push(Tool {
            ring: RxRing::open(&peer(name))
                .with_context(|| format!("capturing on {}", peer(name)))?,
            batch: Batch::with_capacity(256, 256 * 2048),
            by_vlan: BTreeMap::new(),
            total: 0,
        });
    }

    let child = Command::new(exe)
        .arg("run")
        .arg(&config)
        .arg("--control")
        .arg(&control)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting vxspan run")?;
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            bail!(
                "vxspan run exited ({status}) before it was ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("vxspan run was not ready within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("vxspan run is up (control socket {}).", control.display());
    if let Ok(st) = crate::control::client::fetch_status(&control) {
        let kernel = st.groups.iter().filter(|g| g.tier == "xdp").count();
        println!(
            "Datapath {}: {kernel} of {} (input, VLAN) groups run in the kernel tier (XDP); {} userspace worker(s) for the others.",
            st.datapath,
            st.groups.len(),
            st.workers
        );
    }

    // The same traffic as `vxspan demo`, with the generator's own bookkeeping of what each
    // output should get.
    let mut expected = [0u64; 2];
    let mut streams = Vec::new();
    for (seed, name) in INPUTS.iter().enumerate() {
        let mut frames = Vec::new();
        for f in gen::frames(count, seed as u64 + 1, 20) {
            match (*name, f.tagging.outer_vid()) {
                ("eth0", 0) | ("eth1", 12) => expected[0] += 1,
                ("eth1", 10 | 11) => expected[1] += 1,
                _ => {}
            }
            frames.push(f.data);
        }
        streams.push((TxSocket::open(&peer(name))?, frames));
    }
    println!(
        "Sending {count} frames into each of eth0 and eth1 (untagged, priority-tagged, VLAN 1-20,"
    );
    println!("QinQ and 0x9100-tagged; TCP, UDP, ICMP, IPv6, ARP) ...");
    let started = Instant::now();
    let mut sent = [0u64; 2];
    let mut pos = [0usize; 2];
    while pos.iter().zip(&streams).any(|(p, (_, f))| *p < f.len()) {
        for (i, (sock, frames)) in streams.iter_mut().enumerate() {
            let end = (pos[i] + BURST).min(frames.len());
            while pos[i] < end {
                let data = &frames[pos[i]];
                let frame = TxFrame {
                    data,
                    wire_len: data.len() as u32,
                    ts: 0,
                    input: 0,
                    tunnel: None,
                    owner: u16::MAX,
                };
                match sock.send(frame) {
                    Ok(()) => {
                        sent[i] += 1;
                        pos[i] += 1;
                    }
                    // The peer's queue is full: let it drain, then try the same frame again.
                    Err(TxDrop::QueueFull) if started.elapsed() < Duration::from_secs(60) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => bail!("sending on {}: {e:?}", sock.name),
                }
            }
        }
        for t in &mut tools {
            t.drain()?;
        }
        std::thread::sleep(Duration::from_micros(500));
    }

    // Wait until vxspan has seen every frame and the tool sides have every copy it sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        for t in &mut tools {
            t.drain()?;
        }
        let r = crate::control::client::fetch_stats(&control)?;
        let all_in = INPUTS
            .iter()
            .zip(sent)
            .all(|(n, s)| r.interfaces.get(*n).is_some_and(|p| p.rx_packets >= s));
        let all_out = OUTPUTS.iter().zip(&tools).all(|(n, t)| {
            r.interfaces
                .get(*n)
                .is_some_and(|p| t.total >= p.tx_packets)
        });
        if (all_in && all_out) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    drop(daemon);
    Ok(print_outcome(&report, &sent, &tools, &expected, secs))
}

fn print_outcome(
    report: &Report,
    sent: &[u64; 2],
    tools: &[Tool],
    expected: &[u64; 2],
    secs: f64,
) -> ExitCode {
    let mut ok = true;
    let mut check = |good: bool| {
        ok &= good;
        if good {
            "ok"
        } else {
            "MISMATCH"
        }
    };
    println!("\nInputs (sent by the lab / counted by vxspan), {secs:.2} s:");
    for (name, s) in INPUTS.iter().zip(sent) {
        let Some(p) = report.interfaces.get(*name) else {
            check(false);
            continue;
        };
        let reasons: Vec<String> = p
            .drop_reasons
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let balanced =
            p.rx_packets == *s && p.rx_packets == p.forwarded_packets + p.dropped_packets;
        println!(
            "  {name}: sent {s}, rx {}, forwarded {}, dropped {} ({})  {}",
            p.rx_packets,
            p.forwarded_packets,
            p.dropped_packets,
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            },
            check(balanced)
        );
    }
    println!("Outputs (vxspan tx / captured on the peer / the generator's expectation):");
    let what = [
        "eth0's untagged and priority-tagged frames, eth1's VLAN 12",
        "eth1's VLAN 10 and 11",
    ];
    for (i, name) in OUTPUTS.iter().enumerate() {
        let Some(p) = report.interfaces.get(*name) else {
            check(false);
            continue;
        };
        let t = &tools[i];
        let good = p.tx_packets == t.total && t.total == expected[i] && p.tx_dropped_packets == 0;
        println!(
            "  {name}: tx {}, captured {}, expected {}  {}   ({})",
            p.tx_packets,
            t.total,
            expected[i],
            check(good),
            what[i]
        );
        let vlans: Vec<String> = t
            .by_vlan
            .iter()
            .map(|(v, n)| {
                if *v == 0 {
                    format!("untagged or priority-tagged {n}")
                } else {
                    format!("VLAN {v}: {n}")
                }
            })
            .collect();
        println!("        on the wire by outer VLAN: {}", vlans.join(", "));
    }
    if ok {
        println!("\nEvery frame is accounted for: what vxspan counted is what crossed the veths.");
        ExitCode::SUCCESS
    } else {
        println!("\nSome counts differ (see MISMATCH above).");
        ExitCode::FAILURE
    }
}
