//! Option values with a structure of their own: a rule's `sample`, `to = { balance = [...] }` and
//! `dedup`, an output's `pcap` archive and `rate_limit` / `rate_burst` (rates in bits per second,
//! sizes in bytes).

use crate::checks::{as_u64, err, VResult};
use crate::model::{Archive, Balance, Dedup, RateLimit, Sample, SampleMode};
use crate::path::KeyPath;
use serde_json::Value;

pub(super) fn parse_sample(path: &KeyPath, v: &Value) -> VResult<Sample> {
    const RANGE: core::ops::RangeInclusive<u64> = 1..=1_000_000_000;
    match v {
        Value::Number(_) => Ok(Sample {
            one_in: as_u64(path, v, "sample", RANGE)? as u32,
            mode: SampleMode::Counter,
        }),
        Value::Object(m) => {
            let mut one_in = None;
            let mut mode = SampleMode::Counter;
            for (k, val) in m {
                let p = path.key(k);
                match k.as_str() {
                    "one_in" => one_in = Some(as_u64(&p, val, "one_in", RANGE)? as u32),
                    "mode" => {
                        mode = match val.as_str() {
                            Some("counter") => SampleMode::Counter,
                            Some("flow") => SampleMode::Flow,
                            _ => return err(p, format!("unknown sample mode {val} (expected \"counter\" or \"flow\")")),
                        }
                    }
                    _ => return err(p, format!("unknown key {k:?} (expected one_in, mode)")),
                }
            }
            match one_in {
                Some(one_in) => Ok(Sample { one_in, mode }),
                None => err(path.key("one_in"), "missing: sample needs one_in"),
            }
        }
        _ => err(path.clone(), format!("sample must be an integer N (keep 1 in N) or {{ one_in = N, mode = \"counter\" | \"flow\" }}, not {v}")),
    }
}

/// `pcap = { path = "mirror-%Y%m%dT%H%M%S.pcapng", rotate_mb = 100, rotate_s = 3600, keep = 20 }`.
pub(super) fn parse_archive(path: &KeyPath, v: &Value) -> VResult<Archive> {
    let Value::Object(m) = v else {
        return err(
            path.clone(),
            "expected a table: { path = \"...pcapng\", rotate_mb = N, rotate_s = N, keep = N }",
        );
    };
    let mut a = Archive {
        path: String::new(),
        rotate_bytes: None,
        rotate_ns: None,
        keep: None,
    };
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "path" => match val.as_str() {
                Some(p) if !p.is_empty() => a.path = p.to_owned(),
                _ => return err(kp, "expected a file name pattern"),
            },
            "rotate_mb" => a.rotate_bytes = Some(as_u64(&kp, val, "rotate_mb", 1..=1 << 20)? << 20),
            "rotate_s" => {
                a.rotate_ns = Some(as_u64(&kp, val, "rotate_s", 1..=86_400 * 366)? * 1_000_000_000)
            }
            "keep" => a.keep = Some(as_u64(&kp, val, "keep", 1..=1_000_000)? as u32),
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected path, rotate_mb, rotate_s, keep)"),
                )
            }
        }
    }
    if a.path.is_empty() {
        return err(path.key("path"), "missing: the archive's file name pattern");
    }
    let varies = ["%Y", "%m", "%d", "%H", "%M", "%S", "%N"]
        .iter()
        .any(|f| a.path.contains(f));
    if (a.rotate_bytes.is_some() || a.rotate_ns.is_some()) && !varies {
        return err(path.key("path"), "a rotating archive needs %N or time fields (%Y %m %d %H %M %S) in its path, or every file would overwrite the last");
    }
    Ok(a)
}

