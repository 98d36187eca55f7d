//! The kernel tier's next-hop thread: keeps the XDP program's `nexthops` table (where each
//! kernel-originated tunnel output's copies leave: egress device, MAC addresses, source, MTU)
//! current with the kernel's route and neighbour tables, and its real-time clock offset with
//! the clock.
//!
//! Every [`REFRESH`] it asks rtnetlink where each tunnel remote goes (vxspan_io::route), off the
//! packet threads, and writes what changed. A remote whose neighbour is not resolved, whose
//! route is gone, or whose egress device cannot take XDP frames in native mode (a bridge, a
//! bond, a vxlan device: no `ndo_xdp_xmit`) has no entry: the program hands its frames to the
//! userspace tier, which sends them through a kernel socket, so the kernel resolves the
//! neighbour and the next refresh finds it. Each change is logged.
//!
//! Polling rather than listening to route events: one lookup per tunnel output per 100 ms is
//! cheap, has no event queue to overflow, and bounds how long a route change goes unseen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vxspan_io::route::{resolve, NextHop};
use vxspan_xdp::maps::VxNexthop;
use vxspan_xdp::shared::Shared;
use vxspan_xdp::Mode;

/// How often routes and neighbours are read again.
pub const REFRESH: Duration = Duration::from_millis(100);

/// How often the real-time offset is written again (a clock step shows within this).
const CLOCK_REFRESH: Duration = Duration::from_millis(500);

/// Drivers whose devices take redirected XDP frames (implement `ndo_xdp_xmit`) in native mode.
/// A device of any other driver, or of no driver (bridge, bond, vxlan), gets its tunnel copies
/// from the userspace tier; generic mode sends to any device.
const XDP_XMIT_DRIVERS: &[&str] = &[
    "veth",
    "tun",
    "virtio_net",
    "ixgbe",
    "ixgbevf",
    "i40e",
    "ice",
    "igb",
    "igc",
    "mlx5_core",
    "mlx4_en",
    "bnxt_en",
    "nfp",
    "ena",
    "qede",
    "sfc",
    "gve",
    "stmmac",
    "mvneta",
    "mvpp2",
    "fec",
    "enetc",
    "dpaa2-eth",
    "tsnep",
];

/// Whether `route`'s device takes XDP frames in `mode`, or why not.
fn egress_takes_xdp(route: &vxspan_io::route::Route, mode: Mode) -> Result<(), String> {
    if mode == Mode::Generic {
        return Ok(());
    }
    if let Some(kind) = route.kind.as_deref().filter(|k| *k != "veth") {
        return Err(format!(
            "egress {} is a {kind} device, which cannot transmit XDP frames",
            route.ifname
        ));
    }
    let driver = vxspan_io::afpacket::driver(&route.ifname).unwrap_or_default();
    if XDP_XMIT_DRIVERS.contains(&driver.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "egress {} (driver {driver:?}) is not known to transmit XDP frames",
            route.ifname
        ))
    }
}

/// What one remote resolves to: the table entry, or why there is none.
fn entry(nh: NextHop, mode: Mode) -> Result<(VxNexthop, String), String> {
    match nh {
        NextHop::Ready(r, dmac) => {
            egress_takes_xdp(&r, mode)?;
            let what = format!("via {} on {} (MTU {})", r.via, r.ifname, r.mtu);
            Ok((
                VxNexthop {
                    ifindex: r.ifindex,
                    src4: r.source.octets(),
                    smac: r.smac,
                    dmac,
                    mtu: r.mtu,
                },
                what,
            ))
        }
        NextHop::Unresolved(r) => Err(format!(
            "neighbour {} on {} not resolved yet",
            r.via, r.ifname
        )),
        NextHop::Unroutable(why) => Err(why),
    }
}

/// The running thread; dropping it stops it (within one refresh).
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Per output name, what the last lookup found (as logged).
    states: States,
}

type States = Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>;

impl Feeder {
    pub fn start(shared: Shared, mode: Mode) -> std::io::Result<Feeder> {
        let stop = Arc::new(AtomicBool::new(false));
        let states = States::default();
        let (s, st) = (stop.clone(), states.clone());
        let thread = std::thread::Builder::new()
            .name("vxspan-nexthop".into())
            .spawn(move || run(shared, mode, s, st))?;
        Ok(Feeder {
            stop,
            thread: Some(thread),
            states,
        })
    }

    /// Per output name, what the last lookup found: "via GW on DEV (MTU N)" or why its copies
    /// go through the userspace tier.
    pub fn states(&self) -> std::collections::BTreeMap<String, String> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: Shared, mode: Mode, stop: Arc<AtomicBool>, states: States) {
    crate::process::yield_to_workers();
    let mut nl = None;
    // Per slot: what is written (None: no entry) and the text logged last.
    let mut written: std::collections::HashMap<u32, (Option<VxNexthop>, String)> =
        Default::default();
    // Per slot, the lookup error logged last.
    let mut failed: std::collections::HashMap<u32, String> = Default::default();
    let mut clock_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let targets = shared.lock().unwrap_or_else(|p| p.into_inner()).targets();
        if nl.is_none() {
            nl = vxspan_io::netdev::Rtnl::open()
                .map_err(|e| crate::logging::warn(format!("next hops: rtnetlink: {e}")))
                .ok();
        }
        let mut reopen = false;
        if let Some(sock) = nl.as_mut() {
            for (slot, name, remote) in &targets {
                let (nh, what) = match resolve(sock, *remote) {
                    Ok(n) => match entry(n, mode) {
                        Ok((v, what)) => (Some(v), what),
                        Err(why) => (None, why),
                    },
                    // The entry stays as it was and the other targets are still looked up;
                    // the socket is reopened at the next refresh. Logged when the error
                    // changes, not every refresh.
                    Err(e) => {
                        let e = e.to_string();
                        if failed.get(slot) != Some(&e) {
                            crate::logging::warn(format!("next hops: {name}: {e}"));
                            failed.insert(*slot, e);
                        }
                        reopen = true;
                        continue;
                    }
                };
                failed.remove(slot);
                let prev = written.get(slot);
                if prev.map(|p| &p.0) == Some(&nh) && prev.map(|p| &p.1) == Some(&what) {
                    continue;
                }
                let sh = shared.lock().unwrap_or_else(|p| p.into_inner());
                match sh.set_nexthop(*slot, nh) {
                    Ok(()) => {
                        let how = if nh.is_some() {
                            "copies leave from the XDP program"
                        } else {
                            "copies go through the userspace tier"
                        };
                        crate::logging::log(format!(
                            "tunnel output {name} to {remote}: {what}; {how}"
                        ));
                        states
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(name.clone(), format!("{what}; {how}"));
                        written.insert(*slot, (nh, what));
                    }
                    Err(e) => crate::logging::warn(format!("next hops: {name}: {e}")),
                }
            }
        }
        if reopen {
            nl = None;
        }
        if clock_at.elapsed() >= CLOCK_REFRESH {
            clock_at = Instant::now();
            if let Err(e) = shared.lock().unwrap_or_else(|p| p.into_inner()).set_clock() {
                crate::logging::warn(format!("ERSPAN clock: {e}"));
            }
        }
        std::thread::sleep(REFRESH);
    }
}
