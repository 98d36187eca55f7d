//! Tunnel origination: ERSPAN II / III (over GRE), VXLAN and GRE transparent Ethernet bridging,
//! over IPv4 or IPv6, as complete frames (outer Ethernet, IP, GRE or UDP, tunnel header, the
//! mirrored frame).
//!
//! Fields vxspan sets:
//! - outer IP: DSCP from the output (so mirror traffic can be queued below production, seed 002),
//!   TTL / hop limit, IPv4 with DF and identification 0 (RFC 6864: the datagrams are atomic),
//!   IPv6 flow label from the inner flow hash (RFC 6438);
//! - ERSPAN II: GRE with the S bit and a sequence number per output, incremented per copy;
//!   version 1, VLAN and COS from the mirrored frame's outer tag (0 when untagged), En = 3 (tag
//!   preserved in the frame) for tagged frames and 0 otherwise, the session id, index 0; T when
//!   the mirrored frame is not complete (cut by `truncate`, by the capture, or to fit the MTU);
//! - ERSPAN III: the same GRE (protocol 0x22EB), version 2, the same VLAN / COS / T / session,
//!   frame type 0 (Ethernet), ingress, granularity 01 (100 ns), and a timestamp counting 100 ns
//!   units of the frame's receive time (nanoseconds since the Unix epoch / 100, modulo 2^32: the
//!   clock is the receive timestamp the datapath gives each frame, the capture's in replay);
//! - VXLAN (RFC 7348): I flag and VNI, UDP source port 49152 + (flow hash mod 16384) so ECMP
//!   spreads flows (the keyed flow hash of the copy as sent, which the XDP program computes too), UDP checksum 0 (IPv6 too: RFC 6935, the receiver needs `udp6zerocsumrx`);
//! - GRE TEB: protocol 0x6558, the key if configured.

use crate::counters::TxDrop;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use vxspan_config::{Encap, Outer, Oversize};
use vxspan_wire::erspan::{ErspanIIIPacket, ErspanIIIRepr, ErspanIIPacket, ErspanIIRepr};
use vxspan_wire::etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, UdpHeader};
use vxspan_wire::gre::{GrePacket, GreRepr};
use vxspan_wire::vxlan::{VxlanPacket, VxlanRepr};
use vxspan_wire::L2Info;

/// Where an output's ERSPAN sequence numbers come from: one counter that every worker, and the
/// kernel tier when it originates the same output, takes its numbers from, each number once.
/// An `AtomicU32` of our own by default; the kernel tier's map shared with the XDP program when
/// one runs (vxspan-xdp). Numbers wrap at 2^32, as the GRE sequence field does.
pub trait SequenceCell: Send + Sync + std::fmt::Debug {
    /// Takes the next number.
    fn take(&self) -> u32;
    /// The next number, not taken.
    fn peek(&self) -> u32;
    /// Moves the next number up to `next` if it is below (a reload continuing a sequence).
    fn raise(&self, next: u32);
}

impl SequenceCell for AtomicU32 {
    fn take(&self) -> u32 {
        self.fetch_add(1, Ordering::Relaxed)
    }
    fn peek(&self) -> u32 {
        self.load(Ordering::Relaxed)
    }
    fn raise(&self, next: u32) {
        self.fetch_max(next, Ordering::Relaxed);
    }
}

/// A 64-bit counter that every worker, and the kernel tier when it runs the same rule, takes
/// numbers from: `sample = N` keeps the frames that take a multiple of N, so exactly 1 in N of
/// a rule's frames across CPUs and tiers. An `AtomicU64` by default; the kernel tier's mapped
/// counter when one runs (vxspan-xdp).
pub trait SharedCount: Send + Sync + std::fmt::Debug {
    /// Takes the next number.
    fn take(&self) -> u64;
}

impl SharedCount for std::sync::atomic::AtomicU64 {
    fn take(&self) -> u64 {
        self.fetch_add(1, Ordering::Relaxed)
    }
}

