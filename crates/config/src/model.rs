//! The validated configuration, and the checks that produce it.

use crate::path::KeyPath;
use crate::raw::{RawConfig, RawInput, RawOutput, RawRule};
use crate::tunnel::{
    parse_decap, parse_encap, parse_listen, parse_oversize, parse_prefixes, parse_tunnel_types,
    uint_set, Decap, Encap, Listen, Oversize,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

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
    /// The interface copies are sent on (`None` for a tunnel output).
    pub interface: Option<String>,
    /// The tunnel copies are sent through (`erspan`, `vxlan`, `gre`).
    pub encap: Option<Encap>,
    /// What happens to copies larger than `mtu`.
    pub oversize: Oversize,
    /// At most this rate; excess copies are dropped as `rate_limited`.
    pub rate_limit: Option<RateLimit>,
    /// A pcapng archive (`pcap = { path, rotate_mb, rotate_s, keep }`).
    pub archive: Option<Archive>,
    pub vlan: Option<VlanAction>,
    pub truncate: Option<u32>,
    /// Largest layer 3 payload sent; larger frames are dropped as `mtu_exceeded`. Live ports
    /// default to the interface's MTU; offline outputs have no limit unless this is set.
    pub mtu: Option<u32>,
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

/// `[passthru.NAME]`: frames for `mac` (and `vlan`) on the input bound to `interface`, plus
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

type VResult<T> = Result<T, (KeyPath, String)>;

fn err<T>(path: KeyPath, msg: impl Into<String>) -> VResult<T> {
    Err((path, msg.into()))
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ - 1), no '/', ':' or white space, not "." or "..".
fn check_ifname(path: &KeyPath, name: &str) -> VResult<()> {
    if name.is_empty() {
        return err(path.clone(), "empty interface name");
    }
    if name.len() > 15 {
        return err(
            path.clone(),
            format!("interface name {name:?} is longer than 15 bytes (the Linux limit)"),
        );
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return err(
            path.clone(),
            format!("{name:?} is not a valid interface name"),
        );
    }
    Ok(())
}

/// Port and rule names: letters, digits, `_`, `-`, `.`, `/`, 1 to 64 characters.
fn check_name(path: &KeyPath, what: &str, name: &str) -> VResult<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    {
        return err(
            path.clone(),
            format!("{what} name {name:?} must be 1 to 64 letters, digits, '_', '-', '.' or '/'"),
        );
    }
    Ok(())
}

/// A canonical decimal: digits only, no sign, no leading zero (except "0" itself), no spaces.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty()
        || s.len() > 9
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// A VxSPAN `redirect_map` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VxSelector {
    Untagged,
    Vid(u16),
    Any,
}

fn parse_vx_selector(key: &str) -> Option<VxSelector> {
    match key {
        "none" | "0" => Some(VxSelector::Untagged),
        "any" | "4095" => Some(VxSelector::Any),
        _ => match parse_decimal(key)? {
            v @ 1..=4094 => Some(VxSelector::Vid(v as u16)),
            _ => None,
        },
    }
}

fn parse_xdp_mode(path: &KeyPath, s: &str) -> VResult<XdpMode> {
    match s {
        "SKB" | "generic" => Ok(XdpMode::Generic),
        "DRV" | "native" => Ok(XdpMode::Native),
        "HW" | "offload" => Ok(XdpMode::Offload),
        _ => err(
            path.clone(),
            format!("unknown XDP mode {s:?} (expected \"SKB\", \"DRV\", \"HW\", \"generic\", \"native\" or \"offload\")"),
        ),
    }
}

pub(crate) fn as_u64(
    path: &KeyPath,
    v: &Value,
    what: &str,
    range: core::ops::RangeInclusive<u64>,
) -> VResult<u64> {
    match v.as_u64() {
        Some(n) if range.contains(&n) => Ok(n),
        _ => err(
            path.clone(),
            format!(
                "{what} must be an integer from {} to {}, not {v}",
                range.start(),
                range.end()
            ),
        ),
    }
}

