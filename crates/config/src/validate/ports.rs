//! One `[inputs.NAME]` or `[outputs.NAME]` table to an [`Input`] or [`Output`]: where frames come
//! from (an interface or a tunnel listener) or go (an interface, a tunnel or an archive), the
//! input's decapsulation and the output's per-copy options.

use super::values::{parse_archive, parse_rate_limit};
use super::vlan::parse_vlan_action;
use crate::checks::{as_u64, check_ifname, err, VResult};
use crate::model::{Destination, Input, Output};
use crate::path::KeyPath;
use crate::raw::{RawInput, RawOutput};
use crate::tunnel::{parse_decap, parse_encap, parse_listen, parse_oversize, Oversize};
use serde_json::Value;

pub(super) fn build_output(path: &KeyPath, name: &str, raw: &RawOutput) -> VResult<Output> {
    let tunnels: Vec<(&str, &Value)> = [
        ("erspan", &raw.erspan),
        ("vxlan", &raw.vxlan),
        ("geneve", &raw.geneve),
        ("gre", &raw.gre),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let dest = match (&raw.interface, tunnels.as_slice(), &raw.pcap) {
        (Some(i), [], None) => {
            check_ifname(&path.key("interface"), i)?;
            Destination::Interface(i.clone())
        }
        (None, [(kind, v)], None) => Destination::Tunnel(parse_encap(path, kind, v)?),
        (None, [], Some(v)) => Destination::Archive(parse_archive(&path.key("pcap"), v)?),
        (None, [], None) => {
            return err(
                path.clone(),
                "an output needs a destination: interface, erspan, vxlan, geneve, gre or pcap",
            )
        }
        _ => return err(
            path.clone(),
            "an output has exactly one destination: interface, erspan, vxlan, geneve, gre or pcap",
        ),
    };
    Ok(Output {
        name: name.to_owned(),
        dest,
        oversize: raw
            .oversize
            .as_ref()
            .map(|v| parse_oversize(&path.key("oversize"), v))
            .transpose()?
            .unwrap_or(Oversize::Drop),
        rate_limit: match (&raw.rate_limit, &raw.rate_burst) {
            (Some(r), burst) => Some(parse_rate_limit(path, r, burst.as_ref())?),
            (None, Some(_)) => {
                return err(
                    path.key("rate_burst"),
                    "rate_burst has no effect without rate_limit",
                )
            }
            (None, None) => None,
        },
        vlan: raw
            .vlan
            .as_ref()
            .map(|v| parse_vlan_action(&path.key("vlan"), v))
            .transpose()?,
        truncate: raw
            .truncate
            .as_ref()
            .map(|v| as_u64(&path.key("truncate"), v, "truncate", 14..=65535).map(|n| n as u32))
            .transpose()?,
        mtu: raw
            .mtu
            .as_ref()
            .map(|v| as_u64(&path.key("mtu"), v, "mtu", 68..=65535).map(|n| n as u32))
            .transpose()?,
    })
}

pub(super) fn build_input(p: &KeyPath, name: &str, raw: &RawInput) -> VResult<Input> {
    let (interface, listen) = match (&raw.interface, &raw.listen) {
        (Some(i), None) => {
            check_ifname(&p.key("interface"), i)?;
            if raw.allow.is_some() {
                return err(p.key("allow"), "allow applies to listen inputs only");
            }
            (i.clone(), None)
        }
        (None, Some(url)) => (url.clone(), Some(parse_listen(p, url, raw.allow.as_ref())?)),
        (None, None) => return err(p.clone(), "an input needs interface or listen"),
        (Some(_), Some(_)) => {
            return err(
                p.clone(),
                "an input has either interface or listen, not both",
            )
        }
    };
    let decap = match (
        &raw.decap,
        [
            ("decap_depth", &raw.decap_depth),
            ("decap_ports", &raw.decap_ports),
            ("reassembly", &raw.reassembly),
            ("mpls", &raw.mpls),
        ]
        .iter()
        .find(|(_, v)| v.is_some()),
    ) {
        (Some(kinds), _) => Some(parse_decap(
            p,
            kinds,
            raw.decap_depth.as_ref(),
            raw.decap_ports.as_ref(),
            raw.reassembly.as_ref(),
            raw.mpls.as_ref(),
        )?),
        (None, Some((k, _))) => return err(p.key(k), format!("{k} has no effect without decap")),
        (None, None) => None,
    };
    Ok(Input {
        name: name.to_owned(),
        interface,
        listen,
        decap,
        allow_uplink: raw.allow_uplink.unwrap_or(false),
    })
}
