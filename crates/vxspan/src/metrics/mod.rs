//! Prometheus metrics (`management.metrics`): an HTTP endpoint serving the text exposition
//! format (version 0.0.4) at `/metrics`.
//!
//! The endpoint runs on its own thread and takes its counters from the instance's control
//! socket, the same `stats` reply `vxspan stats --json` prints, so the two always agree and a
//! slow scraper never holds up the datapath. The HTTP side ([`http`]) serves one GET with one
//! response and closes, with a bounded head, deadlines and many connections on one thread.
//!
//! The exposition text is written here rather than through prometheus-client: the counters
//! already exist as one snapshot (the `stats` reply), and that crate's registry holds metric
//! objects of its own, which would be a second copy of every counter to keep in step. The
//! format is checked by `promtool check metrics` in the live test.

pub mod http;

use crate::process::Process;
use anyhow::Result;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vxspan_core::counters::PortReport;
use vxspan_core::Report;

/// Where the frames of each (input, VLAN) and each rule are processed now, from the running
/// instance's status: `xdp`, `userspace`, or `mixed` for a rule whose groups run in both.
#[derive(Debug, Default)]
pub struct Tiers {
    vlans: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    rules: std::collections::BTreeMap<String, String>,
}

impl Tiers {
    pub fn from_status(st: &crate::control::proto::Status) -> Tiers {
        let mut rules: std::collections::BTreeMap<String, String> = Default::default();
        for g in &st.groups {
            for r in &g.rules {
                let e = rules.entry(r.clone()).or_insert_with(|| g.tier.clone());
                if *e != g.tier {
                    *e = "mixed".into();
                }
            }
        }
        Tiers {
            vlans: st.vlan_tiers.clone(),
            rules,
        }
    }

    fn vlan(&self, input: &str, vlan: &str) -> &str {
        self.vlans
            .get(input)
            .and_then(|m| m.get(vlan))
            .map_or("userspace", String::as_str)
    }

    fn rule(&self, name: &str) -> &str {
        self.rules.get(name).map_or("userspace", String::as_str)
    }
}

/// Escapes a label value (backslash, double quote, line feed).
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Writes one counter family: HELP, TYPE and its samples (`labels` already rendered).
fn counter(out: &mut String, name: &str, help: &str, samples: &[(String, u64)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// A per-port counter family: name, help, and how to read it from a port's counters.
type PortFamily<'a> = (&'a str, &'a str, &'a dyn Fn(&PortReport) -> u64);

/// Renders a stats report in the Prometheus text format.
pub fn render(r: &Report, process: Process, tiers: &Tiers) -> String {
    let mut out = String::new();
    let ports = |f: &dyn Fn(&PortReport) -> u64| -> Vec<(String, u64)> {
        r.interfaces
            .iter()
            .map(|(n, p)| (format!("interface=\"{}\"", esc(n)), f(p)))
            .collect()
    };
    let port_families: [PortFamily; 8] = [
        (
            "vxspan_rx_packets_total",
            "Frames received on the port.",
            &|p| p.rx_packets,
        ),
        (
            "vxspan_rx_bytes_total",
            "Bytes received on the port.",
            &|p| p.rx_bytes,
        ),
        (
            "vxspan_forwarded_packets_total",
            "Received frames sent to at least one output.",
            &|p| p.forwarded_packets,
        ),
        (
            "vxspan_dropped_packets_total",
            "Received frames sent nowhere (rx = forwarded + dropped).",
            &|p| p.dropped_packets,
        ),
        (
            "vxspan_passthru_packets_total",
            "Received frames handed to a passthru TAP.",
            &|p| p.passthru_packets,
        ),
        (
            "vxspan_tx_packets_total",
            "Copies sent on the port.",
            &|p| p.tx_packets,
        ),
        ("vxspan_tx_bytes_total", "Bytes sent on the port.", &|p| {
            p.tx_bytes
        }),
        (
            "vxspan_tx_dropped_packets_total",
            "Copies for the port that could not be sent.",
            &|p| p.tx_dropped_packets,
        ),
    ];
    for (name, help, f) in port_families {
        counter(&mut out, name, help, &ports(f));
    }
    let mut drops = Vec::new();
    for (n, p) in &r.interfaces {
        for (dir, reasons) in [("rx", &p.drop_reasons), ("tx", &p.tx_drop_reasons)] {
            for (reason, v) in reasons {
                drops.push((
                    format!(
                        "interface=\"{}\",direction=\"{dir}\",reason=\"{}\"",
                        esc(n),
                        esc(reason)
                    ),
                    *v,
                ));
            }
        }
    }
    counter(
        &mut out,
        "vxspan_drops_total",
        "Dropped frames (rx) and copies (tx) by reason.",
        &drops,
    );
    let mut vlan_pk = Vec::new();
    let mut vlan_by = Vec::new();
    let mut vlan_dr = Vec::new();
    for (n, vlans) in &r.vlans {
        for (vlan, c) in vlans {
            let l = format!(
                "interface=\"{}\",vlan=\"{}\",tier=\"{}\"",
                esc(n),
                esc(vlan),
                tiers.vlan(n, vlan)
            );
            vlan_pk.push((l.clone(), c.packets));
            vlan_by.push((l.clone(), c.bytes));
            vlan_dr.push((l, c.dropped_packets));
        }
    }
    counter(
        &mut out,
        "vxspan_vlan_packets_total",
        "Frames received per input VLAN.",
        &vlan_pk,
    );
    counter(
        &mut out,
        "vxspan_vlan_bytes_total",
        "Bytes received per input VLAN.",
        &vlan_by,
    );
    counter(
        &mut out,
        "vxspan_vlan_dropped_packets_total",
        "Frames received per input VLAN and sent nowhere.",
        &vlan_dr,
    );
    let rule = |f: &dyn Fn(&vxspan_core::counters::RuleCounters) -> u64| -> Vec<(String, u64)> {
        r.rules
            .iter()
            .map(|c| {
                (
                    format!("rule=\"{}\",tier=\"{}\"", esc(&c.name), tiers.rule(&c.name)),
                    f(c),
                )
            })
            .collect()
    };
    counter(
        &mut out,
        "vxspan_rule_matched_packets_total",
        "Frames a rule matched.",
        &rule(&|c| c.matched_packets),
    );
    counter(
        &mut out,
        "vxspan_rule_matched_bytes_total",
        "Bytes of the frames a rule matched.",
        &rule(&|c| c.matched_bytes),
    );
    counter(
        &mut out,
        "vxspan_rule_forwarded_packets_total",
        "Frames a rule sent on.",
        &rule(&|c| c.forwarded_packets),
    );
    counter(
        &mut out,
        "vxspan_rule_sampled_out_packets_total",
        "Frames a rule's sampling left out.",
        &rule(&|c| c.sampled_out_packets),
    );
    counter(
        &mut out,
        "vxspan_rule_duplicate_packets_total",
        "Frames a rule's de-duplication dropped.",
        &rule(&|c| c.duplicate_packets),
    );
    let mut tun = Vec::new();
    for (n, t) in &r.tunnels {
        for (id, c) in t {
            tun.push((
                format!("interface=\"{}\",tunnel=\"{}\"", esc(n), esc(id)),
                c.packets,
            ));
        }
    }
    counter(
        &mut out,
        "vxspan_tunnel_packets_total",
        "Frames decapsulated per tunnel type and id (VNI, ERSPAN session, GRE key).",
        &tun,
    );
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds."
    );
    let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
    let _ = writeln!(out, "process_cpu_seconds_total {}", process.cpu_seconds);
    let _ = writeln!(
        out,
        "# HELP process_resident_memory_bytes Resident memory size in bytes."
    );
    let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
    let _ = writeln!(
        out,
        "process_resident_memory_bytes {}",
        process.resident_bytes
    );
    out
}

