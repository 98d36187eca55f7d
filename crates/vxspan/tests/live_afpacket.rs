//! The live AF_PACKET datapath in a network namespace: VxSPAN's example configuration forwards
//! exactly the frames the golden test expects (checked with tcpdump on the far side of each
//! output veth), the counters agree with the veths' own, and reloads behave.

mod common;

use common::daemon::{counter, frames_in, sorted, Blast, Vxspan};
use common::netns::{wait_for, Daemon, Netns};
use common::tmux::{check_top_rss, rss_kb, vm_rss_kb, Tmux};
use common::{read_capture, root, scratch};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn vxspan_example_forwards_exactly_the_expected_frames() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-afpacket");
    let ns = Netns::new("afp");
    for i in 0..4 {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), 9500);
    }
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let cap2 = ns.capture("p2", &dir.join("p2.pcap"));
    let cap3 = ns.capture("p3", &dir.join("p3.pcap"));
    let cap_in0 = ns.capture("eth0", &dir.join("eth0.pcap"));
    let cap_in1 = ns.capture("eth1", &dir.join("eth1.pcap"));

    let golden = root().join("tests/golden/vxspan-example");
    let tx0 = ns.stat("p0", "tx_packets");
    let tx1 = ns.stat("p1", "tx_packets");
    ns.replay_golden();
    let sent0 = ns.stat("p0", "tx_packets") - tx0;
    let sent1 = ns.stat("p1", "tx_packets") - tx1;
    // tcpreplay sends every frame of at least an Ethernet header.
    let sendable = |file: &str| {
        read_capture(&golden.join(file))
            .iter()
            .filter(|(f, _, _)| f.len() >= 14)
            .count() as u64
    };
    assert_eq!(
        (sent0, sent1),
        (sendable("eth0.pcap"), sendable("eth1.pcap"))
    );
    // What a packet socket on eth0 / eth1 can see, by an independent observer (tcpdump): the
    // kernel's receive path drops some VLAN-tagged runts while untagging, before any socket.
    let mut last = (0, 0);
    let seen = |cap: &std::path::Path| read_capture(cap).len() as u64;
    let ok = (0..500).any(|_| {
        let s = vx.stats();
        last = (
            counter(&s, "eth0", "rx_packets"),
            counter(&s, "eth1", "rx_packets"),
        );
        std::thread::sleep(Duration::from_millis(20));
        last.0 >= sent0 - 4
            && last.1 >= sent1 - 8
            && last
                == (
                    frames_in(&dir.join("eth0.pcap")),
                    frames_in(&dir.join("eth1.pcap")),
                )
    });
    assert!(
        ok,
        "vxspan received {last:?}, tcpdump saw {:?} of {:?} sent",
        (seen(&dir.join("eth0.pcap")), seen(&dir.join("eth1.pcap"))),
        (sent0, sent1)
    );
    // Let the copies reach tcpdump's files (a shortfall is reported below, with tcpdump's log).
    let s = vx.stats();
    let _ = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        frames_in(&dir.join("p2.pcap")) >= counter(&s, "eth2", "tx_packets")
            && frames_in(&dir.join("p3.pcap")) >= counter(&s, "eth3", "tx_packets")
    });
    cap2.stop();
    cap3.stop();
    cap_in0.stop();
    cap_in1.stop();
    let fin = vx.stop(&dir);

    // Exactly the frames tcpdump selected from the golden inputs, unchanged (the two inputs
    // were sent one after the other, so eth2's order across them is not compared).
    for port in ["eth2", "eth3"] {
        let got: Vec<Vec<u8>> = read_capture(&dir.join(format!("p{}.pcap", &port[3..])))
            .into_iter()
            .map(|f| f.0)
            .collect();
        // The golden expectation, less frames the kernel dropped before any packet socket.
        let mut arrived: Vec<Vec<u8>> = read_capture(&dir.join("eth0.pcap"))
            .into_iter()
            .chain(read_capture(&dir.join("eth1.pcap")))
            .map(|f| f.0)
            .collect();
        arrived.sort();
        let want: Vec<Vec<u8>> = read_capture(&golden.join(format!("expected/{port}.pcap")))
            .into_iter()
            .map(|f| f.0)
            .filter(|f| arrived.binary_search(f).is_ok())
            .collect();
        assert!(
            want.len() + 3 >= read_capture(&golden.join(format!("expected/{port}.pcap"))).len(),
            "{port}: too few expected frames arrived"
        );
        let log =
            std::fs::read_to_string(dir.join(format!("p{}.log", &port[3..]))).unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "{port}: frames captured on the far side; vxspan said {}; tcpdump said {log}",
            fin["interfaces"][port]
        );
        assert!(
            sorted(got) == sorted(want),
            "{port}: captured frames differ from the golden expectation"
        );
    }
    // The accounting: every frame the veths carried, and nothing else.
    let rx = [seen(&dir.join("eth0.pcap")), seen(&dir.join("eth1.pcap"))];
    common::daemon::assert_example_accounting(&fin, &ns, rx, [0, 0]);
    assert_eq!(fin["interfaces"]["eth0"]["drop_reasons"]["ring_overrun"], 0);
}

