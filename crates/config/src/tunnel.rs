//! Tunnel options: decapsulation on inputs (`decap`, `decap_depth`, `decap_ports`,
//! `reassembly`) and encapsulation on outputs (`erspan`, `vxlan`, `gre`).

use crate::checks::{as_u64, err, VResult};
use crate::path::KeyPath;
use serde_json::Value;
use std::net::IpAddr;

/// The tunnel families an input can strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// VXLAN (RFC 7348) and VXLAN-GPE.
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
    /// GRE over IP and GRE-in-UDP (RFC 2784, 2890, 8086): Ethernet (TEB), IPv4, IPv6, MPLS payloads.
    Gre,
    /// ERSPAN types I, II and III (over GRE).
    Erspan,
    /// MPLS label stacks: on Ethernet, in UDP (RFC 7510) and in GRE.
    Mpls,
}

impl TunnelKind {
    pub const ALL: [TunnelKind; 5] = [
        TunnelKind::Vxlan,
        TunnelKind::Geneve,
        TunnelKind::Gre,
        TunnelKind::Erspan,
        TunnelKind::Mpls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::Mpls => "mpls",
        }
    }

    fn parse(s: &str) -> Option<TunnelKind> {
        TunnelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// UDP destination ports recognised as tunnels (the IANA ports plus `decap_ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecapPorts {
    pub vxlan: Vec<u16>,
    pub vxlan_gpe: Vec<u16>,
    pub geneve: Vec<u16>,
    pub gre_udp: Vec<u16>,
    pub mpls_udp: Vec<u16>,
}

impl Default for DecapPorts {
    fn default() -> Self {
        DecapPorts {
            vxlan: vec![4789],
            vxlan_gpe: vec![4790],
            geneve: vec![6081],
            gre_udp: vec![4754],
            mpls_udp: vec![6635],
        }
    }
}

/// Bounds of outer IP reassembly (fragmented tunnel packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reassembly {
    /// A datagram whose fragments do not all arrive within this time (packet timestamps) is dropped.
    pub timeout_ms: u32,
    /// Bytes held at most, over all incomplete datagrams of the input.
    pub max_bytes: u32,
    /// Incomplete datagrams held at most.
    pub max_datagrams: u32,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            timeout_ms: 1000,
            max_bytes: 4 << 20,
            max_datagrams: 1024,
        }
    }
}

/// What follows an MPLS label stack. MPLS does not say: the label's binding does, and a broker
/// does not know it, so the input's configuration decides (`mpls = { payload, control_word }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MplsPayloadKind {
    /// IPv4 or IPv6, told apart by the version nibble; anything else is not stripped (the
    /// frame passes unchanged, counted as `mpls_undecided`).
    #[default]
    Ip,
    /// An Ethernet pseudowire (RFC 4448).
    Ethernet,
}

/// The input's `mpls` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mpls {
    pub payload: MplsPayloadKind,
    /// The payload starts with a 4-byte pseudowire control word (RFC 4385), skipped.
    pub control_word: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decap {
    pub kinds: Vec<TunnelKind>,
    /// Tunnel layers stripped at most (1 to 8; "all" = 8).
    pub depth: u8,
    pub ports: DecapPorts,
    pub reassembly: Reassembly,
    pub mpls: Mpls,
}

impl Decap {
    pub fn allows(&self, k: TunnelKind) -> bool {
        self.kinds.contains(&k)
    }
}

/// Outer addressing common to every encapsulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer {
    pub remote: IpAddr,
    /// Source address; offline (replay) the unspecified address of the family if not set.
    pub source: Option<IpAddr>,
    /// DSCP of the outer header (0 to 63), so mirror traffic can be queued below production.
    pub dscp: u8,
    pub ttl: u8,
    /// Outer Ethernet addresses written by `vxspan replay` (live, the kernel resolves them).
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encap {
    /// ERSPAN type II (`version = 2`) or III (`version = 3`) over GRE.
    Erspan {
        version: u8,
        session: u16,
        outer: Outer,
    },
    /// VXLAN (RFC 7348) over UDP.
    Vxlan { vni: u32, port: u16, outer: Outer },
    /// Geneve (RFC 8926) over UDP, Ethernet payload (protocol 0x6558), no options.
    Geneve { vni: u32, port: u16, outer: Outer },
    /// GRE transparent Ethernet bridging (0x6558), optional key.
    Gre { key: Option<u32>, outer: Outer },
}

