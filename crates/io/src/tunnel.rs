//! Tunnel endpoints on a live host, through the kernel's sockets: `listen` inputs receive tunnels
//! addressed to this host (UDP for VXLAN / Geneve, raw IP protocol 47 for GRE / ERSPAN), and tunnel
//! outputs send through the kernel's routing, so ARP / ND and next hops are the kernel's job.
//!
//! A received datagram is handed to the engine as a frame with a synthetic outer Ethernet, IP and
//! (for UDP) UDP header in front, so the same tunnel termination code serves captures, SPAN ports
//! and sockets; the outer source address is the sender's, checked against `allow` by the engine.
#![allow(unsafe_code)]

use crate::{Batch, RecvStatus, RxPort, TxPort};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use vxspan_core::{TxDrop, TxFrame};

const MAX_DATAGRAM: usize = 65_535;

fn synthetic_l2(out: &mut Vec<u8>, v6: bool) {
    out.extend_from_slice(&vxspan_core::wire::ethernet::SYNTHETIC_DST.0);
    out.extend_from_slice(&vxspan_core::wire::ethernet::SYNTHETIC_SRC.0);
    out.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
}

/// Appends an outer IPv4 / IPv6 header for `payload_len` bytes of protocol `proto`.
fn synthetic_ip(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, proto: u8, payload_len: usize) {
    match (src, dst) {
        (IpAddr::V4(s), d) => {
            let d = match d {
                IpAddr::V4(d) => d.octets(),
                IpAddr::V6(_) => [0; 4],
            };
            let total = (20 + payload_len) as u16;
            let start = out.len();
            out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0]);
            out[start + 2..start + 4].copy_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d);
            let sum = vxspan_core::reasm::checksum(&out[start..start + 20]);
            out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), d) => {
            let d = match d {
                IpAddr::V6(d) => d.octets(),
                IpAddr::V4(_) => [0; 16],
            };
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            out.extend_from_slice(&[proto, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d);
        }
    }
}

enum Kind {
    Udp {
        sock: UdpSocket,
        port: u16,
    },
    /// Raw IP protocol 47: IPv4 sockets deliver the IP header, IPv6 ones do not.
    Gre {
        fd: OwnedFd,
        v6: bool,
    },
}

/// A `listen` input's socket.
pub struct ListenSocket {
    kind: Kind,
    local: IpAddr,
    buf: Vec<u8>,
}

