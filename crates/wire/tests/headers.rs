//! Fixture and round-trip tests for the headers vxspan takes from etherparse: parse a real
//! packet's bytes, check the fields, write the header back, get the same bytes.

use vxspan_wire::etherparse::{
    Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header, Ipv6FragmentHeader,
    Ipv6Header, Ipv6RawExtHeader, LaxSlicedPacket, NetSlice, SlicedPacket, TcpHeader,
    TransportSlice, UdpHeader,
};
use vxspan_wire::{FlowKey, L2Info};

/// IPv4 with a 4-byte option (router alert, RFC 2113), MF set, fragment offset 185 (x8 bytes).
static IPV4_OPTIONS_FRAGMENT: [u8; 24] = [
    0x46, 0x00, 0x00, 0x20, // version 4, IHL 6, total length 32
    0x12, 0x34, 0x20, 0xb9, // id 0x1234, MF, offset 185
    0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled below)
    0xc6, 0x12, 0x00, 0x01, // 198.18.0.1
    0xc6, 0x13, 0x00, 0x02, // 198.19.0.2
    0x94, 0x04, 0x00, 0x00, // router alert
];

fn ipv4_fixture() -> Vec<u8> {
    let mut b = IPV4_OPTIONS_FRAGMENT.to_vec();
    let h = Ipv4Header::from_slice(&b).unwrap().0;
    let sum = h.calc_header_checksum();
    b[10..12].copy_from_slice(&sum.to_be_bytes());
    b
}

