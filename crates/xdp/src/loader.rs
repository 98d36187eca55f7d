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

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use aya::maps::xdp::{DevMap, DevMapHash, XskMap};
use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};

use crate::counters::{CounterMaps, COUNTER_MAPS};
use crate::maps::{VxFanset, VxGroup, VxInput, VxOutCfg, VxOutput, SAMPLE_FLOW};
use crate::shared::{Shared, SharedMaps, MAX_SAMPLES};
use crate::tables::{RawCounters, Tables, FANSETS, NVID};

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

    /// The bpf_link flags of an attachment in this mode.
    fn flags(self) -> u32 {
        match self {
            Mode::Native => crate::hint::XDP_FLAGS_DRV_MODE,
            Mode::Generic => crate::hint::XDP_FLAGS_SKB_MODE,
        }
    }

    /// The mode named by [`Mode::as_str`].
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "native" => Some(Mode::Native),
            "generic" => Some(Mode::Generic),
            _ => None,
        }
    }
}

/// One loaded object: programs and the maps read after loading.
struct Object {
    ebpf: Ebpf,
    /// Every map's descriptor by name (duplicates), for the VLAN-hint program.
    map_fds: Vec<(String, std::os::fd::OwnedFd)>,
    xsks: XskMap<MapData>,
    counters: CounterMaps,
    n_inputs: usize,
}

pub(crate) fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("XDP: {what}: {e}")
}

pub(crate) fn ncpus() -> Result<usize, String> {
    aya::util::nr_cpus().map_err(|(f, e)| err(f, e))
}

fn per_cpu<T: aya::Pod>(v: T) -> Result<PerCpuValues<T>, String> {
    PerCpuValues::try_from(vec![v; ncpus()?]).map_err(|e| err("per-CPU values", e))
}

