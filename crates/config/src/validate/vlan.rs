//! VLAN values: the VxSPAN form's `redirect_map` keys, a rule's `vlan` selectors and an output's
//! `vlan` action (push, pop or set).

use crate::checks::{as_u64, err, parse_decimal, VResult};
use crate::model::{VlanAction, VlanSet};
use crate::path::KeyPath;
use serde_json::Value;

/// A VxSPAN `redirect_map` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VxSelector {
    Untagged,
    Vid(u16),
    Any,
}

pub(super) fn parse_vx_selector(key: &str) -> Option<VxSelector> {
    match key {
        "none" | "0" => Some(VxSelector::Untagged),
        "any" | "4095" => Some(VxSelector::Any),
        _ => match parse_decimal(key)? {
            v @ 1..=4094 => Some(VxSelector::Vid(v as u16)),
            _ => None,
        },
    }
}

/// `vlan` in a rule: one selector or a list. A selector is `"none"`, `"any"`, an integer or
/// decimal string 0 to 4095 (0 = none, 4095 = any), or a range `"N-M"` of VIDs 1 to 4094.
pub(super) fn parse_vlan_selectors(path: &KeyPath, v: &Value) -> VResult<VlanSet> {
    let items: Vec<(KeyPath, &Value)> = match v {
        Value::Array(a) => {
            if a.is_empty() {
                return err(
                    path.clone(),
                    "empty VLAN list: the rule would match nothing",
                );
            }
            a.iter()
                .enumerate()
                .map(|(i, x)| (path.index(i), x))
                .collect()
        }
        other => vec![(path.clone(), other)],
    };
    let mut set = VlanSet::empty();
    for (p, item) in items {
        let bad = || {
            err(
                p.clone(),
                format!("invalid VLAN selector {item} (expected \"none\", \"any\", 0 to 4095, or \"N-M\" with 1 <= N <= M <= 4094)"),
            )
        };
        let text = match item {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return bad(),
        };
        match text.as_str() {
            "none" | "0" => set.insert(0),
            "any" | "4095" => set = VlanSet::all(),
            t => {
                if let Some((a, b)) = t.split_once('-') {
                    match (parse_decimal(a), parse_decimal(b)) {
                        (Some(a), Some(b)) if 1 <= a && a <= b && b <= 4094 => {
                            for vid in a..=b {
                                set.insert(vid as u16);
                            }
                        }
                        _ => return bad(),
                    }
                } else {
                    match parse_decimal(t) {
                        Some(v @ 1..=4094) => set.insert(v as u16),
                        _ => return bad(),
                    }
                }
            }
        }
    }
    Ok(set)
}

pub(super) fn parse_vlan_action(path: &KeyPath, v: &Value) -> VResult<VlanAction> {
    let Value::Object(m) = v else {
        return err(
            path.clone(),
            "expected a table: { push = N }, { pop = true } or { set = N }",
        );
    };
    if m.len() != 1 {
        return err(
            path.clone(),
            "exactly one of push, pop or set must be given",
        );
    }
    let (k, val) = m.iter().next().expect("one entry");
    let p = path.key(k);
    match k.as_str() {
        "push" => Ok(VlanAction::Push(
            as_u64(&p, val, "VLAN id", 1..=4094)? as u16
        )),
        "set" => Ok(VlanAction::Set(as_u64(&p, val, "VLAN id", 1..=4094)? as u16)),
        "pop" => match val {
            Value::Bool(true) => Ok(VlanAction::Pop),
            _ => err(p, "pop takes the value true"),
        },
        _ => err(
            p,
            format!("unknown VLAN action {k:?} (expected push, pop or set)"),
        ),
    }
}
