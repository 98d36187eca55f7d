//! The ports of a plan: input rings (fanout groups when workers share an input), tunnel
//! endpoints, AF_XDP sockets, and the outputs opened beside them.

use super::*;
use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};
use vxspan_core::Plan;
use vxspan_io::afpacket::{self, RxRing};
use vxspan_io::tunnel::{ListenSocket, TunnelSender};
use vxspan_io::{Batch, RxPort};

/// An input: an interface's receive ring, or a tunnel endpoint's socket.
pub(super) enum LiveInput {
    Ring(RxRing),
    Listen(ListenSocket),
    /// An interface that disappeared (a VM's vNIC disconnected): picked up again when it returns.
    Gone(String),
}

impl LiveInput {
    pub(super) fn fd(&self) -> i32 {
        match self {
            LiveInput::Ring(r) => r.fd(),
            LiveInput::Listen(l) => l.fd(),
            // poll(2) ignores negative descriptors.
            LiveInput::Gone(_) => -1,
        }
    }

    pub(super) fn recv(&mut self, batch: &mut Batch, max: usize) -> std::io::Result<()> {
        match self {
            LiveInput::Ring(r) => r.recv(batch, max).map(|_| ()),
            LiveInput::Listen(l) => l.recv(batch, max).map(|_| ()),
            LiveInput::Gone(_) => Ok(()),
        }
    }
}

/// Open ports for a plan.
pub(super) struct Ports {
    pub(super) inputs: Vec<LiveInput>,
    /// Per input: the fanout group its ring leads, which the other workers' rings join
    /// (`None`: read by the first worker alone: a tunnel endpoint, an input with passthru, or
    /// a single worker).
    pub(super) fanout: Vec<Option<u16>>,
    /// Offloads turned off on input interfaces, restored when the ports are closed.
    pub(super) _offloads: Vec<afpacket::Offloads>,
    pub(super) outputs: LiveOutputs,
    /// Input and output interface names, to tell whether a new plan can keep these ports.
    pub(super) key: (Vec<String>, Vec<String>),
}

impl Ports {
    /// Takes over `old`'s rings for the inputs [`open_ports`] left empty (same interface), with
    /// their fanout groups: the frames in them are read by the new plan, none are lost.
    pub(super) fn take_rings(&mut self, old: &mut Ports) {
        for (input, group) in self.inputs.iter_mut().zip(self.fanout.iter_mut()) {
            let LiveInput::Gone(name) = input else {
                continue;
            };
            let found = old
                .inputs
                .iter()
                .position(|o| matches!(o, LiveInput::Ring(r) if r.name == *name));
            if let Some(j) = found {
                let ring = std::mem::replace(&mut old.inputs[j], LiveInput::Gone(name.clone()));
                *input = ring;
                *group = old.fanout[j].take();
            }
        }
    }
}

pub(super) fn interfaces_key(plan: &Plan) -> (Vec<String>, Vec<String>) {
    let inputs = plan.inputs.iter().map(|i| i.interface.clone()).collect();
    // Everything a port is opened with: the listening sockets, each output's interface,
    // tunnel and archive, and the TAP devices of passthru sections.
    let listens = plan.inputs.iter().map(|i| format!("listen {:?}", i.listen));
    let outputs = plan.outputs.iter().map(|o| format!("output {:?}", o.dest));
    let passthru = plan.passthru.iter().map(|p| format!("passthru {p:?}"));
    (inputs, listens.chain(outputs).chain(passthru).collect())
}

/// The block size of each worker's ring on a shared input: the input's ring memory divided
/// among them (down to 64 KiB blocks), the count of blocks kept.
pub(super) fn ring_block_size(workers: usize) -> usize {
    afpacket::BLOCK_SIZE / workers.max(1)
}

/// Whether the workers share input `i` of `plan` through a fanout group (an input with
/// passthru is read by the first worker alone, which holds its TAPs).
pub(super) fn shares_input(plan: &Plan, i: usize, workers: usize) -> bool {
    workers > 1 && plan.inputs[i].passthru.is_empty()
}

/// Opens input `i`'s ring for the first worker: in a new fanout group when `workers` share it.
pub(super) fn open_input_ring(
    plan: &Plan,
    i: usize,
    workers: usize,
) -> std::io::Result<(RxRing, Option<u16>)> {
    let inp = &plan.inputs[i];
    let shared = shares_input(plan, i, workers);
    let ring = RxRing::open_with(
        &inp.interface,
        if shared {
            ring_block_size(workers)
        } else {
            afpacket::BLOCK_SIZE
        },
    )?;
    let group = if shared {
        Some(ring.join_fanout(None)?)
    } else {
        None
    };
    Ok((ring, group))
}

/// What [`open_ports`] needs to know of the ports it replaces, taken on the first worker and
/// used where the new ports are opened (off the packet threads): the rings a new plan can take
/// over, by interface and whether they lead a fanout group, and the AF_XDP transmit sets it
/// must keep (a second set cannot bind the same queues).
pub(super) struct PortsView {
    rings: Vec<(String, bool)>,
    xdp: Vec<(String, XdpOut)>,
}

