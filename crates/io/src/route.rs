//! Where the kernel sends a packet to a tunnel's remote: its route (egress device, gateway,
//! preferred source, MTU) and the neighbour entry of the next hop, read through rtnetlink
//! (RTM_GETROUTE, RTM_GETNEIGH, RTM_GETLINK), for the kernel tier's next-hop table.
//!
//! The kernel tier writes outer Ethernet headers itself; this is what it learns them from. A
//! next hop whose neighbour entry has no usable address yet is reported as such: the caller
//! sends that tunnel's copies through a kernel socket meanwhile, which makes the kernel resolve
//! it. Nothing here waits on the network: every request is one netlink round trip, bounded by
//! the socket's receive timeout.

use crate::netdev::Rtnl;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::Ipv4Addr;

/// The route to a remote and the device it leaves by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
    pub ifname: String,
    /// The device's link kind (`bridge`, `bond`, `vxlan`, `veth`...), None for a device with
    /// no rtnetlink kind (a physical NIC).
    pub kind: Option<String>,
    /// The preferred source address of the route (the address the kernel would send from).
    pub source: Ipv4Addr,
    /// The neighbour to send to: the gateway, or the remote itself on a connected route.
    pub via: Ipv4Addr,
    /// The device's MAC address.
    pub smac: [u8; 6],
    /// The route's MTU metric if it has one, else the device's MTU.
    pub mtu: u32,
}

/// What the kernel's tables say about a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// Routed, and the neighbour's link-layer address is known.
    Ready(Route, [u8; 6]),
    /// Routed, but the neighbour is not resolved (absent, incomplete or failed).
    Unresolved(Route),
    /// No usable route: unreachable, a blackhole, a local address, a device without an
    /// Ethernet address. The text says which.
    Unroutable(String),
}

fn v4(a: &RouteAddress) -> Option<Ipv4Addr> {
    match a {
        RouteAddress::Inet(a) => Some(*a),
        _ => None,
    }
}

/// Asks the kernel's route, neighbour and link tables where a packet to `remote` goes.
pub fn resolve(nl: &mut Rtnl, remote: Ipv4Addr) -> io::Result<NextHop> {
    let what = format!("route to {remote}");
    let mut ask = RouteMessage::default();
    ask.header.address_family = AddressFamily::Inet;
    ask.header.destination_prefix_length = 32;
    ask.header.table = RouteHeader::RT_TABLE_UNSPEC;
    ask.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(remote)));
    let route = match nl.get(RouteNetlinkMessage::GetRoute(ask), &what) {
        Ok(RouteNetlinkMessage::NewRoute(r)) => r,
        Ok(other) => return Err(io::Error::other(format!("{what}: unexpected {other:?}"))),
        // Unreachable and prohibited routes answer with these errors, a blackhole with EINVAL
        // (the request itself is well formed: tests/route.rs).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(NextHop::Unroutable(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    if route.header.kind != RouteType::Unicast {
        return Ok(NextHop::Unroutable(format!(
            "{what}: a {:?} route",
            route.header.kind
        )));
    }
    let (mut ifindex, mut gateway, mut source, mut mtu) = (0, None, None, None);
    for a in &route.attributes {
        match a {
            RouteAttribute::Oif(i) => ifindex = *i,
            RouteAttribute::Gateway(g) => gateway = v4(g),
            RouteAttribute::PrefSource(s) => source = v4(s),
            RouteAttribute::Metrics(m) => {
                for m in m {
                    if let RouteMetric::Mtu(v) = m {
                        mtu = Some(*v).filter(|v| *v > 0);
                    }
                }
            }
            _ => {}
        }
    }
    if ifindex == 0 {
        return Ok(NextHop::Unroutable(format!("{what}: no egress device")));
    }
    let Some(source) = source else {
        return Ok(NextHop::Unroutable(format!(
            "{what}: no source address on the egress device"
        )));
    };
    let link = link(nl, ifindex)?;
    let Some(smac) = link.mac else {
        return Ok(NextHop::Unroutable(format!(
            "{what}: {} has no Ethernet address",
            link.name
        )));
    };
    let via = gateway.unwrap_or(remote);
    let route = Route {
        ifindex,
        ifname: link.name,
        kind: link.kind,
        source,
        via,
        smac,
        mtu: mtu.unwrap_or(link.mtu),
    };
    Ok(match neighbour(nl, ifindex, via)? {
        Some(mac) => NextHop::Ready(route, mac),
        None => NextHop::Unresolved(route),
    })
}

struct Link {
    name: String,
    kind: Option<String>,
    mac: Option<[u8; 6]>,
    mtu: u32,
}

fn link(nl: &mut Rtnl, ifindex: u32) -> io::Result<Link> {
    let mut ask = LinkMessage::default();
    ask.header.index = ifindex;
    let what = format!("device {ifindex}");
    let RouteNetlinkMessage::NewLink(m) = nl.get(RouteNetlinkMessage::GetLink(ask), &what)? else {
        return Err(io::Error::other(format!("{what}: unexpected answer")));
    };
    let mut l = Link {
        name: format!("#{ifindex}"),
        kind: None,
        mac: None,
        mtu: 1500,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(m) => l.mtu = m,
            LinkAttribute::Address(a) if a.len() == 6 && a.iter().any(|b| *b != 0) => {
                l.mac = a.try_into().ok();
            }
            LinkAttribute::LinkInfo(info) => {
                for i in info {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(match k {
                            InfoKind::Other(s) => s,
                            k => k.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(l)
}

/// The link-layer address of `ip` on device `ifindex`, if its entry holds a usable one.
fn neighbour(nl: &mut Rtnl, ifindex: u32, ip: Ipv4Addr) -> io::Result<Option<[u8; 6]>> {
    let mut ask = NeighbourMessage::default();
    ask.header.family = AddressFamily::Inet;
    ask.header.ifindex = ifindex;
    ask.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    let what = format!("neighbour {ip}");
    let m = match nl.get(RouteNetlinkMessage::GetNeighbour(ask), &what) {
        Ok(RouteNetlinkMessage::NewNeighbour(m)) => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let usable = matches!(
        m.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    if !usable {
        return Ok(None);
    }
    Ok(m.attributes.into_iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(a) if a.len() == 6 => a.try_into().ok(),
        _ => None,
    }))
}
