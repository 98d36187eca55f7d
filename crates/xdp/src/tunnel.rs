//! Tunnel origination in the kernel tier: the maps `bpf/vxspan.c`'s `tunnel_send` reads.
//!
//! `tunnels` holds each kernel-originated output's fixed header fields (kind, GRE key, ERSPAN
//! session, DSCP, TTL, remote); `nexthops` where its copies leave (egress device, source
//! address, MAC addresses), replaced per update; `clock` the offset from CLOCK_BOOTTIME to
//! CLOCK_REALTIME for ERSPAN III timestamps, written at load; `tun_seq` the ERSPAN sequence
//! numbers, which every CPU takes with one atomic add.
//!
//! Not done yet, and why the daemon does not place tunnel groups in the kernel tier: filling
//! `nexthops` from the route and neighbour tables (and following their changes), sharing
//! `tun_seq` with the userspace tier (frames whose next hop is unresolved go there), carrying
//! it across reloads and restarts, refreshing `clock`, and reporting `tun_stats`.

use aya::maps::{Array, HashMap, Map, MapData};
use aya::Ebpf;

use crate::maps::{VxNexthop, VxTunnel, TUN_KEY};
use crate::tables::Tables;

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("XDP: {what}: {e}")
}

/// CLOCK_REALTIME - CLOCK_BOOTTIME, in nanoseconds.
pub fn realtime_offset() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64
    };
    now(libc::CLOCK_REALTIME).wrapping_sub(now(libc::CLOCK_BOOTTIME))
}

/// Writes the tunnel outputs of `t` and the clock offset into a freshly loaded object.
pub(crate) fn fill(ebpf: &mut Ebpf, t: &Tables) -> Result<(), String> {
    {
        let map = ebpf
            .map_mut("tunnels")
            .ok_or_else(|| err("tunnels", "map missing from the object"))?;
        let mut tunnels: Array<&mut MapData, VxTunnel> =
            Array::try_from(map).map_err(|e| err("tunnels", e))?;
        for (o, out) in t.outputs.iter().enumerate() {
            let Some(tun) = &out.tunnel else { continue };
            let v = VxTunnel {
                kind: tun.kind as u32,
                flags: if tun.key.is_some() { TUN_KEY } else { 0 },
                key: tun.key.unwrap_or(0),
                session: tun.session,
                dscp: tun.dscp,
                ttl: tun.ttl,
                dst4: tun.remote.octets(),
                src4: tun.source.map_or([0; 4], |s| s.octets()),
            };
            tunnels.set(o as u32, v, 0).map_err(|e| err("tunnels", e))?;
        }
    }
    set_clock(ebpf)
}

/// Brings the clock offset up to date.
pub(crate) fn set_clock(ebpf: &mut Ebpf) -> Result<(), String> {
    let map = ebpf
        .map_mut("clock")
        .ok_or_else(|| err("clock", "map missing from the object"))?;
    let mut clock: Array<&mut MapData, u64> = Array::try_from(map).map_err(|e| err("clock", e))?;
    clock
        .set(0, realtime_offset(), 0)
        .map_err(|e| err("clock", e))
}

/// Sets (or, with None, removes) output `o`'s next hop.
pub(crate) fn set_nexthop(map: &mut Map, o: u32, nh: Option<VxNexthop>) -> Result<(), String> {
    let mut m: HashMap<&mut MapData, u32, VxNexthop> =
        HashMap::try_from(map).map_err(|e| err("nexthops", e))?;
    match nh {
        Some(v) => m.insert(o, v, 0).map_err(|e| err("nexthops", e)),
        // Absent already is what was asked.
        None => {
            let _ = m.remove(&o);
            Ok(())
        }
    }
}
