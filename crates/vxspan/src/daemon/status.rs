//! The `status` reply: ports and link states, groups and tiers, per-tier and per-worker
//! receive counts, the process's own figures.

use super::*;
use vxspan_core::Report;
use vxspan_io::afpacket::{self};

impl State {
    /// What `vxspan top` shows besides the counters: the ports with their link state, the
    /// (input, VLAN) groups with their rules, outputs and tier, and the process's own figures.
    pub(super) fn status(&self) -> serde_json::Value {
        let plan = self.engine.plan();
        let link = |ifname: &str| match afpacket::link_state(ifname) {
            Ok((true, true)) => "up",
            Ok((true, false)) => "no carrier",
            Ok((false, _)) => "down",
            Err(_) => "gone",
        };
        let mut ports = Vec::new();
        for i in &plan.inputs {
            let state = if i.listen.is_some() {
                "listening"
            } else {
                link(&i.interface)
            };
            ports.push(serde_json::json!({"name": i.name, "role": "input", "interface": i.interface, "link": state}));
        }
        for o in &plan.outputs {
            let (what, state) = match &o.dest {
                Destination::Interface(ifname) => (ifname.clone(), link(ifname)),
                Destination::Tunnel(e) => {
                    (format!("{} to {}", e.kind(), e.outer().remote), "tunnel")
                }
                Destination::Archive(a) => (a.path.clone(), "file"),
            };
            let socket = o.dest.interface().and_then(|ifname| {
                let outs = &self.ports.outputs;
                let i = outs.socket_names.iter().position(|n| n == ifname)?;
                outs.sockets.get(i)
            });
            let transmit = socket.map(|s| match s {
                Some(OutSocket::Xdp(x)) => x.set.describe(),
                Some(OutSocket::Packet(_)) => "AF_PACKET".into(),
                None => "none (interface gone)".into(),
            });
            let mut port = serde_json::json!({"name": o.name, "role": "output", "interface": what, "link": state, "transmit": transmit});
            if let Some(Some(OutSocket::Xdp(x))) = socket {
                port["afxdp_invalid_completions"] = x.set.invalid_completions().into();
            }
            ports.push(port);
        }
        let process = crate::process::Process::read();
        // Frames each tier received, per input: with a VxSPAN-only configuration the userspace
        // tier sees none.
        let (user, kern) = self.reports();
        let report = self.merged(&user, kern.as_ref().map(|k| &k.0));
        // Kernel-originated tunnels: where their copies leave, and the frames handed to the
        // userspace tier while their next hop was not resolved.
        if let Some(k) = &self.kernel {
            let hops = k.next_hops();
            for (o, out) in plan.outputs.iter().enumerate() {
                let Some(state) = hops.get(&out.name) else {
                    continue;
                };
                let p = plan.inputs.len() + o;
                if let Some(port) = ports.get_mut(p) {
                    port["next_hop"] = state.clone().into();
                    port["xdp_unresolved_packets"] = kern
                        .as_ref()
                        .and_then(|k| k.2.get(o).copied())
                        .unwrap_or(0)
                        .into();
                }
            }
        }
        let xsk_counts = self.xsk_counts();
        let tiers: serde_json::Map<String, serde_json::Value> = plan
            .inputs
            .iter()
            .enumerate()
            .map(|(ii, i)| {
                let rx = |r: &Report| r.interfaces.get(&i.name).map_or(0, |p| p.rx_packets);
                (
                    i.name.clone(),
                    serde_json::json!({
                        "xdp_rx_packets": kern.as_ref().map_or(0, |k| rx(&k.0)),
                        // Handed up by the program: each is then read by the userspace tier
                        // or counted as ring_overrun, so this equals userspace_rx_packets.
                        "xdp_to_userspace_packets": kern.as_ref().and_then(|k| k.1.get(ii).copied()).unwrap_or(0),
                        "userspace_rx_packets": rx(&user),
                        "afxdp_rx_packets": xsk_counts.iter().filter(|(x, _)| *x == ii).map(|(_, n)| n).sum::<u64>(),
                        "afxdp_sockets": xsk_counts.iter().filter(|(x, _)| *x == ii).count(),
                    }),
                )
            })
            .collect();
        // The tier of each (input, VLAN) the counters list, for labels (Prometheus, top).
        let placement: Vec<Vec<vxspan_core::Tier>> = match &self.kernel {
            Some(k) => k
                .tables()
                .inputs
                .iter()
                .map(|i| {
                    let mut v: Vec<_> = i.placement.iter().map(|p| p.0).collect();
                    // VIDs of no group: dropped where the input's frames are classified.
                    v.push(if i.all_userspace {
                        vxspan_core::Tier::Userspace
                    } else {
                        vxspan_core::Tier::Xdp
                    });
                    v
                })
                .collect(),
            None => plan
                .inputs
                .iter()
                .map(|i| vec![vxspan_core::Tier::Userspace; i.groups.len() + 1])
                .collect(),
        };
        let vlan_tiers: serde_json::Map<String, serde_json::Value> = plan
            .inputs
            .iter()
            .zip(&placement)
            .map(|(i, tiers)| {
                let m: serde_json::Map<String, serde_json::Value> = (0..4096u16)
                    .filter_map(|vid| {
                        let key = vxspan_core::counters::vlan_key(vid);
                        report.vlans.get(&i.name)?.get(&key)?;
                        let g = i.group_of_vid[usize::from(vid)];
                        let t = if g == vxspan_core::plan::NO_GROUP {
                            tiers[tiers.len() - 1]
                        } else {
                            tiers[usize::from(g)]
                        };
                        Some((key, serde_json::to_value(t).unwrap_or_default()))
                    })
                    .collect();
                (i.name.clone(), serde_json::Value::Object(m))
            })
            .collect();
        // Frames each userspace worker received (the first one's include tunnel endpoints,
        // passthru inputs and AF_XDP sockets).
        let rx_of = |r: &Report| -> u64 {
            plan.inputs
                .iter()
                .filter_map(|i| r.interfaces.get(&i.name))
                .map(|p| p.rx_packets)
                .sum()
        };
        let mut worker_rx = vec![rx_of(&self.engine.report())];
        worker_rx.extend(self.worker_reports().iter().map(rx_of));
        // Each worker's longest gap between two batches (10 to 20 s window), first worker first.
        let mut gaps = vec![self.gap.max_ms()];
        gaps.extend(self.workers.iter().map(|s| s.gap.max_ms()));
        let capture_dropped = self
            .ports
            .outputs
            .captures
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        serde_json::json!({
            "workers": worker_rx.len(),
            "worker_max_gap_ms": gaps,
            "capture_dropped": capture_dropped,
            "vlan_hint_inputs": self.kernel.as_ref().map_or(0, |k| k.vlan_hint_inputs()),
            "worker_rx_packets": worker_rx,
            "tiers": tiers,
            "vlan_tiers": vlan_tiers,
            "config": self.config.display().to_string(),
            "reloads": self.reloads,
            "restarts": self.restarts,
            "datapath": self.datapath(),
            "rss_bytes": process.resident_bytes,
            "cpu_seconds": process.cpu_seconds,
            "ports": ports,
            "groups": self.groups(),
        })
    }
}
