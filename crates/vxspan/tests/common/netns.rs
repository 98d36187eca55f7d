//! A throw-away network namespace for live tests: created with `ip` (tests may use it; the
//! product never does), removed on drop even when the test fails. Addresses, when any are
//! needed, come from 198.18.0.0/15 and 2001:db8::/32; nothing in the root namespace is touched.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is installed by scripts/install-deps");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    /// A namespace named after the test and the process, with loopback up and IPv6 off (so the
    /// kernel sends no router solicitations or MLD reports of its own into the test's wires).
    pub fn new(tag: &str) -> Netns {
        assert!(
            is_root(),
            "live tests need root (network namespaces, AF_PACKET); CI runs as root. Set VXSPAN_SKIP_LIVE=1 to leave them out explicitly"
        );
        let name = format!("vxs-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair `a` <-> `b`, both up, with `mtu`.
    pub fn veth(&self, a: &str, b: &str, mtu: u32) {
        let m = mtu.to_string();
        ip(&[
            "-n", &self.name, "link", "add", a, "mtu", &m, "type", "veth", "peer", "name", b,
            "mtu", &m,
        ]);
        ip(&["-n", &self.name, "link", "set", a, "up"]);
        ip(&["-n", &self.name, "link", "set", b, "up"]);
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Sends VxSPAN's golden inputs: tests/golden/vxspan-example/eth0.pcap out of p0 and
    /// eth1.pcap out of p1 (tcpreplay refuses frames shorter than an Ethernet header and says
    /// so on stdout; everything else is sent).
    pub fn replay_golden(&self) {
        let golden = super::root().join("tests/golden/vxspan-example");
        for (port, file) in [("p0", "eth0.pcap"), ("p1", "eth1.pcap")] {
            let o = self.exec(&[
                "tcpreplay",
                "-q",
                "-i",
                port,
                golden.join(file).to_str().unwrap(),
            ]);
            assert!(
                o.status.success() || !o.stdout.is_empty(),
                "tcpreplay: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    pub fn exec_ok(&self, args: &[&str]) -> Output {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// A counter from /sys/class/net/IF/statistics inside the namespace.
    pub fn stat(&self, iface: &str, counter: &str) -> u64 {
        let o = self.exec_ok(&[
            "cat",
            &format!("/sys/class/net/{iface}/statistics/{counter}"),
        ]);
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    }

    /// The tcpreplay command that sends `pcap` out of `iface` at `pps` frames a second.
    fn paced(&self, iface: &str, pps: u32, pcap: &Path) -> Command {
        self.cmd(&[
            "tcpreplay",
            "-q",
            "--pps",
            &pps.to_string(),
            "-i",
            iface,
            pcap.to_str().unwrap(),
        ])
    }

    /// Sends `pcap` out of `iface` at `pps` frames a second and waits until it is sent
    /// (tcpreplay must succeed).
    pub fn replay_paced(&self, iface: &str, pps: u32, pcap: &Path) {
        let o = self.paced(iface, pps, pcap).output().unwrap();
        assert!(
            o.status.success(),
            "tcpreplay of {} on {iface}: {}",
            pcap.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// tcpreplay of `pcap` out of `iface` at `pps` frames a second, in the background (its
    /// output discarded).
    pub fn replay_at(&self, iface: &str, pps: u32, pcap: &Path) -> std::process::Child {
        self.paced(iface, pps, pcap)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Gives `dev` the address `local` (with its prefix) and a permanent neighbour entry for
    /// `remote` with the MAC of `peer` (the other end of the veth): packets routed to `remote`
    /// leave through `dev` without ARP.
    pub fn route_to_peer(&self, dev: &str, local: &str, remote: &str, peer: &str) {
        self.exec_ok(&["ip", "addr", "add", local, "dev", dev]);
        let out = self.exec_ok(&["cat", &format!("/sys/class/net/{peer}/address")]);
        let mac = String::from_utf8_lossy(&out.stdout);
        self.exec_ok(&[
            "ip",
            "neigh",
            "replace",
            remote,
            "lladdr",
            mac.trim(),
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }

    /// Starts tcpdump writing `iface`'s frames to `file`; returns once it is capturing.
    pub fn capture(&self, iface: &str, file: &Path) -> Capture {
        let log = file.with_extension("log");
        let child = self
            // Immediate mode, so frames reach the file without waiting for a ring block to fill;
            // then a jumbo-sized snap length and a generous buffer, since with the default 256 KiB
            // snap length an immediate-mode ring holds only a few frames and drops bursts.
            .cmd(&[
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-B",
                "16384",
                "-s",
                "9600",
                "-i",
                iface,
                "-w",
                "-",
            ])
            .stdout(Stdio::from(std::fs::File::create(file).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains("listening on"))
        });
        Capture { child }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kills whatever still runs in the namespace, then removes it (and its veths).
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub struct Capture {
    child: Child,
}

impl Capture {
    /// Stops tcpdump (SIGINT, so it flushes) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; panics on timeout.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Whether live tests were explicitly left out.
pub fn skipped() -> bool {
    if std::env::var_os("VXSPAN_SKIP_LIVE").is_some() {
        eprintln!("VXSPAN_SKIP_LIVE is set: live test left out");
        return true;
    }
    false
}

/// A child process (a daemon a test started) killed and reaped when dropped, also when the
/// test fails.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