#[test]
fn ipv4_options_and_fragments() {
    let bytes = ipv4_fixture();
    let (h, rest) = Ipv4Header::from_slice(&bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(h.ihl(), 6);
    assert_eq!(h.total_len, 32);
    assert_eq!(h.identification, 0x1234);
    assert!(h.more_fragments);
    assert_eq!(h.fragment_offset.value(), 185);
    assert_eq!(h.time_to_live, 64);
    assert_eq!(h.protocol, IpNumber::UDP);
    assert_eq!(h.source, [198, 18, 0, 1]);
    assert_eq!(h.destination, [198, 19, 0, 2]);
    assert_eq!(h.options.as_slice(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let mut out = Vec::new();
    h.write(&mut out).unwrap();
    assert_eq!(out, bytes);
    for n in 0..bytes.len() {
        assert!(Ipv4Header::from_slice(&bytes[..n]).is_err(), "{n}");
    }
}

/// IPv6 + hop-by-hop (PadN) + fragment header + UDP.
fn ipv6_fixture() -> Vec<u8> {
    let mut b = vec![
        0x60, 0x00, 0x00, 0x00, // version 6
        0x00, 0x20, 0x00, 0x40, // payload length 32, next header hop-by-hop, hop limit 64
    ];
    b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop: next = fragment, PadN
    b.extend_from_slice(&[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]); // fragment: next UDP, offset 0, M=1, id
    b.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00]); // UDP 12345 -> 53, len 16
    b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    b
}

#[test]
fn ipv6_extension_headers_and_fragment() {
    let bytes = ipv6_fixture();
    let (h, rest) = Ipv6Header::from_slice(&bytes).unwrap();
    assert_eq!(h.payload_length, 32);
    assert_eq!(h.next_header, IpNumber::IPV6_HEADER_HOP_BY_HOP);
    assert_eq!(h.hop_limit, 64);
    let mut out = Vec::new();
    h.write(&mut out).unwrap();
    assert_eq!(out, bytes[..40]);

    let (hbh, rest) = Ipv6RawExtHeader::from_slice(rest).unwrap();
    assert_eq!(hbh.next_header, IpNumber::IPV6_FRAGMENTATION_HEADER);
    let mut out = Vec::new();
    hbh.write(&mut out).unwrap();
    assert_eq!(out, bytes[40..48]);

    let (frag, rest) = Ipv6FragmentHeader::from_slice(rest).unwrap();
    assert_eq!(frag.next_header, IpNumber::UDP);
    assert!(frag.more_fragments);
    assert_eq!(frag.fragment_offset.value(), 0);
    assert_eq!(frag.identification, 0xdeadbeef);
    let mut out = Vec::new();
    frag.write(&mut out).unwrap();
    assert_eq!(out, bytes[48..56]);

    // A first fragment still carries the UDP header, but the flow key ignores ports of any
    // fragment so that all fragments of a datagram hash alike.
    let (udp, _) = UdpHeader::from_slice(rest).unwrap();
    assert_eq!(
        (udp.source_port, udp.destination_port, udp.length),
        (12345, 53, 16)
    );

    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
    frame.extend_from_slice(&bytes);
    let key = FlowKey::extract(&frame, &L2Info::parse(&frame).unwrap());
    assert_eq!((key.proto, key.src_port, key.dst_port), (17, 0, 0));
    let sliced = LaxSlicedPacket::from_ethernet(&frame).unwrap();
    match &sliced.net {
        Some(vxspan_wire::etherparse::LaxNetSlice::Ipv6(v6)) => assert!(v6.payload().fragmented),
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_round_trip() {
    let bytes = [0x30, 0x39, 0x12, 0xb5, 0x00, 0x0c, 0xab, 0xcd];
    let (h, _) = UdpHeader::from_slice(&bytes).unwrap();
    assert_eq!(
        (h.source_port, h.destination_port, h.length, h.checksum),
        (12345, 4789, 12, 0xabcd)
    );
    assert_eq!(h.to_bytes(), bytes);
    assert!(UdpHeader::from_slice(&bytes[..7]).is_err());
}

#[test]
fn tcp_with_options_round_trip() {
    // SYN from 49152 to 443, seq 1, data offset 8 (MSS 1460, SACK permitted, NOP, NOP... ).
    let bytes = [
        0xc0, 0x00, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x02, 0xfa, 0xf0, 0x12, 0x34, 0,
        0, //
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00,
    ];
    let (h, rest) = TcpHeader::from_slice(&bytes).unwrap();
    assert!(rest.is_empty());
    assert_eq!(
        (h.source_port, h.destination_port, h.sequence_number),
        (49152, 443, 1)
    );
    assert!(h.syn && !h.ack);
    assert_eq!(h.window_size, 0xfaf0);
    assert_eq!(h.header_len(), 32);
    let mut out = Vec::new();
    h.write(&mut out).unwrap();
    assert_eq!(out, bytes);
    for n in 0..bytes.len() {
        assert!(TcpHeader::from_slice(&bytes[..n]).is_err(), "{n}");
    }
}

#[test]
fn icmpv4_and_icmpv6_round_trip() {
    let bytes = [8, 0, 0xf7, 0xfd, 0x00, 0x01, 0x00, 0x01];
    let (h, _) = Icmpv4Header::from_slice(&bytes).unwrap();
    match h.icmp_type {
        Icmpv4Type::EchoRequest(e) => assert_eq!((e.id, e.seq), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.to_bytes().as_slice(), &bytes);

    let bytes6 = [128, 0, 0x12, 0x34, 0x00, 0x07, 0x00, 0x09];
    let (h6, _) = Icmpv6Header::from_slice(&bytes6).unwrap();
    match h6.icmp_type {
        Icmpv6Type::EchoRequest(e) => assert_eq!((e.id, e.seq), (7, 9)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h6.to_bytes().as_slice(), &bytes6);
}

#[test]
fn whole_frame_through_vlans() {
    // 802.1ad 100 / 802.1Q 200 / IPv4 / UDP, built then sliced.
    let mut frame = Vec::new();
    vxspan_wire::etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .double_vlan(100.try_into().unwrap(), 200.try_into().unwrap())
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1000, 2000)
        .write(&mut frame, b"hello")
        .unwrap();
    let l2 = L2Info::parse(&frame).unwrap();
    assert_eq!((l2.n_tags, l2.outer_vid(), l2.l3_offset), (2, 100, 22));
    let s = SlicedPacket::from_ethernet(&frame).unwrap();
    assert!(matches!(s.net, Some(NetSlice::Ipv4(_))));
    match s.transport {
        Some(TransportSlice::Udp(u)) => {
            assert_eq!((u.source_port(), u.destination_port()), (1000, 2000));
            assert_eq!(u.payload(), b"hello");
        }
        other => panic!("{other:?}"),
    }
}
