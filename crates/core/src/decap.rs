//! Tunnel termination: strip VXLAN, VXLAN-GPE, Geneve, GRE (over IP and in UDP), ERSPAN I / II /
//! III and MPLS layers so rules match, and outputs receive, the inner frame.
//!
//! Detection: GRE by IP protocol 47 (ERSPAN by GRE protocol 0x88BE / 0x22EB), UDP tunnels by
//! destination port (`decap_ports`, IANA ports by default), MPLS by EtherType 0x8847 / 0x8848.
//! Only the kinds an input lists in `decap` are stripped; anything else passes unchanged.
//!
//! Where a layer's inner frame ends: UDP tunnels at the end of the UDP datagram (its length
//! field), GRE at the end of the outer IP datagram (its length field), both clipped to what was
//! captured. Bytes after the outer IP datagram (Ethernet padding of a short outer frame) are not
//! part of the inner frame.
//!
//! ERSPAN type I and II share GRE protocol 0x88BE: as in Wireshark, a GRE header with the S
//! (sequence) bit carries the 8-byte type II header, one without it is type I, whose Ethernet
//! frame starts right after GRE. ERSPAN III frames whose frame type is not Ethernet (ft != 0) are
//! not stripped.
//!
//! A payload that is IP without Ethernet (GRE 0x0800 / 0x86DD, Geneve 0x0800 / 0x86DD / 0x0806,
//! VXLAN-GPE next protocol IPv4 / IPv6, MPLS with an IP payload) gets a synthetic Ethernet header:
//! destination 02:76:78:73:70:00, source 02:76:78:73:70:01, EtherType from the payload.

use crate::reasm::{Outcome, Reassembler};
use serde::Serialize;
use vxspan_config::{Decap, MplsPayloadKind, TunnelKind};
use vxspan_wire::erspan::{ErspanIIIPacket, ErspanIIPacket};
use vxspan_wire::ethernet::{SYNTHETIC_DST, SYNTHETIC_SRC};
use vxspan_wire::etherparse::LaxIpSlice;
use vxspan_wire::geneve::GenevePacket;
use vxspan_wire::gre::GrePacket;
use vxspan_wire::mpls::{MplsInner, MplsPayload, MplsStack};
use vxspan_wire::vxlan::{VxlanGpePacket, VxlanGpeProtocol, VxlanPacket};
use vxspan_wire::{EtherType, L2Info};

/// The kind of one stripped layer, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TunnelType {
    #[serde(rename = "vxlan")]
    Vxlan,
    #[serde(rename = "vxlan-gpe")]
    VxlanGpe,
    #[serde(rename = "geneve")]
    Geneve,
    #[serde(rename = "erspan-i")]
    ErspanI,
    #[serde(rename = "erspan-ii")]
    ErspanII,
    #[serde(rename = "erspan-iii")]
    ErspanIII,
    /// GRE transparent Ethernet bridging (0x6558).
    #[serde(rename = "gre-teb")]
    GreTeb,
    #[serde(rename = "gre-ipv4")]
    GreIpv4,
    #[serde(rename = "gre-ipv6")]
    GreIpv6,
    #[serde(rename = "gre-mpls")]
    GreMpls,
    /// GRE in UDP (RFC 8086); the GRE payload decides what is inside.
    #[serde(rename = "gre-in-udp")]
    GreInUdp,
    /// MPLS in UDP (RFC 7510).
    #[serde(rename = "mpls-in-udp")]
    MplsInUdp,
    /// An MPLS label stack on Ethernet.
    #[serde(rename = "mpls")]
    Mpls,
}

impl TunnelType {
    pub const ALL: [TunnelType; 13] = [
        TunnelType::Vxlan,
        TunnelType::VxlanGpe,
        TunnelType::Geneve,
        TunnelType::ErspanI,
        TunnelType::ErspanII,
        TunnelType::ErspanIII,
        TunnelType::GreTeb,
        TunnelType::GreIpv4,
        TunnelType::GreIpv6,
        TunnelType::GreMpls,
        TunnelType::GreInUdp,
        TunnelType::MplsInUdp,
        TunnelType::Mpls,
    ];

