//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept here so the unit tests can
//! replay the committed corpus through exactly the same code on stable Rust.
//!
//! Each function must not panic, hang or allocate without bound on any input.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use vxspan_core::bpf::{BpfInsn, BpfProgram};
use vxspan_core::wire::vlan::{pop_tag, push_tag, set_outer_vid};
use vxspan_core::wire::{EtherType, EthernetFrame, EthernetRepr, FlowKey, L2Info, VlanTag};
use vxspan_core::{Engine, Plan, RxFrame, Sink, TxDrop, TxFrame};

/// The wire layer: Ethernet, tag stacks, flow keys, VLAN edits, and etherparse's IPv4 / IPv6 /
/// extension header / TCP / UDP / ICMP slicing of the same bytes.
pub fn wire(data: &[u8]) {
    let _ = vxspan_core::wire::etherparse::SlicedPacket::from_ethernet(data);
    let _ = vxspan_core::wire::etherparse::LaxSlicedPacket::from_ethernet(data);
    let _ = vxspan_core::wire::etherparse::LaxIpSlice::from_slice(data);
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = EthernetRepr::parse(&f);
        let _ = f.payload();
    }
    if let Ok(l2) = L2Info::parse(data) {
        let key = FlowKey::extract(data, &l2);
        assert_eq!(key.symmetric(), key.symmetric().symmetric());
        let mut out = Vec::new();
        push_tag(data, VlanTag::new(EtherType::QinQ, 1, true, 77), &mut out)
            .expect("parsed frames take a tag");
        // A frame already at the deepest accepted stack cannot take one more and still parse.
        if usize::from(l2.n_tags) < vxspan_core::wire::vlan::MAX_TAGS {
            let mut back = Vec::new();
            assert!(pop_tag(&out, &mut back).expect("pushed frame parses"));
            assert_eq!(back, data);
        }
        out.clear();
        set_outer_vid(data, 5, &mut out).expect("parsed frames take a VID");
        assert_eq!(L2Info::parse(&out).map(|l| l.outer_vid()), Ok(5));
    }
    let mut out = Vec::new();
    let _ = vxspan_core::wire::ethernet::synthesize_for_ip(data, &mut out);
}

/// The cBPF validator and interpreter: the first bytes are a program (8 bytes per
/// instruction, count in the first byte), the rest is the packet.
pub fn bpf(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 64) + 1;
    let code_len = (n * 8).min(rest.len() / 8 * 8);
    let (code, pkt) = rest.split_at(code_len);
    let insns: Vec<BpfInsn> = code
        .chunks_exact(8)
        .map(|c| {
            BpfInsn::new(
                u16::from_le_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    if let Ok(p) = BpfProgram::new(insns) {
        let _ = p.run(pkt, pkt.len() as u32);
    }
}

/// The pcap / pcapng reader.
pub fn pcap(data: &[u8]) {
    if let Ok(mut r) = vxspan_io::pcap::Reader::new(data) {
        let mut buf = Vec::new();
        for _ in 0..10_000 {
            match r.next_into(&mut buf) {
                Ok(Some(rec)) => assert!(rec.caplen <= vxspan_io::pcap::MAX_RECORD),
                _ => break,
            }
            buf.clear();
        }
    }
}

/// The configuration loader, both syntaxes; a configuration that loads must also compile
/// (filters aside) and describe itself.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for syntax in [vxspan_config::Syntax::Json, vxspan_config::Syntax::Toml] {
        if let Ok(cfg) = vxspan_config::parse(text, syntax, Path::new("fuzz")) {
            if let Ok(plan) = Plan::compile(&cfg, &NoFilters) {
                let _ = plan.describe(&cfg);
                kernel_tables(&plan);
            }
        }
    }
}