/// `vlan` in a rule: one selector or a list. A selector is `"none"`, `"any"`, an integer or
/// decimal string 0 to 4095 (0 = none, 4095 = any), or a range `"N-M"` of VIDs 1 to 4094.
fn parse_vlan_selectors(path: &KeyPath, v: &Value) -> VResult<VlanSet> {
    let items: Vec<(KeyPath, &Value)> = match v {
        Value::Array(a) => {
            if a.is_empty() {
                return err(
                    path.clone(),
                    "empty VLAN list: the rule would match nothing",
                );
            }
            a.iter()
                .enumerate()
                .map(|(i, x)| (path.index(i), x))
                .collect()
        }
        other => vec![(path.clone(), other)],
    };
    let mut set = VlanSet::empty();
    for (p, item) in items {
        let bad = || {
            err(
                p.clone(),
                format!("invalid VLAN selector {item} (expected \"none\", \"any\", 0 to 4095, or \"N-M\" with 1 <= N <= M <= 4094)"),
            )
        };
        let text = match item {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return bad(),
        };
        match text.as_str() {
            "none" | "0" => set.insert(0),
            "any" | "4095" => set = VlanSet::all(),
            t => {
                if let Some((a, b)) = t.split_once('-') {
                    match (parse_decimal(a), parse_decimal(b)) {
                        (Some(a), Some(b)) if 1 <= a && a <= b && b <= 4094 => {
                            for vid in a..=b {
                                set.insert(vid as u16);
                            }
                        }
                        _ => return bad(),
                    }
                } else {
                    match parse_decimal(t) {
                        Some(v @ 1..=4094) => set.insert(v as u16),
                        _ => return bad(),
                    }
                }
            }
        }
    }
    Ok(set)
}

fn parse_vlan_action(path: &KeyPath, v: &Value) -> VResult<VlanAction> {
    let Value::Object(m) = v else {
        return err(
            path.clone(),
            "expected a table: { push = N }, { pop = true } or { set = N }",
        );
    };
    if m.len() != 1 {
        return err(
            path.clone(),
            "exactly one of push, pop or set must be given",
        );
    }
    let (k, val) = m.iter().next().expect("one entry");
    let p = path.key(k);
    match k.as_str() {
        "push" => Ok(VlanAction::Push(
            as_u64(&p, val, "VLAN id", 1..=4094)? as u16
        )),
        "set" => Ok(VlanAction::Set(as_u64(&p, val, "VLAN id", 1..=4094)? as u16)),
        "pop" => match val {
            Value::Bool(true) => Ok(VlanAction::Pop),
            _ => err(p, "pop takes the value true"),
        },
        _ => err(
            p,
            format!("unknown VLAN action {k:?} (expected push, pop or set)"),
        ),
    }
}

fn parse_sample(path: &KeyPath, v: &Value) -> VResult<Sample> {
    const RANGE: core::ops::RangeInclusive<u64> = 1..=1_000_000_000;
    match v {
        Value::Number(_) => Ok(Sample {
            one_in: as_u64(path, v, "sample", RANGE)? as u32,
            mode: SampleMode::Counter,
        }),
        Value::Object(m) => {
            let mut one_in = None;
            let mut mode = SampleMode::Counter;
            for (k, val) in m {
                let p = path.key(k);
                match k.as_str() {
                    "one_in" => one_in = Some(as_u64(&p, val, "one_in", RANGE)? as u32),
                    "mode" => {
                        mode = match val.as_str() {
                            Some("counter") => SampleMode::Counter,
                            Some("flow") => SampleMode::Flow,
                            _ => return err(p, format!("unknown sample mode {val} (expected \"counter\" or \"flow\")")),
                        }
                    }
                    _ => return err(p, format!("unknown key {k:?} (expected one_in, mode)")),
                }
            }
            match one_in {
                Some(one_in) => Ok(Sample { one_in, mode }),
                None => err(path.key("one_in"), "missing: sample needs one_in"),
            }
        }
        _ => err(path.clone(), format!("sample must be an integer N (keep 1 in N) or {{ one_in = N, mode = \"counter\" | \"flow\" }}, not {v}")),
    }
}