/// Per-output origination state. A clone shares it: every worker sending on one output numbers
/// its copies from the same sequence.
#[derive(Debug, Clone)]
pub struct TunnelState {
    /// The next GRE sequence number (ERSPAN).
    pub sequence: Arc<dyn SequenceCell>,
}

impl Default for TunnelState {
    fn default() -> Self {
        TunnelState {
            sequence: Arc::new(AtomicU32::new(0)),
        }
    }
}

fn tunnel_header_len(e: &Encap) -> usize {
    match e {
        Encap::Erspan { version: 2, .. } => 8 + vxspan_wire::erspan::TYPE_II_HEADER_LEN,
        Encap::Erspan { .. } => 8 + vxspan_wire::erspan::TYPE_III_HEADER_LEN,
        Encap::Vxlan { .. } => 8 + vxspan_wire::vxlan::HEADER_LEN,
        Encap::Geneve { .. } => 8 + vxspan_wire::geneve::HEADER_LEN,
        Encap::Gre { key, .. } => 4 + if key.is_some() { 4 } else { 0 },
    }
}

fn ip_header_len(o: &Outer) -> usize {
    if o.remote.is_ipv4() {
        20
    } else {
        40
    }
}

/// Bytes vxspan adds in front of a mirrored frame: outer Ethernet, IP and tunnel headers.
pub fn overhead(e: &Encap) -> usize {
    14 + ip_header_len(e.outer()) + tunnel_header_len(e)
}

/// What a kernel socket sending an encapsulated copy needs besides the bytes: the socket builds
/// the outer IP (and UDP) header itself, so it sends `data[payload_at..]`, and a UDP tunnel
/// chooses its socket (its source port) by `source_port`. Offline outputs write the whole frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encapsulated {
    /// Where the socket's payload starts: the GRE header (raw IP socket) or the VXLAN header
    /// (UDP socket), after the outer Ethernet, IP and UDP headers.
    pub payload_at: usize,
    /// The outer UDP source port (VXLAN); 0 for GRE.
    pub source_port: u16,
}

