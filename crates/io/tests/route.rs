//! The next-hop lookup against a kernel's real tables, in a private network namespace (root
//! only: skipped otherwise). The namespace's devices vanish with the test thread's namespace.

use std::net::Ipv4Addr;
use std::process::Command;
use vxspan_io::netdev::{unshare_network, Rtnl};
use vxspan_io::route::{resolve, NextHop};

fn ip(args: &str) {
    let st = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip");
    assert!(st.success(), "ip {args}");
}

#[test]
fn resolves_routes_neighbours_and_refusals() {
    if unsafe_is_not_root() {
        eprintln!("skipped: needs root");
        return;
    }
    std::thread::spawn(|| {
        // This thread (and the `ip` processes it starts) get a namespace of their own.
        unshare_network().expect("unshare");
        for a in [
            "link add rta type veth peer name rtb",
            "link set rta up",
            "link set rtb up",
            "addr add 198.18.5.1/24 dev rta",
            "route add 198.19.0.0/16 via 198.18.5.2",
            "route add 198.19.8.0/24 via 198.18.5.2 mtu 1400",
            "route add blackhole 198.19.9.0/24",
            "neigh add 198.18.5.2 lladdr 02:00:00:00:00:02 dev rta nud permanent",
            "link add rtbr type bridge",
            "link set rtbr up",
            "addr add 198.18.6.1/24 dev rtbr",
        ] {
            ip(a);
        }
        let mut nl = Rtnl::open().expect("rtnetlink");
        let q = |nl: &mut Rtnl, a: &str| resolve(nl, a.parse::<Ipv4Addr>().unwrap()).unwrap();

        let NextHop::Ready(r, mac) = q(&mut nl, "198.19.1.1") else {
            panic!("198.19.1.1 not ready");
        };
        assert_eq!(mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(r.via, Ipv4Addr::new(198, 18, 5, 2));
        assert_eq!(r.source, Ipv4Addr::new(198, 18, 5, 1));
        assert_eq!(
            (r.ifname.as_str(), r.kind.as_deref()),
            ("rta", Some("veth"))
        );
        assert_eq!(r.mtu, 1500);
        // (/sys/class/net shows the namespace sysfs was mounted in: ask `ip`.)
        let show = Command::new("ip")
            .args(["-o", "link", "show", "rta"])
            .output()
            .unwrap();
        let show = String::from_utf8(show.stdout).unwrap();
        let mac_text = show
            .split("link/ether ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let want: Vec<u8> = mac_text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(r.smac.to_vec(), want);

        // The route's MTU metric wins over the device's.
        let NextHop::Ready(r, _) = q(&mut nl, "198.19.8.7") else {
            panic!("198.19.8.7 not ready");
        };
        assert_eq!(r.mtu, 1400);

        // Connected, but nobody answered ARP yet.
        let NextHop::Unresolved(r) = q(&mut nl, "198.18.5.9") else {
            panic!("198.18.5.9 should be unresolved");
        };
        assert_eq!(r.via, Ipv4Addr::new(198, 18, 5, 9));

        // A bridge says what it is (it has no ndo_xdp_xmit).
        let NextHop::Unresolved(r) = q(&mut nl, "198.18.6.2") else {
            panic!("198.18.6.2 should be unresolved");
        };
        assert_eq!(r.kind.as_deref(), Some("bridge"));

        for refused in ["198.19.9.1", "203.0.113.1", "198.18.5.1"] {
            assert!(
                matches!(q(&mut nl, refused), NextHop::Unroutable(_)),
                "{refused} should be unroutable"
            );
        }

        // A route change is seen at the next lookup.
        ip("route replace 198.19.0.0/16 dev rtbr");
        let NextHop::Unresolved(r) = q(&mut nl, "198.19.1.1") else {
            panic!("198.19.1.1 should now leave by the bridge");
        };
        assert_eq!(r.ifname, "rtbr");
    })
    .join()
    .expect("test thread");
}

fn unsafe_is_not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) != Some("0"))
        })
        .unwrap_or(true)
}