/// A list of names (or a single name) referring to inputs or outputs.
fn parse_refs(path: &KeyPath, v: &Value, what: &str, names: &[&str]) -> VResult<Vec<usize>> {
    let items: Vec<(KeyPath, &Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (path.index(i), x))
            .collect(),
        other => vec![(path.clone(), other)],
    };
    if items.is_empty() {
        return err(path.clone(), format!("at least one {what} is required"));
    }
    let mut out: Vec<usize> = Vec::new();
    for (p, item) in items {
        let Some(name) = item.as_str() else {
            return err(
                p,
                format!("expected the name of an {what} (a string), not {item}"),
            );
        };
        let Some(idx) = names.iter().position(|n| *n == name) else {
            let known = if names.is_empty() {
                "none defined".to_string()
            } else {
                names.join(", ")
            };
            return err(p, format!("unknown {what} {name:?} (defined: {known})"));
        };
        if out.contains(&idx) {
            return err(p, format!("{what} {name:?} is listed twice"));
        }
        out.push(idx);
    }
    Ok(out)
}

fn build_output(path: &KeyPath, name: &str, raw: &RawOutput) -> VResult<Output> {
    let tunnels: Vec<(&str, &Value)> = [
        ("erspan", &raw.erspan),
        ("vxlan", &raw.vxlan),
        ("gre", &raw.gre),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let (interface, encap, archive) = match (&raw.interface, tunnels.as_slice(), &raw.pcap) {
        (Some(i), [], None) => {
            check_ifname(&path.key("interface"), i)?;
            (Some(i.clone()), None, None)
        }
        (None, [(kind, v)], None) => (None, Some(parse_encap(path, kind, v)?), None),
        (None, [], Some(v)) => (None, None, Some(parse_archive(&path.key("pcap"), v)?)),
        (None, [], None) => {
            return err(
                path.clone(),
                "an output needs a destination: interface, erspan, vxlan, gre or pcap",
            )
        }
        _ => {
            return err(
                path.clone(),
                "an output has exactly one destination: interface, erspan, vxlan, gre or pcap",
            )
        }
    };
    Ok(Output {
        name: name.to_owned(),
        interface,
        encap,
        oversize: raw
            .oversize
            .as_ref()
            .map(|v| parse_oversize(&path.key("oversize"), v))
            .transpose()?
            .unwrap_or(Oversize::Drop),
        archive,
        rate_limit: match (&raw.rate_limit, &raw.rate_burst) {
            (Some(r), burst) => Some(parse_rate_limit(path, r, burst.as_ref())?),
            (None, Some(_)) => {
                return err(
                    path.key("rate_burst"),
                    "rate_burst has no effect without rate_limit",
                )
            }
            (None, None) => None,
        },
        vlan: raw
            .vlan
            .as_ref()
            .map(|v| parse_vlan_action(&path.key("vlan"), v))
            .transpose()?,
        truncate: raw
            .truncate
            .as_ref()
            .map(|v| as_u64(&path.key("truncate"), v, "truncate", 14..=65535).map(|n| n as u32))
            .transpose()?,
        mtu: raw
            .mtu
            .as_ref()
            .map(|v| as_u64(&path.key("mtu"), v, "mtu", 68..=65535).map(|n| n as u32))
            .transpose()?,
    })
}

fn build_input(p: &KeyPath, name: &str, raw: &RawInput) -> VResult<Input> {
    let (interface, listen) = match (&raw.interface, &raw.listen) {
        (Some(i), None) => {
            check_ifname(&p.key("interface"), i)?;
            if raw.allow.is_some() {
                return err(p.key("allow"), "allow applies to listen inputs only");
            }
            (i.clone(), None)
        }
        (None, Some(url)) => (url.clone(), Some(parse_listen(p, url, raw.allow.as_ref())?)),
        (None, None) => return err(p.clone(), "an input needs interface or listen"),
        (Some(_), Some(_)) => {
            return err(
                p.clone(),
                "an input has either interface or listen, not both",
            )
        }
    };
    let decap = match (
        &raw.decap,
        [
            ("decap_depth", &raw.decap_depth),
            ("decap_ports", &raw.decap_ports),
            ("reassembly", &raw.reassembly),
            ("mpls", &raw.mpls),
        ]
        .iter()
        .find(|(_, v)| v.is_some()),
    ) {
        (Some(kinds), _) => Some(parse_decap(
            p,
            kinds,
            raw.decap_depth.as_ref(),
            raw.decap_ports.as_ref(),
            raw.reassembly.as_ref(),
            raw.mpls.as_ref(),
        )?),
        (None, Some((k, _))) => return err(p.key(k), format!("{k} has no effect without decap")),
        (None, None) => None,
    };
    Ok(Input {
        name: name.to_owned(),
        interface,
        listen,
        decap,
        allow_uplink: raw.allow_uplink.unwrap_or(false),
    })
}

pub(crate) fn validate(raw: RawConfig, file: &Path) -> VResult<Config> {
    let root = KeyPath::root();
    let native = !raw.inputs.0.is_empty() || !raw.outputs.0.is_empty() || !raw.rules.is_empty();
    let mut cfg = Config {
        file: file.to_owned(),
        form: if native { Form::Native } else { Form::Vxspan },
        xdp_mode: raw
            .xdp_mode
            .as_deref()
            .map(|m| parse_xdp_mode(&root.key("xdp_mode"), m))
            .transpose()?,
        inputs: Vec::new(),
        outputs: Vec::new(),
        rules: Vec::new(),
        passthru: Vec::new(),
        user: raw.management.as_ref().and_then(|m| m.user.clone()),
        control: match raw.management.as_ref().and_then(|m| m.control.as_deref()) {
            Some("") => return err(root.key("management").key("control"), "empty path"),
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        },
        metrics: match raw.management.as_ref().and_then(|m| m.metrics.as_deref()) {
            Some(a) => match a.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    return err(
                        root.key("management").key("metrics"),
                        format!(
                            "{a:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")"
                        ),
                    )
                }
            },
            None => None,
        },
        snmp: match raw.management.as_ref() {
            Some(m) => parse_snmp(&root.key("management"), m)?,
            None => None,
        },
        counters: crate::limits::parse_counters(&root.key("counters"), raw.counters.as_ref())?,
        hash_key: match raw
            .management
            .as_ref()
            .and_then(|m| m.hash_key_file.as_deref())
        {
            Some(f) => Some(crate::limits::load_hash_key(
                &root.key("management").key("hash_key_file"),
                f,
                file,
            )?),
            None => None,
        },
    };
    // Where each port name and each input interface was defined, for duplicate errors.
    let mut port_paths: Vec<(String, KeyPath)> = Vec::new();
    let mut claim_name = |name: &str, path: &KeyPath| -> VResult<()> {
        if let Some((_, first)) = port_paths.iter().find(|(n, _)| n == name) {
            return err(
                path.clone(),
                format!("port name {name:?} is already used at {first}"),
            );
        }
        port_paths.push((name.to_owned(), path.clone()));
        Ok(())
    };

    for (name, raw_in) in &raw.inputs.0 {
        let p = root.key("inputs").key(name);
        check_name(&p, "input", name)?;
        claim_name(name, &p)?;
        cfg.inputs.push(build_input(&p, name, raw_in)?);
    }
    for (name, raw_out) in &raw.outputs.0 {
        let p = root.key("outputs").key(name);
        check_name(&p, "output", name)?;
        claim_name(name, &p)?;
        cfg.outputs.push(build_output(&p, name, raw_out)?);
    }

    // Native rules.
    let input_names: Vec<String> = cfg.inputs.iter().map(|i| i.name.clone()).collect();
    let output_names: Vec<String> = cfg.outputs.iter().map(|o| o.name.clone()).collect();
    let in_refs: Vec<&str> = input_names.iter().map(String::as_str).collect();
    let out_refs: Vec<&str> = output_names.iter().map(String::as_str).collect();
    for (i, r) in raw.rules.iter().enumerate() {
        let p = root.key("rules").index(i);
        cfg.rules.push(build_rule(&p, i, r, &in_refs, &out_refs)?);
    }

    // The VxSPAN form: each interface is an input, each redirect target an output named after
    // its interface (or the native output bound to that interface, if there is exactly one).
    if let Some(ifaces) = &raw.interfaces {
        if ifaces.0.is_empty() {
            return err(root.key("interfaces"), "no interfaces defined");
        }
        let mut vx_inputs = Vec::new();
        for (iface, _) in &ifaces.0 {
            let p = root.key("interfaces").key(iface);
            check_ifname(&p, iface)?;
            claim_name(iface, &p)?;
            vx_inputs.push(cfg.inputs.len());
            cfg.inputs.push(Input {
                name: iface.clone(),
                interface: iface.clone(),
                listen: None,
                decap: None,
                allow_uplink: false,
            });
        }
        for ((iface, vx), input) in ifaces.0.iter().zip(vx_inputs) {
            let p = root.key("interfaces").key(iface);
            let map_path = p.key("redirect_map");
            let mut seen: Vec<(VxSelector, String)> = Vec::new();
            let mut any_rule = None;
            let mut specific = VlanSet::empty();
            for (key, out_iface) in &vx.redirect_map.0 {
                let kp = map_path.key(key);
                let sel = parse_vx_selector(key).map_or_else(
                    || err(kp.clone(), format!("invalid VLAN selector {key:?} (expected \"none\", \"0\", \"1\"..\"4094\", \"any\" or \"4095\")")),
                    Ok,
                )?;
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == sel) {
                    return err(
                        kp,
                        format!("selector {key:?} selects the same frames as {first:?}"),
                    );
                }
                seen.push((sel, key.clone()));
                check_ifname(&kp, out_iface)?;
                if let Some(inp) = cfg.inputs.iter().find(|i| i.interface == *out_iface) {
                    return err(kp, format!("loop: {iface} redirects to interface {out_iface:?}, which is also the input {:?}", inp.name));
                }
                let matching: Vec<usize> = cfg
                    .outputs
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.interface.as_deref() == Some(out_iface.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                let output = match matching.as_slice() {
                    [one] => *one,
                    [] => {
                        claim_name(out_iface, &kp).or_else(|e| {
                            // The name may already be an implicit output created by an earlier entry.
                            cfg.outputs.iter().position(|o| o.name == *out_iface).map_or(Err(e), |_| Ok(()))
                        })?;
                        cfg.outputs.push(Output {
                            name: out_iface.clone(),
                            interface: Some(out_iface.clone()),
                            encap: None,
                                                        oversize: Oversize::Drop,
                                                        rate_limit: None,
                            archive: None,
                            vlan: None,
                            truncate: None,
                            mtu: None,
                        });
                        cfg.outputs.len() - 1
                    }
                    _ => return err(kp, format!("interface {out_iface:?} is bound to several outputs; name one of them in a native rule instead")),
                };
                let mut vlans = VlanSet::empty();
                match sel {
                    VxSelector::Untagged => vlans.insert(0),
                    VxSelector::Vid(v) => vlans.insert(v),
                    VxSelector::Any => vlans = VlanSet::all(),
                }
                if sel != VxSelector::Any {
                    match sel {
                        VxSelector::Vid(v) => specific.insert(v),
                        _ => specific.insert(0),
                    }
                }
                let rule_name = format!("{iface}/{key}");
                if sel == VxSelector::Any {
                    any_rule = Some(cfg.rules.len());
                }
                cfg.rules.push(Rule {
                    name: rule_name,
                    path: kp.to_string(),
                    from: vec![input],
                    vlans,
                    filter: None,
                    to: vec![output],
                    sample: None,
                    vni: None,
                    erspan_session: None,
                    tunnel: None,
                    outer_source: None,
                    balance: None,
                    dedup: None,
                });
            }
            // A specific VLAN entry wins over `any`: the `any` rule takes what no other entry of
            // this interface selects (CONFIG.md section 1).
            if let Some(r) = any_rule {
                for vid in 0..4096u16 {
                    if specific.contains(vid) {
                        cfg.rules[r].vlans.remove(vid);
                    }
                }
            }
        }
    }

    for (name, raw_p) in &raw.passthru.0 {
        let p = root.key("passthru").key(name);
        check_name(&p, "passthru", name)?;
        check_ifname(&p.key("interface"), &raw_p.interface)?;
        check_ifname(&p.key("tap"), &raw_p.tap)?;
        let Some(input) = cfg
            .inputs
            .iter()
            .position(|i| i.interface == raw_p.interface && i.listen.is_none())
        else {
            return err(
                p.key("interface"),
                format!(
                    "{:?} is not the interface of an input: the passthru's data port must be one",
                    raw_p.interface
                ),
            );
        };
        let mac = parse_mac_text(&raw_p.mac).map_or_else(
            || {
                err(
                    p.key("mac"),
                    format!(
                        "expected a MAC address like \"44:44:44:44:44:44\", not {:?}",
                        raw_p.mac
                    ),
                )
            },
            Ok,
        )?;
        let vlan = raw_p
            .vlan
            .as_ref()
            .map(|v| as_u64(&p.key("vlan"), v, "vlan", 1..=4094).map(|n| n as u16))
            .transpose()?;
        if cfg.inputs.iter().any(|i| i.interface == raw_p.tap)
            || cfg
                .outputs
                .iter()
                .any(|o| o.interface.as_deref() == Some(raw_p.tap.as_str()))
        {
            return err(
                p.key("tap"),
                format!(
                    "{:?} is also a port of a rule; the TAP belongs to the passthru alone",
                    raw_p.tap
                ),
            );
        }
        cfg.passthru.push(Passthru {
            name: name.clone(),
            input,
            interface: raw_p.interface.clone(),
            tap: raw_p.tap.clone(),
            mac,
            vlan,
        });
    }
    if cfg.outputs.len() > MAX_OUTPUTS {
        return err(
            root.key("outputs"),
            format!(
                "{} outputs defined; at most {MAX_OUTPUTS} are supported",
                cfg.outputs.len()
            ),
        );
    }
    let mut rule_names: Vec<(&str, &str)> = Vec::new();
    for r in &cfg.rules {
        if let Some((_, first)) = rule_names.iter().find(|(n, _)| *n == r.name) {
            return err(
                path_of(&r.path).key("name"),
                format!("rule name {:?} is already used at {first}", r.name),
            );
        }
        rule_names.push((&r.name, &r.path));
    }

    // One interface is one input.
    for (i, a) in cfg.inputs.iter().enumerate() {
        if let Some(b) = cfg.inputs[..i].iter().find(|b| b.interface == a.interface) {
            return err(
                input_path(&raw, a),
                format!(
                    "duplicate input: interface {:?} is already the input {:?}",
                    a.interface, b.name
                ),
            );
        }
    }
    // Loops: an interface that some rule sends to and some rule receives from.
    for r in &cfg.rules {
        for &o in &r.to {
            let out = &cfg.outputs[o];
            let Some(out_iface) = &out.interface else {
                continue;
            };
            if let Some(inp) = cfg.inputs.iter().find(|i| i.interface == *out_iface) {
                return err(
                    path_of(&r.path),
                    format!(
                        "loop: rule {:?} sends to interface {:?}, which is also the input {:?}",
                        r.name, out_iface, inp.name
                    ),
                );
            }
        }
    }
    Ok(cfg)
}