/// `to = { balance = ["a", "b"], hash = "symmetric-5tuple", weights = [1, 2] }`.
pub(super) fn parse_balance(path: &KeyPath, v: &Value) -> VResult<Option<Balance>> {
    let Value::Object(m) = v else { return Ok(None) };
    let n = match m.get("balance") {
        Some(Value::Array(a)) if a.len() >= 2 => a.len(),
        Some(Value::Array(_)) => {
            return err(path.key("balance"), "balance needs at least two outputs")
        }
        Some(other) => {
            return err(
                path.key("balance"),
                format!("expected a list of output names, not {other}"),
            )
        }
        None => {
            return err(
                path.key("balance"),
                "missing: a to table needs balance = [outputs]",
            )
        }
    };
    let mut weights = vec![1u32; n];
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "balance" => {}
            "hash" => match val.as_str() {
                Some("symmetric-5tuple") => {}
                _ => {
                    return err(
                        kp,
                        format!("unknown hash {val} (expected \"symmetric-5tuple\")"),
                    )
                }
            },
            "weights" => {
                let Value::Array(ws) = val else {
                    return err(kp, "expected a list of weights, one per output");
                };
                if ws.len() != n {
                    return err(kp, format!("{} weights for {n} outputs", ws.len()));
                }
                for (i, w) in ws.iter().enumerate() {
                    weights[i] = as_u64(&kp.index(i), w, "weight", 1..=1000)? as u32;
                }
            }
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected balance, hash, weights)"),
                )
            }
        }
    }
    Ok(Some(Balance { weights }))
}

/// `dedup = { window_ms = 10, table_size = 65536 }`.
pub(super) fn parse_dedup(path: &KeyPath, v: &Value) -> VResult<Dedup> {
    let Value::Object(m) = v else {
        return err(path.clone(), "expected a table: { window_ms = N }");
    };
    let mut window = None;
    let mut table_size = 1 << 16;
    for (k, val) in m {
        let kp = path.key(k);
        match k.as_str() {
            "window_ms" => window = Some(as_u64(&kp, val, "window_ms", 1..=60_000)?),
            "table_size" => {
                let t = as_u64(&kp, val, "table_size", 1024..=1 << 24)?;
                if !t.is_power_of_two() {
                    return err(kp, format!("table_size must be a power of two, not {t}"));
                }
                table_size = t as usize;
            }
            _ => {
                return err(
                    kp,
                    format!("unknown key {k:?} (expected window_ms, table_size)"),
                )
            }
        }
    }
    match window {
        Some(w) => Ok(Dedup {
            window_ns: w * 1_000_000,
            table_size,
        }),
        None => err(path.key("window_ms"), "missing: dedup needs window_ms"),
    }
}

/// A rate in bits per second: `"200Mbit"`, `"1.5Gbit"`, `"500kbit"`, or an integer (bits/s).
fn parse_bits(path: &KeyPath, v: &Value, what: &str) -> VResult<u64> {
    let bad = || {
        err(path.clone(), format!("{what} must be like \"200Mbit\", \"1Gbit\", \"500kbit\" or a number of bits per second, not {v}"))
    };
    if let Some(n) = v.as_u64() {
        return if n > 0 { Ok(n) } else { bad() };
    }
    let Some(s) = v.as_str() else { return bad() };
    let s = s.trim();
    let (num, mult) = [("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((s, 1.0));
    match num.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * mult <= 1e13 => Ok((n * mult) as u64),
        _ => bad(),
    }
}

/// A size in bytes: `"64KB"`, `"1MB"`, or an integer.
fn parse_bytes(path: &KeyPath, v: &Value) -> VResult<u64> {
    let bad = || {
        err(
            path.clone(),
            format!("rate_burst must be like \"64KB\", \"1MB\" or a number of bytes, not {v}"),
        )
    };
    if let Some(n) = v.as_u64() {
        return if n > 0 { Ok(n) } else { bad() };
    }
    let Some(s) = v.as_str() else { return bad() };
    let s = s.trim();
    let (num, mult) = [("MB", 1u64 << 20), ("KB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((s, 1));
    match num.parse::<u64>() {
        Ok(n) if n > 0 && n <= 1 << 30 => Ok(n * mult),
        _ => bad(),
    }
}

pub(super) fn parse_rate_limit(
    path: &KeyPath,
    rate: &Value,
    burst: Option<&Value>,
) -> VResult<RateLimit> {
    let bits = parse_bits(&path.key("rate_limit"), rate, "rate_limit")?;
    let bytes_per_sec = (bits / 8).max(1);
    // Default burst: 10 ms of traffic, and at least two jumbo frames.
    let burst_bytes = match burst {
        Some(b) => parse_bytes(&path.key("rate_burst"), b)?,
        None => (bytes_per_sec / 100).max(2 * 9216),
    };
    Ok(RateLimit {
        bytes_per_sec,
        burst_bytes,
    })
}
