//! The kernel tier's counter maps (groups, inputs, outputs, tunnel outputs) and reading them,
//! summed over CPUs, into [`RawCounters`]: for the current object, a replaced one, and one a
//! predecessor process handed over.

use std::os::fd::{AsRawFd, OwnedFd};

use aya::maps::{Map, MapData, PerCpuArray};

use crate::loader::{err, ncpus};
use crate::maps::{VxGroup, VxInputStats, VxOutput};
use crate::tables::{GroupCounters, OutputCounters, RawCounters, NVID};

/// The maps the program counts in: what [`RawCounters`] are read from.
pub(crate) struct CounterMaps {
    pub(crate) groups: PerCpuArray<MapData, VxGroup>,
    /// The groups map again, for reading it in batches.
    pub(crate) groups_fd: OwnedFd,
    pub(crate) in_stats: PerCpuArray<MapData, VxInputStats>,
    pub(crate) outputs: PerCpuArray<MapData, VxOutput>,
    /// Tunnel outputs' hand-offs and errors (not handed over to a successor process: a
    /// restart's old object reports without them).
    pub(crate) tun_stats: Option<PerCpuArray<MapData, crate::maps::VxTunStats>>,
}

/// The names of the maps [`CounterMaps`] holds, in the order of [`Handover::counters`].
pub(crate) const COUNTER_MAPS: [&str; 3] = ["groups", "in_stats", "outputs"];

impl CounterMaps {
    /// The maps of a previous process's object, from their descriptors (in [`COUNTER_MAPS`]
    /// order).
    pub(crate) fn from_fds(fds: [OwnedFd; 3]) -> Result<CounterMaps, String> {
        let [g, s, o] = fds;
        let groups_fd = g.try_clone().map_err(|e| err("groups", e))?;
        let open = |fd: OwnedFd, name: &str| {
            MapData::from_fd(fd).map_err(|e| err(&format!("the handed-over map {name}"), e))
        };
        Ok(CounterMaps {
            groups: PerCpuArray::try_from(Map::PerCpuArray(open(g, "groups")?))
                .map_err(|e| err("groups", e))?,
            groups_fd,
            in_stats: PerCpuArray::try_from(Map::PerCpuArray(open(s, "in_stats")?))
                .map_err(|e| err("in_stats", e))?,
            outputs: PerCpuArray::try_from(Map::PerCpuArray(open(o, "outputs")?))
                .map_err(|e| err("outputs", e))?,
            tun_stats: None,
        })
    }

    /// The counters of `n_inputs` inputs and `n_outputs` outputs, summed over CPUs.
    pub(crate) fn read(&self, n_inputs: usize, n_outputs: usize) -> RawCounters {
        let mut raw = RawCounters {
            groups: vec![vec![GroupCounters::default(); NVID]; n_inputs],
            malformed: vec![(0, 0); n_inputs],
            userspace: vec![(0, 0); n_inputs],
            outputs: vec![OutputCounters::default(); n_outputs],
        };
        // VxGroup: action, arg, sample_n, sample_slot (u32), then packets, bytes, dropped
        // packets and bytes, sampled packets and bytes (u64).
        let stride = std::mem::size_of::<VxGroup>().div_ceil(8) * 8;
        let u64_at =
            |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or_default());
        let groups = &mut raw.groups;
        let batch = ncpus().and_then(|cpus| {
            crate::hint::per_cpu_array(
                self.groups_fd.as_raw_fd(),
                (n_inputs * NVID) as u32,
                std::mem::size_of::<VxGroup>(),
                cpus,
                |k, per_key| {
                    let c = &mut groups[k as usize / NVID][k as usize % NVID];
                    for v in per_key.chunks_exact(stride) {
                        c.packets += u64_at(v, 16);
                        c.bytes += u64_at(v, 24);
                        c.dropped_packets += u64_at(v, 32);
                        c.dropped_bytes += u64_at(v, 40);
                        c.sampled_packets += u64_at(v, 48);
                        c.sampled_bytes += u64_at(v, 56);
                    }
                },
            )
        });
        if batch.is_err() {
            // Per key, from scratch (a batch that failed half way may have counted some).
            raw.groups = vec![vec![GroupCounters::default(); NVID]; n_inputs];
        }
        for (i, vids) in raw.groups.iter_mut().enumerate() {
            for (vid, c) in vids.iter_mut().enumerate().filter(|_| batch.is_err()) {
                if let Ok(v) = self.groups.get(&((i * NVID + vid) as u32), 0) {
                    for g in v.iter() {
                        c.packets += g.packets;
                        c.bytes += g.bytes;
                        c.dropped_packets += g.dropped_packets;
                        c.dropped_bytes += g.dropped_bytes;
                        c.sampled_packets += g.sampled_packets;
                        c.sampled_bytes += g.sampled_bytes;
                    }
                }
            }
            if let Ok(v) = self.in_stats.get(&(i as u32), 0) {
                for s in v.iter() {
                    raw.malformed[i].0 += s.malformed_packets;
                    raw.malformed[i].1 += s.malformed_bytes;
                    raw.userspace[i].0 += s.userspace_packets;
                    raw.userspace[i].1 += s.userspace_bytes;
                }
            }
        }
        for (o, c) in raw.outputs.iter_mut().enumerate() {
            if let Ok(v) = self.outputs.get(&(o as u32), 0) {
                for s in v.iter() {
                    c.tx_packets += s.tx_packets;
                    c.tx_bytes += s.tx_bytes;
                    c.link_down_packets += s.link_down_packets;
                    c.link_down_bytes += s.link_down_bytes;
                    c.mtu_exceeded_packets += s.mtu_exceeded_packets;
                    c.mtu_exceeded_bytes += s.mtu_exceeded_bytes;
                    c.rate_limited_packets += s.rate_limited_packets;
                    c.rate_limited_bytes += s.rate_limited_bytes;
                }
            }
            if let Some(Ok(v)) = self.tun_stats.as_ref().map(|m| m.get(&(o as u32), 0)) {
                for s in v.iter() {
                    c.unresolved_packets += s.unresolved_packets;
                    c.unresolved_bytes += s.unresolved_bytes;
                    c.tx_error_packets += s.error_packets;
                    c.tx_error_bytes += s.error_bytes;
                }
            }
        }
        raw
    }
}