/// How long a rendered `/metrics` body is served again: scrapers that arrive together share one
/// fetch from the control socket (the counters are published every 100 ms anyway).
const REUSE: Duration = Duration::from_millis(100);
/// How long a fetch from the control socket may take before the scrape is answered 503.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// `status` is answered by the first worker between two batches (busy during a reload): a
/// scrape waits for it this long, then uses the placement it read last.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `/metrics` on `addr` from a thread of its own ([`http`]); counters come from
/// `control`.
pub fn spawn(addr: SocketAddr, control: PathBuf) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("management.metrics: listening on {addr}: {e}"))?;
    let mut server = http::Server::new(listener, http::Limits::default())?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            crate::process::yield_to_workers();
            let mut last: Option<(Instant, http::Response)> = None;
            let mut tiers = Tiers::default();
            let respond = |req: &http::Request<'_>| {
                if req.path != "/metrics" {
                    return http::Response::text("404 Not Found", "metrics are at /metrics\n");
                }
                match &last {
                    Some((at, r)) if at.elapsed() < REUSE => r.clone(),
                    _ => {
                        let r = scrape(&control, &mut tiers);
                        last = Some((Instant::now(), r.clone()));
                        r
                    }
                }
            };
            if let Err(e) = server.run(respond, || false) {
                crate::logging::warn(format!("metrics endpoint stopped: {e}"));
            }
        })?;
    Ok(())
}

/// One `/metrics` response from the instance's counters. `tiers` is the placement as last
/// read: kept when `status` cannot be had (a reload in progress), so the series' `tier`
/// labels do not flip for one scrape.
fn scrape(control: &Path, tiers: &mut Tiers) -> http::Response {
    use crate::control::client::fetch_within;
    use crate::control::proto::Request;
    match fetch_within::<Report>(control, &Request::Stats, FETCH_TIMEOUT) {
        Ok(report) => {
            if let Ok(s) = fetch_within::<crate::control::proto::Status>(
                control,
                &Request::Status,
                STATUS_TIMEOUT,
            ) {
                *tiers = Tiers::from_status(&s);
            }
            http::Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: std::sync::Arc::from(render(&report, Process::read(), tiers).into_bytes()),
            }
        }
        Err(e) => http::Response::text(
            "503 Service Unavailable",
            format!("counters unavailable: {e:#}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("x\ny"), "x\\ny");
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let mut r = Report::default();
        let mut p: PortReport = serde_json::from_value(serde_json::json!({
            "rx_packets": 10, "rx_bytes": 1000, "forwarded_packets": 7, "forwarded_bytes": 700,
            "dropped_packets": 3, "dropped_bytes": 300, "drop_reasons": {"no_rule": 3},
            "tx_packets": 0, "tx_bytes": 0, "tx_dropped_packets": 0, "tx_dropped_bytes": 0,
            "tx_drop_reasons": {"link_down": 0}
        }))
        .unwrap();
        r.interfaces.insert("eth0".into(), p.clone());
        p.rx_packets = 0;
        r.interfaces.insert("eth\"1".into(), p);
        let text = render(&r, Process::read(), &Tiers::default());
        assert!(text.contains("vxspan_rx_packets_total{interface=\"eth0\"} 10\n"));
        assert!(text.contains("vxspan_rx_packets_total{interface=\"eth\\\"1\"} 0\n"));
        assert!(text.contains(
            "vxspan_drops_total{interface=\"eth0\",direction=\"rx\",reason=\"no_rule\"} 3\n"
        ));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