/// The kernel tier's placement of a fuzzed plan: every interface gets an index, and the
/// tables must stay within what the XDP program can address.
fn kernel_tables(plan: &Plan) {
    use vxspan_xdp::tables::{Action, Tables, BALSETS, FANSETS, MAX_FAN, NVID};
    let Ok(t) = Tables::build(plan, &|name| Some(1 + name.len() as u32), false) else {
        return;
    };
    assert!(t.fansets.len() <= FANSETS && t.balsets.len() <= BALSETS);
    for set in &t.fansets {
        assert!(set.len() > 1 && set.len() <= MAX_FAN);
    }
    for (inp, ti) in plan.inputs.iter().zip(&t.inputs) {
        assert_eq!(ti.placement.len(), inp.groups.len());
        assert!(ti.actions.len() <= NVID);
        for (vid, a) in &ti.actions {
            match a {
                Action::Redirect(o) => assert!((*o as usize) < plan.outputs.len()),
                Action::Broadcast(s) => assert!((*s as usize) < t.fansets.len()),
                Action::Balance(s) => {
                    let set = &t.balsets[*s as usize];
                    assert!(!set.is_empty() && set.len() <= MAX_FAN);
                    assert!(set.iter().all(|c| c.output < plan.outputs.len()));
                }
                Action::Userspace => {}
                Action::Drop => panic!("drop entries are not stored (vid {vid})"),
            }
        }
    }
    let _ = (&t, vxspan_xdp::Tables::counters(plan, &Default::default()));
}

struct NoFilters;

impl vxspan_core::FilterCompiler for NoFilters {
    fn compile(&self, _: &str) -> Result<Vec<BpfInsn>, String> {
        Ok(vec![BpfInsn::new(0x06, 0, 0, 65535)])
    }
}

struct Discard;

impl Sink for Discard {
    fn transmit(&mut self, _: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        if f.data.len() % 7 == 3 {
            Err(TxDrop::QueueFull)
        } else {
            Ok(())
        }
    }
}

/// The decap target's sink: like [`Discard`], and every copy for output 0 that is the
/// reassembled datagram of the fragment just pushed (same IPv4 source, destination, protocol and
/// identification, no longer a fragment) must have the IP header reassembly rewrote right: its
/// total length is the datagram's and its checksum verifies.
struct Reassembled<'a> {
    input: &'a [u8],
}

impl Sink for Reassembled<'_> {
    fn transmit(&mut self, o: usize, f: TxFrame<'_>) -> Result<(), TxDrop> {
        if o == 0 {
            check_reassembled(self.input, f.data);
        }
        Discard.transmit(o, f)
    }
}

/// (source, destination, protocol, identification) of a frame's IPv4 header, whether it is a
/// fragment, and where it starts.
fn v4_identity(frame: &[u8]) -> Option<([u8; 11], bool, usize)> {
    let l2 = L2Info::parse(frame).ok()?;
    let ip = frame.get(l2.l3_offset..)?;
    if l2.ethertype != EtherType::Ipv4 || ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let mut id = [0u8; 11];
    id[..8].copy_from_slice(&ip[12..20]);
    id[8] = ip[9];
    id[9..].copy_from_slice(&ip[4..6]);
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    Some((id, frag, l2.l3_offset))
}

fn check_reassembled(input: &[u8], out: &[u8]) {
    let (Some((a, true, _)), Some((b, false, l3))) = (v4_identity(input), v4_identity(out)) else {
        return;
    };
    if a != b {
        return;
    }
    let ip = &out[l3..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len(), "reassembled datagram's total length");
    assert!(ihl >= 20 && ihl <= ip.len(), "reassembled header length");
    assert_eq!(
        vxspan_core::reasm::checksum(&ip[..ihl]),
        0,
        "reassembled checksum"
    );
}

const ENGINE_CONFIG: &str = r#"
[inputs.a]
interface = "e1"
[outputs.plain]
interface = "e2"
[outputs.push]
interface = "e3"
vlan = { push = 7 }
mtu = 1000
[outputs.pop]
interface = "e4"
vlan = { pop = true }
truncate = 40
[outputs.set]
interface = "e5"
vlan = { set = 9 }
[[rules]]
from = "a"
vlan = ["none", "1-100"]
to = ["plain", "push"]
[[rules]]
from = "a"
filter = "udp or (vlan and tcp)"
to = ["pop", "set"]
sample = { one_in = 3, mode = "flow" }
"#;

