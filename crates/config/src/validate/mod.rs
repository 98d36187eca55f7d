//! From the raw document to a [`Config`]: the walk over the top-level tables (inputs, outputs,
//! rules, the VxSPAN form's `redirect_map`, passthru, management) and the checks of the whole
//! configuration (duplicate port and rule names, duplicate inputs, loops, the number of outputs).
//! One port, one rule and one option value are built by the child modules.

mod management;
mod ports;
mod rules;
mod values;
mod vlan;

use crate::checks::{as_u64, check_ifname, check_name, err, VResult};
use crate::model::{
    Config, Destination, Form, Input, Output, Passthru, Rule, VlanSet, XdpMode, MAX_OUTPUTS,
};
use crate::path::KeyPath;
use crate::raw::RawConfig;
use crate::tunnel::Oversize;
use management::parse_snmp;
use ports::{build_input, build_output};
use rules::build_rule;
use std::path::{Path, PathBuf};
use vlan::{parse_vx_selector, VxSelector};

fn parse_xdp_mode(path: &KeyPath, s: &str) -> VResult<XdpMode> {
    match s {
        "SKB" | "generic" => Ok(XdpMode::Generic),
        "DRV" | "native" => Ok(XdpMode::Native),
        "HW" | "offload" => Ok(XdpMode::Offload),
        _ => err(
            path.clone(),
            format!("unknown XDP mode {s:?} (expected \"SKB\", \"DRV\", \"HW\", \"generic\", \"native\" or \"offload\")"),
        ),
    }
}

