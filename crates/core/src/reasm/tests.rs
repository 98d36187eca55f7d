//! Reassembly unit tests: the crash cases of issue #15, duplicates, bounds, and random
//! fragmentations against the datagram that was cut.
use super::*;
use vxspan_wire::etherparse::PacketBuilder;

fn udp_frame(payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(1000, 4789)
        .write(&mut f, &payload)
        .unwrap();
    f
}

/// Splits an IPv4 frame into fragments of `size` payload bytes (a multiple of 8).
fn fragment_v4(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
    let l3 = 14;
    let ihl = usize::from(frame[l3] & 0xf) * 4;
    let payload = &frame[l3 + ihl..];
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = frame[..l3 + ihl].to_vec();
            f.extend_from_slice(chunk);
            let total = (ihl + chunk.len()) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            let more = (i + 1) * size < payload.len();
            let off = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
            f[l3 + 6..l3 + 8].copy_from_slice(&off.to_be_bytes());
            f[l3 + 4..l3 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
            f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let sum = checksum(&f[l3..l3 + ihl]);
            f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            f
        })
        .collect()
}

fn cfg() -> Reassembly {
    Reassembly {
        timeout_ms: 100,
        max_bytes: 1 << 20,
        max_datagrams: 4,
    }
}

fn expected(orig: &[u8]) -> Vec<u8> {
    // The original with id 0x4242 and the checksum recomputed.
    let mut e = orig.to_vec();
    e[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
    e[20] = 0; // the fragments were sent without DF
    e[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&e[14..34]);
    e[24..26].copy_from_slice(&sum.to_be_bytes());
    e
}

#[test]
fn v4_in_order_and_reversed() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    assert_eq!(frags.len(), 3);
    for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0]] {
        let mut r = Reassembler::new(cfg(), HashKey::replay());
        for (n, &i) in order.iter().enumerate() {
            let o = r.push(&frags[i], 14, false, 10);
            if n < 2 {
                assert_eq!(o, Outcome::Held);
            } else {
                assert_eq!(o, Outcome::Complete);
            }
        }
        assert!(r.frame() == expected(&orig), "reassembled frame differs");
        assert_eq!(r.pending(), 0);
        assert_eq!(r.stats.completed, 1);
    }
}

/// Found by the decap fuzz target: a Fragment header inside the frame but past the IPv6
/// payload length (trailing bytes after the packet) is not a fragment, and no panic.
#[test]
fn v6_fragment_header_past_payload_length() {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut ip = vec![0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&4u16.to_be_bytes()); // payload length 4 < the 8-byte header
    ip[6] = 44; // next header: Fragment
    f.extend_from_slice(&ip);
    // A Fragment header (UDP, offset 8, more fragments) and trailing bytes after it.
    f.extend_from_slice(&[17, 0, 0, 9, 0, 0, 0, 1]);
    f.extend_from_slice(&[0u8; 32]);
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&f, 14, true, 0), Outcome::NotFragment);
}

#[test]
fn not_fragments_pass() {
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&udp_frame(100), 14, false, 0), Outcome::NotFragment);
}

#[test]
fn duplicates_overlaps_timeouts_and_bounds() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&frags[0], 14, false, 0), Outcome::Held);
    assert_eq!(
        r.push(&frags[0], 14, false, 1),
        Outcome::Held,
        "exact duplicate ignored"
    );
    let mut bad = frags[1].clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(r.push(&bad, 14, false, 2), Outcome::Held);
    assert_eq!(
        r.push(&frags[1], 14, false, 3),
        Outcome::Dropped,
        "disagreeing overlap"
    );
    assert_eq!(r.stats.overlaps, 1);
    assert_eq!(r.pending(), 0);

    // Timeout by packet time.
    assert_eq!(r.push(&frags[0], 14, false, 1_000_000_000), Outcome::Held);
    assert_eq!(r.push(&frags[1], 14, false, 1_200_000_000), Outcome::Held);
    assert_eq!(r.stats.timeouts, 1);
    assert_eq!(r.pending(), 1);

    // More datagrams than allowed: the oldest is evicted.
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    for id in 0..6u16 {
        let mut f = frags[0].clone();
        f[18..20].copy_from_slice(&id.to_be_bytes());
        assert_eq!(r.push(&f, 14, false, u64::from(id)), Outcome::Held);
    }
    assert_eq!(r.pending(), 4);
    assert_eq!(r.stats.evictions, 2);
}