/// The whole engine on arbitrary frames (split on a length prefix): counters must add up.
pub fn engine(data: &[u8]) {
    static PLAN: OnceLock<Arc<Plan>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let cfg = vxspan_config::parse(
            ENGINE_CONFIG,
            vxspan_config::Syntax::Toml,
            Path::new("fuzz"),
        )
        .expect("valid");
        Arc::new(Plan::compile(&cfg, &vxspan_io::filter::Libpcap).expect("compiles"))
    });
    let mut e = Engine::new(plan.clone());
    let mut rest = data;
    let mut n = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let take = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(take);
        e.process(
            0,
            RxFrame {
                data: frame,
                wire_len: frame.len() as u32,
                ts: n,
            },
            &mut Discard,
        );
        n += 1;
        rest = tail;
    }
    let p = &e.counters().ports[0];
    assert_eq!(p.rx_packets, n);
    assert_eq!(p.rx_packets, p.forwarded_packets + p.dropped_packets);
    assert_eq!(p.dropped_packets, p.drop_reasons.iter().sum::<u64>());
}

/// Every tunnel header parser on the same bytes: views, reprs and, where parsing succeeds,
/// emit-then-parse giving the same repr.
pub fn tunnel_wire(data: &[u8]) {
    use vxspan_core::wire::{erspan, geneve, gre, mpls, vxlan};
    if let Ok(p) = gre::GrePacket::new_checked(data) {
        let _ = (p.payload(), p.verify_checksum());
        if let Ok(r) = gre::GreRepr::parse(&p) {
            let mut buf = vec![0u8; r.header_len()];
            if r.emit(&mut gre::GrePacket::new_unchecked(&mut buf[..]))
                .is_ok()
                && !r.checksum_present
            {
                assert_eq!(
                    gre::GreRepr::parse(&gre::GrePacket::new_checked(&buf[..]).expect("emitted")),
                    Ok(r)
                );
            }
        }
    }
    if let Ok(p) = erspan::ErspanIIPacket::new_checked(data) {
        if let Ok(r) = erspan::ErspanIIRepr::parse(&p) {
            let mut buf = [0u8; erspan::TYPE_II_HEADER_LEN];
            r.emit(&mut erspan::ErspanIIPacket::new_unchecked(&mut buf[..]))
                .expect("parsed reprs emit");
            assert_eq!(
                erspan::ErspanIIRepr::parse(
                    &erspan::ErspanIIPacket::new_checked(&buf[..]).expect("emitted")
                ),
                Ok(r)
            );
        }
    }
    if let Ok(p) = erspan::ErspanIIIPacket::new_checked(data) {
        let _ = (p.platform(), p.payload());
        if let Ok(r) = erspan::ErspanIIIRepr::parse(&p) {
            let mut buf = vec![0u8; r.header_len()];
            r.emit(&mut erspan::ErspanIIIPacket::new_unchecked(&mut buf[..]))
                .expect("parsed reprs emit");
            assert_eq!(
                erspan::ErspanIIIRepr::parse(
                    &erspan::ErspanIIIPacket::new_checked(&buf[..]).expect("emitted")
                ),
                Ok(r)
            );
        }
    }
    if let Ok(p) = vxlan::VxlanPacket::new_checked(data) {
        let _ = vxlan::VxlanRepr::parse(&p);
    }
    if let Ok(p) = vxlan::VxlanGpePacket::new_checked(data) {
        let _ = vxlan::VxlanGpeRepr::parse(&p);
    }
    if let Ok(p) = geneve::GenevePacket::new_checked(data) {
        for o in p.options().take(64) {
            let _ = o;
        }
        let _ = geneve::GeneveRepr::parse(&p);
    }
    let _ = mpls::MplsStack::parse(data);
}