    pub fn from_name(name: &str) -> Option<TunnelType> {
        TunnelType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelType::Vxlan => "vxlan",
            TunnelType::VxlanGpe => "vxlan-gpe",
            TunnelType::Geneve => "geneve",
            TunnelType::ErspanI => "erspan-i",
            TunnelType::ErspanII => "erspan-ii",
            TunnelType::ErspanIII => "erspan-iii",
            TunnelType::GreTeb => "gre-teb",
            TunnelType::GreIpv4 => "gre-ipv4",
            TunnelType::GreIpv6 => "gre-ipv6",
            TunnelType::GreMpls => "gre-mpls",
            TunnelType::GreInUdp => "gre-in-udp",
            TunnelType::MplsInUdp => "mpls-in-udp",
            TunnelType::Mpls => "mpls",
        }
    }
}

/// What a stripped layer said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunnelMeta {
    /// The type of each layer stripped, outermost first (depth at most 8).
    pub layers: [Option<TunnelType>; 8],
    pub depth: u8,
    /// VNI of the innermost VXLAN / VXLAN-GPE / Geneve layer.
    pub vni: Option<u32>,
    /// Session id of the innermost ERSPAN II / III layer.
    pub erspan_session: Option<u16>,
    /// Original VLAN of the innermost ERSPAN II / III layer.
    pub erspan_vlan: Option<u16>,
    /// Key of the innermost GRE layer that had one.
    pub gre_key: Option<u32>,
    /// The IP source of the frame as received, before any layer was stripped (for rules'
    /// `outer_source`; filled in when a rule of the input asks for it).
    pub outer_src: Option<std::net::IpAddr>,
}

/// The IP source address of an Ethernet frame, if it carries IPv4 or IPv6.
pub fn ip_source(frame: &[u8]) -> Option<std::net::IpAddr> {
    let l2 = L2Info::parse(frame).ok()?;
    match LaxIpSlice::from_slice(frame.get(l2.l3_offset..)?) {
        Ok((ip, _)) => Some(ip.source_addr()),
        Err(_) => None,
    }
}

impl TunnelMeta {
    pub fn outermost(&self) -> Option<TunnelType> {
        self.layers[0]
    }
}

/// The payload of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Ethernet,
    /// IPv4 or IPv6 (from the version nibble) without Ethernet.
    Ip,
    /// ARP without Ethernet (Geneve 0x0806).
    Arp,
}

/// One layer found: its type and id, and where its payload is in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layer {
    kind: TunnelType,
    vni: Option<u32>,
    session: Option<u16>,
    erspan_vlan: Option<u16>,
    key: Option<u32>,
    start: usize,
    end: usize,
    payload: Payload,
}

/// The result of looking for a tunnel in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    NotTunnel,
    /// It is a tunnel this input strips, but its headers are cut short or invalid.
    Malformed,
    /// An MPLS stack whose payload is not what the input's `mpls` table says: not stripped.
    Undecided,
    Inner(Layer),
}

fn offset_in(frame: &[u8], sub: &[u8]) -> usize {
    sub.as_ptr() as usize - frame.as_ptr() as usize
}

fn layer(kind: TunnelType, start: usize, end: usize, payload: Payload) -> Layer {
    Layer {
        kind,
        vni: None,
        session: None,
        erspan_vlan: None,
        key: None,
        start,
        end,
        payload,
    }
}

/// The payload of an MPLS stack starting at `at`, as the input's `mpls` table says. `cut`: the
/// capture ended before the frame did.
fn mpls(frame: &[u8], at: usize, end: usize, kind: TunnelType, cfg: &Decap, cut: bool) -> Step {
    let Some(buf) = frame.get(at..end) else {
        return Step::Malformed;
    };
    let Ok(s) = MplsStack::parse(buf) else {
        return Step::Malformed;
    };
    let payload = match cfg.mpls.payload {
        MplsPayloadKind::Ip => MplsPayload::Ip,
        MplsPayloadKind::Ethernet => MplsPayload::Ethernet,
    };
    match s.inner(buf, payload, cfg.mpls.control_word, cut) {
        Ok(MplsInner::Ipv4(i) | MplsInner::Ipv6(i)) => {
            Step::Inner(layer(kind, at + i, end, Payload::Ip))
        }
        Ok(MplsInner::Ethernet(i)) => Step::Inner(layer(kind, at + i, end, Payload::Ethernet)),
        Ok(MplsInner::Undecided) => Step::Undecided,
        Err(_) => Step::Malformed,
    }
}

