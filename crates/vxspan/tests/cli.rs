//! The command line as a user drives it: exit codes, error messages, JSON shapes.

mod common;

use common::{root, scratch, vxspan};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_examples() {
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let o = vxspan(&["check", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        let o = vxspan(&["check", "--json", path.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            v["groups"].as_array().is_some_and(|g| !g.is_empty()),
            "{}",
            path.display()
        );
    }
}

#[test]
fn check_explains_placement() {
    let o = vxspan(&["check", "examples/vxspan.json", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert!(groups.iter().all(|g| g["tier"] == "xdp"));
    let text = String::from_utf8(vxspan(&["check", "examples/vxspan.json"]).stdout).unwrap();
    assert!(text.contains("eth1/10"), "{text}");
    assert!(text.contains("no rule -> dropped as no_rule"), "{text}");
}

/// Each malformed configuration of CONFIG.md section 1: exit 2, the file and key path named.
#[test]
fn check_rejects_malformed_configs_with_exit_2() {
    let dir = scratch("cli-bad-configs");
    let cases = [
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"5000": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map."5000""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"-1": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map."-1""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"10abc": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map."10abc""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {" 10": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map." 10""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map."""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"10": 3}}}}"#,
            r#"interfaces.eth1.redirect_map."10""#,
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}}, "colour": "blue"}"#,
            "colour",
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}, "eth1": {"redirect_map": {"11": "eth3"}}}}"#,
            "interfaces.eth1",
        ),
        (
            r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth2"}}, "eth2": {"redirect_map": {"11": "eth3"}}}}"#,
            r#"interfaces.eth1.redirect_map."10""#,
        ),
    ];
    for (i, (text, path)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.json"));
        std::fs::write(&file, text).unwrap();
        let o = vxspan(&["check", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("bad{i}.json: {path}: ")),
            "{text}\n{err}"
        );
    }
    let file = dir.join("badfilter.toml");
    std::fs::write(&file, "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\nfilter = \"tcp prot 80\"\n").unwrap();
    let o = vxspan(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("rules[0].filter: cannot compile filter"),
        "{}",
        stderr(&o)
    );
    let o = vxspan(&["check", "/nonexistent/x.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"));
}

#[test]
fn replay_usage_errors() {
    let o = vxspan(&[
        "replay",
        "examples/vxspan.json",
        "-i",
        "eth9=x.pcap",
        "--out-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no input \"eth9\""), "{}", stderr(&o));
    let o = vxspan(&["replay", "examples/vxspan.json", "-i", "eth1"]);
    assert_eq!(o.status.code(), Some(2));
    let o = vxspan(&[
        "replay",
        "examples/vxspan.json",
        "-i",
        "eth1=/nonexistent.pcap",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.pcap"), "{}", stderr(&o));
}

#[test]
fn replay_json_counters_and_pcapng_round_trip() {
    let dir = scratch("cli-replay");
    let input = dir.join("in.pcapng");
    common::gen_mix(&input, 3000, 9);
    let out = dir.join("eth3.pcapng");
    let o = vxspan(&[
        "replay",
        "examples/vxspan.json",
        "-i",
        &format!("eth1={}", input.display()),
        "-o",
        &format!("eth3={}", out.display()),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let eth1 = &v["interfaces"]["eth1"];
    for key in [
        "rx_packets",
        "rx_bytes",
        "dropped_packets",
        "dropped_bytes",
        "tx_packets",
        "tx_bytes",
        "tx_dropped_packets",
    ] {
        assert!(eth1[key].is_u64(), "{key}");
    }
    assert!(eth1["drop_reasons"]["no_rule"].is_u64());
    assert!(v["interfaces"]["eth3"]["tx_drop_reasons"]["mtu_exceeded"].is_u64());
    assert!(v["vlans"]["eth1"]["10"]["packets"].as_u64().unwrap() > 0);
    assert!(v["vlans"]["eth1"]["none"]["packets"].as_u64().unwrap() > 0);
    assert_eq!(v["rules"][1]["name"], "eth1/10");
    assert_eq!(eth1["rx_packets"], 3000);
    let written = common::read_capture(&out);
    assert_eq!(
        written.len() as u64,
        v["interfaces"]["eth3"]["tx_packets"].as_u64().unwrap()
    );
    // Nanosecond timestamps survive, frames unchanged: each written frame is one of the input's.
    let input_frames = common::read_capture(&input);
    for f in &written {
        assert!(input_frames.contains(f));
    }
    assert!(
        written.iter().any(|f| f.2 % 1000 != 0),
        "timestamps lost their nanoseconds"
    );
}

#[test]
fn demo_succeeds() {
    let o = vxspan(&["demo", "--count", "500"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("as the generator expected"), "{text}");
    assert!(!text.contains("MISMATCH"));
}

#[test]
fn version() {
    let o = vxspan(&["--version"]);
    assert!(String::from_utf8(o.stdout).unwrap().starts_with("vxspan "));
}

/// Every shared capture through the `vxspan replay` command itself, with an `any` rule: exit 0,
/// and rx = forwarded + dropped = the capture's frame count.
#[test]
fn replay_command_on_every_shared_capture() {
    let dir = scratch("cli-any");
    let cfg = dir.join("any.toml");
    std::fs::write(&cfg, "[inputs.in]\ninterface = \"eth1\"\n[outputs.out]\ninterface = \"eth2\"\n[[rules]]\nfrom = \"in\"\nto = \"out\"\n").unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(common::shared().join("captures/captures")).unwrap() {
        let path = entry.unwrap().path();
        let frames = common::read_capture(&path).len() as u64;
        let out = dir.join("out.pcapng");
        let o = vxspan(&[
            "replay",
            cfg.to_str().unwrap(),
            "-i",
            &format!("in={}", path.display()),
            "-o",
            &format!("out={}", out.display()),
            "--json",
        ]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let i = &v["interfaces"]["in"];
        let (rx, fwd, drop) = (
            i["rx_packets"].as_u64().unwrap(),
            i["forwarded_packets"].as_u64().unwrap(),
            i["dropped_packets"].as_u64().unwrap(),
        );
        assert_eq!((rx, fwd + drop), (frames, frames), "{}", path.display());
        assert_eq!(
            v["interfaces"]["out"]["tx_packets"].as_u64().unwrap(),
            fwd,
            "{}",
            path.display()
        );
        assert_eq!(
            common::read_capture(&out).len() as u64,
            fwd,
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 50);
}

#[test]
fn check_warns_about_filters_that_cannot_see_inside_tags() {
    let dir = scratch("cli-warn");
    let file = dir.join("w.toml");
    std::fs::write(&file, "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nvlan = [10]\nfilter = \"tcp port 443\"\nto = \"b\"\n").unwrap();
    let o = vxspan(&["check", file.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains("vlan and tcp port 443"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nvlan = [10]\nfilter = \"vlan and tcp port 443\"\nto = \"b\"\n").unwrap();
    let o = vxspan(&["check", file.to_str().unwrap()]);
    assert!(
        o.status.success() && !stderr(&o).contains("warning"),
        "{}",
        stderr(&o)
    );
}

/// A `listen` input accepts tunnels only from its `allow` list; the rest are `not_allowed`.
#[test]
fn listen_allow_list() {
    let dir = scratch("cli-allow");
    // Five frames each way between 192.168.203.1 and 192.168.202.1.
    let capture = common::shared().join("captures/captures/tcpdump-vxlan.pcap");
    for (allow, forwarded) in [
        ("198.18.0.0/15", 0),
        ("192.168.203.1", 5),
        ("192.168.202.0/23", 10),
    ] {
        let cfg = dir.join("allow.toml");
        std::fs::write(&cfg, format!("[inputs.cloud]\nlisten = \"vxlan://0.0.0.0:4789\"\nallow = [\"{allow}\"]\n[outputs.out]\ninterface = \"eth2\"\n[[rules]]\nfrom = \"cloud\"\nto = \"out\"\n")).unwrap();
        let o = vxspan(&[
            "replay",
            cfg.to_str().unwrap(),
            "-i",
            &format!("cloud={}", capture.display()),
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let c = &v["interfaces"]["cloud"];
        assert_eq!(c["forwarded_packets"], forwarded, "{allow}");
        assert_eq!(c["drop_reasons"]["not_allowed"], 10 - forwarded, "{allow}");
    }
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[inputs.cloud]\nlisten = \"vxlan://0.0.0.0:4789\"\nallow = [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let o = vxspan(&["check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("inputs.cloud.allow[0]"),
        "{}",
        stderr(&o)
    );
}

/// Rules can select on the tunnel a frame came out of and on its outer source.
#[test]
fn rules_on_tunnel_type_and_outer_source() {
    let dir = scratch("cli-tunnel-rules");
    let capture = common::shared().join("captures/captures/sv-vxlan-decoder-03-aws-mirror.pcap"); // 100 frames, VXLAN from 172.31/16
    let cfg = dir.join("t.toml");
    std::fs::write(
        &cfg,
        r#"
[inputs.cloud]
interface = "eth1"
decap = ["vxlan", "geneve"]
[outputs.out]
interface = "eth2"
[[rules]]
name = "vxlan"
from = "cloud"
tunnel = "vxlan"
to = "out"
[[rules]]
name = "geneve"
from = "cloud"
tunnel = ["geneve"]
to = "out"
[[rules]]
name = "aws"
from = "cloud"
outer_source = "172.31.0.0/16"
to = "out"
[[rules]]
name = "elsewhere"
from = "cloud"
outer_source = ["198.18.0.0/15", "2001:db8::/32"]
to = "out"
"#,
    )
    .unwrap();
    let o = vxspan(&[
        "replay",
        cfg.to_str().unwrap(),
        "-i",
        &format!("cloud={}", capture.display()),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let matched: Vec<u64> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["matched_packets"].as_u64().unwrap())
        .collect();
    assert_eq!(matched, [100, 0, 100, 0]);
    std::fs::write(&cfg, "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\ntunnel = \"nvgre\"\n").unwrap();
    let o = vxspan(&["check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("rules[0].tunnel: unknown tunnel type"),
        "{}",
        stderr(&o)
    );
}