#[test]
fn reload_keeps_running_on_a_bad_file_and_applies_a_good_one() {
    let Some((dir, ns)) = lab("live-reload", "rld", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);

    std::fs::write(
        &config,
        r#"{"interfaces": {"eth1": {"redirect_map": {"5000": "eth3"}}}}"#,
    )
    .unwrap();
    let o = vx.cli(&["reload"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("redirect_map.\"5000\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        vx.stats()["rules"].as_array().unwrap().len(),
        4,
        "the old plan still runs"
    );

    std::fs::write(&config, r#"{"interfaces": {"eth0": {"redirect_map": {"none": "eth2"}}, "eth1": {"redirect_map": {"12": "eth3"}}}}"#).unwrap();
    let o = vx.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ports kept"));
    let s = vx.stats();
    let names: Vec<&str> = s["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"eth1/12"), "{names:?}");

    // SIGHUP reloads too.
    std::fs::write(
        &config,
        r#"{"interfaces": {"eth0": {"redirect_map": {"any": "eth3"}}}}"#,
    )
    .unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &vx.child.id().to_string()])
        .output();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("run.err")).is_ok_and(|s| s.contains("ports reopened"))
    });
    let fin = vx.stop(&dir);
    assert!(fin["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "eth0/any"));
}

/// Overload: a blast faster than the datapath (a debug build here) never crashes it, and the
/// accounting of CONFIG.md section 3 holds exactly: every frame the kernel delivered to the input
/// is in rx_packets, either forwarded or dropped with a reason (ring overruns read from the
/// kernel's socket statistics).
#[test]
fn overload_keeps_exact_accounting() {
    let Some((dir, ns)) = lab("live-overload", "ovl", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let input = dir.join("blast.pcap");
    common::gen_mix(&input, 100000, 11);
    let rx_before = ns.stat("eth1", "rx_packets");
    // Three passes at top speed, 300,000 frames, while vxspan is stopped (SIGSTOP): the ring
    // fills and the kernel drops the rest, which is the overload, made certain rather than hoped
    // for. Then it runs again and must account for every frame.
    let pid = vx.child.id().to_string();
    let _ = Command::new("kill").args(["-STOP", &pid]).output();
    let blast = ns.exec(&[
        "tcpreplay",
        "-q",
        "--topspeed",
        "--loop",
        "3",
        "-i",
        "p1",
        input.to_str().unwrap(),
    ]);
    let _ = Command::new("kill").args(["-CONT", &pid]).output();
    assert!(
        blast.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&blast.stderr)
    );
    let delivered = ns.stat("eth1", "rx_packets") - rx_before;
    assert!(delivered >= 290_000, "veth delivered {delivered}");
    // Bounded wait for the worker to drain and the ring statistics to be read.
    let mut last = 0;
    let ok = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        last = counter(&vx.stats(), "eth1", "rx_packets");
        last == delivered
    });
    assert!(
        ok,
        "vxspan counted {last} of the {delivered} frames the kernel delivered"
    );
    let fin = vx.stop(&dir);
    let p = &fin["interfaces"]["eth1"];
    let (rx, fwd, drop) = (
        p["rx_packets"].as_u64().unwrap(),
        p["forwarded_packets"].as_u64().unwrap(),
        p["dropped_packets"].as_u64().unwrap(),
    );
    assert_eq!(rx, delivered);
    assert_eq!(rx, fwd + drop);
    let reasons: u64 = p["drop_reasons"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(drop, reasons);
    assert!(
        p["drop_reasons"]["ring_overrun"].as_u64().unwrap() > 100_000,
        "the ring overflowed while vxspan was stopped"
    );
    eprintln!(
        "overload: {delivered} delivered, {fwd} forwarded, {} ring overruns, {} no_rule",
        p["drop_reasons"]["ring_overrun"], p["drop_reasons"]["no_rule"]
    );
}

/// GRO, GSO, receive VLAN offload (and LRO, which veth lacks) are turned off on inputs while
/// vxspan runs (frames are forwarded as they were on the wire, not merged, tags in place for
/// XDP) and restored when it stops.
#[test]
fn offloads_off_while_running_and_restored() {
    let Some((dir, ns)) = lab("live-offloads", "off", &[0, 1, 2, 3]) else {
        return;
    };
    ns.exec_ok(&["ethtool", "-K", "eth1", "gro", "on", "gso", "on"]);
    let state = |feature: &str| {
        let o = ns.exec_ok(&["ethtool", "-k", "eth1"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.trim_start().starts_with(feature))
            .map(|l| l.contains(": on"))
            .unwrap()
    };
    let all = [
        "generic-receive-offload",
        "generic-segmentation-offload",
        "rx-vlan-offload",
    ];
    assert!(all.iter().all(|f| state(f)));
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    assert!(all.iter().all(|f| !state(f)), "off while running");
    // A reload that reopens the ports (other outputs) keeps eth1, an input in both: its
    // settings stay off, and the ones saved at the start are still what gets restored.
    std::fs::write(
        &config,
        r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth2"}}}}"#,
    )
    .unwrap();
    let o = vx.cli(&["reload"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ports reopened"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(all.iter().all(|f| !state(f)), "still off after the reload");
    vx.stop(&dir);
    assert!(all.iter().all(|f| state(f)), "restored on exit");
}

/// With 10 input and 10 output ports, `vxspan run` stays under 48 MB resident (the appliance has
/// 128 MB in all).
#[test]
fn ten_by_ten_ports_fit_in_48_mb() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-rss");
    let ns = Netns::new("rss");
    for i in 0..20 {
        ns.veth(&format!("e{i}"), &format!("q{i}"), 1500);
    }
    let mut text = String::new();
    for i in 0..10 {
        text += &format!(
            "[inputs.in{i}]\ninterface = \"e{i}\"\n[outputs.out{i}]\ninterface = \"e{}\"\n",
            i + 10
        );
    }
    for i in 0..10 {
        text += &format!(
            "[[rules]]\nfrom = \"in{i}\"\nvlan = [{}, \"none\"]\nto = [\"out{i}\", \"out{}\"]\n",
            i + 1,
            (i + 1) % 10
        );
    }
    let config = dir.join("ten.toml");
    std::fs::write(&config, text).unwrap();
    // Two workers (each input's ring memory is divided between them), and traffic through
    // every input first, so every ring and buffer has been touched.
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "afpacket", "--workers", "2"],
    );
    let input = dir.join("mix.pcap");
    common::gen_mix(&input, 2000, 3);
    for i in 0..10 {
        ns.exec_ok(&[
            "tcpreplay",
            "-q",
            "-i",
            &format!("q{i}"),
            input.to_str().unwrap(),
        ]);
    }
    wait_for(Duration::from_secs(10), || {
        let s = vx.stats();
        (0..10).all(|i| counter(&s, &format!("in{i}"), "rx_packets") == 2000)
    });
    let rss = rss_kb(vx.child.id());
    eprintln!("vxspan run with 10 + 10 ports, 2 workers, 20,000 frames in: VmRSS {rss} kB");
    assert!(rss < 48 * 1024, "VmRSS {rss} kB");
    vx.stop(&dir);
}