/// A GRE header at `at`, ending with the IP datagram at `end`. `in_udp`: GRE-in-UDP.
fn gre(frame: &[u8], at: usize, end: usize, cfg: &Decap, in_udp: bool, cut: bool) -> Step {
    let Some(buf) = frame.get(at..end) else {
        return Step::Malformed;
    };
    let Ok(g) = GrePacket::new_checked(buf) else {
        return Step::Malformed;
    };
    if g.version() != 0 || g.routing_present() {
        return Step::NotTunnel;
    }
    let inner = at + g.header_len();
    let key = g.key();
    let gre_kind = |k: TunnelType| if in_udp { TunnelType::GreInUdp } else { k };
    let mut l = match (
        g.protocol_type(),
        in_udp || cfg.allows(TunnelKind::Gre),
        cfg.allows(TunnelKind::Erspan),
    ) {
        (0x6558, true, _) => layer(gre_kind(TunnelType::GreTeb), inner, end, Payload::Ethernet),
        (0x0800, true, _) => layer(gre_kind(TunnelType::GreIpv4), inner, end, Payload::Ip),
        (0x86dd, true, _) => layer(gre_kind(TunnelType::GreIpv6), inner, end, Payload::Ip),
        (0x8847 | 0x8848, true, _) if cfg.allows(TunnelKind::Mpls) || !in_udp => {
            return with_key(
                mpls(frame, inner, end, gre_kind(TunnelType::GreMpls), cfg, cut),
                key,
            )
        }
        (0x88be, _, true) if !g.sequence_present() => {
            layer(TunnelType::ErspanI, inner, end, Payload::Ethernet)
        }
        (0x88be, _, true) => {
            let Some(e) = frame
                .get(inner..end)
                .and_then(|b| ErspanIIPacket::new_checked(b).ok())
            else {
                return Step::Malformed;
            };
            if e.version() != vxspan_wire::erspan::VERSION_II {
                return Step::Malformed;
            }
            let mut l = layer(
                TunnelType::ErspanII,
                inner + vxspan_wire::erspan::TYPE_II_HEADER_LEN,
                end,
                Payload::Ethernet,
            );
            l.session = Some(e.session_id());
            l.erspan_vlan = Some(e.vlan());
            l
        }
        (0x22eb, _, true) => {
            let Some(e) = frame
                .get(inner..end)
                .and_then(|b| ErspanIIIPacket::new_checked(b).ok())
            else {
                return Step::Malformed;
            };
            if e.frame_type() != 0 {
                return Step::NotTunnel;
            }
            let hlen = vxspan_wire::erspan::TYPE_III_HEADER_LEN
                + if e.has_platform_subheader() {
                    vxspan_wire::erspan::PLATFORM_SUBHEADER_LEN
                } else {
                    0
                };
            let mut l = layer(TunnelType::ErspanIII, inner + hlen, end, Payload::Ethernet);
            l.session = Some(e.session_id());
            l.erspan_vlan = Some(e.vlan());
            l
        }
        _ => return Step::NotTunnel,
    };
    l.key = key;
    Step::Inner(l)
}

fn with_key(s: Step, key: Option<u32>) -> Step {
    match s {
        Step::Inner(mut l) => {
            l.key = key;
            Step::Inner(l)
        }
        other => other,
    }
}

