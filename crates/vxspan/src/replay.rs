//! `vxspan replay` (and the demo): inputs from capture files, merged in timestamp order as a
//! live broker would receive them, through the engine, to capture files.

use crate::check;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vxspan_core::config::Destination;
use vxspan_core::counters::Summed as _;
use vxspan_core::{Engine, Plan, Report, Sink, TxDrop, TxFrame};
use vxspan_io::mem::MemoryInput;
use vxspan_io::pcap::{FileInput, Writer};
use vxspan_io::{FrameSource, TxPort};

/// The replay's outputs: a file writer per output that has one; the others count and discard.
pub struct Outputs {
    pub ports: Vec<Option<Box<dyn TxPort>>>,
}

impl Sink for Outputs {
    fn transmit(&mut self, output: usize, frame: TxFrame<'_>) -> Result<(), TxDrop> {
        match self.ports.get_mut(output) {
            Some(Some(p)) => p.send(frame),
            _ => Ok(()),
        }
    }
}

/// Runs every source through the engine in timestamp order (ties: the source listed first),
/// one frame at a time, each frame borrowed from its source (no copy). Calls `progress` with the
/// frame count about twice a second.
pub fn drive(
    engine: &mut Engine,
    sources: Vec<(usize, Box<dyn FrameSource>)>,
    sink: &mut dyn Sink,
    mut progress: impl FnMut(u64),
) -> std::io::Result<u64> {
    // Sources that still have a frame, with that frame's timestamp.
    let mut live: Vec<(usize, Box<dyn FrameSource>, u64)> = Vec::with_capacity(sources.len());
    for (input, mut src) in sources {
        if src.advance()? {
            let ts = src.current().ts;
            live.push((input, src, ts));
        }
    }
    let mut total = 0u64;
    let mut last = Instant::now();
    while !live.is_empty() {
        // The earliest head; with one source this is always it.
        let mut cur = 0;
        for (i, s) in live.iter().enumerate().skip(1) {
            if s.2 < live[cur].2 {
                cur = i;
            }
        }
        // Frames of `cur` up to the next other head form one run, without re-selecting.
        let limit = live
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != cur)
            .map(|(i, s)| (s.2, i))
            .min();
        let (input, src, head) = &mut live[cur];
        loop {
            engine.process(*input, src.current(), sink);
            total += 1;
            if total & 0xffff == 0 && last.elapsed() >= Duration::from_millis(500) {
                progress(total);
                last = Instant::now();
            }
            if !src.advance()? {
                live.remove(cur);
                break;
            }
            // With other sources, stop the run where the next of theirs comes first.
            if let Some((t, i)) = limit {
                *head = src.current().ts;
                if (*head, cur) >= (t, i) {
                    break;
                }
            }
        }
    }
    Ok(total)
}

fn split_assignment(arg: &str, flag: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_owned(), PathBuf::from(f))),
        _ => Err(format!("{flag} {arg:?}: expected NAME=FILE")),
    }
}

fn usage_error(msg: String) -> Result<ExitCode> {
    eprintln!("vxspan: {msg}");
    Ok(ExitCode::from(crate::EXIT_INVALID))
}

