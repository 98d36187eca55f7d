//! The maps that outlive one loaded object: `tun_seq` (ERSPAN sequence numbers), `nexthops`
//! and `tun_dev` (where tunnel copies leave) and `clock` (the real-time offset).
//!
//! A reload loads a whole new object (loader.rs); if these maps were the object's own, a
//! sequence would restart or repeat at every reload and the next hops would be unknown until
//! the next refresh. The first object creates them; every later one reuses them: aya reuses a
//! map pinned at the path it is given, so each is pinned just for the load, in the host's bpffs
//! (`/sys/fs/bpf`) or, when there is none, in a private bpffs instance mounted for the load
//! and unmounted after it. Nothing stays pinned once a load returns.
//!
//! Entries are by *slot*, not output index: a slot belongs to an output name, so a reload that
//! renumbers outputs keeps each output's sequence. `tun_seq` is mapped into this process
//! ([`SeqCell`]): the userspace tier takes its ERSPAN numbers from the same counters as the XDP
//! program, with the same atomic add, so every number is used once across CPUs and tiers.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aya::maps::xdp::DevMap;
use aya::maps::{Array, MapData};

use crate::maps::VxNexthop;
use crate::tables::MAX_OUTPUTS;

/// The shared maps' names, as in bpf/vxspan.c.
pub(crate) const NAMES: [&str; 6] = [
    "tun_seq", "nexthops", "tun_dev", "clock", "samples", "nh_gen",
];

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("XDP: {what}: {e}")
}

/// The maps themselves (descriptors of the first object's maps) and the slot owners.
#[derive(Default)]
pub struct SharedMaps {
    fds: Vec<(&'static str, OwnedFd)>,
    seq: Option<Arc<SeqMap>>,
    /// `samples` mapped: per sampling rule's slot, the frames it has seen (u64).
    samples: Option<Arc<SeqMap>>,
    /// The rule name each `samples` slot belongs to.
    sample_slots: Vec<Option<String>>,
    /// The sampling rules of the tables loaded last (only their slots are handed out).
    sampling: Vec<String>,
    /// The output name each slot belongs to (kept after the output goes, so that one coming
    /// back continues its sequence while free slots remain).
    slots: Vec<Option<String>>,
    /// The slots of the tables loaded last, with their outputs' remotes: what the next-hop
    /// thread resolves.
    targets: Vec<(u32, String, std::net::Ipv4Addr)>,
}

/// The shared maps and their slot owners, handed to a successor process (`vxspan restart`).
#[derive(Debug)]
pub struct SharedHandover {
    /// (map name, descriptor), for each of [`NAMES`].
    pub fds: Vec<(String, OwnedFd)>,
    pub tunnel_slots: Vec<Option<String>>,
    pub sample_slots: Vec<Option<String>>,
}

/// What a datapath and the threads preparing its reloads share.
pub type Shared = Arc<Mutex<SharedMaps>>;

/// A mappable array (`tun_seq`, `samples`) mapped into this process.
#[derive(Debug)]
pub struct SeqMap {
    ptr: *mut u8,
    /// The mapping's length, a whole number of pages.
    len: usize,
    /// The array's length in bytes.
    used: usize,
}

// SAFETY: the mapping is only accessed through atomics, from any thread.
unsafe impl Send for SeqMap {}
// SAFETY: as above.
unsafe impl Sync for SeqMap {}

impl SeqMap {
    fn map(fd: &OwnedFd, used: usize) -> Result<SeqMap, String> {
        let len = used.div_ceil(4096) * 4096;
        // SAFETY: a fresh shared mapping of a BPF_F_MMAPABLE array's descriptor; the kernel
        // checks the length and flags against the map and fails otherwise.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(err(
                "mapping a shared array",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(SeqMap {
            ptr: p.cast(),
            len,
            used,
        })
    }

    fn u32_at(&self, slot: u32) -> &AtomicU32 {
        let at = slot as usize * 4;
        assert!(at + 4 <= self.used);
        // SAFETY: the mapping is page aligned and `used` bytes long at least, alive as long as
        // `self`; a u32 array's values sit at 4-byte strides from offset 0 (aligned), and the
        // XDP program changes them only with atomic adds.
        unsafe { &*self.ptr.add(at).cast::<AtomicU32>() }
    }

