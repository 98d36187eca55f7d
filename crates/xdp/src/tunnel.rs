//! Tunnel origination in the kernel tier: the maps `bpf/vxspan.c`'s `tunnel_send` reads.
//!
//! `tunnels` holds each kernel-originated output's fixed header fields (kind, GRE key, ERSPAN
//! session, DSCP, TTL, remote); `nexthops` where its copies leave (egress device, source
//! address, MAC addresses), replaced per update; `clock` the offset from CLOCK_BOOTTIME to
//! CLOCK_REALTIME for ERSPAN III timestamps, written at load; `tun_seq` the ERSPAN sequence
//! numbers, which every CPU takes with one atomic add; `hashkey` the flow hash's key
//! (bpf/flowhash.h).
//!
//! The last three outlive an object and are written through [`crate::shared`].

use aya::maps::{Array, MapData};
use aya::Ebpf;

use crate::maps::{VxTunnel, TUN_KEY};
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

/// Writes the tunnel outputs of `t` into a freshly loaded object, each with its slot.
pub(crate) fn fill(ebpf: &mut Ebpf, t: &Tables, slots: &[Option<u32>]) -> Result<(), String> {
    {
        let map = ebpf
            .map_mut("tunnels")
            .ok_or_else(|| err("tunnels", "map missing from the object"))?;
        let mut tunnels: Array<&mut MapData, VxTunnel> =
            Array::try_from(map).map_err(|e| err("tunnels", e))?;
        for (o, out) in t.outputs.iter().enumerate() {
            let (Some(tun), Some(Some(slot))) = (&out.tunnel, slots.get(o)) else {
                continue;
            };
            let v = VxTunnel {
                kind: tun.kind as u32,
                flags: if tun.key.is_some() { TUN_KEY } else { 0 },
                // The C side reads `key` as the VNI and `session` as the UDP port of VXLAN and
                // Geneve.
                key: tun.key.unwrap_or(tun.vni),
                session: if tun.port != 0 { tun.port } else { tun.session },
                dscp: tun.dscp,
                ttl: tun.ttl,
                dst4: tun.remote.octets(),
                src4: tun.source.map_or([0; 4], |s| s.octets()),
                slot: *slot,
            };
            tunnels.set(o as u32, v, 0).map_err(|e| err("tunnels", e))?;
        }
    }
    let key = ebpf
        .map_mut("hashkey")
        .ok_or_else(|| err("hashkey", "map missing from the object"))?;
    let mut key: Array<&mut MapData, [u64; 2]> =
        Array::try_from(key).map_err(|e| err("hashkey", e))?;
    key.set(0, [t.hash_key.0, t.hash_key.1], 0)
        .map_err(|e| err("hashkey", e))?;
    Ok(())
}