/// Jumbo frames cross when every MTU allows; a copy larger than the output's MTU is counted as
/// `mtu_exceeded`, never sent or lost silently.
#[test]
fn jumbo_frames_and_mtu_exceeded() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-jumbo");
    let ns = Netns::new("jmb");
    ns.veth("eth0", "p0", 9500);
    ns.veth("eth1", "p1", 9500);
    ns.veth("eth2", "p2", 9500); // jumbo-capable output
    ns.veth("eth3", "p3", 1500); // a 1500-byte output
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let golden = root().join("tests/golden/vxspan-example");
    // What reaches eth1's packet sockets (the kernel drops some tagged runts while untagging),
    // by an independent observer.
    let on_eth1 = ns.capture("eth1", &dir.join("eth1.pcap"));
    ns.exec_ok(&[
        "tcpreplay",
        "-q",
        "-i",
        "p1",
        golden.join("eth1.pcap").to_str().unwrap(),
    ]);
    wait_for(Duration::from_secs(10), || {
        frames_in(&dir.join("eth1.pcap")) >= counter(&vx.stats(), "eth1", "rx_packets")
            && counter(&vx.stats(), "eth1", "rx_packets") > 150
    });
    on_eth1.stop();
    let mut arrived: Vec<Vec<u8>> = read_capture(&dir.join("eth1.pcap"))
        .into_iter()
        .map(|f| f.0)
        .collect();
    arrived.sort();
    // Expected per output, from the golden expectations: frames whose layer 3 payload fits.
    let big = |f: &Vec<u8>| {
        let l2 = vxspan_core::wire::L2Info::parse(f).unwrap();
        f.len() - l2.l3_offset > 1500
    };
    let eth3: Vec<Vec<u8>> = read_capture(&golden.join("expected/eth3.pcap"))
        .into_iter()
        .map(|f| f.0)
        .filter(|f| arrived.binary_search(f).is_ok())
        .collect();
    let eth1_to_2: Vec<Vec<u8>> = read_capture(&golden.join("expected/eth2.pcap"))
        .into_iter()
        .map(|f| f.0)
        .filter(|f| {
            arrived.binary_search(f).is_ok()
                && vxspan_core::wire::L2Info::parse(f).is_ok_and(|l| l.outer_vid() == 12)
        })
        .collect();
    let too_big = eth3.iter().filter(|f| big(f)).count() as u64;
    assert!(too_big > 0, "the fixture has jumbo frames on VLAN 10");
    let mut last = serde_json::Value::Null;
    let ok = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        last = vx.stats();
        counter(&last, "eth3", "tx_packets") + counter(&last, "eth3", "tx_dropped_packets")
            == eth3.len() as u64
    });
    assert!(
        ok,
        "expected {} copies for eth3 ({too_big} too big); vxspan: {}",
        eth3.len(),
        last["interfaces"]["eth3"]
    );
    let s = vx.stats();
    assert_eq!(
        s["interfaces"]["eth3"]["tx_drop_reasons"]["mtu_exceeded"].as_u64(),
        Some(too_big)
    );
    assert_eq!(
        counter(&s, "eth3", "tx_packets"),
        eth3.len() as u64 - too_big
    );
    assert!(eth1_to_2.iter().any(|f| f.len() > 8000) || eth3.iter().any(|f| f.len() > 8000));
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth2", "tx_packets") == eth1_to_2.len() as u64
    });
    vx.stop(&dir);
}

/// 50 reloads during a blast: rules-only reloads swap the plan between two batches, so every
/// frame the kernel delivered is counted, every forwarded frame reached an output or is a counted
/// drop, and the far ends received exactly what vxspan says it sent. Every fifth reload is an
/// invalid file, which changes nothing.
#[test]
fn fifty_reloads_during_a_blast() {
    let Some((dir, ns)) = lab("live-reloads", "rls", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    let a = r#"{"interfaces": {"eth0": {"redirect_map": {"none": "eth2"}}, "eth1": {"redirect_map": {"any": "eth2", "10": "eth3"}}}}"#;
    let b = r#"{"interfaces": {"eth0": {"redirect_map": {"none": "eth2"}}, "eth1": {"redirect_map": {"any": "eth3", "10": "eth2"}}}}"#;
    std::fs::write(&config, a).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    // About two seconds of traffic while reloading.
    let blast = Blast::start(&ns, &dir, 5);
    let mut refused = 0;
    for i in 0..50 {
        let text = if i % 5 == 4 {
            r#"{"interfaces": {"eth1": {"redirect_map": {"10": 3}}}}"#
        } else if i % 2 == 0 {
            b
        } else {
            a
        };
        std::fs::write(&config, text).unwrap();
        let o = vx.cli(&["reload"]);
        if i % 5 == 4 {
            assert_eq!(o.status.code(), Some(2), "an invalid file is refused");
            refused += 1;
        } else {
            assert!(
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ports kept"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(refused, 10);
    let (delivered, fwd) = blast.finish(&ns, &vx);
    assert_eq!(
        fwd, delivered,
        "'any' forwards every frame, whichever plan is running"
    );
    vx.stop(&dir);
}

/// A port that disappears and comes back (a VM's vNIC reconnecting) is picked up again; while an
/// output is gone its copies are counted as `link_down`.
#[test]
fn ports_that_come_back_are_picked_up() {
    let Some((dir, ns)) = lab("live-reconnect", "rcn", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("any.json");
    std::fs::write(
        &config,
        r#"{"interfaces": {"eth1": {"redirect_map": {"any": "eth3"}}}}"#,
    )
    .unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let input = dir.join("in.pcap");
    common::gen_mix(&input, 100, 6);
    let send = || ns.exec_ok(&["tcpreplay", "-q", "-i", "p1", input.to_str().unwrap()]);
    let log = || std::fs::read_to_string(dir.join("run.err")).unwrap_or_default();

    // The output goes away: copies are counted as link_down.
    ns.exec_ok(&["ip", "link", "del", "eth3"]);
    wait_for(Duration::from_secs(10), || {
        log().contains("output interface eth3 disappeared")
    });
    send();
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == 100
    });
    let s = vx.stats();
    assert_eq!(
        s["interfaces"]["eth3"]["tx_drop_reasons"]["link_down"].as_u64(),
        Some(100)
    );
    // It comes back: copies flow again.
    ns.veth("eth3", "p3", 1500);
    wait_for(Duration::from_secs(10), || {
        log().contains("output interface eth3 is back")
    });
    send();
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth3", "tx_packets") == 100
    });
    assert_eq!(ns.stat("p3", "rx_packets"), 100);

    // The input goes away and comes back: it is read again.
    ns.exec_ok(&["ip", "link", "del", "eth1"]);
    wait_for(Duration::from_secs(10), || {
        log().contains("input interface eth1 disappeared")
    });
    ns.veth("eth1", "p1", 1500);
    wait_for(Duration::from_secs(10), || {
        log().contains("input interface eth1 is back")
    });
    send();
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth1", "rx_packets") == 300
    });
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "eth3", "tx_packets") == 200
    });
    vx.stop(&dir);
}

