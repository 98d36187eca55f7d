//! Loads `bpf/vxspan.c` with aya, writes a [`Tables`] into its maps, attaches it to the inputs
//! through bpf_link (so a reload swaps programs atomically with bpf_link_update), and reads its
//! per-CPU counters.
//!
//! In native mode each input gets the program's device-bound variant with the driver's VLAN
//! hint ([`crate::hint`], loaded with libbpf on this object's maps) where it loads; otherwise,
//! and in generic mode, aya's copy.
//!
//! A reload loads a whole new object with fresh maps, fills them, then swaps each input's link
//! to the new program: no packet ever sees a half-written table, and the attachment stays. The
//! old object's counters are read once in-flight runs of the old program are over, and returned
//! to the caller, which keeps them in its history as for any replaced plan.

use std::time::Duration;

use aya::maps::xdp::{DevMap, DevMapHash, XskMap};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::maps::{VxFanset, VxGroup, VxInput, VxInputStats, VxOutCfg, VxOutput};
use crate::tables::{GroupCounters, OutputCounters, RawCounters, Tables, FANSETS, NVID};

/// Where the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (XDP_FLAGS_DRV_MODE): fastest, needs driver support.
    Native,
    /// On the socket buffer (XDP_FLAGS_SKB_MODE): any interface.
    Generic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        }
    }

    fn flags(self) -> XdpMode {
        match self {
            Mode::Native => XdpMode::Driver,
            Mode::Generic => XdpMode::Skb,
        }
    }
}

/// One loaded object: programs and the maps read after loading.
struct Object {
    ebpf: Ebpf,
    /// Every map's descriptor by name (duplicates), for the VLAN-hint program.
    map_fds: Vec<(String, std::os::fd::OwnedFd)>,
    xsks: XskMap<MapData>,
    groups: PerCpuArray<MapData, VxGroup>,
    in_stats: PerCpuArray<MapData, VxInputStats>,
    outputs: PerCpuArray<MapData, VxOutput>,
    n_inputs: usize,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("XDP: {what}: {e}")
}

fn ncpus() -> Result<usize, String> {
    aya::util::nr_cpus().map_err(|(f, e)| err(f, e))
}

fn per_cpu<T: aya::Pod>(v: T) -> Result<PerCpuValues<T>, String> {
    PerCpuValues::try_from(vec![v; ncpus()?]).map_err(|e| err("per-CPU values", e))
}

