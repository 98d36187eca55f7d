//! `to = { balance = [...] }` live in the kernel tier: a blast of the generated mix through
//! `vxspan run --datapath xdp` (native) reaches each tool exactly as often as `vxspan replay`
//! of the same capture under the same hash key sends it there (the XDP program and the engine
//! choose alike), counters equal the veths' own, and `status` places the rule in XDP.

mod common;

use common::daemon::{counter, frames_in, Vxspan};
use common::live::{blast, blast_report, pass_object, xdp_pass_on};
use common::netns::{wait_for, Netns};
use common::scratch;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const KEY: &str = "00112233445566778899aabbccddeeff";

const CONFIG: &str = r#"
[management]
hash_key_file = "key.hex"
[inputs.mirror]
interface = "eth0"
[outputs.a]
interface = "eth2"
[outputs.b]
interface = "eth3"
vlan = { push = 5 }
[[rules]]
name = "tools"
from = "mirror"
vlan = ["any"]
to = { balance = ["a", "b"], weights = [1, 3] }
"#;

#[test]
fn xdp_balance_sends_each_tool_what_replay_sends_it() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-xdp-balance");
    let ns = Netns::new("xbal");
    for (a, b) in [("eth0", "p0"), ("eth2", "p2"), ("eth3", "p3")] {
        ns.veth(a, b, 9500);
    }
    let obj = pass_object(&dir);
    for p in ["p2", "p3"] {
        xdp_pass_on(&ns, p, &obj);
    }
    let key = dir.join("key.hex");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("balance.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let pcap = dir.join("mix.pcap");
    common::gen_mix(&pcap, 500, 3);
    let n = frames_in(&pcap);

    // The reference: the engine, offline, under the same key.
    let out = dir.join("replay");
    let o = common::vxspan(&[
        "replay",
        config.to_str().unwrap(),
        "-i",
        &format!("mirror={}", pcap.display()),
        "--out-dir",
        out.to_str().unwrap(),
        "--json",
        "--hash-key",
        KEY,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want = |port: &str| counter(&reference, port, "tx_packets");
    assert!(want("a") > 0 && want("b") > want("a"), "{reference}");

    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "xdp", "--xdp-mode", "native"],
    );
    let st = vx.cli(&["status"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(
        st.to_string().contains("\"xdp\""),
        "the balancing rule runs in the kernel tier: {st}"
    );
    let tx0 = ns.stat("p0", "tx_packets");
    let rx0 = [ns.stat("p2", "rx_packets"), ns.stat("p3", "rx_packets")];
    // Every frame of the capture 64 times per round (blast sends runs of 64 copies), 4 rounds.
    let rounds = 4;
    let r = blast_report(blast(&ns, "p0", &pcap, n * 64 * rounds, 0));
    assert_eq!(r["tx_dropped"], 0, "{r}");
    let sent = ns.stat("p0", "tx_packets") - tx0;
    assert_eq!(sent, n * 64 * rounds);
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "mirror", "rx_packets") == sent
    });
    let fin = vx.stop(&dir);
    let got = [
        ns.stat("p2", "rx_packets") - rx0[0],
        ns.stat("p3", "rx_packets") - rx0[1],
    ];
    for (i, port) in ["a", "b"].iter().enumerate() {
        assert_eq!(
            got[i],
            want(port) * 64 * rounds,
            "{port}: the veth got {} frames, replay sends it {} of {n}",
            got[i],
            want(port)
        );
        assert_eq!(counter(&fin, port, "tx_packets"), got[i], "{port}: counted");
    }
    assert_eq!(counter(&fin, "mirror", "rx_packets"), sent);
    eprintln!("a {} b {} of {sent}", got[0], got[1]);
}