fn raw_gre_socket(v6: bool) -> io::Result<OwnedFd> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_GRE,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("socket(raw IP protocol 47): {e} (needs CAP_NET_RAW)"),
        ));
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(addr: IpAddr, port: u16) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = a.octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn peer(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

impl ListenSocket {
    /// Binds a UDP socket (`port` given) or a raw GRE socket (no port) on `addr`.
    pub fn open(addr: IpAddr, port: Option<u16>) -> io::Result<Self> {
        let kind = match port {
            Some(port) => {
                let sock = UdpSocket::bind(SocketAddr::new(addr, port)).map_err(|e| {
                    io::Error::new(e.kind(), format!("binding UDP {addr}:{port}: {e}"))
                })?;
                sock.set_nonblocking(true)?;
                Kind::Udp { sock, port }
            }
            None => {
                let v6 = addr.is_ipv6();
                let fd = raw_gre_socket(v6)?;
                if !addr.is_unspecified() {
                    let (ss, len) = sockaddr(addr, 0);
                    // SAFETY: `ss` holds a valid socket address of `len` bytes.
                    let r = unsafe {
                        libc::bind(
                            fd.as_raw_fd(),
                            (&ss as *const libc::sockaddr_storage).cast(),
                            len,
                        )
                    };
                    if r < 0 {
                        return Err(io::Error::new(
                            io::Error::last_os_error().kind(),
                            format!("binding GRE on {addr}: {}", io::Error::last_os_error()),
                        ));
                    }
                }
                // SAFETY: setting O_NONBLOCK on a descriptor this value owns.
                unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
                Kind::Gre { fd, v6 }
            }
        };
        Ok(ListenSocket {
            kind,
            local: addr,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    pub fn fd(&self) -> RawFd {
        match &self.kind {
            Kind::Udp { sock, .. } => sock.as_raw_fd(),
            Kind::Gre { fd, .. } => fd.as_raw_fd(),
        }
    }
}

impl RxPort for ListenSocket {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<RecvStatus> {
        for _ in 0..max {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            match &self.kind {
                Kind::Udp { sock, port } => {
                    let (n, from) = match sock.recv_from(&mut self.buf) {
                        Ok(x) => x,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let payload = &self.buf[..n];
                    let (local, port) = (self.local, *port);
                    let _ = batch.push_with::<()>(0, ts, |v| {
                        synthetic_l2(v, from.is_ipv6());
                        synthetic_ip(v, from.ip(), local, 17, 8 + n);
                        v.extend_from_slice(&from.port().to_be_bytes());
                        v.extend_from_slice(&port.to_be_bytes());
                        v.extend_from_slice(&((8 + n) as u16).to_be_bytes());
                        v.extend_from_slice(&[0, 0]);
                        v.extend_from_slice(payload);
                        Ok(())
                    });
                }
                Kind::Gre { fd, v6 } => {
                    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
                    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    // SAFETY: `buf` is valid for writes of its length, `ss` / `len` for the address.
                    let n = unsafe {
                        libc::recvfrom(
                            fd.as_raw_fd(),
                            self.buf.as_mut_ptr().cast(),
                            self.buf.len(),
                            0,
                            (&mut ss as *mut libc::sockaddr_storage).cast(),
                            &mut len,
                        )
                    };
                    if n < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::WouldBlock {
                            break;
                        }
                        return Err(e);
                    }
                    let pkt = &self.buf[..n as usize];
                    let (v6, local) = (*v6, self.local);
                    let from = peer(&ss).unwrap_or(local);
                    let _ = batch.push_with::<()>(0, ts, |v| {
                        synthetic_l2(v, v6);
                        if v6 {
                            synthetic_ip(v, from, local, 47, pkt.len());
                        }
                        v.extend_from_slice(pkt);
                        Ok(())
                    });
                }
            }
            batch.set_last_wire_len_to_len();
        }
        Ok(RecvStatus::Ok)
    }
}

/// A tunnel output on a live host: the tunnel payload (everything after the outer IP header, or
/// after the UDP header for VXLAN) is sent to the remote through the kernel.
///
/// VXLAN goes out of a pool of UDP sockets, one picked per flow (by the source port the engine
/// derived from the flow hash), so a flow keeps one UDP source port while flows spread over
/// several for ECMP; the sockets send with checksum 0 (SO_NO_CHECK, UDP_NO_CHECK6_TX) as RFC 7348
/// allows and RFC 6935 permits for tunnels over IPv6.
pub struct TunnelSender {
    fds: Vec<OwnedFd>,
    remote: (libc::sockaddr_storage, libc::socklen_t),
}

/// Sockets per VXLAN output.
const VXLAN_SOCKETS: usize = 16;
/// linux/udp.h: send IPv6 UDP with checksum 0.
const UDP_NO_CHECK6_TX: libc::c_int = 101;

fn set_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `v` is a live c_int for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt({what}): {e}")));
    }
    Ok(())
}

impl TunnelSender {
    pub fn open(e: &vxspan_core::config::Encap) -> io::Result<Self> {
        let o = e.outer();
        let v6 = o.remote.is_ipv6();
        let mut fds = Vec::new();
        let port = match e {
            // UDP tunnels: a pool of sockets, one per flow (ECMP spreads them).
            vxspan_core::config::Encap::Vxlan { port, .. }
            | vxspan_core::config::Encap::Geneve { port, .. } => {
                let bind = o.source.unwrap_or(if v6 {
                    IpAddr::from([0u16; 8])
                } else {
                    IpAddr::from([0u8; 4])
                });
                for _ in 0..VXLAN_SOCKETS {
                    let sock = UdpSocket::bind(SocketAddr::new(bind, 0)).map_err(|err| {
                        io::Error::new(err.kind(), format!("binding a UDP socket on {bind}: {err}"))
                    })?;
                    let fd = OwnedFd::from(sock);
                    if v6 {
                        set_opt(
                            fd.as_raw_fd(),
                            libc::IPPROTO_UDP,
                            UDP_NO_CHECK6_TX,
                            1,
                            "UDP_NO_CHECK6_TX",
                        )?;
                    } else {
                        set_opt(
                            fd.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_NO_CHECK,
                            1,
                            "SO_NO_CHECK",
                        )?;
                    }
                    fds.push(fd);
                }
                *port
            }
            vxspan_core::config::Encap::Erspan { .. } | vxspan_core::config::Encap::Gre { .. } => {
                let fd = raw_gre_socket(v6)?;
                if let Some(src) = o.source {
                    let (ss, len) = sockaddr(src, 0);
                    // SAFETY: `ss` holds a valid socket address of `len` bytes.
                    if unsafe {
                        libc::bind(
                            fd.as_raw_fd(),
                            (&ss as *const libc::sockaddr_storage).cast(),
                            len,
                        )
                    } < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                fds.push(fd);
                0
            }
        };
        let tos = i32::from(o.dscp) << 2;
        for fd in &fds {
            if v6 {
                set_opt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_TCLASS,
                    tos,
                    "IPV6_TCLASS",
                )?;
                set_opt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    i32::from(o.ttl),
                    "IPV6_UNICAST_HOPS",
                )?;
            } else {
                set_opt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_TOS,
                    tos,
                    "IP_TOS",
                )?;
                set_opt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_TTL,
                    i32::from(o.ttl),
                    "IP_TTL",
                )?;
            }
        }
        Ok(TunnelSender {
            remote: sockaddr(o.remote, port),
            fds,
        })
    }
}