/// Looks for one tunnel layer at the start of `frame` (`cut`: the capture ended before it did).
fn step(frame: &[u8], cfg: &Decap, cut: bool) -> Step {
    let Ok(l2) = L2Info::parse(frame) else {
        return Step::NotTunnel;
    };
    let l3 = l2.l3_offset;
    match l2.ethertype {
        EtherType::Mpls | EtherType::Unknown(0x8848) if cfg.allows(TunnelKind::Mpls) => {
            return mpls(frame, l3, frame.len(), TunnelType::Mpls, cfg, cut)
        }
        EtherType::Ipv4 | EtherType::Ipv6 => {}
        _ => return Step::NotTunnel,
    }
    let Ok((ip, _)) = LaxIpSlice::from_slice(&frame[l3..]) else {
        return Step::NotTunnel;
    };
    let payload = ip.payload();
    if payload.fragmented {
        return Step::NotTunnel;
    }
    let at = offset_in(frame, payload.payload);
    let ip_end = at + payload.payload.len();
    match payload.ip_number.0 {
        47 if cfg.allows(TunnelKind::Gre)
            || cfg.allows(TunnelKind::Erspan)
            || cfg.allows(TunnelKind::Mpls) =>
        {
            gre(frame, at, ip_end, cfg, false, cut)
        }
        17 => {
            let Some(udp) = frame.get(at..at + 8) else {
                return Step::NotTunnel;
            };
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            // The datagram ends where UDP says, clipped to the IP datagram; a zero length
            // (jumbograms, RFC 2675) means "to the end of the IP payload".
            let end = if ulen >= 8 {
                (at + ulen).min(ip_end)
            } else {
                ip_end
            };
            let body = at + 8;
            let p = &cfg.ports;
            if cfg.allows(TunnelKind::Vxlan) && p.vxlan.contains(&dport) {
                let Some(v) = frame
                    .get(body..end)
                    .and_then(|b| VxlanPacket::new_checked(b).ok())
                else {
                    return Step::Malformed;
                };
                let mut l = layer(
                    TunnelType::Vxlan,
                    body + vxspan_wire::vxlan::HEADER_LEN,
                    end,
                    Payload::Ethernet,
                );
                l.vni = Some(v.vni());
                Step::Inner(l)
            } else if cfg.allows(TunnelKind::Vxlan) && p.vxlan_gpe.contains(&dport) {
                let Some(v) = frame
                    .get(body..end)
                    .and_then(|b| VxlanGpePacket::new_checked(b).ok())
                else {
                    return Step::Malformed;
                };
                let inner = body + vxspan_wire::vxlan::HEADER_LEN;
                let mut l = match v.next_protocol() {
                    VxlanGpeProtocol::Ethernet => {
                        layer(TunnelType::VxlanGpe, inner, end, Payload::Ethernet)
                    }
                    VxlanGpeProtocol::Ipv4 | VxlanGpeProtocol::Ipv6 => {
                        layer(TunnelType::VxlanGpe, inner, end, Payload::Ip)
                    }
                    VxlanGpeProtocol::Mpls => {
                        match mpls(frame, inner, end, TunnelType::VxlanGpe, cfg, cut) {
                            Step::Inner(l) => l,
                            other => return other,
                        }
                    }
                    _ => return Step::NotTunnel,
                };
                l.vni = Some(v.vni());
                Step::Inner(l)
            } else if cfg.allows(TunnelKind::Geneve) && p.geneve.contains(&dport) {
                let Some(g) = frame
                    .get(body..end)
                    .and_then(|b| GenevePacket::new_checked(b).ok())
                else {
                    return Step::Malformed;
                };
                let inner = body + g.header_len();
                let payload = match g.protocol_type() {
                    0x6558 => Payload::Ethernet,
                    0x0800 | 0x86dd => Payload::Ip,
                    0x0806 => Payload::Arp,
                    _ => return Step::NotTunnel,
                };
                let mut l = layer(TunnelType::Geneve, inner, end, payload);
                l.vni = Some(g.vni());
                Step::Inner(l)
            } else if cfg.allows(TunnelKind::Gre) && p.gre_udp.contains(&dport) {
                gre(frame, body, end, cfg, true, cut)
            } else if cfg.allows(TunnelKind::Mpls) && p.mpls_udp.contains(&dport) {
                mpls(frame, body, end, TunnelType::MplsInUdp, cfg, cut)
            } else {
                Step::NotTunnel
            }
        }
        _ => Step::NotTunnel,
    }
}

/// Where the current frame lives while layers are stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Frame,
    Reassembled,
    Buf(usize),
}

/// The outcome of [`Decapsulator::run`].
#[derive(Debug)]
pub enum Decapped<'a> {
    /// The frame to classify and deliver (the inner frame, or the frame itself if it is not a
    /// tunnel), its wire length, and what the stripped layers said.
    Frame(&'a [u8], u32, TunnelMeta),
    /// An outer IP fragment held for reassembly.
    Held,
    /// A fragment refused by reassembly (overlap, too big, malformed).
    ReassemblyFailed,
    /// A tunnel this input strips whose headers are cut short or invalid.
    Malformed,
    /// Sent to a `listen` input from a source its `allow` list does not accept.
    NotAllowed,
}

/// Per-input decapsulation counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DecapStats {
    /// Frames with an MPLS label stack whose payload was not what the input's `mpls` table
    /// says (not IPv4 / IPv6 with `payload = "ip"`, or a control word not starting with 0):
    /// passed on with the stack in place.
    pub mpls_undecided: u64,
}

