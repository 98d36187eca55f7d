//! The validated configuration: the types `vxspan-core` compiles, re-exported at the crate root.
//! The checks that produce them are in `validate`.

use crate::tunnel::{Decap, Encap, Listen, Oversize};
use std::path::PathBuf;

/// Which schema the file used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// Only `interfaces.*.redirect_map` (and `xdp_mode`): VxSPAN's format.
    Vxspan,
    /// Anything using `inputs`, `outputs` or `rules`.
    Native,
}

/// XDP attach mode (`xdp_mode`: VxSPAN's `SKB` / `DRV` / `HW`, or `generic` / `native` / `offload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Generic,
    Native,
    Offload,
}

/// A set of VLAN selectors: untagged (incl. priority-tagged) and VIDs 1 to 4095. VID 4095 is
/// reserved by 802.1Q; frames carrying it exist on the wire all the same, and only `any` selects
/// them.
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet {
    untagged: bool,
    vids: [u64; 64],
}

impl VlanSet {
    pub const fn empty() -> Self {
        VlanSet {
            untagged: false,
            vids: [0; 64],
        }
    }

    pub fn all() -> Self {
        let mut s = VlanSet::empty();
        s.untagged = true;
        for v in 1..=4095 {
            s.insert(v);
        }
        s
    }

    /// Adds a selector: 0 is untagged, 1 to 4095 a VID. Other values are ignored.
    pub fn insert(&mut self, vid: u16) {
        match vid {
            0 => self.untagged = true,
            1..=4095 => self.vids[usize::from(vid / 64)] |= 1 << (vid % 64),
            _ => {}
        }
    }

    pub fn remove(&mut self, vid: u16) {
        match vid {
            0 => self.untagged = false,
            1..=4095 => self.vids[usize::from(vid / 64)] &= !(1 << (vid % 64)),
            _ => {}
        }
    }

    /// Whether a frame whose outer VID is `vid` (0 = untagged) is selected.
    #[inline]
    pub fn contains(&self, vid: u16) -> bool {
        if vid == 0 {
            self.untagged
        } else if vid < 4096 {
            self.vids[usize::from(vid / 64)] & (1 << (vid % 64)) != 0
        } else {
            false
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.untagged && self.vids.iter().all(|w| *w == 0)
    }

    pub fn is_all(&self) -> bool {
        *self == VlanSet::all()
    }

    /// How many selectors (untagged and VIDs) the set holds.
    pub fn len(&self) -> usize {
        usize::from(self.untagged)
            + self
                .vids
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }

    /// Compact text: `none`, `any`, `10`, `20-29`, comma separated.
    pub fn describe(&self) -> String {
        if self.is_all() {
            return "any".into();
        }
        let mut parts = Vec::new();
        if self.untagged {
            parts.push("none".to_string());
        }
        let mut v = 1u16;
        while v <= 4095 {
            if self.contains(v) {
                let start = v;
                while v < 4095 && self.contains(v + 1) {
                    v += 1;
                }
                parts.push(if start == v {
                    v.to_string()
                } else {
                    format!("{start}-{v}")
                });
            }
            v += 1;
        }
        if parts.is_empty() {
            "(nothing)".into()
        } else {
            parts.join(",")
        }
    }
}

impl core::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VlanSet({})", self.describe())
    }
}

/// What an output does to the outer VLAN tag (RSPAN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanAction {
    /// Push a new outer 802.1Q tag with this VID.
    Push(u16),
    /// Remove the outer tag, if any.
    Pop,
    /// Rewrite the outer tag's VID (pushing a tag on untagged frames).
    Set(u16),
}

/// How `sample = N` picks its 1 in N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleMode {
    /// Every N-th frame the rule matches (per rule, per worker).
    Counter,
    /// Whole flows: a frame is kept when its symmetric flow hash falls in 1/N of the hash space.
    Flow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub one_in: u32,
    pub mode: SampleMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    /// The Linux interface the input receives from; for a `listen` input, the listen URL (it
    /// identifies the port in duplicate checks and messages).
    pub interface: String,
    /// Terminate tunnels sent to this host instead of reading an interface.
    pub listen: Option<Listen>,
    /// Tunnels stripped before rules match (`decap`).
    pub decap: Option<Decap>,
    /// Whether `vxspan run` may take over the interface of the host's default route.
    pub allow_uplink: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    /// Where its copies go.
    pub dest: Destination,
    /// What happens to copies larger than `mtu`.
    pub oversize: Oversize,
    /// At most this rate; excess copies are dropped as `rate_limited`.
    pub rate_limit: Option<RateLimit>,
    pub vlan: Option<VlanAction>,
    pub truncate: Option<u32>,
    /// Largest layer 3 payload sent; larger frames are dropped as `mtu_exceeded`. Live ports
    /// default to the interface's MTU; offline outputs have no limit unless this is set.
    pub mtu: Option<u32>,
}

/// Where an output's copies go: exactly one destination per output. Code that acts on the kind
/// matches on it (no wildcard), so a new kind is a compile error wherever it needs handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Sent on this interface (SPAN / RSPAN).
    Interface(String),
    /// Through a tunnel to a remote collector (`erspan`, `vxlan`, `gre`).
    Tunnel(Encap),
    /// Written to a pcapng archive (`pcap = { path, rotate_mb, rotate_s, keep }`).
    Archive(Archive),
}

