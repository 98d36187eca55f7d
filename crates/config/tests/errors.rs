//! Every malformed configuration of CONFIG.md section 1 (and the native schema's own) is refused
//! with the key path and the problem.

use std::path::Path;
use vxspan_config::{parse, Config, ConfigError, Form, Syntax, VlanAction};

fn json(text: &str) -> Result<Config, ConfigError> {
    parse(text, Syntax::Json, Path::new("test.json"))
}

fn toml(text: &str) -> Result<Config, ConfigError> {
    parse(text, Syntax::Toml, Path::new("test.toml"))
}

fn vx(map: &str) -> String {
    format!(r#"{{"interfaces": {{"eth1": {{"redirect_map": {{{map}}}}}}}}}"#)
}

#[track_caller]
fn assert_err(r: Result<Config, ConfigError>, path: &str, needle: &str) {
    let e = r.expect_err("config should be refused");
    assert_eq!(e.path, path, "path of: {e}");
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert!(e.to_string().starts_with("test."), "{e}");
}

#[test]
fn example_loads() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vxspan.json"),
    )
    .unwrap();
    let c = json(&text).unwrap();
    assert_eq!(c.form, Form::Vxspan);
    let names: Vec<_> = c.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0", "eth1"]);
    let outs: Vec<_> = c.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, ["eth2", "eth3"]);
    let rules: Vec<_> = c
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.vlans.describe()))
        .collect();
    assert_eq!(
        rules,
        [
            ("eth0/none", "none".to_string()),
            ("eth1/10", "10".into()),
            ("eth1/11", "11".into()),
            ("eth1/12", "12".into())
        ]
    );
}