impl Encap {
    pub fn outer(&self) -> &Outer {
        match self {
            Encap::Erspan { outer, .. }
            | Encap::Vxlan { outer, .. }
            | Encap::Geneve { outer, .. }
            | Encap::Gre { outer, .. } => outer,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Encap::Erspan { version: 2, .. } => "erspan-ii",
            Encap::Erspan { .. } => "erspan-iii",
            Encap::Vxlan { .. } => "vxlan",
            Encap::Geneve { .. } => "geneve",
            Encap::Gre { .. } => "gre",
        }
    }
}

/// What an output does with a copy larger than its `mtu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// Drop it and count `mtu_exceeded` (the default).
    Drop,
    /// Cut it to fit (ERSPAN outputs set the T bit).
    Truncate,
}

pub(crate) fn table<'a>(
    path: &KeyPath,
    v: &'a Value,
    what: &str,
) -> VResult<&'a serde_json::Map<String, Value>> {
    v.as_object().map_or_else(
        || err(path.clone(), format!("{what} must be a table, not {v}")),
        Ok,
    )
}

fn one_or_many<'a>(path: &KeyPath, v: &'a Value) -> Vec<(KeyPath, &'a Value)> {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (path.index(i), x))
            .collect(),
        other => vec![(path.clone(), other)],
    }
}