pub fn run(
    config: &Path,
    inputs: &[String],
    outputs: &[String],
    out_dir: Option<&Path>,
    json: bool,
    hash_key: Option<&str>,
) -> Result<ExitCode> {
    let (_cfg, mut plan) = match check::load(config) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    plan.hash_key = match hash_key.map(vxspan_core::hashkey::HashKey::parse_hex) {
        None => vxspan_core::hashkey::HashKey::replay(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            eprintln!("vxspan: --hash-key: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let input_names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
    let output_names: Vec<&str> = plan.outputs.iter().map(|o| o.name.as_str()).collect();

    let mut sources: Vec<(usize, Box<dyn FrameSource>)> = Vec::new();
    let mut seen_inputs = Vec::new();
    for arg in inputs {
        let (name, file) = match split_assignment(arg, "-i") {
            Ok(x) => x,
            Err(m) => return usage_error(m),
        };
        let Some(idx) = input_names.iter().position(|n| *n == name) else {
            return usage_error(format!(
                "-i {arg}: {config:?} has no input {name:?} (inputs: {})",
                input_names.join(", ")
            ));
        };
        if seen_inputs.contains(&idx) {
            return usage_error(format!("-i {arg}: input {name:?} is given twice"));
        }
        seen_inputs.push(idx);
        let port =
            FileInput::open(&file).with_context(|| format!("input {name}: {}", file.display()))?;
        sources.push((idx, Box::new(port)));
    }

    let mut files: Vec<Option<PathBuf>> = vec![None; plan.outputs.len()];
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, o) in plan.outputs.iter().enumerate() {
            files[i] = Some(dir.join(format!("{}.pcap", o.name)));
        }
    }
    for arg in outputs {
        let (name, file) = match split_assignment(arg, "-o") {
            Ok(x) => x,
            Err(m) => return usage_error(m),
        };
        let Some(idx) = output_names.iter().position(|n| *n == name) else {
            return usage_error(format!(
                "-o {arg}: {config:?} has no output {name:?} (outputs: {})",
                output_names.join(", ")
            ));
        };
        if files[idx].is_some() {
            return usage_error(format!("-o {arg}: output {name:?} is given twice"));
        }
        files[idx] = Some(file);
    }
    let mut sink = Outputs { ports: Vec::new() };
    for (i, f) in files.iter().enumerate() {
        let out = &plan.outputs[i];
        sink.ports.push(match (f, &out.dest) {
            (Some(path), _) => Some(Box::new(
                Writer::replace(path)
                    .with_context(|| format!("output {}: {}", out.name, path.display()))?,
            ) as Box<dyn TxPort>),
            // An archive output writes its own rotating files unless -o / --out-dir redirect it.
            (None, Destination::Archive(a)) => Some(Box::new(
                vxspan_io::archive::ArchiveWriter::new(a.clone(), plan.input_descriptions()),
            ) as Box<dyn TxPort>),
            // Interface and tunnel outputs are counted; offline there is nothing to send on.
            (None, Destination::Interface(_) | Destination::Tunnel(_)) => None,
        });
    }

    let mut engine = Engine::new(Arc::new(plan));
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let total = drive(&mut engine, sources, &mut sink, |n| {
        if tty {
            let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\rreplayed {n} frames ({:.2} Mfps)   ", rate / 1e6);
        }
    })?;
    if tty && started.elapsed() >= Duration::from_millis(500) {
        eprintln!();
    }
    for (i, p) in sink.ports.iter_mut().enumerate() {
        if let Some(p) = p {
            p.flush()
                .with_context(|| format!("writing output {}", engine.plan().outputs[i].name))?;
        }
    }
    let report = engine.report();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, engine.plan(), total));
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-port counter table (ports in the order given), with each non-zero drop reason.
pub fn port_table<'a>(r: &Report, ports: impl Iterator<Item = &'a str>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:>10} {:>12} {:>10} {:>10} {:>12} {:>10}",
        "port", "rx_pkts", "rx_bytes", "dropped", "tx_pkts", "tx_bytes", "tx_dropped"
    );
    for name in ports {
        let Some(p) = r.interfaces.get(name) else {
            continue;
        };
        let _ = writeln!(
            s,
            "{:<14} {:>10} {:>12} {:>10} {:>10} {:>12} {:>10}",
            name,
            p.rx_packets,
            p.rx_bytes,
            p.dropped_packets,
            p.tx_packets,
            p.tx_bytes,
            p.tx_dropped_packets
        );
        for (reason, n) in p.drop_reasons.iter().chain(&p.tx_drop_reasons) {
            if *n > 0 {
                let _ = writeln!(s, "{:<14}   {reason}: {n}", "");
            }
        }
    }
    s
}

/// A human-readable counter table.
pub fn render(r: &Report, plan: &Plan, total: u64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{total} frames replayed\n");
    s.push_str(&port_table(r, plan.ports.iter().map(String::as_str)));
    let _ = writeln!(
        s,
        "\n{:<14} {:>6} {:>10} {:>12} {:>10}",
        "input", "vlan", "packets", "bytes", "dropped"
    );
    for (i, inp) in plan.inputs.iter().enumerate() {
        // Numeric order, "none" first; VLANs no rule names are summed into one line (with the
        // report's own `other` entry, which sums VLANs past the `[counters]` bound).
        let mut rows: Vec<(u16, &vxspan_core::counters::VlanCounters)> = Vec::new();
        let mut other = vxspan_core::counters::VlanCounters::default();
        for (k, c) in &r.vlans[&inp.name] {
            if k == vxspan_core::counters::OTHER {
                other.add(c);
            } else {
                rows.push((k.parse().unwrap_or(0), c));
            }
        }
        rows.sort_by_key(|(v, _)| *v);
        for (vid, c) in rows {
            if plan.configured_vids[i].contains(vid) || plan.configured_vids[i].is_empty() {
                let key = vxspan_core::counters::vlan_key(vid);
                let _ = writeln!(
                    s,
                    "{:<14} {:>6} {:>10} {:>12} {:>10}",
                    inp.name, key, c.packets, c.bytes, c.dropped_packets
                );
            } else {
                other.fold_in(c);
            }
        }
        if let Some(n) = other.vlans {
            let _ = writeln!(
                s,
                "{:<14} {:>6} {:>10} {:>12} {:>10}   ({n} other VLANs)",
                inp.name, "other", other.packets, other.bytes, other.dropped_packets
            );
        }
    }
    for (input, tunnels) in &r.tunnels {
        if tunnels.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n{:<14} {:<24} {:>10} {:>12}",
            "input", "tunnel", "packets", "inner bytes"
        );
        for (key, c) in tunnels {
            let _ = writeln!(
                s,
                "{:<14} {:<24} {:>10} {:>12}",
                input, key, c.packets, c.bytes
            );
        }
        if let Some(ra) = r.reassembly.get(input) {
            if *ra != Default::default() {
                let _ = writeln!(s, "{input}: reassembled {} datagrams ({} timed out, {} evicted, {} overlapping, {} too big)", ra.completed, ra.timeouts, ra.evictions, ra.overlaps, ra.too_big);
            }
        }
    }
    let _ = writeln!(
        s,
        "\n{:<20} {:>10} {:>12} {:>10}",
        "rule", "matched", "bytes", "forwarded"
    );
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>12} {:>10}",
            rule.name, rule.matched_packets, rule.matched_bytes, rule.forwarded_packets
        );
    }
    s
}