#[test]
fn bad_selectors() {
    for key in [
        "5000", "-1", "10abc", " 10", "", "4096", "010", "1.5", "+5", "None", "ANY",
    ] {
        let r = json(&vx(&format!(r#""{key}": "eth2""#)));
        let shown = if key.chars().all(|c| c.is_ascii_alphabetic()) && !key.is_empty() {
            key.to_string()
        } else {
            format!("{key:?}")
        };
        assert_err(
            r,
            &format!("interfaces.eth1.redirect_map.{shown}"),
            "invalid VLAN selector",
        );
    }
}

#[test]
fn good_selectors() {
    for (key, desc) in [
        ("none", "none"),
        ("0", "none"),
        ("1", "1"),
        ("4094", "4094"),
        ("any", "any"),
        ("4095", "any"),
    ] {
        let c = json(&vx(&format!(r#""{key}": "eth2""#))).unwrap();
        assert_eq!(c.rules[0].vlans.describe(), desc, "{key}");
    }
}

#[test]
fn non_string_output() {
    for v in ["3", "null", "[\"eth2\"]", "{}", "true"] {
        assert_err(
            json(&vx(&format!(r#""10": {v}"#))),
            "interfaces.eth1.redirect_map.\"10\"",
            "invalid type",
        );
    }
    assert_err(
        json(&vx(r#""10": """#)),
        "interfaces.eth1.redirect_map.\"10\"",
        "empty interface name",
    );
}

#[test]
fn unknown_keys() {
    assert_err(
        json(r#"{"interfaces": {}, "bogus": 1}"#),
        "bogus",
        "unknown field",
    );
    assert_err(
        json(r#"{"interfaces": {"eth1": {"redirect_map": {}, "extra": 1}}}"#),
        "interfaces.eth1.extra",
        "unknown field",
    );
    assert_err(
        json(r#"{"interfaces": {"eth1": {}}}"#),
        "interfaces.eth1",
        "missing field `redirect_map`",
    );
    assert_err(
        toml("[outputs.x]\ninterface = \"e\"\ncolour = 1\n"),
        "outputs.x.colour",
        "unknown field",
    );
}

#[test]
fn duplicate_input() {
    let text = r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}, "eth1": {"redirect_map": {"11": "eth3"}}}}"#;
    assert_err(json(text), "interfaces.eth1", "duplicate key");
    assert_err(
        json(&vx(r#""10": "eth2", "10": "eth3""#)),
        "interfaces.eth1.redirect_map.\"10\"",
        "duplicate key",
    );
    assert_err(
        json(&vx(r#""none": "eth2", "0": "eth3""#)),
        "interfaces.eth1.redirect_map.\"0\"",
        "same frames",
    );
    assert_err(
        json(&vx(r#""any": "eth2", "4095": "eth3""#)),
        "interfaces.eth1.redirect_map.\"4095\"",
        "same frames",
    );
    let native = "[inputs.a]\ninterface = \"eth1\"\n[inputs.b]\ninterface = \"eth1\"\n";
    assert_err(toml(native), "inputs.b.interface", "duplicate input");
}

#[test]
fn loops() {
    let text = r#"{"interfaces": {"eth0": {"redirect_map": {"none": "eth1"}}, "eth1": {"redirect_map": {"10": "eth3"}}}}"#;
    assert_err(json(text), "interfaces.eth0.redirect_map.none", "loop");
    assert_err(
        json(&vx(r#""10": "eth1""#)),
        "interfaces.eth1.redirect_map.\"10\"",
        "loop",
    );
}

#[test]
fn any_yields_to_specific() {
    let c = json(&vx(r#""any": "eth2", "10": "eth3", "none": "eth4""#)).unwrap();
    let any = c.rules.iter().find(|r| r.name == "eth1/any").unwrap();
    assert!(!any.vlans.contains(10) && !any.vlans.contains(0));
    assert!(any.vlans.contains(11) && any.vlans.contains(4094));
}

#[test]
fn xdp_mode() {
    let c =
        json(r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}}, "xdp_mode": "DRV"}"#)
            .unwrap();
    assert_eq!(c.xdp_mode, Some(vxspan_config::XdpMode::Native));
    assert_err(
        json(r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}}, "xdp_mode": "FAST"}"#),
        "xdp_mode",
        "unknown XDP mode",
    );
}

#[test]
fn syntax_errors_have_locations() {
    let e = json("{\"interfaces\": {\n  \"eth1\": }").unwrap_err();
    assert!(e.message.contains("line 2"), "{e}");
    let e = toml("[inputs.a\n").unwrap_err();
    assert!(e.message.contains("line 1"), "{e}");
    assert!(
        json(r#"{"interfaces": {"eth1": {"redirect_map": {"10": "eth3"}}}} trailing"#).is_err()
    );
}

const NATIVE: &str = r#"
[inputs.mirror0]
interface = "eth1"

[outputs.tools]
interface = "eth3"
vlan = { push = 100 }
truncate = 128

[outputs.ids]
interface = "eth4"
vlan = { pop = true }

[[rules]]
name = "web"
from = ["mirror0"]
vlan = [10, 11, "none", "20-22"]
filter = "tcp port 443"
to = ["tools", "ids"]
sample = 10

[[rules]]
from = "mirror0"
to = "ids"
sample = { one_in = 4, mode = "flow" }
"#;

#[test]
fn native_loads() {
    let c = toml(NATIVE).unwrap();
    assert_eq!(c.form, Form::Native);
    assert_eq!(c.outputs[0].vlan, Some(VlanAction::Push(100)));
    assert_eq!(c.outputs[0].truncate, Some(128));
    assert_eq!(c.outputs[1].vlan, Some(VlanAction::Pop));
    assert_eq!(c.rules[0].vlans.describe(), "none,10-11,20-22");
    assert_eq!(c.rules[0].to, [0, 1]);
    assert_eq!(c.rules[1].name, "rule-1");
    assert_eq!(c.rules[1].vlans.describe(), "any");
    assert_eq!(c.rules[1].sample.unwrap().one_in, 4);
}

#[test]
fn native_errors() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "to = [\"tools\", \"ids\"]",
            "to = [\"tools\", \"nope\"]",
            "rules[0].to[1]",
            "unknown output \"nope\"",
        ),
        (
            "from = [\"mirror0\"]",
            "from = [\"mirror1\"]",
            "rules[0].from[0]",
            "unknown input",
        ),
        (
            "from = [\"mirror0\"]",
            "from = []",
            "rules[0].from",
            "at least one input",
        ),
        (
            "vlan = [10, 11, \"none\", \"20-22\"]",
            "vlan = [5000]",
            "rules[0].vlan[0]",
            "invalid VLAN selector",
        ),
        (
            "vlan = [10, 11, \"none\", \"20-22\"]",
            "vlan = [\"30-20\"]",
            "rules[0].vlan[0]",
            "invalid VLAN selector",
        ),
        (
            "vlan = [10, 11, \"none\", \"20-22\"]",
            "vlan = []",
            "rules[0].vlan",
            "empty VLAN list",
        ),
        (
            "vlan = { push = 100 }",
            "vlan = { push = 4095 }",
            "outputs.tools.vlan.push",
            "1 to 4094",
        ),
        (
            "vlan = { push = 100 }",
            "vlan = { push = 1, pop = true }",
            "outputs.tools.vlan",
            "exactly one",
        ),
        (
            "vlan = { pop = true }",
            "vlan = { pop = false }",
            "outputs.ids.vlan.pop",
            "true",
        ),
        (
            "truncate = 128",
            "truncate = 13",
            "outputs.tools.truncate",
            "14 to 65535",
        ),
        (
            "truncate = 128",
            "truncate = \"big\"",
            "outputs.tools.truncate",
            "integer",
        ),
        ("sample = 10", "sample = 0", "rules[0].sample", "1 to"),
        (
            "sample = 10",
            "sample = { one_in = 3, mode = \"x\" }",
            "rules[0].sample.mode",
            "unknown sample mode",
        ),
        (
            "filter = \"tcp port 443\"",
            "filter = \" \"",
            "rules[0].filter",
            "empty filter",
        ),
        (
            "name = \"web\"",
            "name = \"we b\"",
            "rules[0].name",
            "rule name",
        ),
        (
            "interface = \"eth3\"",
            "interface = \"eth1\"",
            "rules[0]",
            "loop",
        ),
        (
            "interface = \"eth3\"",
            "interface = \"a/b\"",
            "outputs.tools.interface",
            "not a valid interface name",
        ),
        (
            "interface = \"eth3\"",
            "interface = \"abcdefghijklmnop\"",
            "outputs.tools.interface",
            "15 bytes",
        ),
        (
            "[outputs.ids]",
            "[inputs.tools]\ninterface = \"eth9\"\n[outputs.ids]",
            "outputs.tools",
            "already used",
        ),
    ];
    for (from, to, path, needle) in cases {
        assert!(NATIVE.contains(from), "{from}");
        let text = NATIVE.replacen(from, to, 1);
        assert_err(toml(&text), path, needle);
    }
    let dup = NATIVE.replace("from = \"mirror0\"", "name = \"web\"\nfrom = \"mirror0\"");
    assert_err(toml(&dup), "rules[1].name", "already used");
}

#[test]
fn native_json_equals_toml() {
    let j = r#"{"inputs": {"m": {"interface": "eth1"}}, "outputs": {"t": {"interface": "eth3"}},
               "rules": [{"from": ["m"], "vlan": "any", "to": ["t"]}]}"#;
    let c = json(j).unwrap();
    assert_eq!(c.form, Form::Native);
    assert!(c.rules[0].vlans.is_all());
}

const TUNNELS: &str = r#"
[inputs.cloud]
interface = "eth1"
decap = ["vxlan", "erspan"]
decap_depth = 2
decap_ports = { vxlan = [8472] }
reassembly = { timeout_ms = 500 }

[outputs.collector]
erspan = { version = 3, remote = "198.18.1.10", session = 42, dscp = 8 }
oversize = "truncate"
mtu = 1500

[outputs.vx]
vxlan = { remote = "2001:db8::10", vni = 7000, source = "2001:db8::1" }

[outputs.gre]
gre = { remote = "198.18.1.11", key = 5, dst_mac = "02:00:00:00:00:0a" }

[[rules]]
from = "cloud"
vni = [7000, 7001]
to = ["collector", "vx", "gre"]

[[rules]]
from = "cloud"
erspan_session = 42
to = "collector"
"#;

#[test]
fn tunnel_options_load() {
    use vxspan_config::{Encap, Oversize, TunnelKind};
    let c = toml(TUNNELS).unwrap();
    let d = c.inputs[0].decap.as_ref().unwrap();
    assert_eq!(d.kinds, [TunnelKind::Vxlan, TunnelKind::Erspan]);
    assert_eq!(d.depth, 2);
    assert_eq!(d.ports.vxlan, [4789, 8472]);
    assert_eq!(d.reassembly.timeout_ms, 500);
    assert_eq!(d.mpls, vxspan_config::Mpls::default());
    assert_eq!(d.mpls.payload, vxspan_config::MplsPayloadKind::Ip);
    let pw = toml(&TUNNELS.replace(
        "decap_depth = 2",
        "decap_depth = 2\nmpls = { payload = \"ethernet\", control_word = true }",
    ))
    .unwrap();
    let m = pw.inputs[0].decap.as_ref().unwrap().mpls;
    assert_eq!(
        (m.payload, m.control_word),
        (vxspan_config::MplsPayloadKind::Ethernet, true)
    );
    match c.outputs[0].dest.encap().unwrap() {
        Encap::Erspan {
            version: 3,
            session: 42,
            outer,
        } => assert_eq!((outer.dscp, outer.ttl), (8, 64)),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.outputs[0].oversize, Oversize::Truncate);
    assert!(c.outputs[0].dest.interface().is_none());
    match c.outputs[1].dest.encap().unwrap() {
        Encap::Vxlan {
            vni: 7000,
            port: 4789,
            outer,
        } => assert!(outer.remote.is_ipv6()),
        other => panic!("{other:?}"),
    }
    match c.outputs[2].dest.encap().unwrap() {
        Encap::Gre {
            key: Some(5),
            outer,
        } => assert_eq!(outer.dst_mac, [2, 0, 0, 0, 0, 10]),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.rules[0].vni.as_deref(), Some(&[7000, 7001][..]));
    assert_eq!(c.rules[1].erspan_session.as_deref(), Some(&[42][..]));
    // Geneve is written as VXLAN is, on IANA's port unless told.
    let g = toml(&TUNNELS.replace("vxlan = {", "geneve = {")).unwrap();
    match g.outputs[1].dest.encap().unwrap() {
        e @ Encap::Geneve {
            vni: 7000,
            port: 6081,
            ..
        } => assert_eq!(e.kind(), "geneve"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tunnel_option_errors() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "decap = [\"vxlan\", \"erspan\"]",
            "decap = [\"vxlan\", \"nvgre\"]",
            "inputs.cloud.decap[1]",
            "unknown tunnel type",
        ),
        (
            "decap_depth = 2",
            "decap_depth = 9",
            "inputs.cloud.decap_depth",
            "1 to 8",
        ),
        (
            "decap_ports = { vxlan = [8472] }",
            "decap_ports = { vxlan = [6081] }",
            "inputs.cloud.decap_ports",
            "both vxlan and geneve",
        ),
        (
            "decap_ports = { vxlan = [8472] }",
            "decap_ports = { sctp = [1] }",
            "inputs.cloud.decap_ports.sctp",
            "unknown key",
        ),
        (
            "reassembly = { timeout_ms = 500 }",
            "reassembly = { timeout_ms = 0 }",
            "inputs.cloud.reassembly.timeout_ms",
            "1 to 60000",
        ),
        (
            "reassembly = { timeout_ms = 500 }",
            "reassembly = { timeout_ms = 500 }\nmpls = { payload = \"guess\" }",
            "inputs.cloud.mpls.payload",
            "is not \"ip\" or \"ethernet\"",
        ),
        (
            "reassembly = { timeout_ms = 500 }",
            "reassembly = { timeout_ms = 500 }\nmpls = { control_word = 1 }",
            "inputs.cloud.mpls.control_word",
            "not true or false",
        ),
        (
            "reassembly = { timeout_ms = 500 }",
            "reassembly = { timeout_ms = 500 }\nmpls = { cw = true }",
            "inputs.cloud.mpls.cw",
            "unknown key",
        ),
        (
            "version = 3, remote",
            "version = 4, remote",
            "outputs.collector.erspan.version",
            "2 to 3",
        ),
        (
            "session = 42, dscp = 8",
            "session = 1024, dscp = 8",
            "outputs.collector.erspan.session",
            "0 to 1023",
        ),
        (
            "session = 42, dscp = 8",
            "dscp = 8",
            "outputs.collector.erspan.session",
            "missing",
        ),
        (
            "session = 42, dscp = 8",
            "session = 42, dscp = 64",
            "outputs.collector.erspan.dscp",
            "0 to 63",
        ),
        (
            "remote = \"198.18.1.10\"",
            "remote = \"198.18.1\"",
            "outputs.collector.erspan.remote",
            "IPv4 or IPv6",
        ),
        (
            "vni = 7000, source",
            "vni = 16777216, source",
            "outputs.vx.vxlan.vni",
            "0 to 16777215",
        ),
        (
            "vxlan = { remote = \"2001:db8::10\", vni = 7000, source = \"2001:db8::1\" }",
            "geneve = { remote = \"2001:db8::10\", source = \"2001:db8::1\" }",
            "outputs.vx.geneve.vni",
            "missing: the Geneve virtual network identifier",
        ),
        (
            "vxlan = { remote = \"2001:db8::10\", vni = 7000, source = \"2001:db8::1\" }",
            "geneve = { remote = \"2001:db8::10\", vni = 1, options = [] }",
            "outputs.vx.geneve.options",
            "unknown key",
        ),
        (
            "vxlan = { remote = \"2001:db8::10\", vni = 7000, source = \"2001:db8::1\" }",
            "geneve = { remote = \"2001:db8::10\", vni = 1 }\nvxlan = { remote = \"2001:db8::10\", vni = 1 }",
            "outputs.vx",
            "exactly one destination: interface, erspan, vxlan, geneve, gre or pcap",
        ),
        (
            "source = \"2001:db8::1\"",
            "source = \"198.18.0.1\"",
            "outputs.vx.vxlan.source",
            "same address family",
        ),
        (
            "key = 5, dst_mac",
            "key = 5, colour = 1, dst_mac",
            "outputs.gre.gre.colour",
            "unknown key",
        ),
        (
            "dst_mac = \"02:00:00:00:00:0a\"",
            "dst_mac = \"02:00:00:00:00\"",
            "outputs.gre.gre.dst_mac",
            "MAC address",
        ),
        (
            "oversize = \"truncate\"",
            "oversize = \"fold\"",
            "outputs.collector.oversize",
            "drop",
        ),
        (
            "[outputs.vx]\n",
            "[outputs.vx]\ninterface = \"eth9\"\n",
            "outputs.vx",
            "exactly one destination",
        ),
        ("vni = [7000, 7001]", "vni = []", "rules[0].vni", "empty"),
        (
            "erspan_session = 42",
            "erspan_session = 5000",
            "rules[1].erspan_session",
            "0 to 1023",
        ),
    ];
    for (from, to, path, needle) in cases {
        assert!(TUNNELS.contains(from), "{from}");
        assert_err(toml(&TUNNELS.replacen(from, to, 1)), path, needle);
    }
    assert_err(
        toml("[inputs.a]\ninterface = \"e\"\ndecap_depth = 2\n"),
        "inputs.a.decap_depth",
        "without decap",
    );
    assert_err(
        toml("[outputs.a]\nvlan = { pop = true }\n"),
        "outputs.a",
        "needs a destination",
    );
}

#[test]
fn management_metrics_address() {
    let base = "[inputs.a]\ninterface = \"eth0\"\n[outputs.b]\ninterface = \"eth1\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\n[management]\n";
    let c = toml(&format!("{base}metrics = \"127.0.0.1:9464\"\n")).unwrap();
    assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    let c = toml(&format!("{base}metrics = \"[::1]:9464\"\n")).unwrap();
    assert_eq!(c.metrics, Some("[::1]:9464".parse().unwrap()));
    assert!(toml(base).unwrap().metrics.is_none());
    for bad in ["localhost:9464", "127.0.0.1", "127.0.0.1:99999", ""] {
        assert_err(
            toml(&format!("{base}metrics = \"{bad}\"\n")),
            "management.metrics",
            "is not ADDRESS:PORT",
        );
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/metrics.toml"),
    )
    .unwrap();
    assert!(toml(&text).unwrap().metrics.is_some());
}

#[test]
fn management_snmp() {
    let base = "[inputs.a]\ninterface = \"eth0\"\n[outputs.b]\ninterface = \"eth1\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\n[management]\n";
    let c = toml(&format!("{base}snmp_agentx = \"/var/agentx/master\"\n")).unwrap();
    let s = c.snmp.unwrap();
    assert_eq!(s.master, "/var/agentx/master");
    assert_eq!(s.base_oid, vxspan_config::DEFAULT_SNMP_BASE);
    assert_eq!(s.drop_rate, None);
    let c = toml(&format!(
        "{base}snmp_agentx = \"tcp:127.0.0.1:705\"\nsnmp_base_oid = \"1.3.6.1.4.1.99999\"\nsnmp_drop_rate = 10\n"
    ))
    .unwrap();
    let s = c.snmp.unwrap();
    assert_eq!(s.base_oid, [1, 3, 6, 1, 4, 1, 99999]);
    assert_eq!(s.drop_rate, Some(10));
    assert!(toml(base).unwrap().snmp.is_none());
    assert_err(
        toml(&format!("{base}snmp_agentx = \"\"\n")),
        "management.snmp_agentx",
        "empty path",
    );
    assert_err(
        toml(&format!("{base}snmp_agentx = \"tcp:localhost\"\n")),
        "management.snmp_agentx",
        "expected tcp:ADDRESS:PORT",
    );
    for bad in ["1.3.x", "7.1", "1", ""] {
        assert_err(
            toml(&format!(
                "{base}snmp_agentx = \"/s\"\nsnmp_base_oid = \"{bad}\"\n"
            )),
            "management.snmp_base_oid",
            "is not a dotted object identifier",
        );
    }
    assert_err(
        toml(&format!("{base}snmp_drop_rate = 5\n")),
        "management.snmp_drop_rate",
        "needs management.snmp_agentx",
    );
}

/// `management.hash_key_file`: 32 hex digits in a file nobody else can read; relative to the
/// configuration's directory.
#[test]
fn hash_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vxspan-hashkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    let text = "[inputs.a]\ninterface = \"e1\"\n[outputs.b]\ninterface = \"e2\"\n[[rules]]\nfrom = \"a\"\nto = \"b\"\n[management]\nhash_key_file = \"key\"\n";
    let key = dir.join("key");
    let load = |content: &str, mode: u32| {
        std::fs::write(&key, content).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        parse(text, Syntax::Toml, &cfg)
    };
    let c = load("00112233445566778899aabbccddeeff\n", 0o640).unwrap();
    assert_eq!(c.hash_key.unwrap()[..3], [0x00, 0x11, 0x22]);
    for (content, mode, msg) in [
        (
            "00112233445566778899aabbccddeeff",
            0o644,
            "readable by everyone",
        ),
        ("0011", 0o600, "32 hexadecimal digits"),
        (
            "zz112233445566778899aabbccddeeff",
            0o600,
            "32 hexadecimal digits",
        ),
    ] {
        let e = load(content, mode).unwrap_err();
        assert_eq!(e.path, "management.hash_key_file", "{content}");
        assert!(e.message.contains(msg), "{}", e.message);
    }
    std::fs::remove_file(&key).unwrap();
    let e = parse(text, Syntax::Toml, &cfg).unwrap_err();
    assert!(e.message.contains("No such file"), "{}", e.message);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(toml("[management]\nhash_key_file = 5\n").is_err());
}