impl Object {
    fn load(t: &Tables, xsks: &[Xsk]) -> Result<Object, String> {
        let n_inputs = t.inputs.len().max(1);
        let mut ebpf = EbpfLoader::new()
            // No CO-RE relocations in this program: the kernel's own BTF is not needed.
            .btf(None)
            .map_max_entries("groups", (n_inputs * NVID) as u32)
            .map_max_entries("in_stats", n_inputs as u32)
            .map_max_entries("xsks", (n_inputs * MAX_QUEUES) as u32)
            .load(crate::object())
            .map_err(|e| err("loading the object", e))?;
        let map_fds = ebpf
            .maps()
            .filter_map(|(name, m)| {
                use aya::maps::Map;
                let data = match m {
                    Map::Array(d)
                    | Map::PerCpuArray(d)
                    | Map::HashMap(d)
                    | Map::DevMap(d)
                    | Map::DevMapHash(d)
                    | Map::XskMap(d) => d,
                    _ => return None,
                };
                use std::os::fd::AsFd;
                let fd = data.fd().as_fd().try_clone_to_owned().ok()?;
                Some((name.to_owned(), fd))
            })
            .collect();
        for name in ["vxspan_egress", "vxspan_ingress"] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| err(name, "missing from the object"))?
                .try_into()
                .map_err(|e| err(name, e))?;
            p.load().map_err(|e| err(&format!("verifying {name}"), e))?;
        }
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| err(name, "map missing from the object"))
        };

        let mut in_slot: Array<MapData, VxInput> =
            Array::try_from(take(&mut ebpf, "in_slot")?).map_err(|e| err("in_slot", e))?;
        for (i, inp) in t.inputs.iter().enumerate() {
            if inp.ifindex == 0 {
                continue;
            }
            let v = VxInput {
                slot1: i as u32 + 1,
                flags: if inp.all_userspace {
                    crate::maps::INPUT_USERSPACE
                } else {
                    0
                },
            };
            in_slot
                .set(inp.ifindex, v, 0)
                .map_err(|e| err("in_slot", e))?;
        }

        let mut groups: PerCpuArray<MapData, VxGroup> =
            PerCpuArray::try_from(take(&mut ebpf, "groups")?).map_err(|e| err("groups", e))?;
        for (i, inp) in t.inputs.iter().enumerate() {
            for &(vid, a) in &inp.actions {
                let (action, arg) = a.encode();
                let v = per_cpu(VxGroup {
                    action,
                    arg,
                    ..Default::default()
                })?;
                groups
                    .set((i * NVID) as u32 + u32::from(vid), v, 0)
                    .map_err(|e| err("groups", e))?;
            }
        }

        let cfg_of = |o: &crate::tables::OutputTable| VxOutCfg {
            vlan_op: o.vlan_op,
            vid: o.vid,
            mtu: o.mtu,
            flags: if o.truncate {
                crate::maps::OUT_TRUNCATE
            } else {
                0
            },
        };
        let mut outputs: PerCpuArray<MapData, VxOutput> =
            PerCpuArray::try_from(take(&mut ebpf, "outputs")?).map_err(|e| err("outputs", e))?;
        let mut ports: DevMap<MapData> =
            DevMap::try_from(take(&mut ebpf, "ports")?).map_err(|e| err("ports", e))?;
        let mut egress_cfg: HashMap<MapData, u32, VxOutCfg> =
            HashMap::try_from(take(&mut ebpf, "egress_cfg")?).map_err(|e| err("egress_cfg", e))?;
        for (o, out) in t.outputs.iter().enumerate() {
            let v = per_cpu(VxOutput {
                cfg: cfg_of(out),
                ..Default::default()
            })?;
            outputs.set(o as u32, v, 0).map_err(|e| err("outputs", e))?;
            if out.ifindex != 0 {
                ports
                    .set(o as u32, out.ifindex, None, 0)
                    .map_err(|e| err(&format!("ports (ifindex {})", out.ifindex), e))?;
                egress_cfg
                    .insert(out.ifindex, cfg_of(out), 0)
                    .map_err(|e| err("egress_cfg", e))?;
            }
        }

        let mut fansets: Array<MapData, VxFanset> =
            Array::try_from(take(&mut ebpf, "fansets")?).map_err(|e| err("fansets", e))?;
        let egress: &Xdp = ebpf
            .program("vxspan_egress")
            .ok_or_else(|| err("vxspan_egress", "missing"))?
            .try_into()
            .map_err(|e| err("vxspan_egress", e))?;
        let egress_fd = egress
            .fd()
            .and_then(|f| f.try_clone().map_err(Into::into))
            .map_err(|e| err("vxspan_egress", e))?;
        for (s, members) in t.fansets.iter().enumerate().take(FANSETS) {
            let mut fs = VxFanset {
                n: members.len() as u32,
                ..Default::default()
            };
            fs.outputs[..members.len()].copy_from_slice(members);
            fansets
                .set(s as u32, fs, 0)
                .map_err(|e| err("fansets", e))?;
            let name = format!("fan{s}");
            let map = ebpf
                .map_mut(&name)
                .ok_or_else(|| err(&name, "map missing from the object"))?;
            let mut fan: DevMapHash<&mut MapData> =
                DevMapHash::try_from(map).map_err(|e| err(&name, e))?;
            for &o in members {
                let out = &t.outputs[o as usize];
                // The egress program applies the output's VLAN action and MTU to its copy.
                let prog = (out.vlan_op != 0 || out.mtu != 0).then_some(&egress_fd);
                fan.insert(o, out.ifindex, prog, 0)
                    .map_err(|e| err(&name, e))?;
            }
        }
        let mut xsk_map: XskMap<MapData> =
            XskMap::try_from(take(&mut ebpf, "xsks")?).map_err(|e| err("xsks", e))?;
        for x in xsks {
            xsk_map
                .set(x.input * MAX_QUEUES as u32 + x.queue, x.fd, 0)
                .map_err(|e| err("xsks", e))?;
        }
        let in_stats =
            PerCpuArray::try_from(take(&mut ebpf, "in_stats")?).map_err(|e| err("in_stats", e))?;
        Ok(Object {
            ebpf,
            map_fds,
            xsks: xsk_map,
            groups,
            in_stats,
            outputs,
            n_inputs: t.inputs.len(),
        })
    }

    /// The VLAN-hint copy of the ingress program for one input, on this object's maps.
    fn hint_program(&self, ifindex: u32) -> Result<crate::hint::Program, String> {
        crate::hint::Program::load(ifindex, &self.map_fds)
    }

    fn ingress(&mut self) -> Result<&mut Xdp, String> {
        self.ebpf
            .program_mut("vxspan_ingress")
            .ok_or_else(|| err("vxspan_ingress", "missing"))?
            .try_into()
            .map_err(|e| err("vxspan_ingress", e))
    }

    fn counters(&self, n_outputs: usize) -> RawCounters {
        let mut raw = RawCounters {
            groups: vec![vec![GroupCounters::default(); NVID]; self.n_inputs],
            malformed: vec![(0, 0); self.n_inputs],
            userspace: vec![(0, 0); self.n_inputs],
            outputs: vec![OutputCounters::default(); n_outputs],
        };
        for (i, vids) in raw.groups.iter_mut().enumerate() {
            for (vid, c) in vids.iter_mut().enumerate() {
                if let Ok(v) = self.groups.get(&((i * NVID + vid) as u32), 0) {
                    for g in v.iter() {
                        c.packets += g.packets;
                        c.bytes += g.bytes;
                        c.dropped_packets += g.dropped_packets;
                        c.dropped_bytes += g.dropped_bytes;
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
                }
            }
        }
        raw
    }
}