/// A UDP datagram over IPv6 and its three fragments (1,000 bytes of UDP each).
fn v6_fragments() -> (Vec<u8>, Vec<Vec<u8>>) {
    let payload: Vec<u8> = (0..2000).map(|i| (i * 7) as u8).collect();
    let mut whole = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(1000, 6081)
        .write(&mut whole, &payload)
        .unwrap();
    let body = &whole[54..]; // UDP header + payload
    let mut frags = Vec::new();
    for (i, chunk) in body.chunks(1000).enumerate() {
        let mut f = whole[..54].to_vec();
        f[20] = 44; // next header: Fragment
        let more = (i + 1) * 1000 < body.len();
        let off = ((i * 1000 / 8) as u16) << 3 | u16::from(more);
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&off.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(chunk);
        let plen = (8 + chunk.len()) as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        frags.push(f);
    }
    (whole, frags)
}

#[test]
fn v6_fragment_header_removed() {
    let (whole, frags) = v6_fragments();
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    let n = frags.len();
    for (i, f) in frags.iter().enumerate().rev() {
        let o = r.push(f, 14, true, 5);
        assert_eq!(
            o,
            if i == 0 {
                Outcome::Complete
            } else {
                Outcome::Held
            },
            "{i} of {n}"
        );
    }
    assert!(r.frame() == &whole[..], "reassembled frame differs");
}

#[test]
fn checksum_matches_rfc1071_example() {
    // RFC 1071 section 3 example bytes.
    assert_eq!(
        checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
}

/// Inserts an 802.1Q tag (TPID 0x8100, VID `vid`) after the MAC addresses.
fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

fn l3_of(f: &[u8]) -> usize {
    vxspan_wire::L2Info::parse(f).unwrap().l3_offset
}

/// The two-frame crash of issue #15: an untagged first fragment and a priority-tagged last
/// fragment of the same datagram. They are two datagrams (the tag stacks differ), in either
/// order, and the tagged pair completes on its own with its own offsets.
#[test]
fn untagged_and_priority_tagged_fragments_never_meet() {
    let orig = udp_frame(1000);
    let frags = fragment_v4(&orig, 512);
    assert_eq!(frags.len(), 2);
    for reversed in [false, true] {
        let mut r = Reassembler::new(cfg(), HashKey::replay());
        let first = frags[0].clone();
        let last = tagged(&frags[1], 0);
        let order = if reversed {
            [last.clone(), first.clone()]
        } else {
            [first.clone(), last.clone()]
        };
        for f in &order {
            assert_eq!(r.push(f, l3_of(f), false, 1), Outcome::Held);
        }
        assert_eq!(r.pending(), 2);
        // The tagged datagram's own first fragment completes it, tag and all.
        let tfirst = tagged(&frags[0], 0);
        assert_eq!(r.push(&tfirst, 18, false, 2), Outcome::Complete);
        assert_eq!(r.frame(), &tagged(&expected(&orig), 0)[..]);
        assert_eq!(r.pending(), 1);
    }
}

#[test]
fn every_fragment_twice_reassembles() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    for order in [[0, 0, 1, 1, 2, 2], [2, 1, 2, 0, 1, 0], [1, 1, 0, 0, 2, 2]] {
        let mut r = Reassembler::new(cfg(), HashKey::replay());
        let mut done = 0;
        for &i in &order {
            match r.push(&frags[i], 14, false, 3) {
                Outcome::Complete => {
                    done += 1;
                    assert!(r.frame() == expected(&orig), "reassembled frame differs");
                }
                o => assert_eq!(o, Outcome::Held),
            }
        }
        assert_eq!(done, 1, "{order:?}");
        assert_eq!(r.stats.overlaps, 0);
        assert!(r.stats.duplicates >= 1, "{order:?}: {:?}", r.stats);
    }
}