/// Integers (one or a list) in `range`, for rule matches such as `vni = [7000, 7001]`.
pub(crate) fn uint_set(
    path: &KeyPath,
    v: &Value,
    what: &str,
    range: core::ops::RangeInclusive<u64>,
) -> VResult<Vec<u32>> {
    let items = one_or_many(path, v);
    if items.is_empty() {
        return err(
            path.clone(),
            format!("empty {what} list: the rule would match nothing"),
        );
    }
    let mut out = Vec::new();
    for (p, x) in items {
        let n = as_u64(&p, x, what, range.clone())? as u32;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

pub(crate) fn parse_decap(
    path: &KeyPath,
    kinds: &Value,
    depth: Option<&Value>,
    ports: Option<&Value>,
    reasm: Option<&Value>,
    mpls: Option<&Value>,
) -> VResult<Decap> {
    let p = path.key("decap");
    let mut out = Vec::new();
    for (ip, item) in one_or_many(&p, kinds) {
        let Some(k) = item.as_str().and_then(TunnelKind::parse) else {
            return err(ip, format!("unknown tunnel type {item} (expected \"vxlan\", \"geneve\", \"gre\", \"erspan\" or \"mpls\")"));
        };
        if !out.contains(&k) {
            out.push(k);
        }
    }
    if out.is_empty() {
        return err(p, "empty decap list (leave the key out to strip nothing)");
    }
    let depth = match depth {
        None => 1,
        Some(Value::String(s)) if s == "all" => 8,
        Some(v) => as_u64(&path.key("decap_depth"), v, "decap_depth", 1..=8)? as u8,
    };
    let mut dp = DecapPorts::default();
    if let Some(v) = ports {
        let pp = path.key("decap_ports");
        for (k, val) in table(&pp, v, "decap_ports")? {
            let kp = pp.key(k);
            let list = match k.as_str() {
                "vxlan" => &mut dp.vxlan,
                "vxlan_gpe" => &mut dp.vxlan_gpe,
                "geneve" => &mut dp.geneve,
                "gre_udp" => &mut dp.gre_udp,
                "mpls_udp" => &mut dp.mpls_udp,
                _ => {
                    return err(
                        kp,
                        format!(
                        "unknown key {k:?} (expected vxlan, vxlan_gpe, geneve, gre_udp, mpls_udp)"
                    ),
                    )
                }
            };
            for (ip, x) in one_or_many(&kp, val) {
                let port = as_u64(&ip, x, "a UDP port", 1..=65535)? as u16;
                if !list.contains(&port) {
                    list.push(port);
                }
            }
        }
        // One port, one meaning.
        let all: Vec<(&str, &Vec<u16>)> = vec![
            ("vxlan", &dp.vxlan),
            ("vxlan_gpe", &dp.vxlan_gpe),
            ("geneve", &dp.geneve),
            ("gre_udp", &dp.gre_udp),
            ("mpls_udp", &dp.mpls_udp),
        ];
        for (i, (a, pa)) in all.iter().enumerate() {
            for (b, pb) in &all[i + 1..] {
                if let Some(port) = pa.iter().find(|x| pb.contains(x)) {
                    return err(pp.clone(), format!("UDP port {port} is both {a} and {b}"));
                }
            }
        }
    }
    let mut r = Reassembly::default();
    if let Some(v) = reasm {
        let rp = path.key("reassembly");
        for (k, val) in table(&rp, v, "reassembly")? {
            let kp = rp.key(k);
            match k.as_str() {
                "timeout_ms" => r.timeout_ms = as_u64(&kp, val, "timeout_ms", 1..=60_000)? as u32,
                "max_bytes" => {
                    r.max_bytes = as_u64(&kp, val, "max_bytes", 65_535..=1 << 30)? as u32
                }
                "max_datagrams" => {
                    r.max_datagrams = as_u64(&kp, val, "max_datagrams", 1..=65_536)? as u32
                }
                _ => {
                    return err(
                        kp,
                        format!(
                            "unknown key {k:?} (expected timeout_ms, max_bytes, max_datagrams)"
                        ),
                    )
                }
            }
        }
    }
    let mut m = Mpls::default();
    if let Some(v) = mpls {
        let mp = path.key("mpls");
        for (k, val) in table(&mp, v, "mpls")? {
            let kp = mp.key(k);
            match (k.as_str(), val) {
                ("payload", Value::String(s)) if s == "ip" => m.payload = MplsPayloadKind::Ip,
                ("payload", Value::String(s)) if s == "ethernet" => {
                    m.payload = MplsPayloadKind::Ethernet
                }
                ("payload", _) => {
                    return err(kp, format!("{val} is not \"ip\" or \"ethernet\""));
                }
                ("control_word", Value::Bool(b)) => m.control_word = *b,
                ("control_word", _) => return err(kp, format!("{val} is not true or false")),
                _ => {
                    return err(
                        kp,
                        format!("unknown key {k:?} (expected payload, control_word)"),
                    )
                }
            }
        }
    }
    Ok(Decap {
        kinds: out,
        depth,
        ports: dp,
        reassembly: r,
        mpls: m,
    })
}

fn parse_ip(path: &KeyPath, v: &Value) -> VResult<IpAddr> {
    match v.as_str().map(str::parse::<IpAddr>) {
        Some(Ok(a)) => Ok(a),
        _ => err(
            path.clone(),
            format!("expected an IPv4 or IPv6 address, not {v}"),
        ),
    }
}

/// The synthetic outer MACs of replayed tunnel frames (locally administered, "vxsp").
const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0x76, 0x78, 0x73, 0x70, 0x01];
const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0x76, 0x78, 0x73, 0x70, 0x00];

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub(crate) fn parse_encap(path: &KeyPath, kind: &str, v: &Value) -> VResult<Encap> {
    let p = path.key(kind);
    let m = table(&p, v, kind)?;
    let mut remote = None;
    let mut outer = Outer {
        remote: IpAddr::from([0, 0, 0, 0]),
        source: None,
        dscp: 0,
        ttl: 64,
        src_mac: DEFAULT_SRC_MAC,
        dst_mac: DEFAULT_DST_MAC,
    };
    let mut version = None;
    let mut session = None;
    let mut vni = None;
    let mut port = if kind == "geneve" { 6081u16 } else { 4789 };
    let mut key = None;
    for (k, val) in m {
        let kp = p.key(k);
        match (kind, k.as_str()) {
            (_, "remote") => remote = Some(parse_ip(&kp, val)?),
            (_, "source") => outer.source = Some(parse_ip(&kp, val)?),
            (_, "dscp") => outer.dscp = as_u64(&kp, val, "dscp", 0..=63)? as u8,
            (_, "ttl") => outer.ttl = as_u64(&kp, val, "ttl", 1..=255)? as u8,
            (_, "src_mac") | (_, "dst_mac") => {
                let mac = val.as_str().and_then(parse_mac).map_or_else(
                    || {
                        err(
                            kp.clone(),
                            format!("expected a MAC address like \"02:00:00:00:00:01\", not {val}"),
                        )
                    },
                    Ok,
                )?;
                if k == "src_mac" {
                    outer.src_mac = mac;
                } else {
                    outer.dst_mac = mac;
                }
            }
            ("erspan", "version") => version = Some(as_u64(&kp, val, "version", 2..=3)? as u8),
            ("erspan", "session") => session = Some(as_u64(&kp, val, "session", 0..=1023)? as u16),
            ("vxlan" | "geneve", "vni") => {
                vni = Some(as_u64(&kp, val, "vni", 0..=0xff_ffff)? as u32)
            }
            ("vxlan" | "geneve", "port") => port = as_u64(&kp, val, "port", 1..=65535)? as u16,
            ("gre", "key") => key = Some(as_u64(&kp, val, "key", 0..=u64::from(u32::MAX))? as u32),
            _ => {
                let expected = match kind {
                    "erspan" => "remote, version, session, source, dscp, ttl, src_mac, dst_mac",
                    "vxlan" | "geneve" => "remote, vni, port, source, dscp, ttl, src_mac, dst_mac",
                    _ => "remote, key, source, dscp, ttl, src_mac, dst_mac",
                };
                return err(kp, format!("unknown key {k:?} (expected {expected})"));
            }
        }
    }
    outer.remote = remote.map_or_else(
        || {
            err(
                p.key("remote"),
                "missing: the tunnel's remote address is required",
            )
        },
        Ok,
    )?;
    if let Some(src) = outer.source {
        if src.is_ipv4() != outer.remote.is_ipv4() {
            return err(
                p.key("source"),
                "source and remote must be the same address family",
            );
        }
    }
    Ok(match kind {
        "erspan" => Encap::Erspan {
            version: version.map_or_else(
                || err(p.key("version"), "missing: ERSPAN version 2 or 3"),
                Ok,
            )?,
            session: session.map_or_else(
                || err(p.key("session"), "missing: ERSPAN session id (0 to 1023)"),
                Ok,
            )?,
            outer,
        },
        "vxlan" => Encap::Vxlan {
            vni: vni.map_or_else(
                || err(p.key("vni"), "missing: the VXLAN network identifier"),
                Ok,
            )?,
            port,
            outer,
        },
        "geneve" => Encap::Geneve {
            vni: vni.map_or_else(
                || {
                    err(
                        p.key("vni"),
                        "missing: the Geneve virtual network identifier",
                    )
                },
                Ok,
            )?,
            port,
            outer,
        },
        "gre" => Encap::Gre { key, outer },
        other => {
            return err(
                p.clone(),
                format!("unknown tunnel kind {other:?} (erspan, vxlan, geneve or gre)"),
            )
        }
    })
}