impl Ports {
    pub(super) fn view(&self) -> PortsView {
        let o = &self.outputs;
        PortsView {
            rings: self
                .inputs
                .iter()
                .zip(&self.fanout)
                .filter_map(|(i, f)| match i {
                    LiveInput::Ring(r) => Some((r.name.clone(), f.is_some())),
                    _ => None,
                })
                .collect(),
            xdp: o
                .socket_names
                .iter()
                .zip(&o.sockets)
                .filter_map(|(n, s)| match s {
                    Some(OutSocket::Xdp(x)) => Some((n.clone(), x.for_worker(0))),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl PortsView {
    /// The AF_XDP transmit set kept for `ifname` (index `ifindex`), if there is one.
    pub(super) fn xdp_set(&self, ifname: &str, ifindex: Option<u32>) -> Option<XdpOut> {
        self.xdp
            .iter()
            .find(|(n, x)| n == ifname && Some(x.set.ifindex) == ifindex)
            .map(|(_, x)| x.for_worker(0))
    }
}

/// Whether input `i` of `plan` can take over `old`'s ring on the same interface: the ring is
/// kept (with every frame in it) instead of a new one being opened beside it.
pub(super) fn reusable_ring(
    plan: &Plan,
    i: usize,
    workers: usize,
    old: Option<&PortsView>,
) -> bool {
    let inp = &plan.inputs[i];
    let shared = shares_input(plan, i, workers);
    old.is_some_and(|old| {
        old.rings
            .iter()
            .any(|(name, f)| *name == inp.interface && *f == shared)
    })
}

/// Opens the ports of `plan`. Inputs whose ring `old` can hand over are left empty for now
/// (`LiveInput::Gone`), filled by [`Ports::take_rings`] once nothing else can fail.
pub(super) fn open_ports(
    plan: &Plan,
    workers: usize,
    old: Option<&PortsView>,
    tx: &TxSetup,
) -> Result<Ports> {
    let mut inputs = Vec::new();
    let mut fanout = Vec::new();
    let mut offloads = Vec::new();
    for (ii, i) in plan.inputs.iter().enumerate() {
        if let Some(l) = &i.listen {
            let sock = ListenSocket::open(l.addr, l.port)
                .with_context(|| format!("input {}: listening on {}", i.name, i.interface))?;
            inputs.push(LiveInput::Listen(sock));
            fanout.push(None);
            continue;
        }
        if afpacket::set_up(&i.interface)
            .with_context(|| format!("input {}: bringing {} up", i.name, i.interface))?
        {
            log(format!("brought {} up", i.interface));
        }
        let off = afpacket::Offloads::disable(&i.interface);
        if !off.changed().is_empty() {
            log(format!(
                "{}: turned off {} (restored on exit)",
                i.interface,
                off.changed().join(", ")
            ));
        }
        offloads.push(off);
        if reusable_ring(plan, ii, workers, old) {
            inputs.push(LiveInput::Gone(i.interface.clone()));
            fanout.push(None);
            continue;
        }
        let (ring, group) = open_input_ring(plan, ii, workers).with_context(|| {
            format!(
                "input {}: opening a receive ring on {}",
                i.name, i.interface
            )
        })?;
        inputs.push(LiveInput::Ring(ring));
        fanout.push(group);
    }
    let mut sockets: Vec<Option<OutSocket>> = Vec::new();
    let mut socket_names: Vec<String> = Vec::new();
    let mut outs = Vec::new();
    for o in &plan.outputs {
        let ifname = match &o.dest {
            Destination::Tunnel(e) => {
                let t = TunnelSender::open(e).with_context(|| {
                    format!("output {}: {} to {}", o.name, e.kind(), e.outer().remote)
                })?;
                outs.push(LiveOut::Tunnel(t));
                continue;
            }
            Destination::Archive(a) => {
                outs.push(LiveOut::Archive(Arc::new(Mutex::new(
                    vxspan_io::archive::ArchiveWriter::new(a.clone(), plan.input_descriptions())
                        .with_losses(tx.losses.clone(), tx.losses.id(&o.name)),
                ))));
                continue;
            }
            Destination::Interface(ifname) => ifname,
        };
        let idx = match socket_names.iter().position(|s| s == ifname) {
            Some(i) => i,
            None => {
                if afpacket::set_up(ifname)
                    .with_context(|| format!("output {}: bringing {ifname} up", o.name))?
                {
                    log(format!("brought {ifname} up"));
                }
                sockets
                    .push(Some(open_output(ifname, workers, old, tx).with_context(
                        || format!("output {}: opening {ifname}", o.name),
                    )?));
                socket_names.push(ifname.to_owned());
                sockets.len() - 1
            }
        };
        outs.push(LiveOut::Packet(idx));
    }
    Ok(Ports {
        inputs,
        fanout,
        _offloads: offloads,
        outputs: LiveOutputs {
            passthru: open_passthru(plan)?,
            captures: Arc::default(),
            sockets,
            socket_names,
            outs,
            tx: tx.clone(),
        },
        key: interfaces_key(plan),
    })
}

/// Opens an AF_XDP socket on every RX queue of each input whose frames (some of them) go to
/// the userspace tier, and registers it with the kernel tier. Inputs whose MTU does not fit
/// an AF_XDP frame, and queues where a socket cannot be opened, are an error (the caller
/// decides whether AF_PACKET takes over).
pub(super) fn open_xsks(
    k: &mut crate::kernel::KernelTier,
    plan: &Plan,
    xsks: &mut Vec<(usize, vxspan_io::afxdp::XskRx, u64)>,
) -> Result<(), String> {
    for (i, inp) in plan.inputs.iter().enumerate() {
        if inp.listen.is_some()
            || !k.tables().input_needs_userspace(i)
            || xsks.iter().any(|(x, _, _)| *x == i)
        {
            continue;
        }
        let mtu = afpacket::mtu(&inp.interface).unwrap_or(1500);
        // Ethernet header and two tags on top of the MTU.
        if mtu + 22 > vxspan_io::afxdp::MAX_FRAME {
            return Err(format!(
                "input {}: MTU {mtu} of {} does not fit an AF_XDP frame ({} bytes); jumbo frames need --datapath xdp or afpacket",
                inp.name,
                inp.interface,
                vxspan_io::afxdp::MAX_FRAME
            ));
        }
        for q in 0..vxspan_io::afxdp::rx_queues(&inp.interface) {
            let x = vxspan_io::afxdp::XskRx::open(&inp.interface, q)
                .map_err(|e| format!("input {}: {e}", inp.name))?;
            k.bind_xsk(i, q, x.fd())?;
            log(format!(
                "AF_XDP socket on {} queue {q} ({} mode)",
                inp.interface,
                if x.zero_copy { "zero-copy" } else { "copy" }
            ));
            xsks.push((i, x, 0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::daemon::test_plan as plan;

    const BASE: &str = "[inputs.in]\ninterface = \"eth0\"\n[outputs.x]\ninterface = \"eth2\"\n";

    fn with(extra: &str, rule_to: &str) -> Plan {
        plan(&format!(
            "{BASE}{extra}[[rules]]\nfrom = [\"in\"]\nto = [\"{rule_to}\"]\n"
        ))
    }

    #[test]
    fn ports_are_kept_exactly_when_nothing_they_are_opened_with_changes() {
        let a = with("", "x");
        // Rules and an output's transforms are not what a port is opened with.
        let vlan = plan(&format!(
            "{BASE}[[rules]]\nfrom = [\"in\"]\nvlan = 10\nto = [\"x\"]\n"
        ));
        assert_eq!(interfaces_key(&a), interfaces_key(&vlan));
        for other in [
            with("[outputs.y]\ninterface = \"eth3\"\n", "y"),
            plan("[inputs.in]\ninterface = \"eth1\"\n[outputs.x]\ninterface = \"eth2\"\n[[rules]]\nfrom = [\"in\"]\nto = [\"x\"]\n"),
            with("[outputs.a]\npcap = { path = \"/tmp/a-%N.pcapng\" }\n", "a"),
            with("[outputs.t]\nvxlan = { remote = \"198.18.0.2\", vni = 7 }\n", "t"),
        ] {
            assert_ne!(interfaces_key(&a), interfaces_key(&other));
        }
        // The same archive at another path is another port.
        let p1 = with("[outputs.a]\npcap = { path = \"/tmp/a-%N.pcapng\" }\n", "a");
        let p2 = with("[outputs.a]\npcap = { path = \"/tmp/b-%N.pcapng\" }\n", "a");
        assert_ne!(interfaces_key(&p1), interfaces_key(&p2));
    }

    #[test]
    fn a_ring_is_taken_over_only_on_the_same_interface_and_sharing() {
        let p = with("", "x");
        let view = |name: &str, shared: bool| PortsView {
            rings: vec![(name.to_owned(), shared)],
            xdp: Vec::new(),
        };
        assert!(reusable_ring(&p, 0, 1, Some(&view("eth0", false))));
        assert!(reusable_ring(&p, 0, 2, Some(&view("eth0", true))));
        // One worker to two: the ring must join a fanout group, a new one is opened.
        assert!(!reusable_ring(&p, 0, 2, Some(&view("eth0", false))));
        assert!(!reusable_ring(&p, 0, 1, Some(&view("eth1", false))));
        assert!(!reusable_ring(&p, 0, 1, None));
        assert_eq!(ring_block_size(4), afpacket::BLOCK_SIZE / 4);
        assert!(shares_input(&p, 0, 2) && !shares_input(&p, 0, 1));
    }
}
