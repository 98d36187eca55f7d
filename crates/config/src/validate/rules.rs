//! One `[[rules]]` entry to a [`Rule`]: its inputs and outputs by name, what it matches (VLANs,
//! filter, tunnel ids and types, outer source) and what it does per frame (balance, dedup, sample).

use super::values::{parse_balance, parse_dedup, parse_sample};
use super::vlan::parse_vlan_selectors;
use crate::checks::{check_name, err, VResult};
use crate::model::{Rule, VlanSet};
use crate::path::KeyPath;
use crate::raw::RawRule;
use crate::tunnel::{parse_prefixes, parse_tunnel_types, uint_set};
use serde_json::Value;

/// A list of names (or a single name) referring to inputs or outputs.
fn parse_refs(path: &KeyPath, v: &Value, what: &str, names: &[&str]) -> VResult<Vec<usize>> {
    let items: Vec<(KeyPath, &Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (path.index(i), x))
            .collect(),
        other => vec![(path.clone(), other)],
    };
    if items.is_empty() {
        return err(path.clone(), format!("at least one {what} is required"));
    }
    let mut out: Vec<usize> = Vec::new();
    for (p, item) in items {
        let Some(name) = item.as_str() else {
            return err(
                p,
                format!("expected the name of an {what} (a string), not {item}"),
            );
        };
        let Some(idx) = names.iter().position(|n| *n == name) else {
            let known = if names.is_empty() {
                "none defined".to_string()
            } else {
                names.join(", ")
            };
            return err(p, format!("unknown {what} {name:?} (defined: {known})"));
        };
        if out.contains(&idx) {
            return err(p, format!("{what} {name:?} is listed twice"));
        }
        out.push(idx);
    }
    Ok(out)
}

pub(super) fn build_rule(
    p: &KeyPath,
    i: usize,
    r: &RawRule,
    inputs: &[&str],
    outputs: &[&str],
) -> VResult<Rule> {
    let name = r.name.clone().unwrap_or_else(|| format!("rule-{i}"));
    check_name(&p.key("name"), "rule", &name)?;
    let filter = match &r.filter {
        Some(f) if f.trim().is_empty() => {
            return err(
                p.key("filter"),
                "empty filter (leave the key out to match every frame)",
            )
        }
        other => other.clone(),
    };
    Ok(Rule {
        name,
        path: p.to_string(),
        from: parse_refs(&p.key("from"), &r.from, "input", inputs)?,
        vlans: match &r.vlan {
            Some(v) => parse_vlan_selectors(&p.key("vlan"), v)?,
            None => VlanSet::all(),
        },
        filter,
        to: match &r.to {
            Value::Object(m) => parse_refs(
                &p.key("to").key("balance"),
                m.get("balance").unwrap_or(&Value::Null),
                "output",
                outputs,
            )?,
            other => parse_refs(&p.key("to"), other, "output", outputs)?,
        },
        balance: parse_balance(&p.key("to"), &r.to)?,
        dedup: r
            .dedup
            .as_ref()
            .map(|v| parse_dedup(&p.key("dedup"), v))
            .transpose()?,
        vni: r
            .vni
            .as_ref()
            .map(|v| uint_set(&p.key("vni"), v, "vni", 0..=0xff_ffff))
            .transpose()?,
        erspan_session: r
            .erspan_session
            .as_ref()
            .map(|v| uint_set(&p.key("erspan_session"), v, "erspan_session", 0..=1023))
            .transpose()?,
        tunnel: r
            .tunnel
            .as_ref()
            .map(|v| parse_tunnel_types(&p.key("tunnel"), v))
            .transpose()?,
        outer_source: r
            .outer_source
            .as_ref()
            .map(|v| parse_prefixes(&p.key("outer_source"), v))
            .transpose()?,
        sample: r
            .sample
            .as_ref()
            .map(|s| parse_sample(&p.key("sample"), s))
            .transpose()?,
    })
}