const DECAP_CONFIG: &str = r#"
[inputs.a]
interface = "e1"
decap = ["vxlan", "geneve", "gre", "erspan", "mpls"]
decap_depth = "all"
decap_ports = { vxlan = [8472] }
reassembly = { timeout_ms = 5, max_datagrams = 8, max_bytes = 70000 }
[outputs.plain]
interface = "e2"
[outputs.back]
erspan = { version = 3, remote = "2001:db8::1", session = 1 }
mtu = 300
oversize = "truncate"
[[rules]]
from = "a"
to = ["plain", "back"]
[[rules]]
from = "a"
vni = [1, 2, 3]
to = "plain"
"#;

/// How the decap target frames its input: each frame is preceded by a little-endian `u16`
/// whose low 14 bits are the frame's length ([`FRAME_TO_END`]: the rest of the input) and whose
/// top two bits edit the frame's outer tag stack before it is offered ([`TagOp`]). The edit is
/// what makes the target structure-aware: one bit flip turns a seed's untagged fragment into a
/// priority-tagged one, the shape of the two-frame crash of issue #15, which byte mutations of
/// the frame itself reach only by luck (an inserted 4-byte tag at offset 12 and nothing else).
pub const FRAME_TO_END: u16 = 0x3fff;

/// The edit the top two bits of a decap frame's prefix ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOp {
    /// The frame as it is.
    Keep = 0,
    /// Push an outer 802.1Q tag with VID 0 (priority tagged).
    PushPriority = 1,
    /// Push an outer 802.1Q tag with VID 10.
    PushVlan = 2,
    /// Pop the outermost tag, if the frame has one.
    Pop = 3,
}

/// The prefix of one decap frame: `len` (at most [`FRAME_TO_END`]) and its tag edit.
pub fn decap_prefix(len: u16, op: TagOp) -> [u8; 2] {
    (len.min(FRAME_TO_END) | (op as u16) << 14).to_le_bytes()
}

/// `frame` with its tag stack edited by `op`, into `buf`.
fn edit_tags<'a>(frame: &'a [u8], op: TagOp, buf: &'a mut Vec<u8>) -> &'a [u8] {
    let tagged = frame.len() >= 18 && matches!(frame[12..14], [0x81, 0x00] | [0x88, 0xa8]);
    match op {
        TagOp::Keep => frame,
        TagOp::Pop if !tagged => frame,
        TagOp::Pop => {
            buf.clear();
            buf.extend_from_slice(&frame[..12]);
            buf.extend_from_slice(&frame[16..]);
            buf
        }
        TagOp::PushPriority | TagOp::PushVlan if frame.len() < 12 => frame,
        TagOp::PushPriority | TagOp::PushVlan => {
            let vid: u16 = if op == TagOp::PushVlan { 10 } else { 0 };
            buf.clear();
            buf.extend_from_slice(&frame[..12]);
            buf.extend_from_slice(&[0x81, 0x00]);
            buf.extend_from_slice(&vid.to_be_bytes());
            buf.extend_from_slice(&frame[12..]);
            buf
        }
    }
}