/// Least privilege: as a non-root user with only CAP_NET_RAW, CAP_NET_ADMIN and CAP_IPC_LOCK (no CAP_BPF: auto falls back to AF_PACKET),
/// `vxspan run` forwards traffic; without them it fails naming the missing capability; started
/// as root with `--user`, it switches to that user keeping only the five it needs (bounding set
/// too, no_new_privs) and still loads the XDP program.
#[test]
fn least_privilege() {
    use std::os::unix::fs::PermissionsExt;
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-privileges");
    let ctl_dir = dir.join("ctl");
    std::fs::create_dir_all(&ctl_dir).unwrap();
    std::fs::set_permissions(&ctl_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ns = Netns::new("cap");
    for i in 0..4 {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), 1500);
    }
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = env!("CARGO_BIN_EXE_vxspan");
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];

    // Without the capabilities: a clear refusal.
    let ctl = ctl_dir.join("a.sock");
    let mut args: Vec<&str> = nobody.to_vec();
    args.extend([
        bin,
        "run",
        config.to_str().unwrap(),
        "--control",
        ctl.to_str().unwrap(),
    ]);
    let o = ns.exec(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing capability CAP_NET_RAW"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // With exactly the documented capabilities, as ambient capabilities of an unprivileged user.
    let caps = "+net_raw,+net_admin,+ipc_lock";
    let mut args: Vec<&str> = nobody.to_vec();
    let inh = format!("--inh-caps={caps}");
    let amb = format!("--ambient-caps={caps}");
    args.extend([
        inh.as_str(),
        amb.as_str(),
        bin,
        "run",
        config.to_str().unwrap(),
        "--control",
        ctl.to_str().unwrap(),
    ]);
    let mut child = ns
        .cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("caps.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || ctl.exists());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert!(status.contains("\nNoNewPrivs:\t1\n"), "{status}");
    let golden = root().join("tests/golden/vxspan-example");
    ns.exec_ok(&[
        "tcpreplay",
        "-q",
        "-i",
        "p1",
        golden.join("eth1.pcap").to_str().unwrap(),
    ]);
    wait_for(Duration::from_secs(10), || {
        ns.stat("p3", "rx_packets") >= 40
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output();
    let _ = child.wait();

    // From root with --user: the switch, with only those five capabilities left.
    let ctl = ctl_dir.join("b.sock");
    let mut child = ns
        .cmd(&[
            bin,
            "run",
            config.to_str().unwrap(),
            "--control",
            ctl.to_str().unwrap(),
            "--user",
            "nobody",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("root.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || ctl.exists());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(field("Uid:"), "65534");
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_IPC_LOCK (14), CAP_PERFMON (38), CAP_BPF (39).
    assert_eq!(field("CapEff:"), "000000c000007000");
    assert_eq!(field("CapPrm:"), "000000c000007000");
    // Nothing it executes gets any other capability back: bounding set cut to those five, no
    // inheritable or ambient capability, no_new_privs.
    assert_eq!(field("CapBnd:"), "000000c000007000");
    assert_eq!(field("CapInh:"), "0000000000000000");
    assert_eq!(field("CapAmb:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    // The kept capabilities load the XDP program after the switch (CAP_PERFMON: the verifier
    // refuses it to a loader without).
    let log = std::fs::read_to_string(dir.join("root.err")).unwrap();
    assert!(log.contains("XDP program attached"), "{log}");
    let before = ns.stat("p3", "rx_packets");
    ns.exec_ok(&[
        "tcpreplay",
        "-q",
        "-i",
        "p1",
        golden.join("eth1.pcap").to_str().unwrap(),
    ]);
    wait_for(Duration::from_secs(10), || {
        ns.stat("p3", "rx_packets") >= before + 40
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output();
    let _ = child.wait();
}

/// `vxspan capture --rule R -w -` streams pcapng that tcpdump reads while vxspan runs: exactly
/// the frames rule R forwards.
#[test]
fn live_capture_stream_reads_in_tcpdump() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-capture");
    let ns = Netns::new("lcap");
    for i in 0..4 {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), 9500);
    }
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let golden = root().join("tests/golden/vxspan-example");
    // VLAN 10 frames of the fixture that reach the socket (some tagged runts never do).
    let want: Vec<Vec<u8>> = read_capture(&golden.join("expected/eth3.pcap"))
        .into_iter()
        .map(|f| f.0)
        .filter(|f| f.len() > 18 && u16::from_be_bytes([f[14], f[15]]) & 0xfff == 10)
        .collect();
    let mut cap = Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args([
            "capture",
            "--control",
            vx.control.to_str().unwrap(),
            "--rule",
            "eth1/10",
            "-w",
            "-",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = dir.join("captured.pcap");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-n", "-r", "-", "-c", &want.len().to_string(), "-w", "-"])
        .stdin(cap.stdout.take().unwrap())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("run.err"))
            .unwrap_or_default()
            .contains("capture attached (eth1/10)")
    });
    ns.exec_ok(&[
        "tcpreplay",
        "-q",
        "-i",
        "p1",
        golden.join("eth1.pcap").to_str().unwrap(),
    ]);
    let mut done = false;
    for _ in 0..500 {
        if tcpdump.try_wait().unwrap().is_some() {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = cap.kill();
    let _ = cap.wait();
    if !done {
        let _ = tcpdump.kill();
    }
    let _ = tcpdump.wait();
    assert!(done, "tcpdump read {} frames from the stream", want.len());
    let got: Vec<Vec<u8>> = read_capture(&out).into_iter().map(|f| f.0).collect();
    assert!(
        sorted(got) == sorted(want),
        "the stream holds exactly the frames rule eth1/10 forwarded"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args([
            "capture",
            "--control",
            vx.control.to_str().unwrap(),
            "--rule",
            "nope",
            "-w",
            "-",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no rule named"));
    vx.stop(&dir);
}

/// Passthru: a host behind the TAP pings, and completes a TCP handshake with, a peer on the far
/// side of the data port, while mirror traffic on the same port is forwarded.
#[test]
fn passthru_ping_and_tcp_while_mirroring() {
    if common::netns::skipped() {
        return;
    }
    let dir = scratch("live-passthru");
    let a = Netns::new("pta");
    let b = Netns::new("ptb");
    // The data port eth1 (A) faces the peer's p1 (B); eth3 is a tool port.
    a.exec_ok(&[
        "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "p1", "netns", &b.name,
    ]);
    a.exec_ok(&["ip", "link", "set", "eth1", "up"]);
    b.exec_ok(&["ip", "addr", "add", "198.18.6.2/24", "dev", "p1"]);
    b.exec_ok(&["ip", "link", "set", "p1", "up"]);
    // The peer's stack would leave TCP checksums to "hardware" that a veth does not have (the
    // frames reach packet sockets unfinished): compute them in software, as a real NIC's
    // receiver would have them.
    b.exec_ok(&["ethtool", "-K", "p1", "tx", "off"]);
    a.veth("eth3", "p3", 1500);
    let config = dir.join("passthru.toml");
    std::fs::write(
        &config,
        "[inputs.mirror]\ninterface = \"eth1\"\n[outputs.tools]\ninterface = \"eth3\"\n[[rules]]\nfrom = \"mirror\"\nto = \"tools\"\n\
         [passthru.ctrl]\ninterface = \"eth1\"\ntap = \"ctrl0\"\nmac = \"44:44:44:44:44:44\"\n",
    )
    .unwrap();
    let vx = Vxspan::start(&a, &config, &dir);
    // The host behind the TAP: A's own stack on ctrl0.
    a.exec_ok(&["ip", "link", "set", "ctrl0", "address", "44:44:44:44:44:44"]);
    a.exec_ok(&["ip", "addr", "add", "198.18.6.1/24", "dev", "ctrl0"]);
    a.exec_ok(&["ip", "link", "set", "ctrl0", "up"]);

    // Mirror traffic on the data port while the control traffic flows.
    let input = dir.join("mirror.pcap");
    common::gen_mix(&input, 500, 12);
    let mut blast = b.replay_at("p1", 500, &input);

    let o = a.exec(&["ping", "-c", "3", "-W", "2", "198.18.6.2"]);
    assert!(
        o.status.success(),
        "ping through the passthru: {}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A TCP handshake (BGP's port) from the host behind the TAP to the peer.
    let server = "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('198.18.6.2', 179)); s.listen(1); s.settimeout(10); c, _ = s.accept(); c.sendall(b'OPEN'); c.close()";
    let mut srv = b.cmd(&["python3", "-c", server]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = "import socket; c = socket.create_connection(('198.18.6.2', 179), timeout=5); print(c.recv(4).decode())";
    let o = a.exec(&["python3", "-c", client]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "OPEN",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = srv.wait();
    let _ = blast.wait();
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "tools", "tx_packets") >= 500
    });
    let s = vx.stats();
    assert!(
        counter(&s, "mirror", "passthru_packets") >= 5,
        "{}",
        s["interfaces"]["mirror"]
    );
    // Every mirror frame reached the tool port; the passthru's unicast frames did not.
    assert_eq!(
        counter(&s, "mirror", "rx_packets"),
        counter(&s, "mirror", "forwarded_packets") + counter(&s, "mirror", "dropped_packets")
    );
    vx.stop(&dir);
}

/// A live rate limit agrees with rate x duration (+ one burst) within 5%.
#[test]
fn live_rate_limit_within_five_percent() {
    let Some((dir, ns)) = lab("live-rate", "rate", &[1, 3]) else {
        return;
    };
    let config = dir.join("rate.toml");
    // 4 Mbit/s = 500,000 bytes/s, burst 10,000 bytes.
    std::fs::write(&config, "[inputs.m]\ninterface = \"eth1\"\n[outputs.t]\ninterface = \"eth3\"\nrate_limit = \"4Mbit\"\nrate_burst = 10000\n[[rules]]\nfrom = \"m\"\nto = \"t\"\n").unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    // 3,000 frames of 1,000 bytes at 1,000 frames/s: twice the rate, for 3 seconds.
    let input = dir.join("in.pcap");
    let mut w = vxspan_io::pcap::Writer::create(&input).unwrap();
    for i in 0..3000u64 {
        let mut f = vxspan::gen::frames(1, i, 20).next().unwrap().data;
        f.resize(1000, 0);
        w.write(&f, 1000, i * 1_000_000).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let cap = ns.capture("eth1", &dir.join("eth1.pcap"));
    ns.exec_ok(&["tcpreplay", "-q", "-i", "p1", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "m", "rx_packets") == 3000
    });
    wait_for(Duration::from_secs(10), || {
        frames_in(&dir.join("eth1.pcap")) == 3000
    });
    cap.stop();
    let seen = read_capture(&dir.join("eth1.pcap"));
    let duration = (seen.last().unwrap().2 - seen[0].2) as f64 / 1e9;
    let s = vx.stats();
    let carried = counter(&s, "t", "tx_bytes") as f64;
    let expected = 500_000.0 * duration + 10_000.0;
    eprintln!("rate limit: {carried} bytes carried over {duration:.3} s, expected {expected}");
    assert!(
        (carried - expected).abs() / expected < 0.05,
        "carried {carried}, expected {expected}"
    );
    assert_eq!(
        counter(&s, "t", "tx_packets")
            + s["interfaces"]["t"]["tx_drop_reasons"]["rate_limited"]
                .as_u64()
                .unwrap(),
        3000
    );
    vx.stop(&dir);
}

/// A scratch directory and a namespace with veth pairs ethN / pN (MTU 1500) for each N in
/// `ports`; `None` when live tests are left out.
fn lab(scratch_name: &str, tag: &str, ports: &[u8]) -> Option<(std::path::PathBuf, Netns)> {
    if common::netns::skipped() {
        return None;
    }
    let dir = scratch(scratch_name);
    let ns = Netns::new(tag);
    for i in ports {
        ns.veth(&format!("eth{i}"), &format!("p{i}"), 1500);
    }
    Some((dir, ns))
}

/// Sends a capture into p0 and waits until "mirror" has received `at_least` frames and the
/// counters have settled (no traffic in flight); returns them.
fn replay_and_settle(
    ns: &Netns,
    vx: &Vxspan,
    input: &std::path::Path,
    at_least: u64,
) -> serde_json::Value {
    ns.exec_ok(&["tcpreplay", "-q", "-i", "p0", input.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "mirror", "rx_packets") >= at_least
    });
    std::thread::sleep(Duration::from_millis(700));
    vx.stats()
}

/// The value of one sample in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
        .parse()
        .unwrap()
}

/// `management.metrics`: the endpoint passes `promtool check metrics`, its values equal
/// `vxspan stats --json`, and they grow with the traffic.
#[test]
fn prometheus_metrics_agree_with_stats() {
    let Some((dir, ns)) = lab("live-metrics", "prom", &[0, 2]) else {
        return;
    };
    let config = dir.join("metrics.toml");
    std::fs::copy(root().join("examples/metrics.toml"), &config).unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let input = dir.join("in.pcap");
    vxspan::gen::write(&input, 2000, 7, 20).unwrap();
    let scrape = || {
        let o = ns.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"]);
        String::from_utf8(o.stdout).unwrap()
    };
    let mut previous = 0;
    for round in 1..=2u64 {
        let s = replay_and_settle(&ns, &vx, &input, round * 1990);
        let text = scrape();
        let check = ns
            .cmd(&["promtool", "check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .as_ref()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let o = check.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        for (port, key, family) in [
            ("mirror", "rx_packets", "vxspan_rx_packets_total"),
            (
                "mirror",
                "forwarded_packets",
                "vxspan_forwarded_packets_total",
            ),
            ("mirror", "dropped_packets", "vxspan_dropped_packets_total"),
            ("tools", "tx_packets", "vxspan_tx_packets_total"),
            ("tools", "tx_bytes", "vxspan_tx_bytes_total"),
        ] {
            assert_eq!(
                sample(&text, &format!("{family}{{interface=\"{port}\"}}")),
                counter(&s, port, key),
                "{family} {port}"
            );
        }
        assert_eq!(
            sample(
                &text,
                "vxspan_drops_total{interface=\"mirror\",direction=\"rx\",reason=\"no_rule\"}"
            ),
            s["interfaces"]["mirror"]["drop_reasons"]["no_rule"]
                .as_u64()
                .unwrap()
        );
        assert_eq!(
            sample(
                &text,
                "vxspan_rule_forwarded_packets_total{rule=\"web\",tier=\"userspace\"}"
            ),
            s["rules"][0]["forwarded_packets"].as_u64().unwrap()
        );
        assert_eq!(
            sample(
                &text,
                "vxspan_vlan_packets_total{interface=\"mirror\",vlan=\"10\",tier=\"userspace\"}"
            ),
            s["vlans"]["mirror"]["10"]["packets"].as_u64().unwrap()
        );
        let rx = counter(&s, "mirror", "rx_packets");
        assert!(rx > previous, "counters grow: {rx} after {previous}");
        assert!(sample(&text, "process_resident_memory_bytes") > 1_000_000);
        previous = rx;
    }
    // Anything but /metrics is a 404.
    let o = ns.exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:9464/",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
    vx.stop(&dir);
}

/// `vxspan top` in tmux against a running instance: the topology, the rate of the traffic
/// being sent, and the keys.
#[test]
fn top_dashboard_shows_topology_rates_and_reacts_to_keys() {
    let Some((dir, ns)) = lab("live-top", "top", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "afpacket", "--workers", "2"],
    );
    let input = dir.join("mix.pcap");
    vxspan::gen::write(&input, 5000, 3, 20).unwrap();
    // A steady 1,000 frames per second into eth1, until the test ends.
    let _blast = Daemon(
        ns.cmd(&[
            "tcpreplay",
            "-q",
            "-p",
            "1000",
            "-l",
            "0",
            "-i",
            "p1",
            input.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let tmux = Tmux::top(format!("vxs-top-{}", std::process::id()), &vx.control);

    // The topology: ports with link state, the VLAN mappings, the rules.
    tmux.wait_for(&[
        "eth0 [up]",
        "eth1 [up]",
        "eth2 [up]",
        "eth3 [up]",
        "vlan none -> eth2",
        "vlan 10 -> eth3",
        "vlan 12 -> eth2",
        "eth1/10",
        "showing bytes",
        "vxspan run RSS",
        "datapath afpacket, 2 worker(s)",
    ]);

    // eth1 in packets: the rate shown is the rate vxspan counts.
    tmux.keys(&["Right", "p"]);
    tmux.wait_for(&["showing packets", "eth1: rx up"]);
    let s0 = counter(&vx.stats(), "eth1", "rx_packets");
    let t0 = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let screen = tmux.screen();
    let measured =
        (counter(&vx.stats(), "eth1", "rx_packets") - s0) as f64 / t0.elapsed().as_secs_f64();
    let shown = screen
        .lines()
        .find_map(|l| l.split("rx  now ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(|v| match v.strip_suffix('k') {
            Some(k) => k.parse::<f64>().unwrap() * 1000.0,
            None => v.parse::<f64>().unwrap(),
        })
        .unwrap_or_else(|| panic!("no rx rate on screen:\n{screen}"));
    eprintln!("top shows {shown} pkt/s on eth1; vxspan counted {measured:.0} pkt/s");
    assert!(measured > 100.0, "traffic is flowing: {measured}");
    assert!(
        (shown - measured).abs() / measured < 0.35,
        "shown {shown}, measured {measured}:\n{screen}"
    );

    // The VLANs of eth1, drops, help, bytes again, other ports.
    tmux.keys(&["Down"]);
    tmux.wait_for(&["eth1 VLAN none: rx up"]);
    tmux.keys(&["Down"]);
    tmux.wait_for(&["eth1 VLAN 1: rx up"]);
    tmux.keys(&["d"]);
    tmux.wait_for(&["showing drops", "no_rule"]);
    tmux.keys(&["?"]);
    tmux.wait_for(&["Help", "walk the selected input's VLANs"]);
    tmux.keys(&["?", "End", "b"]);
    tmux.wait_for(&["eth3: rx up", "showing bytes"]);
    tmux.keys(&["Home"]);
    tmux.wait_for(&["eth0: rx up"]);

    let pane = tmux.pane_pid();
    eprintln!("vxspan top: {}", check_top_rss(pane, 16 * 1024));

    tmux.keys(&["q"]);
    wait_for(Duration::from_secs(5), || !tmux.alive());
    assert!(!tmux.alive(), "q quits");
    vx.stop(&dir);
}

fn start_snmpd(ns: &Netns, dir: &std::path::Path) -> Daemon {
    let conf = dir.join("snmpd.conf");
    let sock = dir.join("agentx.sock");
    let _ = std::fs::remove_file(&sock);
    std::fs::write(
        &conf,
        format!(
            "master agentx\nagentXSocket {}\nagentaddress udp:127.0.0.1:16161\nrocommunity public 127.0.0.1\ntrap2sink 127.0.0.1:16162 public\n",
            sock.display()
        ),
    )
    .unwrap();
    let child = ns
        .cmd(&[
            "snmpd",
            "-f",
            "-Lf",
            dir.join("snmpd.log").to_str().unwrap(),
            "-C",
            "-c",
            conf.to_str().unwrap(),
        ])
        .env("SNMP_PERSISTENT_DIR", dir)
        .env("MIBS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || sock.exists());
    assert!(sock.exists(), "snmpd did not start");
    Daemon(child)
}

/// `snmpwalk` of the subtree: OID -> value text.
fn snmpwalk(ns: &Netns, oid: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let o = ns
        .cmd(&[
            "snmpwalk",
            "-v2c",
            "-c",
            "public",
            "-On",
            "-t",
            "2",
            "-r",
            "1",
            "127.0.0.1:16161",
            oid,
        ])
        .env("MIBS", "")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let m: std::collections::BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (o.status.success() && m.len() > 1).then_some(m)
}

/// `management.snmp_agentx` against a real snmpd (AgentX master on a Unix socket, SNMP on
/// 127.0.0.1 in the namespace): walks equal `vxspan stats --json` and grow with traffic, a
/// link-down trap reaches snmptrapd, and a restarted snmpd gets the subtree back.
#[test]
fn snmp_agentx_walks_traps_and_survives_an_snmpd_restart() {
    let Some((dir, ns)) = lab("live-snmp", "snmp", &[0, 2]) else {
        return;
    };
    let mut snmpd = start_snmpd(&ns, &dir);
    std::fs::write(dir.join("trapd.conf"), "disableAuthorization yes\n").unwrap();
    let _trapd = Daemon(
        ns.cmd(&[
            "snmptrapd",
            "-f",
            "-C",
            "-c",
            dir.join("trapd.conf").to_str().unwrap(),
            "-On",
            "-Lf",
            dir.join("traps.log").to_str().unwrap(),
            "127.0.0.1:16162",
        ])
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let config = dir.join("snmp.toml");
    std::fs::write(
        &config,
        format!(
            "[inputs.mirror]\ninterface = \"eth0\"\n[outputs.tools]\ninterface = \"eth2\"\n[[rules]]\nname = \"web\"\nfrom = \"mirror\"\nvlan = 10\nto = \"tools\"\n[management]\nsnmp_agentx = \"{}\"\nsnmp_drop_rate = 100\nmetrics = \"127.0.0.1:9464\"\n",
            dir.join("agentx.sock").display()
        ),
    )
    .unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    let log = dir.join("run.err");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("sub-agent registered"))
    });
    let base = ".1.3.6.1.3.8624";
    let input = dir.join("in.pcap");
    vxspan::gen::write(&input, 2000, 5, 20).unwrap();
    let c64 = |w: &std::collections::BTreeMap<String, String>, suffix: &str| -> u64 {
        let v = w
            .get(&format!("{base}.{suffix}"))
            .unwrap_or_else(|| panic!("{suffix} missing from {w:?}"));
        v.strip_prefix("Counter64: ").unwrap().parse().unwrap()
    };
    let mut previous = 0;
    for round in 1..=2u64 {
        let s = replay_and_settle(&ns, &vx, &input, round * 1990);
        let w = snmpwalk(&ns, base).expect("snmpwalk answers");
        assert_eq!(w[&format!("{base}.1.1.2.1")], "STRING: \"mirror\"");
        assert_eq!(w[&format!("{base}.1.1.4.2")], "INTEGER: 1");
        assert_eq!(c64(&w, "1.1.5.1"), counter(&s, "mirror", "rx_packets"));
        assert_eq!(
            c64(&w, "1.1.7.1"),
            counter(&s, "mirror", "forwarded_packets")
        );
        assert_eq!(c64(&w, "1.1.8.1"), counter(&s, "mirror", "dropped_packets"));
        assert_eq!(c64(&w, "1.1.9.2"), counter(&s, "tools", "tx_packets"));
        assert_eq!(c64(&w, "1.1.10.2"), counter(&s, "tools", "tx_bytes"));
        assert_eq!(
            c64(&w, "1.2.1.2.1.10"),
            s["vlans"]["mirror"]["10"]["packets"].as_u64().unwrap()
        );
        assert_eq!(
            c64(&w, "1.3.1.3.1"),
            s["rules"][0]["matched_packets"].as_u64().unwrap()
        );
        let rx = c64(&w, "1.1.5.1");
        assert!(rx > previous, "counters grow: {rx} after {previous}");
        previous = rx;
    }

    // Bursts of no_rule drops above 100 per second: vxspanDropRateHigh for "mirror".
    let traps = dir.join("traps.log");
    let high = format!("OID: {base}.0.3");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&traps).is_ok_and(|t| t.contains(&high))
    });
    let t = std::fs::read_to_string(&traps).unwrap_or_default();
    assert!(
        t.contains(&high) && t.contains("STRING: \"mirror\""),
        "traps:\n{t}"
    );
    // With metrics and SNMP on, vxspan run stays under the appliance's limit.
    let rss = vm_rss_kb(vx.child.id());
    eprintln!("vxspan run RSS with metrics and SNMP on: {rss} kB");
    assert!(rss < 48 * 1024, "{rss} kB");

    // The tool port loses its carrier: vxspanPortDown for "tools" reaches snmptrapd.
    ns.exec_ok(&["ip", "link", "set", "p2", "down"]);
    let down = format!("OID: {base}.0.2");
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&traps).is_ok_and(|t| t.contains(&down))
    });
    let t = std::fs::read_to_string(&traps).unwrap_or_default();
    assert!(
        t.contains(&down) && t.contains("STRING: \"tools\""),
        "traps:\n{t}"
    );
    ns.exec_ok(&["ip", "link", "set", "p2", "up"]);

    // snmpd goes away and comes back: the sub-agent registers again.
    drop(snmpd);
    snmpd = start_snmpd(&ns, &dir);
    let mut back = None;
    wait_for(Duration::from_secs(15), || {
        back = snmpwalk(&ns, base);
        back.is_some()
    });
    let w = back.expect("the subtree is back after the snmpd restart");
    assert_eq!(
        c64(&w, "1.1.5.1"),
        counter(&vx.stats(), "mirror", "rx_packets")
    );
    drop(snmpd);
    vx.stop(&dir);
}

/// The shipped MIB passes smilint (at its strictest level). Debian has no IETF base modules, so
/// tests/smi holds minimal stand-ins written for this check.
#[test]
fn mib_passes_smilint() {
    if std::process::Command::new("smilint")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("smilint is missing: scripts/install-deps installs smitools");
    }
    let o = Command::new("smilint")
        .args(["-l", "6", "-s"])
        .arg(root().join("mibs/VXSPAN-MIB.txt"))
        .env("SMIPATH", root().join("tests/smi"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && out.trim().is_empty(),
        "smilint:\n{out}"
    );
}

/// Logs: structured JSON events on stderr with --log-format json; --log-level warn keeps
/// the informational ones out; a refused reload is a warning.
#[test]
fn logs_are_structured_and_filtered() {
    let Some((dir, ns)) = lab("live-logs", "logs", &[0, 1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
    for (level, expect_info) in [("info", true), ("warn", false)] {
        let control = dir.join(format!("{level}.sock"));
        let err = dir.join(format!("{level}.err"));
        let mut child = Daemon(
            ns.cmd(&[
                env!("CARGO_BIN_EXE_vxspan"),
                "run",
                config.to_str().unwrap(),
                "--control",
                control.to_str().unwrap(),
                "--log-format",
                "json",
                "--log-level",
                level,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
            .spawn()
            .unwrap(),
        );
        wait_for(Duration::from_secs(10), || control.exists());
        // A reload with a broken file: refused, logged as a warning.
        std::fs::write(&config, "{\"interfaces\": 5}").unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_vxspan"))
            .args(["reload", "--control", control.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        std::fs::copy(root().join("examples/vxspan.json"), &config).unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status();
        wait_for(Duration::from_secs(10), || {
            child.0.try_wait().unwrap().is_some()
        });
        let text = std::fs::read_to_string(&err).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let has = |lvl: &str, needle: &str| {
            events.iter().any(|e| {
                e["level"] == lvl
                    && e["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(needle))
            })
        };
        assert!(has("WARN", "reload refused"), "{text}");
        assert_eq!(has("INFO", "running"), expect_info, "{text}");
        assert!(events.iter().all(|e| e["timestamp"].is_string()));
    }
}

/// Two userspace workers: the input is shared through a fanout group, both workers read part
/// of it, and what must be one per instance stays one. 1-in-3 counter sampling forwards
/// exactly a third of the frames whichever worker read them, and the ERSPAN copies (sent by
/// both workers) carry each sequence number once, 0 to n - 1, on the collector's wire. Every
/// frame is accounted for against the veths' counters.
#[test]
fn two_workers_share_an_input_sampling_and_erspan_sequences() {
    let Some((dir, ns)) = lab("live-workers", "wrk", &[1, 2, 3]) else {
        return;
    };
    ns.route_to_peer("eth2", "198.18.0.1/24", "198.18.0.2", "p2");
    let config = dir.join("workers.toml");
    std::fs::write(
        &config,
        r#"
[inputs.mirror]
interface = "eth1"
[outputs.collector]
erspan = { version = 2, remote = "198.18.0.2", session = 7 }
[outputs.tool]
interface = "eth3"
[[rules]]
name = "all"
from = "mirror"
to = "collector"
[[rules]]
name = "sampled"
from = "mirror"
to = "tool"
sample = 3
"#,
    )
    .unwrap();
    let vx = Vxspan::start_with(
        &ns,
        &config,
        &dir,
        &["--datapath", "afpacket", "--workers", "2"],
    );
    let wire = dir.join("collector.pcap");
    let cap = ns.capture("p2", &wire);
    let input = dir.join("mix.pcap");
    common::gen_mix(&input, 6000, 11);
    let (tx0, r3) = (ns.stat("p1", "tx_packets"), ns.stat("p3", "rx_packets"));
    let _ = ns.replay_at("p1", 6000, &input).wait();
    let sent = ns.stat("p1", "tx_packets") - tx0;
    wait_for(Duration::from_secs(10), || {
        counter(&vx.stats(), "mirror", "rx_packets") == sent
    });
    std::thread::sleep(Duration::from_millis(500));
    cap.stop();
    let s = vx.stats();
    let status: serde_json::Value = serde_json::from_slice(&vx.cli(&["status"]).stdout).unwrap();
    let per_worker = common::daemon::worker_rx(&status);
    eprintln!("{sent} frames sent; per worker {per_worker:?}");
    assert_eq!(per_worker.len(), 2);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers read frames"
    );
    assert_eq!(per_worker.iter().sum::<u64>(), sent);
    assert_eq!(counter(&s, "mirror", "dropped_packets"), 0);
    assert_eq!(counter(&s, "mirror", "forwarded_packets"), sent);

    // One sampling count for both workers: the 1st, 4th, 7th ... frame.
    let tool = counter(&s, "tool", "tx_packets");
    assert_eq!(tool, sent.div_ceil(3));
    assert_eq!(ns.stat("p3", "rx_packets") - r3, tool);

    // One ERSPAN sequence for both workers: each number once.
    assert_eq!(counter(&s, "collector", "tx_packets"), sent);
    let mut seqs: Vec<u32> = read_capture(&wire)
        .iter()
        .filter(|(f, _, _)| f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 47)
        .map(|(f, _, _)| u32::from_be_bytes([f[38], f[39], f[40], f[41]]))
        .collect();
    assert_eq!(
        seqs.len() as u64,
        sent,
        "every ERSPAN copy reached the collector's wire"
    );
    seqs.sort_unstable();
    assert!(
        seqs.iter().enumerate().all(|(i, &q)| q == i as u32),
        "sequence numbers 0..{sent}, each once"
    );
    vx.stop(&dir);
}

/// `--workers` takes auto or 1 to 64; anything else is refused before anything is touched.
#[test]
fn workers_flag_is_checked() {
    let o = common::vxspan(&["run", "examples/vxspan.json", "--workers", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--workers \"0\""));
}

/// Out-of-band VLAN tags: the input's peer sends with the 802.1Q tag in the skb's metadata, not
/// in the frame, as a VLAN sub-interface with tx-vlan-offload on does (this kernel has no 8021q
/// module: common::out_of_band_tags). The AF_PACKET datapath puts the tag back from
/// tp_vlan_tci.
#[test]
fn out_of_band_tags_are_selected_by_their_vlan() {
    let Some((dir, ns)) = lab("live-oob-tags", "oob", &[0, 1, 2, 3]) else {
        return;
    };
    common::out_of_band_tags(&ns, &dir, &["--datapath", "afpacket"]);
}

/// Reloads that change the outputs reopen the ports: the input rings are handed from the old
/// ports to the new ones with their frames, and the old sockets close off the forwarding path.
/// 20 such reloads during a blast: every frame the kernel delivered is counted (before this,
/// each one lost about 80 ms of frames without a trace), and the far ends got what vxspan sent.
#[test]
fn reloads_that_reopen_ports_lose_nothing() {
    reopen_ports_during_a_blast("rop", &["--datapath", "afpacket"]);
}

/// The same through AF_XDP, sending through AF_XDP TX rings: each reload opens the new
/// output's sockets and closes the old one's, which first sends what waits on its ring.
#[test]
fn afxdp_reloads_that_reopen_ports_lose_nothing() {
    reopen_ports_during_a_blast("rox", &["--datapath", "afxdp", "--transmit", "afxdp"]);
}

fn reopen_ports_during_a_blast(tag: &str, args: &[&str]) {
    let Some((dir, ns)) = lab(&format!("live-reopen-{tag}"), tag, &[1, 2, 3]) else {
        return;
    };
    let config = dir.join("vxspan.json");
    let a = r#"{"interfaces": {"eth1": {"redirect_map": {"any": "eth2"}}}}"#;
    let b = r#"{"interfaces": {"eth1": {"redirect_map": {"any": "eth3"}}}}"#;
    std::fs::write(&config, a).unwrap();
    let vx = Vxspan::start_with(&ns, &config, &dir, args);
    let blast = Blast::start(&ns, &dir, 8);
    for i in 0..20 {
        std::fs::write(&config, if i % 2 == 0 { b } else { a }).unwrap();
        let o = vx.cli(&["reload"]);
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ports reopened"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (delivered, fwd) = blast.finish(&ns, &vx);
    let s = vx.stats();
    let drops = &s["interfaces"]["eth1"]["drop_reasons"];
    eprintln!("{delivered} delivered, {fwd} forwarded; eth1 drops {drops}");
    // Every VLAN goes somewhere: the reloads cost no frame, not even a counted one.
    assert_eq!(fwd, delivered, "{drops}");
    let o = vx.cli(&["status"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    common::daemon::assert_outputs_transmit(&st, args.contains(&"--transmit"));
    vx.stop(&dir);
}
