//! Checks of single values, shared by `validate`, `tunnel` and `limits`: the error of a check (a key
//! path and a message), integers in a range, interface and port names, canonical decimals.

use crate::path::KeyPath;
use serde_json::Value;

pub(crate) type VResult<T> = Result<T, (KeyPath, String)>;

pub(crate) fn err<T>(path: KeyPath, msg: impl Into<String>) -> VResult<T> {
    Err((path, msg.into()))
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ - 1), no '/', ':' or white space, not "." or "..".
pub(crate) fn check_ifname(path: &KeyPath, name: &str) -> VResult<()> {
    if name.is_empty() {
        return err(path.clone(), "empty interface name");
    }
    if name.len() > 15 {
        return err(
            path.clone(),
            format!("interface name {name:?} is longer than 15 bytes (the Linux limit)"),
        );
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return err(
            path.clone(),
            format!("{name:?} is not a valid interface name"),
        );
    }
    Ok(())
}

/// Port and rule names: letters, digits, `_`, `-`, `.`, `/`, 1 to 64 characters.
pub(crate) fn check_name(path: &KeyPath, what: &str, name: &str) -> VResult<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    {
        return err(
            path.clone(),
            format!("{what} name {name:?} must be 1 to 64 letters, digits, '_', '-', '.' or '/'"),
        );
    }
    Ok(())
}

/// A canonical decimal: digits only, no sign, no leading zero (except "0" itself), no spaces.
pub(crate) fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty()
        || s.len() > 9
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn as_u64(
    path: &KeyPath,
    v: &Value,
    what: &str,
    range: core::ops::RangeInclusive<u64>,
) -> VResult<u64> {
    match v.as_u64() {
        Some(n) if range.contains(&n) => Ok(n),
        _ => err(
            path.clone(),
            format!(
                "{what} must be an integer from {} to {}, not {v}",
                range.start(),
                range.end()
            ),
        ),
    }
}
