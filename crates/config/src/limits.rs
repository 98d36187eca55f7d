//! `[counters]`: how many packet-chosen ids the counters list (issue #15). Ids a sender picks
//! (VNIs, GRE keys, ERSPAN sessions, VLAN IDs) would otherwise add a counter each, without bound.

use crate::model::as_u64;
use crate::path::KeyPath;
use crate::tunnel::table;
use serde_json::Value;

/// Bounds of the counters keyed by packet contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterLimits {
    /// Per input: tunnel ids (type and VNI / session / key) listed besides those the rules name;
    /// the rest are summed under `other`.
    pub tunnel_ids: u32,
    /// Per input: VLANs listed besides those the rules name (the busiest); the rest are summed
    /// under `other`.
    pub vlans: u32,
}

impl Default for CounterLimits {
    fn default() -> Self {
        CounterLimits {
            tunnel_ids: 64,
            vlans: 64,
        }
    }
}

pub(crate) fn parse_counters(
    path: &KeyPath,
    v: Option<&Value>,
) -> Result<CounterLimits, (KeyPath, String)> {
    let mut l = CounterLimits::default();
    let Some(v) = v else {
        return Ok(l);
    };
    for (k, val) in table(path, v, "counters")? {
        let kp = path.key(k);
        match k.as_str() {
            "tunnel_ids" => l.tunnel_ids = as_u64(&kp, val, "tunnel_ids", 0..=4096)? as u32,
            "vlans" => l.vlans = as_u64(&kp, val, "vlans", 0..=4096)? as u32,
            _ => {
                return Err((
                    kp,
                    format!("unknown key {k:?} (expected tunnel_ids, vlans)"),
                ))
            }
        }
    }
    Ok(l)
}