/// The configuration the demo runs: VxSPAN's own README example.
pub const DEMO_CONFIG: &str = include_str!("../../../examples/vxspan.json");

pub fn demo(count: u64) -> Result<ExitCode> {
    let cfg = vxspan_config::parse(
        DEMO_CONFIG,
        vxspan_config::Syntax::Json,
        Path::new("examples/vxspan.json"),
    )?;
    let plan = Plan::compile(&cfg, &vxspan_io::filter::Libpcap)?;
    println!("vxspan demo: VxSPAN's example configuration (examples/vxspan.json)\n");
    println!("{DEMO_CONFIG}");
    println!("eth0 and eth1 each receive {count} generated frames: untagged, priority-tagged, VLAN 1-20,");
    println!("QinQ (0x88a8) and 0x9100-tagged, carrying TCP, UDP, ICMP, IPv6 and ARP.\n");
    // The generator's own bookkeeping: what each output should get, known without vxspan.
    let mut expected = [0u64; 2];
    let sources: Vec<(usize, Box<dyn FrameSource>)> = ["eth0", "eth1"]
        .iter()
        .enumerate()
        .map(|(seed, name)| {
            let idx = cfg
                .input_by_name(name)
                .expect("the demo config defines eth0 and eth1");
            let mut frames = Vec::new();
            for f in crate::gen::frames(count, seed as u64 + 1, 20) {
                match (*name, f.tagging.outer_vid()) {
                    ("eth0", 0) | ("eth1", 12) => expected[0] += 1,
                    ("eth1", 10 | 11) => expected[1] += 1,
                    _ => {}
                }
                let len = f.data.len() as u32;
                frames.push((f.data, len, f.ts));
            }
            (
                idx,
                Box::new(MemoryInput::new(frames)) as Box<dyn FrameSource>,
            )
        })
        .collect();
    let mut engine = Engine::new(Arc::new(plan));
    let mut sink = Outputs { ports: Vec::new() };
    let total = drive(&mut engine, sources, &mut sink, |_| {})?;
    let report = engine.report();
    print!("{}", render(&report, engine.plan(), total));
    let i = &report.interfaces;
    let (eth2, eth3) = (i["eth2"].tx_packets, i["eth3"].tx_packets);
    let verdict = |got: u64, want: u64| {
        if got == want {
            "as the generator expected".to_string()
        } else {
            format!("MISMATCH: the generator expected {want}")
        }
    };
    println!("\nWhat happened:");
    println!(
        "  eth2 got eth0's untagged and priority-tagged frames and eth1's VLAN 12: {eth2} ({})",
        verdict(eth2, expected[0])
    );
    println!(
        "  eth3 got eth1's VLAN 10 and 11: {eth3} ({})",
        verdict(eth3, expected[1])
    );
    println!(
        "  everything else was dropped and counted as no_rule: {} on eth0, {} on eth1",
        i["eth0"].drop_reasons["no_rule"], i["eth1"].drop_reasons["no_rule"]
    );
    let balanced = ["eth0", "eth1"]
        .iter()
        .all(|n| i[*n].rx_packets == i[*n].forwarded_packets + i[*n].dropped_packets);
    println!(
        "  for each input, rx = forwarded + dropped: {}",
        if balanced { "yes" } else { "NO" }
    );
    if eth2 == expected[0] && eth3 == expected[1] && balanced {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}