impl Destination {
    /// The interface of an interface output.
    pub fn interface(&self) -> Option<&str> {
        match self {
            Destination::Interface(i) => Some(i),
            Destination::Tunnel(_) | Destination::Archive(_) => None,
        }
    }

    /// The tunnel of a tunnel output.
    pub fn encap(&self) -> Option<&Encap> {
        match self {
            Destination::Tunnel(e) => Some(e),
            Destination::Interface(_) | Destination::Archive(_) => None,
        }
    }

    /// The archive of an archive output.
    pub fn archive(&self) -> Option<&Archive> {
        match self {
            Destination::Archive(a) => Some(a),
            Destination::Interface(_) | Destination::Tunnel(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Where the rule was written, for error messages (`rules[2]`, `interfaces.eth1.redirect_map."10"`).
    pub path: String,
    /// Indices into [`Config::inputs`].
    pub from: Vec<usize>,
    pub vlans: VlanSet,
    pub filter: Option<String>,
    /// Indices into [`Config::outputs`].
    pub to: Vec<usize>,
    pub sample: Option<Sample>,
    /// Only frames decapsulated from a VXLAN / Geneve tunnel with one of these VNIs.
    pub vni: Option<Vec<u32>>,
    /// Only frames decapsulated from an ERSPAN session with one of these ids.
    pub erspan_session: Option<Vec<u32>>,
    /// Only frames that came out of a tunnel layer of one of these types.
    pub tunnel: Option<Vec<String>>,
    /// Only frames whose outermost IP source (before any decapsulation) is in these prefixes.
    pub outer_source: Option<Vec<(std::net::IpAddr, u8)>>,
    /// `to = { balance = [...] }`: each frame goes to one of `to`, chosen by flow.
    pub balance: Option<Balance>,
    /// Drop copies of a packet seen again within the window.
    pub dedup: Option<Dedup>,
}

/// Load balancing over a rule's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Weight of each output of the rule's `to`, in the same order (default 1 each).
    pub weights: Vec<u32>,
}

/// De-duplication of a rule's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedup {
    /// How long (packet time) a packet is remembered.
    pub window_ns: u64,
    /// Entries in the table (a power of two).
    pub table_size: usize,
}

/// A rotating pcapng archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// File name pattern: `%Y %m %d %H %M %S` from the first frame's time (UTC), `%N` the file's
    /// sequence number, `%%` a percent sign.
    pub path: String,
    /// Start a new file when this many bytes were written.
    pub rotate_bytes: Option<u64>,
    /// Start a new file when a frame is this much later (packet time) than the file's first.
    pub rotate_ns: Option<u64>,
    /// Keep at most this many files (the oldest are removed).
    pub keep: Option<u32>,
}

/// An output's byte token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub bytes_per_sec: u64,
    pub burst_bytes: u64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// The control socket (`management.control`); `None` = the default path.
    pub control: Option<PathBuf>,
    /// A group whose members may read the control socket (`stats`, `status`, `top`) but not
    /// `reload` or `capture` (`management.control_group`); `None` = owner only.
    pub control_group: Option<String>,
    /// The user `vxspan run` switches to when started as root (`management.user`).
    pub user: Option<String>,
    /// Where `vxspan run` serves Prometheus metrics (`management.metrics`); `None` = off.
    pub metrics: Option<std::net::SocketAddr>,
    /// AgentX sub-agent settings (`management.snmp_*`); `None` = off.
    pub snmp: Option<Snmp>,
    pub form: Form,
    pub xdp_mode: Option<XdpMode>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    pub rules: Vec<Rule>,
    /// Control traffic between a data port and a TAP device (`[passthru.NAME]`).
    pub passthru: Vec<Passthru>,
    /// `[counters]`: how many packet-chosen ids are listed.
    pub counters: crate::CounterLimits,
    /// The key of the flow and dedup hashes, from `management.hash_key_file`.
    pub hash_key: Option<[u8; crate::HASH_KEY_LEN]>,
}

/// `management.snmp_agentx`: vxspan as an AgentX sub-agent of net-snmp's snmpd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snmp {
    /// The master's socket: a Unix socket path, or `tcp:ADDRESS:PORT`.
    pub master: String,
    /// The subtree vxspan registers (default under the experimental arc).
    pub base_oid: Vec<u32>,
    /// Dropped frames per second on a port above which a notification is sent (`None`: never).
    pub drop_rate: Option<u64>,
}

/// The subtree registered unless `management.snmp_base_oid` says otherwise (experimental arc,
/// until a Private Enterprise Number exists). VXSPAN-MIB is defined here.
pub const DEFAULT_SNMP_BASE: &[u32] = &[1, 3, 6, 1, 3, 8624];

/// `[passthru.NAME]`: frames for `mac` (and `vlan`) on the input bound to `interface`, plus
/// broadcast / multicast control traffic (ARP, IPv6 ND, LLDP), go to the TAP device `tap`; what
/// the TAP sends goes out of `interface` (seed 004's passthru).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthru {
    pub name: String,
    /// Index into [`Config::inputs`] of the data port's input.
    pub input: usize,
    pub interface: String,
    pub tap: String,
    pub mac: [u8; 6],
    /// The VLAN the passthru traffic uses on the data port (popped towards the TAP, pushed
    /// towards the port); `None` for untagged.
    pub vlan: Option<u16>,
}

impl Config {
    pub fn input_by_name(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.name == name)
    }

    pub fn output_by_name(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }
}

/// The most outputs one instance may have (the engine keeps destination sets as bitmaps).
pub const MAX_OUTPUTS: usize = 256;