    fn u64_at(&self, slot: u32) -> &AtomicU64 {
        let at = slot as usize * 8;
        assert!(at + 8 <= self.used);
        // SAFETY: as in u32_at, for a u64 array (8-byte strides from a page boundary).
        unsafe { &*self.ptr.add(at).cast::<AtomicU64>() }
    }
}

impl Drop for SeqMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once (no cell outlives the Arc).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One slot of `tun_seq`, as the userspace tier's sequence source.
#[derive(Debug, Clone)]
pub struct SeqCell {
    map: Arc<SeqMap>,
    slot: u32,
}

impl vxspan_core::encap::SequenceCell for SeqCell {
    fn take(&self) -> u32 {
        self.map.u32_at(self.slot).fetch_add(1, Ordering::Relaxed)
    }
    fn peek(&self) -> u32 {
        self.map.u32_at(self.slot).load(Ordering::Relaxed)
    }
    fn raise(&self, next: u32) {
        self.map
            .u32_at(self.slot)
            .fetch_max(next, Ordering::Relaxed);
    }
}

/// One slot of `samples`, as the userspace tier's sampling count of a rule.
#[derive(Debug, Clone)]
pub struct SampleCell {
    map: Arc<SeqMap>,
    slot: u32,
}

impl vxspan_core::encap::SharedCount for SampleCell {
    fn take(&self) -> u64 {
        self.map.u64_at(self.slot).fetch_add(1, Ordering::Relaxed)
    }
}

/// Slots of `samples`, as in bpf/vxspan.c.
pub const MAX_SAMPLES: usize = 256;

/// Gives each name in `names` a slot of `slots` (the one it has, else a free one, else one whose
/// name is not in `names`); returns the slots and those taken from another name.
fn assign_slots(
    slots: &mut [Option<String>],
    names: &[Option<&str>],
) -> (Vec<Option<u32>>, Vec<u32>) {
    let mut out = vec![None; names.len()];
    let mut reused = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let Some(n) = n else { continue };
        if let Some(s) = slots.iter().position(|o| o.as_deref() == Some(n)) {
            out[i] = Some(s as u32);
        }
    }
    for (i, n) in names.iter().enumerate() {
        let (Some(n), None) = (n, out[i]) else {
            continue;
        };
        let free = slots.iter().position(|o| o.is_none()).or_else(|| {
            slots
                .iter()
                .position(|o| o.as_deref().is_some_and(|o| !names.contains(&Some(o))))
        });
        // Callers bound the names by the slots (Tables::build: outputs, rules).
        let Some(s) = free else { continue };
        if slots[s].is_some() {
            reused.push(s as u32);
        }
        slots[s] = Some(n.to_string());
        out[i] = Some(s as u32);
    }
    (out, reused)
}

impl SharedMaps {
    pub fn new() -> Shared {
        Arc::new(Mutex::new(SharedMaps {
            slots: vec![None; MAX_OUTPUTS],
            sample_slots: vec![None; MAX_SAMPLES],
            ..Default::default()
        }))
    }

    /// The slot of each named output (None for the others), assigning free ones: first never
    /// used, then those of names not in `outs`, whose sequence starts again at 0. The named
    /// outputs and their remotes become the [`SharedMaps::targets`].
    pub(crate) fn assign(
        &mut self,
        outs: &[Option<(&str, std::net::Ipv4Addr)>],
    ) -> Vec<Option<u32>> {
        let names: Vec<Option<&str>> = outs.iter().map(|o| o.map(|o| o.0)).collect();
        let slots = self.assign_names(&names);
        self.targets = outs
            .iter()
            .zip(&slots)
            .filter_map(|(o, s)| {
                let (name, remote) = (*o)?;
                Some(((*s)?, name.to_string(), remote))
            })
            .collect();
        slots
    }

    /// (slot, output name, remote) of each tunnel output of the tables loaded last.
    pub fn targets(&self) -> Vec<(u32, String, std::net::Ipv4Addr)> {
        self.targets.clone()
    }

    fn assign_names(&mut self, names: &[Option<&str>]) -> Vec<Option<u32>> {
        let (out, reused) = assign_slots(&mut self.slots, names);
        for s in reused {
            if let Some(m) = &self.seq {
                m.u32_at(s).store(0, Ordering::Relaxed);
            }
            let _ = self.set_nexthop(s, None);
        }
        out
    }

    /// The `samples` slot of each sampling rule named (by name), assigned as tunnel slots are;
    /// a reused slot's count starts again at 0.
    pub(crate) fn assign_samples(
        &mut self,
        rules: &[&str],
    ) -> std::collections::HashMap<String, u32> {
        let names: Vec<Option<&str>> = rules.iter().map(|r| Some(*r)).collect();
        let (out, reused) = assign_slots(&mut self.sample_slots, &names);
        self.sampling = rules.iter().map(|r| r.to_string()).collect();
        for s in reused {
            if let Some(m) = &self.samples {
                m.u64_at(s).store(0, Ordering::Relaxed);
            }
        }
        rules
            .iter()
            .zip(out)
            .filter_map(|(r, s)| Some((r.to_string(), s?)))
            .collect()
    }

