//! The control plane never makes a worker wait (#16): while frames are sent at 250 pps, and
//! again at half of the lossless rate measured in this run, hostile and careless clients work
//! on every endpoint at once:
//! - control socket clients that send a 2 MB request and never read the reply;
//! - `vxspan stats` polled in a tight loop;
//! - 200 idle metrics connections, a metrics client trickling its request a byte a second, and
//!   one sending a 64 MB request head;
//! - a scraper fetching `/metrics` every 100 ms.
//!
//! Not one frame may be lost, `vxspan stats` and `/metrics` answer within a second each time,
//! and `status` shows every worker's longest gap between two batches under 20 ms.

mod common;

use common::daemon::{counter, Vxspan};
use common::netns::{skipped, wait_for, Netns};
use common::{scratch, write_pcap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const METRICS: &str = "127.0.0.1:9464";

/// UDP frames of 128 bytes, 64 flows (so every worker of the fanout group gets some).
fn frames(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = vec![0u8; 128];
            f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&114u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
            ip[16..20].copy_from_slice(&[198, 18, 1, (i % 64) as u8]);
            let sum = !ip
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>()
                .rem_euclid(0xffff) as u16;
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            let udp = &mut f[34..42];
            udp[0..2].copy_from_slice(&(10_000 + (i % 64) as u16).to_be_bytes());
            udp[2..4].copy_from_slice(&9u16.to_be_bytes());
            udp[4..6].copy_from_slice(&94u16.to_be_bytes());
            f
        })
        .collect()
}

/// Runs `f` on a thread inside the namespace `ns` (setns moves only the calling thread).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a descriptor we hold open; it changes this thread's network
        // namespace only, before any socket of the thread exists.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// One GET of /metrics: (status line ok, how long).
fn scrape() -> (bool, Duration) {
    let t = Instant::now();
    let ok = (|| -> std::io::Result<bool> {
        let mut s = TcpStream::connect(METRICS)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: vxspan\r\n\r\n")?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out.starts_with(b"HTTP/1.0 200 OK") && out.windows(11).any(|w| w == b"vxspan_rx_p"))
    })()
    .unwrap_or(false);
    (ok, t.elapsed())
}

/// What a poller saw: each answer's validity and latency.
type Seen = Vec<(bool, Duration)>;

/// The hostile clients and the pollers, until `stop`; what the pollers saw.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Seen>>,
}

