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