    /// Rule `name`'s sampling count, for the userspace tier (None: the tables loaded last do not
    /// sample it in the kernel).
    pub fn sample_cell(&self, name: &str) -> Option<SampleCell> {
        if !self.sampling.iter().any(|r| r == name) {
            return None;
        }
        let slot = self
            .sample_slots
            .iter()
            .position(|o| o.as_deref() == Some(name))?;
        self.samples.as_ref().map(|m| SampleCell {
            map: m.clone(),
            slot: slot as u32,
        })
    }

    /// The maps (duplicated descriptors) and slot owners for a successor; None before the
    /// first object.
    pub(crate) fn handover(&self) -> Result<Option<SharedHandover>, String> {
        if !self.created() {
            return Ok(None);
        }
        let fds = self
            .fds
            .iter()
            .map(|(n, fd)| Ok((n.to_string(), fd.try_clone().map_err(|e| err(n, e))?)))
            .collect::<Result<_, String>>()?;
        Ok(Some(SharedHandover {
            fds,
            tunnel_slots: self.slots.clone(),
            sample_slots: self.sample_slots.clone(),
        }))
    }

    /// The shared maps a predecessor handed over: every name of [`NAMES`] once, slot tables
    /// of the right size, else an error (the caller starts afresh).
    pub(crate) fn adopt_handover(h: SharedHandover) -> Result<Shared, String> {
        let bad = |what: &str| err("the handed-over shared maps", what);
        if h.tunnel_slots.len() != MAX_OUTPUTS || h.sample_slots.len() != MAX_SAMPLES {
            return Err(bad("slot tables of another size"));
        }
        let mut fds = Vec::with_capacity(NAMES.len());
        for name in NAMES {
            let mut it = h.fds.iter().filter(|(n, _)| n == name);
            let (Some((_, fd)), None) = (it.next(), it.next()) else {
                return Err(bad(&format!("{name} missing or twice")));
            };
            fds.push((name, fd.try_clone().map_err(|e| err(name, e))?));
        }
        if h.fds.len() != NAMES.len() {
            return Err(bad("unknown maps"));
        }
        let seq = SeqMap::map(&fds[0].1, MAX_OUTPUTS * 4)?;
        let samples = SeqMap::map(&fds[4].1, MAX_SAMPLES * 8)?;
        Ok(Arc::new(Mutex::new(SharedMaps {
            fds,
            seq: Some(Arc::new(seq)),
            samples: Some(Arc::new(samples)),
            slots: h.tunnel_slots,
            sample_slots: h.sample_slots,
            ..Default::default()
        })))
    }

    /// Whether the maps exist (an object was loaded).
    pub(crate) fn created(&self) -> bool {
        !self.fds.is_empty()
    }

    /// Keeps the maps of the first object loaded.
    pub(crate) fn adopt(&mut self, ebpf: &aya::Ebpf) -> Result<(), String> {
        let mut fds = Vec::new();
        for name in NAMES {
            let m = ebpf
                .map(name)
                .ok_or_else(|| err(name, "map missing from the object"))?;
            let data = match m {
                aya::maps::Map::Array(d) | aya::maps::Map::HashMap(d) => d,
                aya::maps::Map::DevMap(d) => d,
                _ => return Err(err(name, "unexpected map type")),
            };
            use std::os::fd::AsFd;
            let fd = data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| err(name, e))?;
            fds.push((name, fd));
        }
        self.seq = Some(Arc::new(SeqMap::map(&fds[0].1, MAX_OUTPUTS * 4)?));
        self.samples = Some(Arc::new(SeqMap::map(&fds[4].1, MAX_SAMPLES * 8)?));
        self.fds = fds;
        Ok(())
    }

    /// Pins the maps for a load (see the module doc); None before the first object.
    pub(crate) fn pin(&self) -> Result<Option<Pins>, String> {
        if !self.created() {
            return Ok(None);
        }
        Pins::new(&self.fds).map(Some)
    }

    fn map_data(&self, name: &str) -> Result<MapData, String> {
        let (_, fd) = self
            .fds
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| err(name, "no object loaded yet"))?;
        MapData::from_fd(fd.try_clone().map_err(|e| err(name, e))?).map_err(|e| err(name, e))
    }

    /// Slot `slot`'s ERSPAN sequence, for the userspace tier.
    pub fn seq_cell(&self, slot: u32) -> Option<SeqCell> {
        self.seq.as_ref().map(|m| SeqCell {
            map: m.clone(),
            slot,
        })
    }

    /// The slot of output `name`, if the tables loaded last originate it.
    pub fn slot_of(&self, name: &str) -> Option<u32> {
        if !self.targets.iter().any(|(_, n, _)| n == name) {
            return None;
        }
        self.slots
            .iter()
            .position(|o| o.as_deref() == Some(name))
            .map(|s| s as u32)
    }

    /// Sets (None: removes) where slot `slot`'s copies leave: the device and the entry of the
    /// generation not in use, then the generation flips (see bpf/vxspan.c), so a copy never
    /// pairs one hop's MACs with another's device.
    pub fn set_nexthop(&self, slot: u32, nh: Option<VxNexthop>) -> Result<(), String> {
        let mut hops: Array<MapData, VxNexthop> =
            Array::try_from(aya::maps::Map::Array(self.map_data("nexthops")?))
                .map_err(|e| err("nexthops", e))?;
        let mut gens: Array<MapData, u32> =
            Array::try_from(aya::maps::Map::Array(self.map_data("nh_gen")?))
                .map_err(|e| err("nh_gen", e))?;
        let gen = gens.get(&slot, 0).map_err(|e| err("nh_gen", e))? & 1;
        if let Some(v) = &nh {
            let mut devs: DevMap<MapData> =
                DevMap::try_from(aya::maps::Map::DevMap(self.map_data("tun_dev")?))
                    .map_err(|e| err("tun_dev", e))?;
            devs.set(slot * 2 + (gen ^ 1), v.ifindex, None, 0)
                .map_err(|e| err("tun_dev", e))?;
        }
        hops.set(slot * 2 + (gen ^ 1), nh.unwrap_or_default(), 0)
            .map_err(|e| err("nexthops", e))?;
        gens.set(slot, gen ^ 1, 0).map_err(|e| err("nh_gen", e))
    }

    /// Brings the real-time offset the ERSPAN III timestamps use up to date.
    pub fn set_clock(&self) -> Result<(), String> {
        let mut clock: Array<MapData, u64> =
            Array::try_from(aya::maps::Map::Array(self.map_data("clock")?))
                .map_err(|e| err("clock", e))?;
        clock
            .set(0, crate::tunnel::realtime_offset(), 0)
            .map_err(|e| err("clock", e))
    }
}