#[test]
fn partial_overlap_drops_the_datagram() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&frags[1], 14, false, 0), Outcome::Held);
    // The first fragment, 8 bytes longer: it overlaps the second in part (same bytes).
    let longer = fragment_v4(&orig, 1208);
    assert_eq!(r.push(&longer[0], 14, false, 0), Outcome::Dropped);
    assert_eq!(r.stats.overlaps, 1);
    assert_eq!((r.pending(), r.held_bytes()), (0, 0));
}

/// The reassembled IPv4 total length (header + payload) may not pass 65,535 (it would wrap).
#[test]
fn reassembled_length_past_65535_is_too_big() {
    let orig = udp_frame(100);
    let mut f = fragment_v4(&orig, 8).pop().unwrap();
    // A last fragment ending at 65,528: with a 20-byte header, 65,548 bytes in all.
    let payload = f.len() - 34;
    let off = ((65_528 - payload) / 8) as u16;
    f[20..22].copy_from_slice(&off.to_be_bytes());
    let first = fragment_v4(&orig, 8).swap_remove(0);
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&first, 14, false, 0), Outcome::Held);
    let o = r.push(&f, 14, false, 0);
    assert_eq!(o, Outcome::Dropped);
    assert_eq!((r.stats.too_big, r.pending()), (1, 0));
}

#[test]
fn memory_follows_the_fragment_not_its_offset() {
    let orig = udp_frame(100);
    let mut f = fragment_v4(&orig, 8).swap_remove(1);
    f[20..22].copy_from_slice(&(0x2000u16 | 8000).to_be_bytes()); // offset 64,000, MF
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&f, 14, false, 0), Outcome::Held);
    assert_eq!(
        r.held_bytes(),
        64,
        "an 8-byte fragment holds one 64-byte buffer"
    );
}

#[test]
fn max_bytes_evicts_the_oldest_and_never_the_one_being_filled() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    let mut r = Reassembler::new(
        Reassembly {
            max_bytes: 4096,
            ..cfg()
        },
        HashKey::replay(),
    );
    // Each 1,200-byte fragment costs 2,048: two datagrams fit, the third evicts the first.
    for id in 0..3u16 {
        let mut f = frags[1].clone();
        f[18..20].copy_from_slice(&id.to_be_bytes());
        assert_eq!(r.push(&f, 14, false, u64::from(id)), Outcome::Held);
    }
    assert_eq!((r.pending(), r.stats.evictions), (2, 1));
    assert!(r.held_bytes() <= 4096);
    // A datagram larger than max_bytes alone is refused, not grown past the bound.
    let mut r = Reassembler::new(
        Reassembly {
            max_bytes: 4096,
            ..cfg()
        },
        HashKey::replay(),
    );
    assert_eq!(r.push(&frags[0], 14, false, 0), Outcome::Held);
    assert_eq!(r.push(&frags[1], 14, false, 0), Outcome::Dropped);
    assert_eq!((r.stats.too_big, r.held_bytes()), (1, 0));
}

/// Random datagrams, cut at random multiples of 8, with random duplicates, in random order,
/// interleaved: each completes exactly once, equal to the datagram that was cut.
#[test]
fn random_fragmentations_match_the_original() {
    let mut rng = vxspan_wire::XorShift(0x9e37_79b9_7f4a_7c15);
    let mut rnd = |n: usize| rng.below(n as u64) as usize;
    for round in 0..200 {
        let mut r = Reassembler::new(
            Reassembly {
                timeout_ms: 1000,
                max_bytes: 1 << 22,
                max_datagrams: 64,
            },
            HashKey::replay(),
        );
        let mut all = Vec::new();
        let mut want = Vec::new();
        for d in 0..4u16 {
            let orig = udp_frame(8 + rnd(4000));
            // At least 2 fragments, at most MAX_FRAGMENTS.
            let size = (8 * (1 + orig.len() / (8 * MAX_FRAGMENTS) + rnd(200)))
                .min((orig.len() - 35) / 8 * 8);
            let mut frags = fragment_v4(&orig, size);
            for f in &mut frags {
                f[18..20].copy_from_slice(&(d + 100 * round).to_be_bytes());
            }
            let mut e = expected(&orig);
            e[18..20].copy_from_slice(&(d + 100 * round).to_be_bytes());
            e[24..26].copy_from_slice(&[0, 0]);
            let sum = checksum(&e[14..34]);
            e[24..26].copy_from_slice(&sum.to_be_bytes());
            want.push(e);
            for f in frags {
                if rnd(3) == 0 {
                    all.push(f.clone());
                }
                all.push(f);
            }
        }
        for i in (1..all.len()).rev() {
            all.swap(i, rnd(i + 1));
        }
        let mut got = Vec::new();
        for f in &all {
            if r.push(f, 14, false, 0) == Outcome::Complete {
                got.push(r.frame().to_vec());
            } else if r.pending() == 0 {
                panic!("round {round}: a fragment was dropped: {:?}", r.stats);
            }
        }
        // Late duplicates of a completed datagram start a new (incomplete) one: fine.
        got.sort();
        got.dedup();
        want.sort();
        assert!(
            got == want,
            "round {round}: {} of {} right",
            got.iter().filter(|g| want.contains(g)).count(),
            want.len()
        );
        assert_eq!(r.stats.overlaps + r.stats.too_big + r.stats.evictions, 0);
    }
}