/// A rule's stored path, as a KeyPath for error reporting (already formatted, kept verbatim).
fn path_of(s: &str) -> KeyPath {
    KeyPath::verbatim(s)
}

fn input_path(raw: &RawConfig, input: &Input) -> KeyPath {
    if raw.inputs.0.iter().any(|(n, _)| *n == input.name) {
        KeyPath::root()
            .key("inputs")
            .key(&input.name)
            .key("interface")
    } else {
        KeyPath::root().key("interfaces").key(&input.name)
    }
}

fn parse_mac_text(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `pcap = { path = "mirror-%Y%m%dT%H%M%S.pcapng", rotate_mb = 100, rotate_s = 3600, keep = 20 }`.
fn parse_archive(path: &KeyPath, v: &Value) -> VResult<Archive> {
    let Value::Object(m) = v else {
        return err(
            path.clone(),
            "expected a table: { path = \"...pcapng\", rotate_mb = N, rotate_s = N, keep = N }",
        );
    };
    let mut a = Archive {
        path: String::new(),
        rotate_bytes: None,
        rotate_ns: None,
        keep: None,
    };
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "path" => match val.as_str() {
                Some(p) if !p.is_empty() => a.path = p.to_owned(),
                _ => return err(kp, "expected a file name pattern"),
            },
            "rotate_mb" => a.rotate_bytes = Some(as_u64(&kp, val, "rotate_mb", 1..=1 << 20)? << 20),
            "rotate_s" => {
                a.rotate_ns = Some(as_u64(&kp, val, "rotate_s", 1..=86_400 * 366)? * 1_000_000_000)
            }
            "keep" => a.keep = Some(as_u64(&kp, val, "keep", 1..=1_000_000)? as u32),
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected path, rotate_mb, rotate_s, keep)"),
                )
            }
        }
    }
    if a.path.is_empty() {
        return err(path.key("path"), "missing: the archive's file name pattern");
    }
    let varies = ["%Y", "%m", "%d", "%H", "%M", "%S", "%N"]
        .iter()
        .any(|f| a.path.contains(f));
    if (a.rotate_bytes.is_some() || a.rotate_ns.is_some()) && !varies {
        return err(path.key("path"), "a rotating archive needs %N or time fields (%Y %m %d %H %M %S) in its path, or every file would overwrite the last");
    }
    Ok(a)
}