pub(crate) fn validate(raw: RawConfig, file: &Path) -> VResult<Config> {
    let root = KeyPath::root();
    let native = !raw.inputs.0.is_empty() || !raw.outputs.0.is_empty() || !raw.rules.is_empty();
    let mut cfg = Config {
        file: file.to_owned(),
        form: if native { Form::Native } else { Form::Vxspan },
        xdp_mode: raw
            .xdp_mode
            .as_deref()
            .map(|m| parse_xdp_mode(&root.key("xdp_mode"), m))
            .transpose()?,
        inputs: Vec::new(),
        outputs: Vec::new(),
        rules: Vec::new(),
        passthru: Vec::new(),
        user: raw.management.as_ref().and_then(|m| m.user.clone()),
        control: match raw.management.as_ref().and_then(|m| m.control.as_deref()) {
            Some("") => return err(root.key("management").key("control"), "empty path"),
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        },
        control_group: match raw
            .management
            .as_ref()
            .and_then(|m| m.control_group.as_deref())
        {
            Some(g) if g.is_empty() || g.contains(['/', ':', '\0']) => {
                return err(
                    root.key("management").key("control_group"),
                    format!("{g:?} is not a group name"),
                )
            }
            g => g.map(str::to_owned),
        },
        metrics: match raw.management.as_ref().and_then(|m| m.metrics.as_deref()) {
            Some(a) => match a.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    return err(
                        root.key("management").key("metrics"),
                        format!(
                            "{a:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")"
                        ),
                    )
                }
            },
            None => None,
        },
        snmp: match raw.management.as_ref() {
            Some(m) => parse_snmp(&root.key("management"), m)?,
            None => None,
        },
        counters: crate::limits::parse_counters(&root.key("counters"), raw.counters.as_ref())?,
        hash_key: match raw
            .management
            .as_ref()
            .and_then(|m| m.hash_key_file.as_deref())
        {
            Some(f) => Some(crate::limits::load_hash_key(
                &root.key("management").key("hash_key_file"),
                f,
                file,
            )?),
            None => None,
        },
    };
    // Where each port name and each input interface was defined, for duplicate errors.
    let mut port_paths: Vec<(String, KeyPath)> = Vec::new();
    let mut claim_name = |name: &str, path: &KeyPath| -> VResult<()> {
        if let Some((_, first)) = port_paths.iter().find(|(n, _)| n == name) {
            return err(
                path.clone(),
                format!("port name {name:?} is already used at {first}"),
            );
        }
        port_paths.push((name.to_owned(), path.clone()));
        Ok(())
    };

    for (name, raw_in) in &raw.inputs.0 {
        let p = root.key("inputs").key(name);
        check_name(&p, "input", name)?;
        claim_name(name, &p)?;
        cfg.inputs.push(build_input(&p, name, raw_in)?);
    }
    for (name, raw_out) in &raw.outputs.0 {
        let p = root.key("outputs").key(name);
        check_name(&p, "output", name)?;
        claim_name(name, &p)?;
        cfg.outputs.push(build_output(&p, name, raw_out)?);
    }

    // Native rules.
    let input_names: Vec<String> = cfg.inputs.iter().map(|i| i.name.clone()).collect();
    let output_names: Vec<String> = cfg.outputs.iter().map(|o| o.name.clone()).collect();
    let in_refs: Vec<&str> = input_names.iter().map(String::as_str).collect();
    let out_refs: Vec<&str> = output_names.iter().map(String::as_str).collect();
    for (i, r) in raw.rules.iter().enumerate() {
        let p = root.key("rules").index(i);
        cfg.rules.push(build_rule(&p, i, r, &in_refs, &out_refs)?);
    }

    // The VxSPAN form: each interface is an input, each redirect target an output named after
    // its interface (or the native output bound to that interface, if there is exactly one).
    if let Some(ifaces) = &raw.interfaces {
        if ifaces.0.is_empty() {
            return err(root.key("interfaces"), "no interfaces defined");
        }
        let mut vx_inputs = Vec::new();
        for (iface, _) in &ifaces.0 {
            let p = root.key("interfaces").key(iface);
            check_ifname(&p, iface)?;
            claim_name(iface, &p)?;
            vx_inputs.push(cfg.inputs.len());
            cfg.inputs.push(Input {
                name: iface.clone(),
                interface: iface.clone(),
                listen: None,
                decap: None,
                allow_uplink: false,
            });
        }
        for ((iface, vx), input) in ifaces.0.iter().zip(vx_inputs) {
            let p = root.key("interfaces").key(iface);
            let map_path = p.key("redirect_map");
            let mut seen: Vec<(VxSelector, String)> = Vec::new();
            let mut any_rule = None;
            let mut specific = VlanSet::empty();
            for (key, out_iface) in &vx.redirect_map.0 {
                let kp = map_path.key(key);
                let sel = parse_vx_selector(key).map_or_else(
                    || err(kp.clone(), format!("invalid VLAN selector {key:?} (expected \"none\", \"0\", \"1\"..\"4094\", \"any\" or \"4095\")")),
                    Ok,
                )?;
                if let Some((_, first)) = seen.iter().find(|(s, _)| *s == sel) {
                    return err(
                        kp,
                        format!("selector {key:?} selects the same frames as {first:?}"),
                    );
                }
                seen.push((sel, key.clone()));
                check_ifname(&kp, out_iface)?;
                if let Some(inp) = cfg.inputs.iter().find(|i| i.interface == *out_iface) {
                    return err(kp, format!("loop: {iface} redirects to interface {out_iface:?}, which is also the input {:?}", inp.name));
                }
                let matching: Vec<usize> = cfg
                    .outputs
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.dest.interface() == Some(out_iface.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                let output = match matching.as_slice() {
                    [one] => *one,
                    [] => {
                        claim_name(out_iface, &kp).or_else(|e| {
                            // The name may already be an implicit output created by an earlier entry.
                            cfg.outputs.iter().position(|o| o.name == *out_iface).map_or(Err(e), |_| Ok(()))
                        })?;
                        cfg.outputs.push(Output {
                            name: out_iface.clone(),
                            dest: Destination::Interface(out_iface.clone()),
                            oversize: Oversize::Drop,
                            rate_limit: None,
                            vlan: None,
                            truncate: None,
                            mtu: None,
                        });
                        cfg.outputs.len() - 1
                    }
                    _ => return err(kp, format!("interface {out_iface:?} is bound to several outputs; name one of them in a native rule instead")),
                };
                let mut vlans = VlanSet::empty();
                match sel {
                    VxSelector::Untagged => vlans.insert(0),
                    VxSelector::Vid(v) => vlans.insert(v),
                    VxSelector::Any => vlans = VlanSet::all(),
                }
                if sel != VxSelector::Any {
                    match sel {
                        VxSelector::Vid(v) => specific.insert(v),
                        _ => specific.insert(0),
                    }
                }
                let rule_name = format!("{iface}/{key}");
                if sel == VxSelector::Any {
                    any_rule = Some(cfg.rules.len());
                }
                cfg.rules.push(Rule {
                    name: rule_name,
                    path: kp.to_string(),
                    from: vec![input],
                    vlans,
                    filter: None,
                    to: vec![output],
                    sample: None,
                    vni: None,
                    erspan_session: None,
                    tunnel: None,
                    outer_source: None,
                    balance: None,
                    dedup: None,
                });
            }
            // A specific VLAN entry wins over `any`: the `any` rule takes what no other entry of
            // this interface selects (CONFIG.md section 1).
            if let Some(r) = any_rule {
                for vid in 0..4096u16 {
                    if specific.contains(vid) {
                        cfg.rules[r].vlans.remove(vid);
                    }
                }
            }
        }
    }

    for (name, raw_p) in &raw.passthru.0 {
        let p = root.key("passthru").key(name);
        check_name(&p, "passthru", name)?;
        check_ifname(&p.key("interface"), &raw_p.interface)?;
        check_ifname(&p.key("tap"), &raw_p.tap)?;
        let Some(input) = cfg
            .inputs
            .iter()
            .position(|i| i.interface == raw_p.interface && i.listen.is_none())
        else {
            return err(
                p.key("interface"),
                format!(
                    "{:?} is not the interface of an input: the passthru's data port must be one",
                    raw_p.interface
                ),
            );
        };
        let mac = parse_mac_text(&raw_p.mac).map_or_else(
            || {
                err(
                    p.key("mac"),
                    format!(
                        "expected a MAC address like \"44:44:44:44:44:44\", not {:?}",
                        raw_p.mac
                    ),
                )
            },
            Ok,
        )?;
        let vlan = raw_p
            .vlan
            .as_ref()
            .map(|v| as_u64(&p.key("vlan"), v, "vlan", 1..=4094).map(|n| n as u16))
            .transpose()?;
        if cfg.inputs.iter().any(|i| i.interface == raw_p.tap)
            || cfg
                .outputs
                .iter()
                .any(|o| o.dest.interface() == Some(raw_p.tap.as_str()))
        {
            return err(
                p.key("tap"),
                format!(
                    "{:?} is also a port of a rule; the TAP belongs to the passthru alone",
                    raw_p.tap
                ),
            );
        }
        cfg.passthru.push(Passthru {
            name: name.clone(),
            input,
            interface: raw_p.interface.clone(),
            tap: raw_p.tap.clone(),
            mac,
            vlan,
        });
    }
    if cfg.outputs.len() > MAX_OUTPUTS {
        return err(
            root.key("outputs"),
            format!(
                "{} outputs defined; at most {MAX_OUTPUTS} are supported",
                cfg.outputs.len()
            ),
        );
    }
    let mut rule_names: Vec<(&str, &str)> = Vec::new();
    for r in &cfg.rules {
        if let Some((_, first)) = rule_names.iter().find(|(n, _)| *n == r.name) {
            return err(
                path_of(&r.path).key("name"),
                format!("rule name {:?} is already used at {first}", r.name),
            );
        }
        rule_names.push((&r.name, &r.path));
    }

    // One interface is one input.
    for (i, a) in cfg.inputs.iter().enumerate() {
        if let Some(b) = cfg.inputs[..i].iter().find(|b| b.interface == a.interface) {
            return err(
                input_path(&raw, a),
                format!(
                    "duplicate input: interface {:?} is already the input {:?}",
                    a.interface, b.name
                ),
            );
        }
    }
    // Loops: an interface that some rule sends to and some rule receives from.
    for r in &cfg.rules {
        for &o in &r.to {
            let out = &cfg.outputs[o];
            let Some(out_iface) = out.dest.interface() else {
                continue;
            };
            if let Some(inp) = cfg.inputs.iter().find(|i| i.interface == *out_iface) {
                return err(
                    path_of(&r.path),
                    format!(
                        "loop: rule {:?} sends to interface {:?}, which is also the input {:?}",
                        r.name, out_iface, inp.name
                    ),
                );
            }
        }
    }
    Ok(cfg)
}

/// A rule's stored path, as a KeyPath for error reporting (already formatted, kept verbatim).
fn path_of(s: &str) -> KeyPath {
    KeyPath::verbatim(s)
}

fn input_path(raw: &RawConfig, input: &Input) -> KeyPath {
    if raw.inputs.0.iter().any(|(n, _)| *n == input.name) {
        KeyPath::root()
            .key("inputs")
            .key(&input.name)
            .key("interface")
    } else {
        KeyPath::root().key("interfaces").key(&input.name)
    }
}

fn parse_mac_text(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