pub(crate) fn parse_oversize(path: &KeyPath, v: &Value) -> VResult<Oversize> {
    match v.as_str() {
        Some("drop") => Ok(Oversize::Drop),
        Some("truncate") => Ok(Oversize::Truncate),
        _ => err(
            path.clone(),
            format!("oversize must be \"drop\" or \"truncate\", not {v}"),
        ),
    }
}

/// A tunnel endpoint on this host (`listen = "vxlan://ADDR:PORT"`): tunnels addressed to it are
/// received through the kernel's sockets and terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub kind: TunnelKind,
    /// The local address to bind (the unspecified address listens on all).
    pub addr: IpAddr,
    /// UDP port (VXLAN, Geneve); `None` for GRE / ERSPAN (IP protocol 47).
    pub port: Option<u16>,
    /// Accepted outer sources; `None` accepts any (the rest are dropped as `not_allowed`).
    pub allow: Option<Vec<(IpAddr, u8)>>,
}

impl Listen {
    /// Whether an outer source is accepted.
    pub fn allows(&self, src: IpAddr) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|list| prefixes_contain(list, src))
    }
}

/// `vxlan://0.0.0.0:4789`, `geneve://[2001:db8::1]:6081`, `gre://198.18.0.1`, `erspan://0.0.0.0`.
pub(crate) fn parse_listen(path: &KeyPath, url: &str, allow: Option<&Value>) -> VResult<Listen> {
    let p = path.key("listen");
    let bad = |why: &str| {
        err(p.clone(), format!("{url:?}: {why} (expected vxlan://ADDR:PORT, geneve://ADDR:PORT, gre://ADDR or erspan://ADDR)"))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("no scheme");
    };
    let kind = match scheme {
        "vxlan" => TunnelKind::Vxlan,
        "geneve" => TunnelKind::Geneve,
        "gre" => TunnelKind::Gre,
        "erspan" => TunnelKind::Erspan,
        _ => return bad("unknown scheme"),
    };
    let udp = matches!(kind, TunnelKind::Vxlan | TunnelKind::Geneve);
    let (addr, port) = if udp {
        let default = if kind == TunnelKind::Vxlan {
            4789
        } else {
            6081
        };
        match rest.parse::<std::net::SocketAddr>() {
            Ok(sa) => (sa.ip(), Some(sa.port())),
            Err(_) => match rest
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                Ok(a) => (a, Some(default)),
                Err(_) => return bad("not an address with an optional port"),
            },
        }
    } else {
        match rest
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(a) => (a, None),
            Err(_) => return bad("not an address (GRE and ERSPAN have no port)"),
        }
    };
    if port == Some(0) {
        return bad("port 0");
    }
    let allow = allow
        .map(|v| parse_prefixes(&path.key("allow"), v))
        .transpose()?;
    Ok(Listen {
        kind,
        addr,
        port,
        allow,
    })
}