/// Appends the encapsulated copy of `inner` to `out`. `inner_wire_len` is the mirrored frame's
/// length on the wire (more than `inner.len()` when it was cut), `ts` its receive time, `flow`
/// its flow hash. `mtu` bounds the outer IP packet; `oversize` says what happens above it.
#[allow(clippy::too_many_arguments)]
pub fn encapsulate(
    e: &Encap,
    mtu: Option<u32>,
    oversize: Oversize,
    inner: &[u8],
    inner_wire_len: u32,
    ts: u64,
    flow: u64,
    state: &TunnelState,
    out: &mut Vec<u8>,
) -> Result<Encapsulated, TxDrop> {
    let o = e.outer();
    let ip_len = ip_header_len(o);
    let tun_len = tunnel_header_len(e);
    let mut inner = inner;
    // The outer datagram must fit its 16-bit length field (IPv4 counts its header, IPv6 not),
    // whatever the MTU: a reassembled 64 KiB datagram cannot be carried whole.
    let ip_room = 65_535 - if o.remote.is_ipv4() { ip_len } else { 0 } - tun_len;
    let mtu_room = mtu.map_or(usize::MAX, |m| {
        (m as usize).saturating_sub(ip_len + tun_len)
    });
    let room = ip_room.min(mtu_room);
    if inner.len() > room {
        match oversize {
            Oversize::Drop => return Err(TxDrop::MtuExceeded),
            Oversize::Truncate if room >= 14 => inner = &inner[..room],
            Oversize::Truncate => return Err(TxDrop::MtuExceeded),
        }
    }
    let truncated = (inner.len() as u32) < inner_wire_len;
    let ip_payload = tun_len + inner.len();
    let start = out.len();
    out.reserve(14 + ip_len + ip_payload);

    // Outer Ethernet.
    out.extend_from_slice(&o.dst_mac);
    out.extend_from_slice(&o.src_mac);
    let proto = match e {
        Encap::Vxlan { .. } | Encap::Geneve { .. } => IpNumber::UDP,
        Encap::Erspan { .. } | Encap::Gre { .. } => IpNumber::GRE,
    };
    // Outer IP.
    match o.remote {
        std::net::IpAddr::V4(dst) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let src = match o.source {
                Some(std::net::IpAddr::V4(s)) => s.octets(),
                _ => [0; 4],
            };
            let len = u16::try_from(ip_payload).map_err(|_| TxDrop::MtuExceeded)?;
            let mut h = Ipv4Header::new(len, o.ttl, proto, src, dst.octets())
                .map_err(|_| TxDrop::MtuExceeded)?;
            h.dscp = o.dscp.try_into().map_err(|_| TxDrop::TxError)?;
            h.dont_fragment = true;
            h.header_checksum = h.calc_header_checksum();
            out.extend_from_slice(&h.to_bytes());
        }
        std::net::IpAddr::V6(dst) => {
            out.extend_from_slice(&[0x86, 0xdd]);
            let src = match o.source {
                Some(std::net::IpAddr::V6(s)) => s.octets(),
                _ => [0; 16],
            };
            let h = Ipv6Header {
                traffic_class: o.dscp << 2,
                flow_label: Ipv6FlowLabel::try_new((flow & 0xf_ffff) as u32)
                    .map_err(|_| TxDrop::TxError)?,
                payload_length: ip_payload.try_into().map_err(|_| TxDrop::MtuExceeded)?,
                next_header: proto,
                hop_limit: o.ttl,
                source: src,
                destination: dst.octets(),
            };
            out.extend_from_slice(&h.to_bytes());
        }
    }
    // Tunnel headers, then the frame.
    let hdr = out.len();
    let mut meta = Encapsulated {
        payload_at: hdr - start,
        source_port: 0,
    };
    out.resize(hdr + tun_len, 0);
    out.extend_from_slice(inner);
    let (vlan, cos) = L2Info::parse(inner)
        .ok()
        .and_then(|l| l.outer)
        .map_or((0, 0), |t| (t.vid(), t.pcp()));
    let result = match e {
        Encap::Erspan {
            version, session, ..
        } => {
            let seq = state.sequence.take();
            let protocol = if *version == 2 {
                vxspan_wire::gre::protocol::ERSPAN_I_II
            } else {
                vxspan_wire::gre::protocol::ERSPAN_III
            };
            let gre = GreRepr {
                checksum_present: false,
                key: None,
                sequence: Some(seq),
                ack: None,
                version: 0,
                protocol,
            };
            let mut g = GrePacket::new_unchecked(&mut out[hdr..]);
            gre.emit(&mut g).and_then(|_| {
                let rest = &mut out[hdr + 8..];
                if *version == 2 {
                    let r = ErspanIIRepr {
                        vlan,
                        cos,
                        encap: if vlan != 0 || cos != 0 { 3 } else { 0 },
                        truncated,
                        session_id: *session,
                        index: 0,
                    };
                    r.emit(&mut ErspanIIPacket::new_unchecked(rest))
                } else {
                    let r = ErspanIIIRepr {
                        vlan,
                        cos,
                        bso: 0,
                        truncated,
                        session_id: *session,
                        timestamp: (ts / 100) as u32,
                        sgt: 0,
                        p: false,
                        frame_type: 0,
                        hw_id: 0,
                        direction: false,
                        granularity: 1,
                        platform: None,
                    };
                    r.emit(&mut ErspanIIIPacket::new_unchecked(rest))
                }
            })
        }
        Encap::Vxlan { vni, port, .. } | Encap::Geneve { vni, port, .. } => {
            let sport = 49152 + (flow % 16384) as u16;
            meta = Encapsulated {
                payload_at: hdr - start + 8,
                source_port: sport,
            };
            let udp = UdpHeader {
                source_port: sport,
                destination_port: *port,
                length: ip_payload as u16,
                checksum: 0,
            };
            out[hdr..hdr + 8].copy_from_slice(&udp.to_bytes());
            let tun = &mut out[hdr + 8..];
            match e {
                Encap::Geneve { .. } => vxspan_wire::geneve::GeneveRepr {
                    oam: false,
                    critical: false,
                    protocol: vxspan_wire::gre::protocol::TEB,
                    vni: *vni,
                    options_len: 0,
                }
                .emit(
                    &mut vxspan_wire::geneve::GenevePacket::new_unchecked(tun),
                    &[],
                ),
                _ => VxlanRepr::new(*vni).emit(&mut VxlanPacket::new_unchecked(tun)),
            }
        }
        Encap::Gre { key, .. } => {
            let gre = GreRepr {
                checksum_present: false,
                key: *key,
                sequence: None,
                ack: None,
                version: 0,
                protocol: vxspan_wire::gre::protocol::TEB,
            };
            gre.emit(&mut GrePacket::new_unchecked(&mut out[hdr..]))
        }
    };
    if result.is_err() {
        // The configuration was validated, so this is a bug; the copy is not sent half-built.
        out.truncate(start);
        return Err(TxDrop::TxError);
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outer(remote: &str) -> Outer {
        Outer {
            remote: remote.parse().unwrap(),
            source: None,
            dscp: 0,
            ttl: 64,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
        }
    }

    fn encap(e: &Encap, flow: u64) -> (Vec<u8>, Encapsulated) {
        let inner = [0x11u8; 60];
        let mut out = Vec::new();
        let st = TunnelState::default();
        let m = encapsulate(e, None, Oversize::Drop, &inner, 60, 0, flow, &st, &mut out).unwrap();
        assert_eq!(&out[out.len() - 60..], &inner[..]);
        (out, m)
    }

    /// What a kernel socket sends starts where the metadata says: the GRE header after the
    /// outer IP header (raw socket), the VXLAN header after the UDP header (UDP socket, whose
    /// source port is the one the frame carries); the socket never parses the frame.
    #[test]
    fn the_metadata_locates_the_socket_payload_and_the_source_port() {
        for remote in ["198.18.0.9", "2001:db8::9"] {
            let ip = if remote.contains(':') { 40 } else { 20 };
            let gre = Encap::Gre {
                key: Some(7),
                outer: outer(remote),
            };
            let (f, m) = encap(&gre, 1);
            assert_eq!(
                m,
                Encapsulated {
                    payload_at: 14 + ip,
                    source_port: 0
                }
            );
            assert_eq!(&f[m.payload_at + 2..m.payload_at + 4], &[0x65, 0x58]);

            let erspan = Encap::Erspan {
                version: 3,
                session: 5,
                outer: outer(remote),
            };
            let (f, m) = encap(&erspan, 1);
            assert_eq!(m.payload_at, 14 + ip);
            assert_eq!(&f[m.payload_at + 2..m.payload_at + 4], &[0x22, 0xeb]);

            let vxlan = Encap::Vxlan {
                vni: 42,
                port: 4789,
                outer: outer(remote),
            };
            for flow in [0u64, 12_345, u64::MAX] {
                let (f, m) = encap(&vxlan, flow);
                assert_eq!(m.payload_at, 14 + ip + 8);
                let udp = 14 + ip;
                assert_eq!(u16::from_be_bytes([f[udp], f[udp + 1]]), m.source_port);
                assert!(m.source_port >= 49152);
                assert_eq!(f[m.payload_at], 0x08, "VXLAN I flag");
                assert_eq!(&f[m.payload_at + 4..m.payload_at + 7], &[0, 0, 42]);
            }
        }
    }
}
