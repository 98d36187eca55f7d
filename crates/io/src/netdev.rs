//! Network devices through rtnetlink (never a shell): a private network namespace and veth
//! pairs, for `vxspan lab`.
//!
//! Messages are built and parsed with the rust-netlink crates (`netlink-packet-route` for the
//! link messages, `netlink-sys` for a blocking socket); nothing here needs an async runtime.
#![allow(unsafe_code)]

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;

/// Moves the calling process (its calling thread, and every thread and child it starts from
/// then on) into a new, empty network namespace. The namespace and every device in it vanish
/// when the last process in it exits, so nothing is left behind even after a crash.
pub fn unshare_network() -> io::Result<()> {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("unshare(CLONE_NEWNET): {e} (a lab needs root or CAP_SYS_ADMIN)"),
        ));
    }
    // Keep IPv6 off on every device created from now on, so the kernel's own router and
    // neighbour solicitations do not add frames to the lab's traffic. /proc/sys/net is the
    // namespace of the process that opens it.
    for conf in ["default", "all"] {
        let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
        if std::path::Path::new(&path).exists() {
            std::fs::write(&path, "1")
                .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        }
    }
    Ok(())
}

/// A route netlink socket that sends requests and waits for their acknowledgements.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // A request the kernel never answers must not hang the thread asking.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: the fd is the socket's own, open for the call; `tv` is a valid timeval of
        // the size passed.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Creates a veth pair `name` / `peer`, both with `mtu`, and brings both up.
    pub fn add_veth(&mut self, name: &str, peer: &str, mtu: u32) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth pair {name} / {peer}"),
        )?;
        // Up only once both ends exist: a veth end refuses to come up without its peer.
        self.set_up(name)?;
        self.set_up(peer)
    }

    /// Brings an interface up.
    pub fn set_up(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = crate::afpacket::ifindex(name)?;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(msg),
            0,
            &format!("bringing {name} up"),
        )
    }

    /// Deletes an interface (a veth takes its peer with it).
    pub fn del_link(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = crate::afpacket::ifindex(name)?;
        self.request(
            RouteNetlinkMessage::DelLink(msg),
            0,
            &format!("deleting {name}"),
        )
    }

    fn request(&mut self, payload: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<()> {
        self.exchange(payload, NLM_F_ACK | flags, what).map(|_| ())
    }

    /// Sends a get request (no dump) and returns the kernel's one answer.
    pub(crate) fn get(
        &mut self,
        payload: RouteNetlinkMessage,
        what: &str,
    ) -> io::Result<RouteNetlinkMessage> {
        self.exchange(payload, 0, what)?
            .ok_or_else(|| io::Error::other(format!("{what}: no answer")))
    }

    /// Sends a request and waits for the answer with its sequence number: an error message
    /// (code 0 is the acknowledgement: Ok(None)) or a message of the family (Ok(Some)).
    fn exchange(
        &mut self,
        payload: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> io::Result<Option<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), payload.into());
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut rx = vec![0u8; 16384];
        // The kernel answers every request once; anything else arriving first (an answer to
        // an earlier request that timed out) is skipped, within bounds.
        for _ in 0..64 {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| {
                        io::Error::other(format!("{what}: unreadable netlink reply: {e}"))
                    })?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(None),
                                Some(code) => {
                                    let os = io::Error::from_raw_os_error(-code.get());
                                    Err(io::Error::new(os.kind(), format!("{what}: {os}")))
                                }
                            };
                        }
                        NetlinkPayload::InnerMessage(m) => return Ok(Some(m)),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
        Err(io::Error::other(format!("{what}: no answer")))
    }
}