/// Whether `addr` falls in one of `prefixes` (address, prefix length).
pub fn prefixes_contain(prefixes: &[(IpAddr, u8)], addr: IpAddr) -> bool {
    prefixes.iter().any(|(net, len)| match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            u32::from(*n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*len))
            };
            u128::from(*n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

/// Addresses or prefixes, one or a list: `"198.18.0.0/15"`, `["2001:db8::/32", "198.18.0.1"]`.
pub(crate) fn parse_prefixes(path: &KeyPath, v: &Value) -> VResult<Vec<(IpAddr, u8)>> {
    let mut nets = Vec::new();
    for (ip, item) in one_or_many(path, v) {
        let s = item.as_str().unwrap_or("");
        let (a, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let parsed = a.parse::<IpAddr>().ok().and_then(|a| {
            let max = if a.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
            };
            Some((a, len))
        });
        match parsed {
            Some(n) => nets.push(n),
            None => {
                return err(
                    ip,
                    format!("expected an address or prefix like \"198.18.0.0/15\", not {item}"),
                )
            }
        }
    }
    if nets.is_empty() {
        return err(path.clone(), "empty list: nothing would match");
    }
    Ok(nets)
}

/// The tunnel layer types a rule's `tunnel` key may name (as counted under `tunnels`).
pub const TUNNEL_TYPES: [&str; 13] = [
    "vxlan",
    "vxlan-gpe",
    "geneve",
    "erspan-i",
    "erspan-ii",
    "erspan-iii",
    "gre-teb",
    "gre-ipv4",
    "gre-ipv6",
    "gre-mpls",
    "gre-in-udp",
    "mpls-in-udp",
    "mpls",
];

pub(crate) fn parse_tunnel_types(path: &KeyPath, v: &Value) -> VResult<Vec<String>> {
    let mut out = Vec::new();
    for (ip, item) in one_or_many(path, v) {
        match item.as_str().filter(|s| TUNNEL_TYPES.contains(s)) {
            Some(t) => out.push(t.to_owned()),
            None => {
                return err(
                    ip,
                    format!(
                        "unknown tunnel type {item} (expected one of {})",
                        TUNNEL_TYPES.join(", ")
                    ),
                )
            }
        }
    }
    if out.is_empty() {
        return err(path.clone(), "empty list: nothing would match");
    }
    Ok(out)
}
