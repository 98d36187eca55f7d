//! Golden test: VxSPAN's example configuration replayed on a capture mixing untagged, priority
//! tagged, VLAN 10 / 11 / 12 and other VLANs, QinQ, 0x9100 and malformed frames writes exactly
//! the frames tcpdump selected (tests/golden/vxspan-example/make.sh), unchanged and in order,
//! and the counters the generator's bookkeeping expects.

mod common;

use common::{read_capture, root, scratch, vxspan};

/// Every key of `want` is in `got` with the same value (`got` may have more keys).
fn assert_subset(got: &serde_json::Value, want: &serde_json::Value, path: &str) {
    match want {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                assert_subset(&got[k], v, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

#[test]
fn vxspan_example() {
    let dir = root().join("tests/golden/vxspan-example");
    let out = scratch("golden-vxspan-example");
    let o = vxspan(&[
        "replay",
        "examples/vxspan.json",
        "-i",
        &format!("eth0={}", dir.join("eth0.pcap").display()),
        "-i",
        &format!("eth1={}", dir.join("eth1.pcap").display()),
        "--out-dir",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for port in ["eth2", "eth3"] {
        let got = read_capture(&out.join(format!("{port}.pcap")));
        let want = read_capture(&dir.join(format!("expected/{port}.pcap")));
        assert_eq!(got.len(), want.len(), "{port}: frame count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{port}: frame {i} (bytes, wire length, timestamp)");
        }
    }
    let counters: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected/counters.json")).unwrap())
            .unwrap();
    assert_subset(&counters, &expected, "counters");
    // And the accounting identity on top of the bookkeeping.
    for port in ["eth0", "eth1"] {
        let p = &counters["interfaces"][port];
        let (rx, fwd, drop) = (
            p["rx_packets"].as_u64().unwrap(),
            p["forwarded_packets"].as_u64().unwrap(),
            p["dropped_packets"].as_u64().unwrap(),
        );
        assert_eq!(rx, fwd + drop, "{port}");
    }
}