impl Attack {
    fn start(ns: &str, control: &Path) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // 200 idle metrics connections, reopened when the server closes them.
        let s = stop.clone();
        threads.push(in_ns(ns, move || {
            let mut idle: Vec<TcpStream> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                idle.retain(|c| {
                    let mut b = [0u8; 1];
                    c.set_nonblocking(true).is_ok()
                        && matches!((&*c).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while idle.len() < 200 {
                    match TcpStream::connect(METRICS) {
                        Ok(c) => idle.push(c),
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Vec::new()
        }));
        // A slow loris: a byte a second.
        let s = stop.clone();
        threads.push(in_ns(ns, move || {
            let head = b"GET /metrics HTTP/1.1\r\nX-Slow: ".repeat(4);
            let mut c: Option<TcpStream> = None;
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let conn = match c.as_mut() {
                    Some(c) => c,
                    None => c.insert(TcpStream::connect(METRICS).unwrap()),
                };
                if conn.write_all(&head[i % head.len()..][..1]).is_err() {
                    c = None;
                }
                i += 1;
                for _ in 0..10 {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Vec::new()
        }));
        // A 64 MB request head, sent as fast as the server takes it.
        let s = stop.clone();
        threads.push(in_ns(ns, move || {
            let junk = vec![b'a'; 1 << 20];
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut c) = TcpStream::connect(METRICS) {
                    let _ = c.set_write_timeout(Some(Duration::from_millis(500)));
                    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ");
                    for _ in 0..64 {
                        if s.load(Ordering::Relaxed) || c.write_all(&junk).is_err() {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Vec::new()
        }));
        // Control clients that send 2 MB and never read.
        let (s, ctl) = (stop.clone(), control.to_owned());
        threads.push(std::thread::spawn(move || {
            let junk = vec![b's'; 2 << 20];
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut c) = UnixStream::connect(&ctl) {
                    let _ = c.set_write_timeout(Some(Duration::from_millis(300)));
                    let _ = c.write_all(&junk);
                    held.push(c); // never read, never closed until the end
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Vec::new()
        }));
        // `vxspan stats` in a tight loop.
        let (s, ctl) = (stop.clone(), control.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let o = std::process::Command::new(env!("CARGO_BIN_EXE_vxspan"))
                    .args(["stats", "--json", "--control", ctl.to_str().unwrap()])
                    .output()
                    .unwrap();
                let ok = o.status.success()
                    && serde_json::from_slice::<serde_json::Value>(&o.stdout)
                        .is_ok_and(|v| v["interfaces"].is_object());
                seen.push((ok, t.elapsed()));
            }
            seen
        }));
        // The scraper.
        let s = stop.clone();
        threads.push(in_ns(ns, move || {
            let mut seen = Vec::new();
            while !s.load(Ordering::Relaxed) {
                seen.push(scrape());
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        }));
        Attack { stop, threads }
    }

    /// Stops every client; (stats polls, scrapes) as each saw them.
    fn stop(self) -> (Seen, Seen) {
        self.stop.store(true, Ordering::Relaxed);
        let mut seen: Vec<_> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let scrapes = seen.pop().unwrap();
        let stats = seen.pop().unwrap();
        (stats, scrapes)
    }
}

struct Lab {
    dir: PathBuf,
    ns: Netns,
    vx: Vxspan,
}

fn lab(tag: &str, dir: PathBuf, extra: &str) -> Option<Lab> {
    if skipped() {
        return None;
    }
    let ns = Netns::new(tag);
    ns.veth("eth0", "p0", 1500);
    ns.veth("eth2", "p2", 1500);
    // The sender: `vxspan blast` out of s0 (tcpreplay tops out near 60 kpps here, below the
    // datapath's rate). It sends XDP frames, which a veth takes only when its peer has NAPI
    // (GRO on s1 gives it that; vxspan turns GRO off on its own inputs), and a bridge takes
    // them from s1 to p0.
    ns.veth("s0", "s1", 1500);
    ns.exec_ok(&["ethtool", "-K", "s1", "gro", "on"]);
    ns.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
    for dev in ["s1", "p0"] {
        ns.exec_ok(&["ip", "link", "set", dev, "master", "br0"]);
    }
    ns.exec_ok(&["ip", "link", "set", "br0", "up"]);
    // What the new links send of their own accord (none of it counted below) goes first.
    std::thread::sleep(Duration::from_secs(1));
    let config = dir.join("control.toml");
    std::fs::write(
        &config,
        format!(
            "[inputs.mirror]\ninterface = \"eth0\"\n[outputs.tools]\ninterface = \"eth2\"\n\
             [[rules]]\nname = \"all\"\nfrom = \"mirror\"\nto = \"tools\"\n\
             [management]\nmetrics = \"{METRICS}\"\n{extra}"
        ),
    )
    .unwrap();
    let vx = Vxspan::start(&ns, &config, &dir);
    wait_for(Duration::from_secs(5), || scrape_in(&ns.name).0);
    Some(Lab { dir, ns, vx })
}

fn scrape_in(ns: &str) -> (bool, Duration) {
    in_ns(ns, scrape).join().unwrap()
}

/// Sends `n` frames at `pps` through p0 and waits for the last copy; (frames sent, copies received at
/// the far end, the rate achieved).
fn replay(lab: &Lab, n: usize, pps: u32) -> (u64, u64, f64) {
    let pcap = lab.dir.join("frames.pcap");
    if !pcap.exists() {
        write_pcap(&pcap, &frames(64), 1_000);
    }
    let (tx0, rx0) = (
        lab.ns.stat("p0", "tx_packets"),
        lab.ns.stat("p2", "rx_packets"),
    );
    let o = lab.ns.exec_ok(&[
        env!("CARGO_BIN_EXE_vxspan"),
        "blast",
        "s0",
        pcap.to_str().unwrap(),
        "--count",
        &n.to_string(),
        "--rate",
        &pps.to_string(),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["injected"], n as u64, "{r}");
    let rate = n as f64 / r["seconds"].as_f64().unwrap();
    let sent = lab.ns.stat("p0", "tx_packets") - tx0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while lab.ns.stat("p2", "rx_packets") - rx0 < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    (sent, lab.ns.stat("p2", "rx_packets") - rx0, rate)
}

/// The highest rate (of a doubling series from 10 kpps, two seconds or 400,000 frames each) at
/// which every frame arrived.
fn lossless_rate(lab: &Lab) -> f64 {
    let mut best = 0.0;
    let mut pps = 10_000;
    while pps <= 10_240_000 {
        let (sent, got, rate) = replay(lab, (pps as usize * 2).min(400_000), pps);
        eprintln!("lossless search: {pps} pps asked, {rate:.0} achieved, {got} of {sent} arrived");
        if got != sent {
            break;
        }
        best = rate;
        if rate < f64::from(pps) * 0.8 {
            break; // the sender's own limit: the datapath kept up with all it could send
        }
        pps *= 2;
    }
    best
}

/// The counters once they stopped moving (they are published every 100 ms).
fn settled(vx: &Vxspan) -> serde_json::Value {
    let mut last = vx.stats();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(250));
        let now = vx.stats();
        if now["interfaces"] == last["interfaces"] {
            return now;
        }
        last = now;
    }
    panic!("the counters never settled: {last}");
}

/// Frames the kernel dropped from its per-CPU backlog queues (all CPUs, second column of
/// /proc/net/softnet_stat), for the diagnosis of a loss.
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|d| u64::from_str_radix(d, 16).ok())
        .sum()
}

/// One replay of `n` frames at `pps` under every hostile client at once; asserts nothing was
/// lost and every endpoint answered in time. With `retry_allowed`, a loss returns false instead
/// (after printing where the frames went), for one more try.
fn under_attack(lab: &Lab, n: usize, pps: u32, retry_allowed: bool) -> bool {
    let before = settled(&lab.vx);
    let drops0 = softnet_drops();
    let attack = Attack::start(&lab.ns.name, &lab.vx.control);
    std::thread::sleep(Duration::from_millis(500)); // every client at work first
    let (sent, got, rate) = replay(lab, n, pps);
    let (stats, scrapes) = attack.stop();
    let rx = |s: &serde_json::Value| counter(s, "mirror", "rx_packets");
    let after = settled(&lab.vx);
    let st = lab.vx.cli(&["status"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let gaps: Vec<f64> = st["worker_max_gap_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    let slowest = |v: &[(bool, Duration)]| v.iter().map(|s| s.1).max().unwrap_or_default();
    eprintln!(
        "{n} frames at {pps} pps ({rate:.0} achieved): {got} of {sent} arrived; {} stats polls \
         (slowest {:?}), {} scrapes (slowest {:?}); longest worker gaps {gaps:?} ms",
        stats.len(),
        slowest(&stats),
        scrapes.len(),
        slowest(&scrapes)
    );
    assert_eq!(sent, n as u64, "the sender sent every frame");
    if got != sent {
        // Where they went: the input ring (vxspan's count), the kernel's backlog queues, the
        // output's transmit counters.
        eprintln!(
            "lost {}: ring_overrun +{}, tx of the output {} (+{} dropped), softnet drops +{}, eth0 rx_dropped {}, p2 rx_dropped {}",
            sent - got,
            after["interfaces"]["mirror"]["drop_reasons"]["ring_overrun"].as_u64().unwrap_or(0)
                - before["interfaces"]["mirror"]["drop_reasons"]["ring_overrun"].as_u64().unwrap_or(0),
            after["interfaces"]["tools"]["tx_packets"].as_u64().unwrap_or(0)
                - before["interfaces"]["tools"]["tx_packets"].as_u64().unwrap_or(0),
            after["interfaces"]["tools"]["tx_dropped_packets"].as_u64().unwrap_or(0)
                - before["interfaces"]["tools"]["tx_dropped_packets"].as_u64().unwrap_or(0),
            softnet_drops().saturating_sub(drops0),
            lab.ns.stat("eth0", "rx_dropped"),
            lab.ns.stat("p2", "rx_dropped"),
        );
        if retry_allowed {
            return false;
        }
    }
    assert_eq!(got, sent, "not one frame lost");
    assert_eq!(rx(&after) - rx(&before), sent);
    let overrun = |s: &serde_json::Value| {
        s["interfaces"]["mirror"]["drop_reasons"]["ring_overrun"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(overrun(&after), overrun(&before));
    assert!(stats.len() >= 10 && scrapes.len() >= 10, "the pollers ran");
    assert!(stats.iter().all(|s| s.0), "every stats poll answered");
    assert!(scrapes.iter().all(|s| s.0), "every scrape answered");
    assert!(
        slowest(&stats) < Duration::from_secs(1),
        "{:?}",
        slowest(&stats)
    );
    assert!(
        slowest(&scrapes) < Duration::from_secs(1),
        "{:?}",
        slowest(&scrapes)
    );
    assert!(gaps.iter().all(|g| *g < 20.0), "{gaps:?}");
    true
}

#[test]
fn hostile_clients_on_every_endpoint_cost_no_frame() {
    let Some(lab) = lab("ctl", scratch("live-control"), "") else {
        return;
    };
    under_attack(&lab, 1024, 250, false);
    let lossless = lossless_rate(&lab);
    assert!(lossless > 0.0, "no lossless rate found");
    let half = (lossless / 2.0) as u32;
    let n = (half as usize * 4).clamp(1024, 200_000);
    // The clients are processes of their own (a `vxspan stats` loop among them) on the same
    // two cores as the worker, which the lossless search measured without them: on a loaded CI
    // runner the worker has lost CPU to them at half that rate (ring_overrun, the input ring
    // full). One more try then; a loss in both fails.
    if !under_attack(&lab, n, half, true) {
        eprintln!("lost frames at {half} pps under attack; once more");
        under_attack(&lab, n, half, false);
    }
    let fin = lab.vx.stop(&lab.dir);
    assert!(counter(&fin, "tools", "tx_packets") > 0);
}

/// `vxspan` as uid 4242 with `gid` and no other group (setpriv; no passwd entry is needed).
fn as_other_user(vx: &Vxspan, gid: u32, args: &[&str]) -> std::process::Output {
    let (uid, gid) = ("--reuid=4242".to_string(), format!("--regid={gid}"));
    let mut argv = vec![
        uid.as_str(),
        gid.as_str(),
        "--clear-groups",
        env!("CARGO_BIN_EXE_vxspan"),
    ];
    argv.extend_from_slice(args);
    argv.extend(["--control", vx.control.to_str().unwrap()]);
    std::process::Command::new("setpriv")
        .args(&argv)
        .output()
        .unwrap()
}

/// `management.control_group`: its members read stats and status; reload and capture need
/// root or the service user (SO_PEERCRED); anyone else cannot connect.
#[test]
fn a_read_only_group_reads_but_cannot_reload_or_capture() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A directory anyone may traverse (the checkout's may not be): the socket's own mode and
    // group are what is tested.
    let dir = std::env::temp_dir().join(format!("vxspan-ctlg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(lab) = lab("ctlg", dir.clone(), "control_group = \"nogroup\"\n") else {
        return;
    };
    let m = std::fs::metadata(&lab.vx.control).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), 65534, "the socket belongs to nogroup");
    let o = as_other_user(&lab.vx, 65534, &["stats", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["interfaces"]["mirror"].is_object(), "{v}");
    let o = as_other_user(&lab.vx, 65534, &["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = as_other_user(&lab.vx, 65534, &["reload"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs root or the service user"), "{err}");
    let o = as_other_user(&lab.vx, 65534, &["capture", "-w", "-"]);
    assert!(!o.status.success() && o.stdout.is_empty(), "{o:?}");
    let o = as_other_user(&lab.vx, 4242, &["stats"]);
    assert!(!o.status.success(), "not in the group: no connection");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Root still may.
    let o = lab.vx.cli(&["reload"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lab.vx.stop(&lab.dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `vxspan reload`, which must apply; what it printed.
fn reload_ok(vx: &Vxspan) -> String {
    let o = vx.cli(&["reload"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Reload as a diff: a changed archive path is applied (the new file gets the frames, the
/// reply lists the change); a setting read only at start is refused with exit 3 and its
/// reason, and nothing else of that file is applied either.
#[test]
fn reload_applies_archive_changes_and_refuses_start_only_settings_whole() {
    let dir = scratch("live-control-reload");
    let config_of = |archive: &str, vlan: u16, metrics: &str| {
        format!(
            "[inputs.mirror]\ninterface = \"eth0\"\n[outputs.tools]\ninterface = \"eth2\"\n\
             [outputs.arch]\npcap = {{ path = \"{}\" }}\n\
             [[rules]]\nname = \"all\"\nfrom = \"mirror\"\nto = [\"tools\", \"arch\"]\n\
             [[rules]]\nname = \"tagged\"\nfrom = \"mirror\"\nvlan = {vlan}\nto = \"tools\"\n\
             [management]\nmetrics = \"{metrics}\"\n",
            dir.join(archive).display()
        )
    };
    let Some(lab) = lab("ctlr", dir.clone(), "") else {
        return;
    };
    let config = dir.join("control.toml");
    std::fs::write(&config, config_of("a.pcap", 10, METRICS)).unwrap();
    let out = reload_ok(&lab.vx);
    assert!(
        out.contains("ports reopened") && out.contains("output arch: added"),
        "{out}"
    );
    let (sent, got, _) = replay(&lab, 100, 1000);
    assert_eq!((sent, got), (100, 100));
    // The archive moves: the reply says so, and the new file gets what follows.
    std::fs::write(&config, config_of("b.pcap", 10, METRICS)).unwrap();
    let out = reload_ok(&lab.vx);
    assert!(out.contains("output arch: changed"), "{out}");
    let (sent, _, _) = replay(&lab, 50, 1000);
    assert_eq!(sent, 50);
    // A rule change together with a new metrics address: refused whole, exit 3, the reason.
    std::fs::write(&config, config_of("b.pcap", 20, "127.0.0.1:9465")).unwrap();
    let o = lab.vx.cli(&["reload"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("management.metrics") && err.contains("restart"),
        "{err}"
    );
    let st = lab.vx.cli(&["status"]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let vlans: Vec<&str> = st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["vlan"].as_str())
        .collect();
    assert!(vlans.contains(&"10") && !vlans.contains(&"20"), "{st}");
    // An invalid file: exit 2.
    std::fs::write(&config, "rules = 5").unwrap();
    assert_eq!(lab.vx.cli(&["reload"]).status.code(), Some(2));
    let fin = lab.vx.stop(&dir);
    assert_eq!(counter(&fin, "arch", "tx_packets"), 150);
    assert_eq!(common::daemon::frames_in(&dir.join("a.pcap")), 100);
    assert_eq!(common::daemon::frames_in(&dir.join("b.pcap")), 50);
}
