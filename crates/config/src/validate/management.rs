//! `[management]`: the AgentX sub-agent settings (`snmp_agentx`, `snmp_base_oid`,
//! `snmp_drop_rate`). `control`, `metrics` and `user` are single values read where the
//! [`Config`](crate::Config) is assembled; `hash_key_file` is read by `limits`.

use crate::checks::{err, VResult};
use crate::model::{Snmp, DEFAULT_SNMP_BASE};
use crate::path::KeyPath;

pub(super) fn parse_snmp(path: &KeyPath, m: &crate::raw::RawManagement) -> VResult<Option<Snmp>> {
    let Some(master) = m.snmp_agentx.as_deref() else {
        for (key, set) in [
            ("snmp_base_oid", m.snmp_base_oid.is_some()),
            ("snmp_drop_rate", m.snmp_drop_rate.is_some()),
        ] {
            if set {
                return err(
                    path.key(key),
                    "needs management.snmp_agentx (the AgentX master socket)",
                );
            }
        }
        return Ok(None);
    };
    if master.is_empty() {
        return err(path.key("snmp_agentx"), "empty path");
    }
    if let Some(addr) = master.strip_prefix("tcp:") {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return err(
                path.key("snmp_agentx"),
                format!("{master:?}: expected tcp:ADDRESS:PORT (e.g. tcp:127.0.0.1:705) or a socket path"),
            );
        }
    }
    let base_oid = match m.snmp_base_oid.as_deref() {
        None => DEFAULT_SNMP_BASE.to_vec(),
        Some(s) => {
            let parts: Option<Vec<u32>> = s
                .trim_start_matches('.')
                .split('.')
                .map(|x| x.parse().ok())
                .collect();
            match parts {
                Some(p) if p.len() >= 2 && p.len() <= 100 && p[0] <= 2 => p,
                _ => {
                    return err(
                        path.key("snmp_base_oid"),
                        format!(
                            "{s:?} is not a dotted object identifier such as \"1.3.6.1.3.8624\""
                        ),
                    )
                }
            }
        }
    };
    Ok(Some(Snmp {
        master: master.to_owned(),
        base_oid,
        drop_rate: m.snmp_drop_rate,
    }))
}