impl DecapStats {
    pub fn add(&mut self, o: &DecapStats) {
        self.mpls_undecided += o.mpls_undecided;
    }
}

/// One input's tunnel termination state: reassembly and two scratch buffers.
pub struct Decapsulator {
    cfg: Decap,
    pub stats: DecapStats,
    /// For a `listen` input: the accepted outer sources.
    listen: Option<vxspan_config::Listen>,
    reasm: Reassembler,
    buf_a: Vec<u8>,
    buf_b: Vec<u8>,
}

impl Decapsulator {
    /// `key` hashes the reassembly index (the plan's [`crate::hashkey::HashKey`]).
    pub fn new(
        cfg: Decap,
        listen: Option<vxspan_config::Listen>,
        key: crate::hashkey::HashKey,
    ) -> Self {
        Decapsulator {
            reasm: Reassembler::new(cfg.reassembly, key),
            stats: DecapStats::default(),
            cfg,
            listen,
            buf_a: Vec::new(),
            buf_b: Vec::new(),
        }
    }

    pub fn reassembly_stats(&self) -> crate::reasm::ReasmStats {
        self.reasm.stats
    }

    /// Starts the reassembly table afresh (after a caught panic), keeping its counters; the
    /// datagrams it held are counted as evicted.
    pub fn reset(&mut self) {
        let mut stats = self.reasm.stats;
        stats.evictions += self.reasm.pending() as u64;
        self.reasm = Reassembler::new(self.cfg.reassembly, self.reasm.hash_key().clone());
        self.reasm.stats = stats;
    }

    /// Strips up to `decap_depth` layers from `frame` (received at `ts`).
    pub fn run<'a>(&'a mut self, frame: &'a [u8], wire_len: u32, ts: u64) -> Decapped<'a> {
        let mut src = Src::Frame;
        // Bytes of the current frame that were on the wire but not captured.
        let mut missing = (wire_len as usize).saturating_sub(frame.len());
        if let Some(listen) = &self.listen {
            if !ip_source(frame).is_some_and(|a| listen.allows(a)) {
                return Decapped::NotAllowed;
            }
        }
        if let Ok(l2) = L2Info::parse(frame) {
            let v6 = match l2.ethertype {
                EtherType::Ipv4 => Some(false),
                EtherType::Ipv6 => Some(true),
                _ => None,
            };
            if let Some(v6) = v6 {
                match self.reasm.push(frame, l2.l3_offset, v6, ts) {
                    Outcome::NotFragment => {}
                    Outcome::Held => return Decapped::Held,
                    Outcome::Dropped => return Decapped::ReassemblyFailed,
                    Outcome::Complete => {
                        src = Src::Reassembled;
                        missing = 0;
                    }
                }
            }
        }
        let mut meta = TunnelMeta::default();
        for depth in 0..usize::from(self.cfg.depth) {
            // The current frame and the buffer the next one is built in (never the same).
            let (cur, out, next): (&[u8], &mut Vec<u8>, Src) = match src {
                Src::Frame => (frame, &mut self.buf_a, Src::Buf(0)),
                Src::Reassembled => (self.reasm.frame(), &mut self.buf_a, Src::Buf(0)),
                Src::Buf(0) => (&self.buf_a, &mut self.buf_b, Src::Buf(1)),
                Src::Buf(_) => (&self.buf_b, &mut self.buf_a, Src::Buf(0)),
            };
            let l = match step(cur, &self.cfg, missing > 0) {
                Step::NotTunnel => break,
                Step::Undecided => {
                    self.stats.mpls_undecided += 1;
                    break;
                }
                Step::Malformed => return Decapped::Malformed,
                Step::Inner(l) => l,
            };
            meta.layers[depth] = Some(l.kind);
            meta.depth = depth as u8 + 1;
            meta.vni = l.vni.or(meta.vni);
            meta.erspan_session = l.session.or(meta.erspan_session);
            meta.erspan_vlan = l.erspan_vlan.or(meta.erspan_vlan);
            meta.gre_key = l.key.or(meta.gre_key);
            out.clear();
            let inner = cur.get(l.start..l.end.min(cur.len())).unwrap_or(&[]);
            match l.payload {
                // An inner frame cut before the end of its Ethernet header (by the capture or by
                // the outer length fields) cannot be classified: the tunnel is malformed.
                Payload::Ethernet if inner.len() < vxspan_wire::ethernet::HEADER_LEN => {
                    return Decapped::Malformed
                }
                Payload::Ethernet => {}
                Payload::Ip => {
                    if !vxspan_wire::ethernet::ip_header_ok(inner)
                        || !vxspan_wire::ethernet::synthesize_for_ip(inner, out)
                    {
                        return Decapped::Malformed;
                    }
                }
                Payload::Arp => {
                    out.extend_from_slice(&SYNTHETIC_DST.0);
                    out.extend_from_slice(&SYNTHETIC_SRC.0);
                    out.extend_from_slice(&[0x08, 0x06]);
                }
            }
            out.extend_from_slice(inner);
            // A layer that ends where the frame ends (MPLS on Ethernet) keeps what the capture
            // missed; one whose length fields point past the capture misses the difference.
            missing = match l.end.cmp(&cur.len()) {
                core::cmp::Ordering::Greater => l.end - cur.len(),
                core::cmp::Ordering::Equal if l.kind == TunnelType::Mpls => missing,
                _ => 0,
            };
            src = next;
        }
        let data: &[u8] = match src {
            Src::Frame => frame,
            Src::Reassembled => self.reasm.frame(),
            Src::Buf(0) => &self.buf_a,
            Src::Buf(_) => &self.buf_b,
        };
        Decapped::Frame(data, (data.len() + missing) as u32, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashkey::HashKey;

    /// The configuration's list of names a rule's `tunnel` key accepts is this enum's.
    #[test]
    fn config_names_match() {
        let ours: Vec<&str> = TunnelType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(ours, vxspan_config::TUNNEL_TYPES);
    }

    fn cfg(mpls: vxspan_config::Mpls) -> Decap {
        Decap {
            kinds: vec![TunnelKind::Mpls],
            depth: 1,
            ports: vxspan_config::DecapPorts::default(),
            reassembly: vxspan_config::Reassembly::default(),
            mpls,
        }
    }

    /// An MPLS frame (one label) carrying `payload`.
    fn mpls_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0x47];
        f.extend_from_slice(&[0x00, 0x01, 0x01, 0x40]); // label 16, S, TTL 64
        f.extend_from_slice(payload);
        f
    }