/// The shared maps pinned in a bpffs directory for one load; unpinned (and a private bpffs
/// unmounted) on drop.
pub(crate) struct Pins {
    dir: PathBuf,
    paths: Vec<(&'static str, PathBuf)>,
    mounted: bool,
}

static PIN_SEQ: AtomicU64 = AtomicU64::new(0);

fn is_bpffs(p: &std::path::Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable, both alive for the call.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

impl Pins {
    fn new(fds: &[(&'static str, OwnedFd)]) -> Result<Pins, String> {
        let n = PIN_SEQ.fetch_add(1, Ordering::Relaxed);
        // Unpredictable, so that another user cannot take the name in /tmp first (mkdir
        // refuses a path that exists, so that would only make the load fail).
        let mut salt = [0u8; 8];
        // SAFETY: `salt` is writable for its length; getrandom writes at most that many bytes.
        let got = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
        if got != salt.len() as isize {
            return Err(err("bpffs path", std::io::Error::last_os_error()));
        }
        let leaf = format!(
            "vxspan-{}-{n}-{:016x}",
            std::process::id(),
            u64::from_ne_bytes(salt)
        );
        let host = std::path::Path::new("/sys/fs/bpf");
        let mut pins = if is_bpffs(host) && std::fs::create_dir(host.join(&leaf)).is_ok() {
            Pins {
                dir: host.join(&leaf),
                paths: Vec::new(),
                mounted: false,
            }
        } else {
            let dir = std::env::temp_dir().join(&leaf);
            std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
                .create(&dir)
                .map_err(|e| err(&format!("{}", dir.display()), e))?;
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                .map_err(|e| err("bpffs path", e))?;
            // SAFETY: NUL-terminated strings alive for the call; no data argument.
            let r = unsafe {
                libc::mount(
                    c"bpf".as_ptr(),
                    c.as_ptr(),
                    c"bpf".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                let _ = std::fs::remove_dir(&dir);
                return Err(err(
                    "reusing the tunnel maps across a reload",
                    format!("/sys/fs/bpf is not a writable bpffs and mounting one failed: {e}"),
                ));
            }
            Pins {
                dir,
                paths: Vec::new(),
                mounted: true,
            }
        };
        for (name, fd) in fds {
            let path = pins.dir.join(name);
            let data = MapData::from_fd(fd.try_clone().map_err(|e| err(name, e))?)
                .map_err(|e| err(name, e))?;
            data.pin(&path)
                .map_err(|e| err(&format!("pinning {name}"), e))?;
            pins.paths.push((name, path));
        }
        Ok(pins)
    }

    pub(crate) fn paths(&self) -> &[(&'static str, PathBuf)] {
        &self.paths
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for (_, p) in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        if self.mounted {
            if let Ok(c) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
                // SAFETY: a NUL-terminated path alive for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