impl TxPort for TunnelSender {
    fn send(&mut self, f: TxFrame<'_>) -> Result<(), TxDrop> {
        // The engine encapsulated the copy for this output; the kernel builds the outer IP
        // (and UDP) header, so the socket sends what follows. A frame without that metadata was
        // not made for a tunnel: refused, counted as tx_error.
        let meta = f.tunnel.ok_or(TxDrop::TxError)?;
        let payload = f.data.get(meta.payload_at..).ok_or(TxDrop::TxError)?;
        let i = usize::from(meta.source_port) % self.fds.len();
        // SAFETY: `payload` is valid for reads of its length; `remote` holds a valid address.
        let r = unsafe {
            libc::sendto(
                self.fds[i].as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                libc::MSG_DONTWAIT,
                (&self.remote.0 as *const libc::sockaddr_storage).cast(),
                self.remote.1,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        Err(match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => TxDrop::QueueFull,
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::ENETDOWN) => {
                TxDrop::LinkDown
            }
            Some(libc::EMSGSIZE) => TxDrop::MtuExceeded,
            _ => TxDrop::TxError,
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxspan_core::config::{Encap, Outer};

    /// A copy that did not come out of the engine's encapsulation for this output carries no
    /// tunnel metadata: refused as tx_error before anything is sent (the sender never guesses
    /// offsets from the bytes).
    #[test]
    fn a_frame_without_tunnel_metadata_is_refused_unsent() {
        let e = Encap::Gre {
            key: None,
            outer: Outer {
                remote: "198.18.0.1".parse().unwrap(),
                source: None,
                dscp: 0,
                ttl: 1,
                src_mac: [0; 6],
                dst_mac: [0; 6],
            },
        };
        // A raw GRE socket needs CAP_NET_RAW; without it there is nothing to test.
        let Ok(mut s) = TunnelSender::open(&e) else {
            return;
        };
        let data = [0u8; 64];
        let f = TxFrame {
            data: &data,
            wire_len: 64,
            ts: 0,
            input: 0,
            tunnel: None,
            owner: u16::MAX,
        };
        assert_eq!(s.send(f), Err(TxDrop::TxError));
    }
}