    /// Issue #15: an Ethernet pseudowire whose inner destination MAC starts with nibble 0, 4 or
    /// 6 was taken for a control word or an IP packet and corrupted. Now the input says.
    #[test]
    fn mpls_payload_is_configured_not_guessed() {
        use vxspan_config::{Mpls, MplsPayloadKind};
        let mut inner = vec![0u8; 60];
        for mac0 in [0x02u8, 0x00, 0x40, 0x60] {
            inner[0] = mac0;
            inner[12..14].copy_from_slice(&[0x08, 0x06]);
            let f = mpls_frame(&inner);
            // Default (payload = "ip"): nibble 0 is not IP, so the frame passes unchanged,
            // counted (nibbles 4 and 6 are taken as IP, as configured).
            let mut d = Decapsulator::new(cfg(Mpls::default()), None, HashKey::replay());
            if mac0 >> 4 == 0 {
                match d.run(&f, f.len() as u32, 0) {
                    Decapped::Frame(out, _, m) => {
                        assert!(out == &f[..] && m.depth == 0, "{mac0:#x}");
                    }
                    o => panic!("{mac0:#x}: {o:?}"),
                }
                assert_eq!(d.stats.mpls_undecided, 1);
            }
            // payload = "ethernet": the inner frame, whatever its first nibble.
            let eth = Mpls {
                payload: MplsPayloadKind::Ethernet,
                control_word: false,
            };
            let mut d = Decapsulator::new(cfg(eth), None, HashKey::replay());
            match d.run(&f, f.len() as u32, 0) {
                Decapped::Frame(out, _, m) => assert!(out == &inner[..] && m.depth == 1),
                o => panic!("{mac0:#x}: {o:?}"),
            }
            // With a control word.
            let mut cw = vec![0, 0, 0, 0];
            cw.extend_from_slice(&inner);
            let f = mpls_frame(&cw);
            let mut d = Decapsulator::new(
                cfg(Mpls {
                    control_word: true,
                    ..eth
                }),
                None,
                HashKey::replay(),
            );
            match d.run(&f, f.len() as u32, 0) {
                Decapped::Frame(out, _, _) => assert!(out == &inner[..]),
                o => panic!("{mac0:#x}: {o:?}"),
            }
        }
    }
}