/// `to = { balance = ["a", "b"], hash = "symmetric-5tuple", weights = [1, 2] }`.
fn parse_balance(path: &KeyPath, v: &Value) -> VResult<Option<Balance>> {
    let Value::Object(m) = v else { return Ok(None) };
    let n = match m.get("balance") {
        Some(Value::Array(a)) if a.len() >= 2 => a.len(),
        Some(Value::Array(_)) => {
            return err(path.key("balance"), "balance needs at least two outputs")
        }
        Some(other) => {
            return err(
                path.key("balance"),
                format!("expected a list of output names, not {other}"),
            )
        }
        None => {
            return err(
                path.key("balance"),
                "missing: a to table needs balance = [outputs]",
            )
        }
    };
    let mut weights = vec![1u32; n];
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "balance" => {}
            "hash" => match val.as_str() {
                Some("symmetric-5tuple") => {}
                _ => {
                    return err(
                        kp,
                        format!("unknown hash {val} (expected \"symmetric-5tuple\")"),
                    )
                }
            },
            "weights" => {
                let Value::Array(ws) = val else {
                    return err(kp, "expected a list of weights, one per output");
                };
                if ws.len() != n {
                    return err(kp, format!("{} weights for {n} outputs", ws.len()));
                }
                for (i, w) in ws.iter().enumerate() {
                    weights[i] = as_u64(&kp.index(i), w, "weight", 1..=1000)? as u32;
                }
            }
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected balance, hash, weights)"),
                )
            }
        }
    }
    Ok(Some(Balance { weights }))
}