/// Tunnel termination, outer IP reassembly and re-encapsulation on arbitrary frames (framed as
/// [`FRAME_TO_END`] says, each frame one millisecond after the previous): the accounting must
/// hold, nothing may panic, and every reassembled datagram must have a right IP header.
pub fn decap(data: &[u8]) {
    static PLAN: OnceLock<Arc<Plan>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let cfg =
            vxspan_config::parse(DECAP_CONFIG, vxspan_config::Syntax::Toml, Path::new("fuzz"))
                .expect("valid");
        Arc::new(Plan::compile(&cfg, &vxspan_io::filter::Libpcap).expect("compiles"))
    });
    let mut e = Engine::new(plan.clone());
    let mut rest = data;
    let mut n = 0u64;
    let mut buf = Vec::new();
    while rest.len() >= 2 {
        let prefix = u16::from_le_bytes([rest[0], rest[1]]);
        let op = [
            TagOp::Keep,
            TagOp::PushPriority,
            TagOp::PushVlan,
            TagOp::Pop,
        ][usize::from(prefix >> 14)];
        let len = match prefix & FRAME_TO_END {
            FRAME_TO_END => rest.len() - 2,
            l => usize::from(l).min(rest.len() - 2),
        };
        let (frame, tail) = rest[2..].split_at(len);
        let frame = edit_tags(frame, op, &mut buf);
        e.process(
            0,
            RxFrame {
                data: frame,
                wire_len: frame.len() as u32,
                ts: n * 1_000_000,
            },
            &mut Reassembled { input: frame },
        );
        n += 1;
        rest = tail;
    }
    let p = &e.counters().ports[0];
    assert_eq!(p.rx_packets, n);
    assert_eq!(p.rx_packets, p.forwarded_packets + p.dropped_packets);
    assert_eq!(p.dropped_packets, p.drop_reasons.iter().sum::<u64>());
    assert_eq!(
        p.drop_reasons[vxspan_core::RxDrop::InternalError as usize],
        0,
        "a frame made the engine panic"
    );
    // Whatever ids the frames carry, the report stays small: 1 input, its named ids and at most
    // 64 others of each kind plus `other`.
    let report = serde_json::to_vec(&e.report()).expect("serialises");
    assert!(report.len() < 64 << 10, "report of {} bytes", report.len());
}

/// Outer IP reassembly against the datagram that was cut: the input chooses a UDP datagram
/// (IPv4 or IPv6, up to 4 KiB), how it is cut (non-overlapping fragments, multiples of 8
/// bytes), which fragments are sent twice, the order, and unrelated fragments of other
/// datagrams interleaved. The datagram must complete exactly when its last missing fragment
/// arrives, equal to the original (fragmentation fields cleared), and nothing may be refused.
pub fn reasm(data: &[u8]) {
    use vxspan_core::reasm::{Outcome, Reassembler};
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let v6 = next() & 1 == 1;
    let len = (usize::from(next()) << 4 | usize::from(next() >> 4)) + 1; // 1 to 4096
    let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
    let whole = udp_datagram(v6, &payload);
    let l3 = 14;
    let hdr = if v6 { 40 } else { 20 };
    let body = &whole[l3 + hdr..];
    // Cut points: each fragment 8 to 2,048 bytes (a multiple of 8), the last what is left.
    let mut cuts = vec![0usize];
    while *cuts.last().expect("non-empty") < body.len() {
        let step = 8 * (1 + usize::from(next() % 64)) * (1 + usize::from(next() % 4));
        cuts.push((cuts.last().expect("non-empty") + step).min(body.len()));
    }
    let frags: Vec<Vec<u8>> = cuts
        .windows(2)
        .map(|w| fragment(&whole, v6, w[0], w[1], w[1] < body.len()))
        .collect();
    if frags.len() > vxspan_core::reasm::MAX_FRAGMENTS || frags.len() < 2 {
        return;
    }
    // Order: a shuffle by the input, with some fragments twice and noise in between.
    let mut order: Vec<usize> = (0..frags.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, usize::from(next()) % (i + 1));
    }
    let cfg = vxspan_config::Reassembly {
        timeout_ms: 1000,
        max_bytes: 1 << 20,
        max_datagrams: 16,
    };
    let mut r = Reassembler::new(cfg, vxspan_core::hashkey::HashKey::replay());
    let mut seen = vec![false; frags.len()];
    let mut completed = 0;
    for &i in &order {
        let copies = if next() % 4 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            if next() % 3 == 0 {
                let mut noise = frags[usize::from(next()) % frags.len()].clone();
                noise[l3 + if v6 { 44 } else { 5 }] ^= 0x80; // another identification
                let _ = r.push(&noise, l3, v6, 0);
            }
            let o = r.push(&frags[i], l3, v6, 0);
            let was_new = !seen[i];
            seen[i] = true;
            let all = seen.iter().all(|s| *s);
            match o {
                Outcome::Complete => {
                    assert!(was_new && all, "completed early");
                    assert!(
                        r.frame() == expected_whole(&whole, v6),
                        "reassembled differs"
                    );
                    completed += 1;
                }
                Outcome::Held => assert!(!(was_new && all) || completed > 0, "not completed"),
                other => panic!("fragment {i} refused: {other:?} ({:?})", r.stats),
            }
        }
        if completed > 0 {
            break;
        }
    }
    assert_eq!(completed, 1);
    assert_eq!(r.stats.overlaps + r.stats.too_big, 0);
}

