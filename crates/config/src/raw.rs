//! The configuration as written: serde types mirroring the file, strict about unknown and
//! duplicate keys. Values whose accepted forms vary (VLAN selectors, sampling, VLAN actions) are
//! kept as [`serde_json::Value`] here and interpreted in `model`, which can then say exactly
//! what is wrong with them.

use crate::path::KeyPath;
use crate::Syntax;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Marks a duplicate-key error so its key can be appended to the path.
const DUPLICATE: &str = "\u{1}duplicate key:";

/// A map that keeps its keys in file order and refuses duplicate keys (serde_json would keep
/// the last one silently; a duplicate input must be an error).
#[derive(Debug)]
pub struct UniqueMap<V>(pub Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(core::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a table / object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(serde::de::Error::custom(format!("{DUPLICATE}{k}")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V_(core::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub interfaces: Option<UniqueMap<RawVxIface>>,
    pub xdp_mode: Option<String>,
    #[serde(default)]
    pub inputs: UniqueMap<RawInput>,
    #[serde(default)]
    pub outputs: UniqueMap<RawOutput>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub management: Option<RawManagement>,
    #[serde(default)]
    pub passthru: UniqueMap<RawPassthru>,
    pub counters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassthru {
    pub interface: String,
    pub tap: String,
    pub mac: String,
    pub vlan: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManagement {
    pub control: Option<String>,
    pub control_group: Option<String>,
    pub user: Option<String>,
    pub metrics: Option<String>,
    pub snmp_agentx: Option<String>,
    pub snmp_base_oid: Option<String>,
    pub snmp_drop_rate: Option<u64>,
    pub hash_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVxIface {
    pub redirect_map: UniqueMap<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    pub interface: Option<String>,
    pub listen: Option<String>,
    pub allow: Option<Value>,
    pub decap: Option<Value>,
    pub decap_depth: Option<Value>,
    pub decap_ports: Option<Value>,
    pub reassembly: Option<Value>,
    pub mpls: Option<Value>,
    pub allow_uplink: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub interface: Option<String>,
    pub erspan: Option<Value>,
    pub vxlan: Option<Value>,
    #[serde(default)]
    pub geneve: Option<Value>,
    pub gre: Option<Value>,
    pub vlan: Option<Value>,
    pub truncate: Option<Value>,
    pub mtu: Option<Value>,
    pub oversize: Option<Value>,
    pub rate_limit: Option<Value>,
    pub rate_burst: Option<Value>,
    pub pcap: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub from: Value,
    pub vlan: Option<Value>,
    pub filter: Option<String>,
    pub to: Value,
    pub sample: Option<Value>,
    pub vni: Option<Value>,
    pub erspan_session: Option<Value>,
    pub tunnel: Option<Value>,
    pub outer_source: Option<Value>,
    pub dedup: Option<Value>,
}

/// Deserializes `text`; on error returns the key path and the message.
pub fn deserialize(text: &str, syntax: Syntax) -> Result<RawConfig, (String, String)> {
    let result = match syntax {
        Syntax::Json => {
            let json_err = |path: KeyPath, inner: serde_json::Error| {
                let loc = if inner.line() > 0 {
                    format!(" (line {}, column {})", inner.line(), inner.column())
                } else {
                    String::new()
                };
                (path, strip_location(&inner.to_string()) + &loc)
            };
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize(&mut de) {
                Ok(c) => de
                    .end()
                    .map(|_| c)
                    .map_err(|e| json_err(KeyPath::root(), e)),
                Err(e) => {
                    let path = KeyPath::from(e.path());
                    Err(json_err(path, e.into_inner()))
                }
            }
        }
        Syntax::Toml => {
            let de = toml::Deserializer::new(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = KeyPath::from(e.path());
                let inner = e.into_inner();
                let loc = inner
                    .span()
                    .map(|s| {
                        let before = &text[..s.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                        format!(" (line {line}, column {col})")
                    })
                    .unwrap_or_default();
                (path, inner.message().trim().to_owned() + &loc)
            })
        }
    };
    result.map_err(|(path, msg)| match msg.strip_prefix(DUPLICATE) {
        Some(rest) => {
            let (key, loc) = rest
                .split_once(" (line")
                .map_or((rest, ""), |(k, l)| (k, l));
            let loc = if loc.is_empty() {
                String::new()
            } else {
                format!(" (line{loc}")
            };
            (
                path.key(key).to_string(),
                format!("duplicate key {key:?}{loc}"),
            )
        }
        None => (path.to_string(), msg),
    })
}

/// serde_json appends " at line L column C" to its messages; we print the location our way.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}