/// RX queues per input the XSK map addresses (`VX_MAX_QUEUES`).
pub const MAX_QUEUES: usize = 64;

/// An AF_XDP socket registered in the XSK map: the userspace tier's frames of (input, queue)
/// go there. The descriptor is borrowed: its owner keeps the socket open while registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xsk {
    pub input: u32,
    pub queue: u32,
    pub fd: std::os::fd::RawFd,
}

/// The kernel tier of a running vxspan: the loaded program, its tables and its attachments.
/// Dropping it detaches the program from every input.
pub struct Datapath {
    obj: Object,
    tables: Tables,
    xsks: Vec<Xsk>,
    /// (ifindex, link) per attached input.
    links: Vec<(u32, InputLink)>,
    mode: Option<Mode>,
}

/// How an input's program is attached.
enum InputLink {
    /// aya's copy of the program.
    Aya(XdpLinkId),
    /// The device-bound copy with the VLAN hint, through our own bpf_link.
    Hint {
        link: std::os::fd::OwnedFd,
        _prog: crate::hint::Program,
    },
}

impl Datapath {
    /// Loads the program and fills its maps; nothing is attached yet.
    pub fn load(tables: Tables) -> Result<Datapath, String> {
        Ok(Datapath {
            obj: Object::load(&tables, &[])?,
            tables,
            xsks: Vec::new(),
            links: Vec::new(),
            mode: None,
        })
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// How many inputs run the device-bound program that reads the driver's VLAN hint.
    pub fn vlan_hint_inputs(&self) -> usize {
        self.links
            .iter()
            .filter(|(_, l)| matches!(l, InputLink::Hint { .. }))
            .count()
    }

    /// The mode the program was attached in.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Attaches to every input interface; with `mode` None, native where the driver allows it
    /// and generic otherwise (all inputs in the same mode). An input that already has an XDP
    /// program is an error naming it: vxspan does not take over another program's interface.
    pub fn attach(&mut self, mode: Option<Mode>, names: &[String]) -> Result<Mode, String> {
        let ifindexes: Vec<(u32, &str)> = self
            .tables
            .inputs
            .iter()
            .zip(names)
            .filter(|(i, _)| i.ifindex != 0)
            .map(|(i, n)| (i.ifindex, n.as_str()))
            .collect();
        let modes: &[Mode] = match mode {
            Some(Mode::Native) => &[Mode::Native],
            Some(Mode::Generic) => &[Mode::Generic],
            None => &[Mode::Native, Mode::Generic],
        };
        let mut last = String::new();
        for &m in modes {
            match self.attach_all(&ifindexes, m) {
                Ok(()) => {
                    self.mode = Some(m);
                    // Loading parsed ELF and BTF data that is freed now; hand it back to the
                    // system (the appliance has 128 MB in all).
                    // SAFETY: malloc_trim has no preconditions.
                    unsafe { libc::malloc_trim(0) };
                    return Ok(m);
                }
                // Another program holds the interface: no other mode will do better.
                Err((true, e)) => return Err(e),
                Err((false, e)) => last = e,
            }
        }
        Err(last)
    }

    /// Attaches to every interface in `mode`, or none. The error says whether an interface
    /// already had another XDP program (EBUSY in this mode, EEXIST in the other one).
    fn attach_all(&mut self, ifindexes: &[(u32, &str)], mode: Mode) -> Result<(), (bool, String)> {
        let mut links: Vec<(u32, InputLink)> = Vec::new();
        let taken_msg = |name: &str| {
            format!("XDP: {name} already has an XDP program attached by someone else; vxspan does not replace it (detach it first)")
        };
        for &(ifindex, name) in ifindexes {
            // Native mode: the device-bound copy with the VLAN hint, where it loads (the
            // driver implements XDP; the kernel has the kfunc).
            if mode == Mode::Native {
                if let Ok(p) = self.obj.hint_program(ifindex) {
                    match crate::hint::link(&p, ifindex) {
                        Ok(link) => {
                            links.push((ifindex, InputLink::Hint { link, _prog: p }));
                            continue;
                        }
                        Err(libc::EBUSY | libc::EEXIST) => {
                            self.drop_links(links);
                            return Err((true, taken_msg(name)));
                        }
                        Err(_) => {}
                    }
                }
            }
            let prog = self.obj.ingress().map_err(|e| (false, e))?;
            match prog.attach_to_if_index(ifindex, mode.flags()) {
                Ok(id) => links.push((ifindex, InputLink::Aya(id))),
                Err(e) => {
                    let taken = matches!(errno_of(&e), Some(libc::EBUSY | libc::EEXIST));
                    let e = if taken {
                        taken_msg(name)
                    } else {
                        format!(
                            "XDP: attaching to {name} in {} mode: {e}{}",
                            mode.as_str(),
                            std::error::Error::source(&e)
                                .map(|s| format!(": {s}"))
                                .unwrap_or_default()
                        )
                    };
                    self.drop_links(links);
                    return Err((taken, e));
                }
            }
        }
        self.links = links;
        Ok(())
    }

    /// Detaches `links` (an attach that failed half way).
    fn drop_links(&mut self, links: Vec<(u32, InputLink)>) {
        for (_, l) in links {
            if let (InputLink::Aya(id), Ok(p)) = (l, self.obj.ingress()) {
                let _ = p.detach(id);
            }
        }
    }

    /// Swaps in `tables` (a reloaded plan) atomically: a new object is loaded and filled, then
    /// each input's link is pointed at it. The inputs must be the same interfaces (the caller
    /// re-creates the datapath when they change). Returns the old object's final counters; on
    /// error nothing changed.
    pub fn replace(&mut self, tables: Tables) -> Result<RawCounters, String> {
        let same_inputs = tables.inputs.iter().map(|i| i.ifindex).eq(self
            .tables
            .inputs
            .iter()
            .map(|i| i.ifindex));
        if !same_inputs {
            return Err("XDP: the inputs changed: re-attach instead".into());
        }
        let mut obj = Object::load(&tables, &self.xsks)?;
        // The VLAN-hint copies of the new program, loaded before any link moves.
        let mut hints = Vec::new();
        for (ifindex, l) in &self.links {
            if matches!(l, InputLink::Hint { .. }) {
                hints.push(Some(obj.hint_program(*ifindex)?));
            } else {
                hints.push(None);
            }
        }
        let old_links = std::mem::take(&mut self.links);
        let mut new_links = Vec::with_capacity(old_links.len());
        for ((ifindex, l), hint) in old_links.into_iter().zip(hints) {
            match (l, hint) {
                (InputLink::Aya(id), _) => {
                    let link: XdpLink = self
                        .obj
                        .ingress()?
                        .take_link(id)
                        .map_err(|e| err("taking the link", e))?;
                    let new = obj
                        .ingress()?
                        .attach_to_link(link)
                        .map_err(|e| err("bpf_link_update", e))?;
                    new_links.push((ifindex, InputLink::Aya(new)));
                }
                (InputLink::Hint { link, .. }, Some(p)) => {
                    crate::hint::update(&link, &p)?;
                    new_links.push((ifindex, InputLink::Hint { link, _prog: p }));
                }
                (InputLink::Hint { .. }, None) => {
                    return Err("XDP: no VLAN-hint program for a hint link".into())
                }
            }
        }
        self.links = new_links;
        let old = std::mem::replace(&mut self.obj, obj);
        let old_outputs = self.tables.outputs.len();
        self.tables = tables;
        // Runs of the old program that started before the swap end within an RCU grace
        // period; give them that before reading its counters for the last time.
        std::thread::sleep(Duration::from_millis(50));
        Ok(old.counters(old_outputs))
    }

    /// Registers an AF_XDP socket for the frames of `input`'s RX `queue` that go to the
    /// userspace tier (kept across reloads). The caller keeps the socket open until
    /// [`Datapath::unbind_xsks`] or drop.
    pub fn bind_xsk(&mut self, x: Xsk) -> Result<(), String> {
        if x.queue as usize >= MAX_QUEUES || x.input as usize >= self.tables.inputs.len() {
            return Err(format!(
                "XDP: no XSK map slot for input {} queue {}",
                x.input, x.queue
            ));
        }
        self.obj
            .xsks
            .set(x.input * MAX_QUEUES as u32 + x.queue, x.fd, 0)
            .map_err(|e| err("xsks", e))?;
        self.xsks.push(x);
        Ok(())
    }

    /// The AF_XDP sockets registered.
    pub fn xsks(&self) -> &[Xsk] {
        &self.xsks
    }

    /// The counters so far (of the current object), summed over CPUs.
    pub fn counters(&self) -> RawCounters {
        self.obj.counters(self.tables.outputs.len())
    }

    /// Runs the ingress program once on `frame` as if it arrived on `ifindex` (BPF_PROG_TEST_RUN,
    /// nothing is sent). Returns the verdict (XDP_DROP 1, XDP_PASS 2, XDP_REDIRECT 4) and the
    /// frame as the program left it. With `repeat` > 1 the kernel runs it that many times and the
    /// duration is the mean per run.
    pub fn run_frame(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Vec<u8>, Duration), String> {
        run_xdp(self.obj.ingress()?, ifindex, frame, repeat)
    }
}

/// The OS error at the bottom of an error's chain (aya wraps the system call's io::Error).
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// BPF_PROG_TEST_RUN of an XDP program on one frame arriving on `ifindex`.
pub(crate) fn run_xdp(
    prog: &Xdp,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, Vec<u8>, Duration), String> {
    let ctx = xdp_md(frame.len() as u32, ifindex);
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::new()
        })
        .map_err(|e| {
            err(
                &format!("BPF_PROG_TEST_RUN on a {}-byte frame", frame.len()),
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
            )
        })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out, r.duration))
}

/// A `struct xdp_md` for BPF_PROG_TEST_RUN: data 0..len, arriving on `ifindex`, queue 0.
pub(crate) fn xdp_md(len: u32, ifindex: u32) -> Vec<u8> {
    [0u32, len, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

impl Datapath {
    /// Detaches the program from every input (the maps stay readable). Interfaces that are gone
    /// took their attachment with them.
    pub fn detach(&mut self) {
        // A hint link detaches when its descriptor closes, as the list is dropped.
        let links = std::mem::take(&mut self.links);
        self.drop_links(links);
        self.mode = None;
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i)
}