/// `dedup = { window_ms = 10, table_size = 65536 }`.
fn parse_dedup(path: &KeyPath, v: &Value) -> VResult<Dedup> {
    let Value::Object(m) = v else {
        return err(path.clone(), "expected a table: { window_ms = N }");
    };
    let mut window = None;
    let mut table_size = 1 << 16;
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "window_ms" => window = Some(as_u64(&kp, val, "window_ms", 1..=60_000)?),
            "table_size" => {
                let t = as_u64(&kp, val, "table_size", 1024..=1 << 24)?;
                if !t.is_power_of_two() {
                    return err(kp, format!("table_size must be a power of two, not {t}"));
                }
                table_size = t as usize;
            }
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected window_ms, table_size)"),
                )
            }
        }
    }
    match window {
        Some(w) => Ok(Dedup {
            window_ns: w * 1_000_000,
            table_size,
        }),
        None => err(path.key("window_ms"), "missing: dedup needs window_ms"),
    }
}

/// A rate in bits per second: `"200Mbit"`, `"1.5Gbit"`, `"500kbit"`, or an integer (bits/s).
fn parse_bits(path: &KeyPath, v: &Value, what: &str) -> VResult<u64> {
    let bad = || {
        err(path.clone(), format!("{what} must be like \"200Mbit\", \"1Gbit\", \"500kbit\" or a number of bits per second, not {v}"))
    };
    if let Some(n) = v.as_u64() {
        return if n > 0 { Ok(n) } else { bad() };
    }
    let Some(s) = v.as_str() else { return bad() };
    let s = s.trim();
    let (num, mult) = [("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((s, 1.0));
    match num.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * mult <= 1e13 => Ok((n * mult) as u64),
        _ => bad(),
    }
}

/// A size in bytes: `"64KB"`, `"1MB"`, or an integer.
fn parse_bytes(path: &KeyPath, v: &Value) -> VResult<u64> {
    let bad = || {
        err(
            path.clone(),
            format!("rate_burst must be like \"64KB\", \"1MB\" or a number of bytes, not {v}"),
        )
    };
    if let Some(n) = v.as_u64() {
        return if n > 0 { Ok(n) } else { bad() };
    }
    let Some(s) = v.as_str() else { return bad() };
    let s = s.trim();
    let (num, mult) = [("MB", 1u64 << 20), ("KB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((s, 1));
    match num.parse::<u64>() {
        Ok(n) if n > 0 && n <= 1 << 30 => Ok(n * mult),
        _ => bad(),
    }
}

fn parse_rate_limit(path: &KeyPath, rate: &Value, burst: Option<&Value>) -> VResult<RateLimit> {
    let bits = parse_bits(&path.key("rate_limit"), rate, "rate_limit")?;
    let bytes_per_sec = (bits / 8).max(1);
    // Default burst: 10 ms of traffic, and at least two jumbo frames.
    let burst_bytes = match burst {
        Some(b) => parse_bytes(&path.key("rate_burst"), b)?,
        None => (bytes_per_sec / 100).max(2 * 9216),
    };
    Ok(RateLimit {
        bytes_per_sec,
        burst_bytes,
    })
}

fn build_rule(
    p: &KeyPath,
    i: usize,
    r: &RawRule,
    inputs: &[&str],
    outputs: &[&str],
) -> VResult<Rule> {
    let name = r.name.clone().unwrap_or_else(|| format!("rule-{i}"));
    check_name(&p.key("name"), "rule", &name)?;
    let filter = match &r.filter {
        Some(f) if f.trim().is_empty() => {
            return err(
                p.key("filter"),
                "empty filter (leave the key out to match every frame)",
            )
        }
        other => other.clone(),
    };
    Ok(Rule {
        name,
        path: p.to_string(),
        from: parse_refs(&p.key("from"), &r.from, "input", inputs)?,
        vlans: match &r.vlan {
            Some(v) => parse_vlan_selectors(&p.key("vlan"), v)?,
            None => VlanSet::all(),
        },
        filter,
        to: match &r.to {
            Value::Object(m) => parse_refs(
                &p.key("to").key("balance"),
                m.get("balance").unwrap_or(&Value::Null),
                "output",
                outputs,
            )?,
            other => parse_refs(&p.key("to"), other, "output", outputs)?,
        },
        balance: parse_balance(&p.key("to"), &r.to)?,
        dedup: r
            .dedup
            .as_ref()
            .map(|v| parse_dedup(&p.key("dedup"), v))
            .transpose()?,
        vni: r
            .vni
            .as_ref()
            .map(|v| uint_set(&p.key("vni"), v, "vni", 0..=0xff_ffff))
            .transpose()?,
        erspan_session: r
            .erspan_session
            .as_ref()
            .map(|v| uint_set(&p.key("erspan_session"), v, "erspan_session", 0..=1023))
            .transpose()?,
        tunnel: r
            .tunnel
            .as_ref()
            .map(|v| parse_tunnel_types(&p.key("tunnel"), v))
            .transpose()?,
        outer_source: r
            .outer_source
            .as_ref()
            .map(|v| parse_prefixes(&p.key("outer_source"), v))
            .transpose()?,
        sample: r
            .sample
            .as_ref()
            .map(|s| parse_sample(&p.key("sample"), s))
            .transpose()?,
    })
}

fn parse_snmp(path: &KeyPath, m: &crate::raw::RawManagement) -> VResult<Option<Snmp>> {
    let Some(master) = m.snmp_agentx.as_deref() else {
        for (key, set) in [
            ("snmp_base_oid", m.snmp_base_oid.is_some()),
            ("snmp_drop_rate", m.snmp_drop_rate.is_some()),
        ] {
            if set {
                return err(
                    path.key(key),
                    "needs management.snmp_agentx (the AgentX master socket)",
                );
            }
        }
        return Ok(None);
    };
    if master.is_empty() {
        return err(path.key("snmp_agentx"), "empty path");
    }
    if let Some(addr) = master.strip_prefix("tcp:") {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return err(
                path.key("snmp_agentx"),
                format!("{master:?}: expected tcp:ADDRESS:PORT (e.g. tcp:127.0.0.1:705) or a socket path"),
            );
        }
    }
    let base_oid = match m.snmp_base_oid.as_deref() {
        None => DEFAULT_SNMP_BASE.to_vec(),
        Some(s) => {
            let parts: Option<Vec<u32>> = s
                .trim_start_matches('.')
                .split('.')
                .map(|x| x.parse().ok())
                .collect();
            match parts {
                Some(p) if p.len() >= 2 && p.len() <= 100 && p[0] <= 2 => p,
                _ => {
                    return err(
                        path.key("snmp_base_oid"),
                        format!(
                            "{s:?} is not a dotted object identifier such as \"1.3.6.1.3.8624\""
                        ),
                    )
                }
            }
        }
    };
    Ok(Some(Snmp {
        master: master.to_owned(),
        base_oid,
        drop_rate: m.snmp_drop_rate,
    }))
}