fn udp_datagram(v6: bool, payload: &[u8]) -> Vec<u8> {
    use vxspan_core::wire::etherparse::PacketBuilder;
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut f = Vec::new();
    let b = if v6 {
        eth.ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
    } else {
        eth.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
    };
    b.udp(1000, 9999).write(&mut f, payload).expect("fits");
    f
}

/// The fragment of `whole` carrying bytes `start..end` of its IP payload.
fn fragment(whole: &[u8], v6: bool, start: usize, end: usize, more: bool) -> Vec<u8> {
    let l3 = 14;
    if v6 {
        let mut f = whole[..l3 + 40].to_vec();
        f[l3 + 6] = 44;
        let off = ((start / 8) as u16) << 3 | u16::from(more);
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&off.to_be_bytes());
        f.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        f.extend_from_slice(&whole[l3 + 40 + start..l3 + 40 + end]);
        let plen = (8 + end - start) as u16;
        f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        f
    } else {
        let mut f = whole[..l3 + 20].to_vec();
        f.extend_from_slice(&whole[l3 + 20 + start..l3 + 20 + end]);
        let total = (20 + end - start) as u16;
        f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        f[l3 + 4..l3 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
        let off = (start / 8) as u16 | if more { 0x2000 } else { 0 };
        f[l3 + 6..l3 + 8].copy_from_slice(&off.to_be_bytes());
        f
    }
}

/// What reassembly must give back: the datagram with the identification the fragments carry,
/// no DF, and the IPv4 checksum recomputed.
fn expected_whole(whole: &[u8], v6: bool) -> Vec<u8> {
    let mut e = whole.to_vec();
    if !v6 {
        e[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
        e[20..22].copy_from_slice(&[0, 0]);
        e[24..26].copy_from_slice(&[0, 0]);
        let sum = vxspan_core::reasm::checksum(&e[14..34]);
        e[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    e
}

/// The SNMP sub-agent's answer to a PDU from the master: any bytes give an error, nothing, or
/// a Response that parses back.
pub fn agentx(data: &[u8]) {
    static VIEW: OnceLock<crate::snmp::View> = OnceLock::new();
    let view = VIEW.get_or_init(crate::snmp::example_view);
    // The master's replies (to Open, Register and Notify) are read through response_error.
    let _ = crate::snmp::response_error(data);
    if let Ok(crate::snmp::Reply::Send(bytes)) =
        crate::snmp::respond(view, data, std::time::Duration::from_secs(1))
    {
        let r = agentx::pdu::Response::from_bytes(&bytes).expect("our Response parses");
        if let Some(vb) = r.vb {
            assert!(vb.0.len() <= 1_000_000);
        }
    }
}

/// The control protocol's request line and the metrics endpoint's request head, from any
/// bytes: a request that parses prints back to a line that parses to the same request; a head
/// that parses has a method without spaces and a path starting with `/`, without its query;
/// the end of a head is never past the bytes.
pub fn control_requests(data: &[u8]) {
    use crate::control::proto::Request;
    use crate::metrics::http::{head_end, parse_head};
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.contains('\n') {
            if let Ok(r) = Request::parse(text) {
                let line = r.line();
                assert!(line.len() <= text.len().max(7), "{line:?} from {text:?}");
                assert_eq!(Request::parse(&line), Ok(r), "{line:?}");
            }
        }
    }
    if let Some(end) = head_end(data) {
        assert!(end <= data.len());
    }
    if let Some(req) = parse_head(data) {
        assert!(!req.method.is_empty() && !req.method.contains(' '));
        assert!(req.path.starts_with('/') && !req.path.contains('?') && !req.path.contains(' '));
    }
}
