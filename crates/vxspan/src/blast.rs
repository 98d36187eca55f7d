//! `vxspan blast IF PCAP`: the traffic generator of vxspan-xdp's [`vxspan_xdp::blast`], fed
//! from a capture, with a report of what the interface actually sent.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// Frames of at least an Ethernet header from `pcap` (at most 65,536 of them: the generator
/// cycles through them).
pub fn frames(pcap: &Path) -> Result<Vec<Vec<u8>>> {
    let mut r = vxspan_io::pcap::Reader::open(pcap)
        .with_context(|| format!("reading {}", pcap.display()))?;
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    while let Some(_rec) = r
        .next_into(&mut buf)
        .with_context(|| format!("reading {}", pcap.display()))?
    {
        if buf.len() >= 14 && frames.len() < 65_536 {
            frames.push(std::mem::take(&mut buf));
        }
        buf.clear();
    }
    if frames.is_empty() {
        bail!("{}: no frame of at least 14 bytes", pcap.display());
    }
    Ok(frames)
}

pub fn run(
    interface: &str,
    pcap: &Path,
    count: u64,
    rate: Option<u64>,
    cpu: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let frames = frames(pcap)?;
    if let Some(c) = cpu {
        vxspan_xdp::blast::pin_to_cpu(c).map_err(anyhow::Error::msg)?;
    }
    let mut b = vxspan_xdp::blast::Blaster::open(interface).map_err(anyhow::Error::msg)?;
    let r = b.blast(&frames, count, rate).map_err(anyhow::Error::msg)?;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "interface": interface,
                "injected": r.injected,
                "tx_packets": r.tx_packets,
                "tx_dropped": r.tx_dropped,
                "seconds": secs,
                "mpps": r.tx_packets as f64 / secs / 1e6,
            })
        );
    } else {
        println!(
            "{interface}: {} frames injected, {} sent (tx_packets), {} dropped by the interface (tx_dropped), in {:.3} s: {:.3} Mpps",
            r.injected,
            r.tx_packets,
            r.tx_dropped,
            secs,
            r.tx_packets as f64 / secs / 1e6
        );
    }
    if r.tx_dropped > 0 {
        eprintln!("vxspan blast: {interface} dropped frames: on a veth, the peer needs an XDP program (native) or GRO on to take XDP frames");
    }
    Ok(ExitCode::SUCCESS)
}