impl Object {
    fn load(t: &Tables, xsks: &[Xsk], shared: &Shared) -> Result<Object, String> {
        let n_inputs = t.inputs.len().max(1);
        let mut sh = shared.lock().unwrap_or_else(|p| p.into_inner());
        let names: Vec<_> = t
            .outputs
            .iter()
            .map(|o| o.tunnel.as_ref().map(|t| (t.name.as_str(), t.remote)))
            .collect();
        let slots = sh.assign(&names);
        let mut rules: Vec<&str> = t
            .inputs
            .iter()
            .flat_map(|i| i.samples.iter().map(|(_, _, r)| r.as_str()))
            .collect();
        // One slot per rule, however many VIDs its group has.
        rules.sort_unstable();
        rules.dedup();
        let sample_slots = sh.assign_samples(&rules);
        // The maps that outlive an object: this one reuses the first one's (shared.rs), if its
        // tables use them. Tables without kernel-tier tunnels or sampling need no pin, so their
        // reloads work where bpffs is read-only and none can be mounted (the systemd unit).
        let uses_shared = slots.iter().any(Option::is_some) || !rules.is_empty();
        let pins = if uses_shared { sh.pin()? } else { None };
        let mut loader = EbpfLoader::new();
        // No CO-RE relocations in this program: the kernel's own BTF is not needed.
        loader
            .btf(None)
            .map_max_entries("groups", (n_inputs * NVID) as u32)
            .map_max_entries("in_stats", n_inputs as u32)
            .map_max_entries("xsks", (n_inputs * MAX_QUEUES) as u32);
        for (name, path) in pins.iter().flat_map(|p| p.paths()) {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(crate::object())
            .map_err(|e| err("loading the object", e))?;
        drop(pins);
        if !sh.created() {
            sh.adopt(&ebpf)?;
            sh.set_clock()?;
        }
        drop(sh);
        let map_fds: Vec<(String, OwnedFd)> = ebpf
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
                let flow = inp.flow_samples.iter().find(|(v, _)| *v == vid);
                let (sample_n, sample_slot) = match inp.samples.iter().find(|(v, _, _)| *v == vid) {
                    None => flow.map_or((0, 0), |(_, n)| (*n, SAMPLE_FLOW)),
                    Some((_, n, r)) => match sample_slots.get(r.as_str()) {
                        Some(slot) => (*n, *slot),
                        None => {
                            return Err(err(
                                "samples",
                                format!(
                                    "more than {MAX_SAMPLES} sampling rules in the kernel tier"
                                ),
                            ))
                        }
                    },
                };
                let v = per_cpu(VxGroup {
                    action,
                    arg,
                    sample_n,
                    sample_slot,
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
            } | if o.tunnel.is_some() {
                crate::maps::OUT_TUNNEL
            } else {
                0
            } | if o.rate.is_some() {
                crate::maps::OUT_RATE
            } else {
                0
            },
            cut_to: o.cut_to,
            pad: 0,
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
            }
        }

        crate::tunnel::fill(&mut ebpf, t, &slots)?;
        crate::balance::fill(&mut ebpf, t)?;
        crate::ratelimit::fill(&mut ebpf, t)?;

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
                // The egress program's entry for the interface: only fan-out members are read
                // there, and they agree on it (Tables::build placed a clash in userspace).
                egress_cfg
                    .insert(out.ifindex, cfg_of(out), 0)
                    .map_err(|e| err("egress_cfg", e))?;
                // The egress program applies the output's truncation, MTU and VLAN action to
                // its copy.
                let prog =
                    (out.vlan_op != 0 || out.mtu != 0 || out.cut_to != 0).then_some(&egress_fd);
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
        let tun_stats = PerCpuArray::try_from(take(&mut ebpf, "tun_stats")?)
            .map_err(|e| err("tun_stats", e))?;
        let groups_fd = map_fds
            .iter()
            .find(|(n, _)| n == "groups")
            .ok_or_else(|| err("groups", "map missing from the object"))?
            .1
            .try_clone()
            .map_err(|e| err("groups", e))?;
        Ok(Object {
            ebpf,
            map_fds,
            xsks: xsk_map,
            counters: CounterMaps {
                groups,
                groups_fd,
                in_stats,
                outputs,
                tun_stats: Some(tun_stats),
            },
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

    /// The descriptor of aya's copy of the ingress program (borrowed from the object).
    fn ingress_fd(&mut self) -> Result<RawFd, String> {
        Ok(self
            .ingress()?
            .fd()
            .map_err(|e| err("vxspan_ingress", e))?
            .as_fd()
            .as_raw_fd())
    }

    /// The program an input's link runs: its device-bound copy with the VLAN hint when `hint`
    /// and it loads for `ifindex`, otherwise aya's copy.
    fn input_program(
        &mut self,
        ifindex: u32,
        hint: bool,
    ) -> Result<(RawFd, Option<crate::hint::Program>), String> {
        if hint {
            if let Ok(p) = self.hint_program(ifindex) {
                return Ok((p.fd(), Some(p)));
            }
        }
        Ok((self.ingress_fd()?, None))
    }

    fn counters(&self, n_outputs: usize) -> RawCounters {
        self.counters.read(self.n_inputs, n_outputs)
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
/// Dropping it detaches the program from every input, unless it was handed over
/// ([`Datapath::handover`]).
pub struct Datapath {
    obj: Object,
    /// The maps every object of this datapath uses (shared.rs).
    shared: Shared,
    tables: Tables,
    xsks: Vec<Xsk>,
    /// (ifindex, link) per attached input.
    links: Vec<(u32, InputLink)>,
    mode: Option<Mode>,
}

/// An input's attachment: a bpf_link (closing it detaches the program), and the device-bound
/// copy with the VLAN hint when that is what it runs.
struct InputLink {
    link: OwnedFd,
    hint: Option<crate::hint::Program>,
}

/// How long after a swap the replaced program may still be running on a CPU (a run that
/// started before the swap ends within an RCU grace period): its counters are final after it.
pub const RETIRE_AFTER: Duration = Duration::from_millis(50);

/// An object loaded for a reload, not yet attached ([`Datapath::prepare`]).
pub struct Prepared {
    obj: Object,
    tables: Tables,
    links: Vec<(u32, bool)>,
    hints: Vec<Option<crate::hint::Program>>,
}

impl Prepared {
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The links it was prepared for ([`Datapath::links_key`]).
    pub fn links(&self) -> &[(u32, bool)] {
        &self.links
    }
}

/// An object a swap replaced: no input runs it any more, its counters stay readable.
pub struct Retired {
    obj: Object,
    n_outputs: usize,
}

impl Retired {
    /// Its counters so far (final once [`RETIRE_AFTER`] has passed since the swap).
    pub fn counters(&self) -> RawCounters {
        self.obj.counters(self.n_outputs)
    }
}

/// The layout of the counter maps a [`Handover`] carries (their value types): a successor built
/// with another one does not read them. Raised whenever `VxGroup`, `VxInputStats` or `VxOutput`
/// change, or the shared maps' values or sizes (shared.rs). 3: sampling in `VxGroup`, shared maps; 4: `tun_dev` by generation.
pub const MAP_LAYOUT: u32 = 5;

/// What a process hands its successor so that the kernel tier keeps forwarding across a
/// restart (`vxspan restart` execs the new binary with these descriptors open): the input links,
/// still running the old program on the old maps, and those maps' counters.
#[derive(Debug)]
pub struct Handover {
    pub mode: Mode,
    /// (ifindex, bpf_link) per attached input.
    pub links: Vec<(u32, OwnedFd)>,
    /// The old object's counter maps, in the order `groups`, `in_stats`, `outputs`.
    pub counters: [OwnedFd; 3],
    /// The shape of those maps: inputs and outputs of the old tables.
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// The maps every object shares (ERSPAN sequences, sampling counts, next hops) and who
    /// owns their slots: the successor's objects use the same ones, so sequences and 1-in-N
    /// continue across the restart.
    pub shared: Option<crate::shared::SharedHandover>,
}

impl Datapath {
    /// Loads the program and fills its maps; nothing is attached yet.
    pub fn load(tables: Tables) -> Result<Datapath, String> {
        Datapath::load_on(tables, SharedMaps::new())
    }

    /// [`Datapath::load`] on shared maps that exist already (a predecessor's).
    fn load_on(tables: Tables, shared: Shared) -> Result<Datapath, String> {
        Ok(Datapath {
            obj: Object::load(&tables, &[], &shared)?,
            shared,
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
        self.links.iter().filter(|(_, l)| l.hint.is_some()).count()
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
                    trim();
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
        let mut links = Vec::new();
        for &(ifindex, name) in ifindexes {
            // Native mode: the device-bound copy with the VLAN hint, where it loads (the
            // driver implements XDP; the kernel has the kfunc); aya's copy otherwise.
            let (fd, hint) = self
                .obj
                .input_program(ifindex, mode == Mode::Native)
                .map_err(|e| (false, e))?;
            let link = match crate::hint::link(fd, ifindex, mode.flags()) {
                Ok(l) => l,
                // The device-bound copy loaded but does not attach: aya's copy may.
                Err(_) if hint.is_some() => {
                    let fd = self.obj.ingress_fd().map_err(|e| (false, e))?;
                    match crate::hint::link(fd, ifindex, mode.flags()) {
                        Ok(l) => {
                            links.push((
                                ifindex,
                                InputLink {
                                    link: l,
                                    hint: None,
                                },
                            ));
                            continue;
                        }
                        Err(errno) => return Err(attach_error(name, mode, errno)),
                    }
                }
                // `links` is dropped on return: what was attached is detached again.
                Err(errno) => return Err(attach_error(name, mode, errno)),
            };
            links.push((ifindex, InputLink { link, hint }));
        }
        self.links = links;
        Ok(())
    }

    /// Swaps in `tables` (a reloaded plan) atomically: [`Datapath::prepare`], then
    /// [`Datapath::commit`], then the old object's final counters once in-flight runs of its
    /// program are over. On error nothing changed.
    pub fn replace(&mut self, tables: Tables) -> Result<RawCounters, String> {
        let p = Datapath::prepare(tables, &self.links_key(), &self.shared)?;
        let old = self.commit(p)?;
        std::thread::sleep(RETIRE_AFTER);
        Ok(old.counters())
    }

    /// What a prepared object must be made for: each attached input (ifindex) and whether its
    /// link runs the device-bound copy with the VLAN hint, in link order.
    pub fn links_key(&self) -> Vec<(u32, bool)> {
        self.links
            .iter()
            .map(|(i, l)| (*i, l.hint.is_some()))
            .collect()
    }

    /// Loads and fills the object for `tables` (a reloaded plan) and the programs each link of
    /// `links` ([`Datapath::links_key`]) will run: the heavy part of a swap (the verifier, the
    /// VLAN-hint copies), done on whatever thread calls it, with nothing attached yet.
    pub fn prepare(
        tables: Tables,
        links: &[(u32, bool)],
        shared: &Shared,
    ) -> Result<Prepared, String> {
        let mut obj = Object::load(&tables, &[], shared)?;
        let mut hints = Vec::with_capacity(links.len());
        for &(ifindex, hint) in links {
            hints.push(obj.input_program(ifindex, hint)?.1);
        }
        Ok(Prepared {
            obj,
            tables,
            links: links.to_vec(),
            hints,
        })
    }

    /// Points each input's link at the prepared object (atomically: every frame sees one
    /// program or the other) and returns the replaced object, still readable: its counters
    /// are final once [`RETIRE_AFTER`] has passed. The inputs must be the ones `p` was
    /// prepared for, and the AF_XDP sockets registered now are put in its map first. On error
    /// nothing changed.
    pub fn commit(&mut self, p: Prepared) -> Result<Retired, String> {
        let same_inputs = p.tables.inputs.iter().map(|i| i.ifindex).eq(self
            .tables
            .inputs
            .iter()
            .map(|i| i.ifindex));
        if !same_inputs || p.links != self.links_key() {
            return Err("XDP: the inputs changed since the object was prepared".into());
        }
        let Prepared {
            mut obj,
            tables,
            hints,
            ..
        } = p;
        for x in &self.xsks {
            obj.xsks
                .set(x.input * MAX_QUEUES as u32 + x.queue, x.fd, 0)
                .map_err(|e| err("xsks", e))?;
        }
        let mut fds = Vec::with_capacity(hints.len());
        for h in &hints {
            fds.push(match h {
                Some(p) => p.fd(),
                None => obj.ingress_fd()?,
            });
        }
        // What each link runs now, to point it back if a later one cannot move (an input that
        // vanished meanwhile): all of the swap, or none of it.
        let mut old_fds = Vec::with_capacity(self.links.len());
        for (_, l) in &self.links {
            old_fds.push(match &l.hint {
                Some(p) => p.fd(),
                None => self.obj.ingress_fd()?,
            });
        }
        for (k, ((_, l), fd)) in self.links.iter().zip(&fds).enumerate() {
            if let Err(e) = crate::hint::update(&l.link, *fd) {
                for ((_, back), old) in self.links.iter().zip(&old_fds).take(k) {
                    let _ = crate::hint::update(&back.link, *old);
                }
                return Err(e);
            }
        }
        for ((_, l), hint) in self.links.iter_mut().zip(hints) {
            // The old copy is closed once its link points elsewhere.
            l.hint = hint;
        }
        let old = std::mem::replace(&mut self.obj, obj);
        let n_outputs = self.tables.outputs.len();
        self.tables = tables;
        Ok(Retired {
            obj: old,
            n_outputs,
        })
    }

    /// Leaves the inputs attached, running this object's program on its maps, and hands the
    /// links and counter maps over (for a successor process; see [`Datapath::adopt`]).
    pub fn handover(mut self) -> Result<Handover, String> {
        let mode = self.mode.ok_or_else(|| err("handover", "not attached"))?;
        let counter = |name: &str| -> Result<OwnedFd, String> {
            self.obj
                .map_fds
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| err(name, "map missing from the object"))?
                .1
                .try_clone()
                .map_err(|e| err(name, e))
        };
        let counters = [
            counter(COUNTER_MAPS[0])?,
            counter(COUNTER_MAPS[1])?,
            counter(COUNTER_MAPS[2])?,
        ];
        let links = std::mem::take(&mut self.links)
            .into_iter()
            .map(|(i, l)| (i, l.link))
            .collect();
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .handover()?;
        Ok(Handover {
            mode,
            links,
            counters,
            n_inputs: self.tables.inputs.len(),
            n_outputs: self.tables.outputs.len(),
            shared,
        })
    }

    /// Takes over a predecessor's attachments: loads `tables` into a new object, points each
    /// handed-over link of an input in `tables` at it (atomically, as a reload does: the inputs
    /// never lose their program), attaches inputs that were not attached, and detaches those
    /// that are no longer inputs. Returns the datapath and the old object's final counters (in
    /// the old tables' shape), read once the old program can no longer run. On error, what was
    /// handed over is closed (the inputs are detached) and the caller starts afresh.
    pub fn adopt(tables: Tables, h: Handover) -> Result<(Datapath, RawCounters), String> {
        let old = CounterMaps::from_fds(h.counters)?;
        let shared = match h.shared {
            Some(sh) => SharedMaps::adopt_handover(sh)?,
            None => SharedMaps::new(),
        };
        let mut dp = Datapath::load_on(tables, shared)?;
        dp.mode = Some(h.mode);
        let mut inherited = h.links;
        let inputs: Vec<u32> = dp
            .tables
            .inputs
            .iter()
            .filter(|i| i.ifindex != 0)
            .map(|i| i.ifindex)
            .collect();
        for ifindex in inputs {
            let (fd, hint) = dp.obj.input_program(ifindex, h.mode == Mode::Native)?;
            let link = match inherited.iter().position(|(i, _)| *i == ifindex) {
                Some(k) => {
                    let (_, link) = inherited.swap_remove(k);
                    crate::hint::update(&link, fd)?;
                    link
                }
                None => crate::hint::link(fd, ifindex, h.mode.flags()).map_err(|errno| {
                    attach_error(&format!("ifindex {ifindex}"), h.mode, errno).1
                })?,
            };
            dp.links.push((ifindex, InputLink { link, hint }));
        }
        // Interfaces that are no longer inputs: their program goes with the last descriptor.
        drop(inherited);
        trim();
        std::thread::sleep(Duration::from_millis(50));
        let raw = old.read(h.n_inputs, h.n_outputs);
        Ok((dp, raw))
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

    /// Marks output `o` up or down for balancing, as the engine's `set_output_up` does for
    /// the userspace tier (the daemon calls both).
    pub fn set_output_up(&mut self, o: usize, up: bool) -> Result<(), String> {
        crate::balance::set_up(&mut self.obj.ebpf, o as u32, up)
    }

    /// The maps every object of this datapath shares: tunnel slots, sequences, next hops.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// Sets where tunnel output `o`'s copies leave (None: not resolved, its frames go to the
    /// userspace tier).
    pub fn set_nexthop(
        &mut self,
        o: u32,
        nh: Option<crate::maps::VxNexthop>,
    ) -> Result<(), String> {
        let name = self
            .tables
            .outputs
            .get(o as usize)
            .and_then(|t| t.tunnel.as_ref())
            .map(|t| t.name.clone())
            .ok_or_else(|| err("nexthops", format!("output {o} is not a kernel tunnel")))?;
        let sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let slot = sh
            .slot_of(&name)
            .ok_or_else(|| err("nexthops", format!("output {name} has no slot")))?;
        sh.set_nexthop(slot, nh)
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
    /// Detaches the program from every input (the maps stay readable): a link detaches when its
    /// descriptor closes. Interfaces that are gone took their attachment with them.
    pub fn detach(&mut self) {
        self.links.clear();
        self.mode = None;
    }
}

/// The error of an attachment that failed with `errno`, and whether another program holds the
/// interface (EBUSY in this mode, EEXIST in the other one).
fn attach_error(name: &str, mode: Mode, errno: i32) -> (bool, String) {
    if matches!(errno, libc::EBUSY | libc::EEXIST) {
        return (true, format!("XDP: {name} already has an XDP program attached by someone else; vxspan does not replace it (detach it first)"));
    }
    (
        false,
        format!(
            "XDP: attaching to {name} in {} mode: {}",
            mode.as_str(),
            std::io::Error::from_raw_os_error(errno)
        ),
    )
}

/// Loading parsed ELF and BTF data that is freed now; hand it back to the system (the
/// appliance has 128 MB in all).
fn trim() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
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

// A reload prepares its object off the packet threads and hands it over.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Prepared>();
    send::<Retired>();
};
