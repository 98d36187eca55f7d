//! What a hostile sender must not control (issue #15): `[counters]`, how many packet-chosen ids
//! the counters list (VNIs, GRE keys, ERSPAN sessions, VLAN IDs would otherwise add a counter
//! each, without bound), and `management.hash_key_file`, the secret key of the flow and dedup
//! hashes.

use crate::checks::as_u64;
use crate::file::{open_regular, MAX_HASH_KEY_BYTES};
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

/// Bytes of a hash key.
pub const HASH_KEY_LEN: usize = 16;

/// A hash key written as 32 hexadecimal digits (surrounding white space ignored).
pub fn parse_hash_key(text: &str) -> Result<[u8; HASH_KEY_LEN], String> {
    let t = text.trim();
    if t.len() != 2 * HASH_KEY_LEN || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a hash key is {} hexadecimal digits, not {} characters",
            2 * HASH_KEY_LEN,
            t.chars().count()
        ));
    }
    let mut key = [0u8; HASH_KEY_LEN];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// Reads `management.hash_key_file` (relative paths from the configuration file's directory):
/// a regular file of at most 4 KiB holding the key in hexadecimal, readable by no one but its
/// owner and group.
pub(crate) fn load_hash_key(
    path: &KeyPath,
    file: &str,
    config: &std::path::Path,
) -> Result<[u8; HASH_KEY_LEN], (KeyPath, String)> {
    let p = config
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(file);
    let fail = |e: String| (path.clone(), format!("{}: {e}", p.display()));
    let key_file = open_regular(&p, MAX_HASH_KEY_BYTES, "hash key file").map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if key_file.meta.permissions().mode() & 0o004 != 0 {
            return Err(fail(
                "readable by everyone; the key must stay secret (chmod 0640)".to_owned(),
            ));
        }
    }
    let text = key_file.read_to_string().map_err(fail)?;
    parse_hash_key(&text).map_err(fail)
}