/// Eviction takes the oldest datagram by arrival, without scanning, and timeouts leave from
/// the same end.
#[test]
fn eviction_and_timeouts_in_arrival_order() {
    let orig = udp_frame(3000);
    let frags = fragment_v4(&orig, 1200);
    let with_id = |i: usize, id: u16| {
        let mut f = frags[i].clone();
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f
    };
    let mut r = Reassembler::new(cfg(), HashKey::replay()); // 4 datagrams, 100 ms
    for id in 0..4 {
        r.push(&with_id(0, id), 14, false, u64::from(id));
    }
    r.push(&with_id(0, 9), 14, false, 5); // evicts id 0
    assert_eq!(r.stats.evictions, 1);
    // Id 1 is still there: its other fragments complete it.
    r.push(&with_id(1, 1), 14, false, 6);
    assert_eq!(r.push(&with_id(2, 1), 14, false, 7), Outcome::Complete);
    // Id 0 was evicted: its fragments start again.
    assert_eq!(r.push(&with_id(1, 0), 14, false, 8), Outcome::Held);
    // 150 ms later everything older than 100 ms has timed out.
    r.push(&with_id(0, 50), 14, false, 150_000_000);
    assert_eq!(r.pending(), 1);
    assert_eq!(r.stats.timeouts, 4);
}

#[test]
fn v6_tagged_and_untagged_fragments_never_meet() {
    let (whole, frags) = v6_fragments();
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    let last = tagged(frags.last().unwrap(), 0);
    assert_eq!(r.push(&frags[0], 14, true, 0), Outcome::Held);
    assert_eq!(r.push(&last, 18, true, 0), Outcome::Held);
    assert_eq!(r.pending(), 2);
    for f in &frags[1..] {
        r.push(f, 14, true, 0);
    }
    assert_eq!(r.frame(), &whole[..]);
}

/// Two keys of one hash (forged here; under a secret key nobody can aim one): the newer
/// datagram evicts the older, counted, and neither is mistaken for the other.
#[test]
fn a_hash_collision_evicts_and_never_merges() {
    let orig = udp_frame(1000);
    let frags = fragment_v4(&orig, 512);
    let mut r = Reassembler::new(cfg(), HashKey::replay());
    assert_eq!(r.push(&frags[0], 14, false, 0), Outcome::Held);
    let held = r.slots[r.index[&r.slots[r.oldest as usize].key.hash] as usize].key;
    let other = Key {
        id: held.id ^ 1,
        ..held
    }; // same hash, another datagram
    let s = r.slot_for(other, 0);
    assert_eq!((r.pending(), r.stats.evictions), (1, 1));
    assert_eq!(r.find(&held), None);
    assert_eq!(r.find(&other), Some(s));
    // The first datagram's last fragment now starts a datagram of its own.
    assert_eq!(r.push(&frags[1], 14, false, 0), Outcome::Held);
    assert_eq!(
        (r.pending(), r.stats.evictions, r.stats.completed),
        (1, 2, 0)
    );
}
