//! SNMP (`management.snmp_agentx`): vxspan as an AgentX sub-agent (RFC 2741) of net-snmp's
//! snmpd. It registers only its own subtree (VXSPAN-MIB, `mibs/VXSPAN-MIB.txt`), so it never
//! clashes with snmpd's own IF-MIB.
//!
//! PDUs are encoded and decoded by the `agentx` crate; the session (open, register, answer
//! Get / GetNext / GetBulk, notify, reconnect) is here. The sub-agent runs on its own thread and
//! reads the counters through the control socket, like the metrics endpoint, so what SNMP
//! returns equals `vxspan stats --json`. Once a second it compares each port's link state and
//! drop rate with the previous second and sends vxspanPortUp / vxspanPortDown /
//! vxspanDropRateHigh notifications. When snmpd goes away, it reconnects every two seconds.

use crate::control::proto::PortStatus;
use agentx::encodings::{SearchRange, Value, VarBind, VarBindList, ID};
use agentx::pdu::{self, Header, Notify, Open, Register, Response, Type};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vxspan_config::Snmp;
use vxspan_core::Report;

/// sysUpTime.0 and snmpTrapOID.0, the first two variables of every notification.
const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
/// The longest object name SNMP allows (RFC 2578 section 3.5).
const MAX_SUBIDS: usize = 128;

fn id(parts: &[u32]) -> ID {
    ID::try_from(parts.to_vec()).unwrap_or_default()
}

/// The sub-identifiers of an agentx ID (the crate keeps them private; its Display is dotted).
fn parts(i: &ID) -> Vec<u32> {
    let s = i.to_string();
    if s.is_empty() {
        return Vec::new();
    }
    s.split('.').filter_map(|x| x.parse().ok()).collect()
}

/// The port status as VXSPAN-MIB's vxspanPortOperStatus: up(1), down(2), notPresent(6).
fn oper_status(link: &str) -> i32 {
    match link {
        _ if crate::control::proto::link_usable(link) => 1,
        "gone" => 6,
        _ => 2,
    }
}

/// The subtree's values at one moment, in OID order.
pub struct View {
    pub values: BTreeMap<Vec<u32>, Value>,
}

impl View {
    /// Builds the VXSPAN-MIB tables from a stats report and the port list.
    fn build(base: &[u32], r: &Report, ports: &[PortStatus]) -> View {
        let mut values = BTreeMap::new();
        let mut put = |suffix: &[u32], v: Value| {
            let mut o = base.to_vec();
            o.extend_from_slice(suffix);
            values.insert(o, v);
        };
        for (i, p) in ports.iter().enumerate() {
            let idx = i as u32 + 1;
            let c = r.interfaces.get(&p.name).cloned().unwrap_or_else(|| {
                serde_json::from_value(serde_json::json!({
                    "rx_packets": 0, "rx_bytes": 0, "forwarded_packets": 0, "forwarded_bytes": 0,
                    "dropped_packets": 0, "dropped_bytes": 0, "drop_reasons": {},
                    "tx_packets": 0, "tx_bytes": 0, "tx_dropped_packets": 0,
                    "tx_dropped_bytes": 0, "tx_drop_reasons": {}
                }))
                .expect("a zero port report")
            });
            let role = if p.role == "input" { 1 } else { 2 };
            // vxspanPortTable: 1.1.<column>.<index>
            put(
                &[1, 1, 2, idx],
                Value::OctetString(agentx::encodings::OctetString(p.name.clone())),
            );
            put(&[1, 1, 3, idx], Value::Integer(role));
            put(&[1, 1, 4, idx], Value::Integer(oper_status(&p.link)));
            put(&[1, 1, 5, idx], Value::Counter64(c.rx_packets));
            put(&[1, 1, 6, idx], Value::Counter64(c.rx_bytes));
            put(&[1, 1, 7, idx], Value::Counter64(c.forwarded_packets));
            put(&[1, 1, 8, idx], Value::Counter64(c.dropped_packets));
            put(&[1, 1, 9, idx], Value::Counter64(c.tx_packets));
            put(&[1, 1, 10, idx], Value::Counter64(c.tx_bytes));
            put(&[1, 1, 11, idx], Value::Counter64(c.tx_dropped_packets));
            // vxspanVlanTable: 1.2.1.<column>.<port>.<vlan>; "none" is VLAN 0; the "other" sum
            // of VLANs past the `[counters]` bound has no row (its VLANs have no index).
            if let Some(vlans) = r.vlans.get(&p.name) {
                for (vlan, v) in vlans {
                    let vid = if vlan == "none" {
                        0
                    } else {
                        vlan.parse().unwrap_or(u32::MAX)
                    };
                    if vid > 4095 {
                        continue;
                    }
                    put(&[1, 2, 1, 2, idx, vid], Value::Counter64(v.packets));
                    put(&[1, 2, 1, 3, idx, vid], Value::Counter64(v.bytes));
                    put(&[1, 2, 1, 4, idx, vid], Value::Counter64(v.dropped_packets));
                }
            }
        }
        for (i, rule) in r.rules.iter().enumerate() {
            let idx = i as u32 + 1;
            put(
                &[1, 3, 1, 2, idx],
                Value::OctetString(agentx::encodings::OctetString(rule.name.clone())),
            );
            put(&[1, 3, 1, 3, idx], Value::Counter64(rule.matched_packets));
            put(&[1, 3, 1, 4, idx], Value::Counter64(rule.matched_bytes));
            put(&[1, 3, 1, 5, idx], Value::Counter64(rule.forwarded_packets));
        }
        View { values }
    }

    /// Get: the exact object, or noSuchObject.
    pub fn get(&self, oid: &[u32]) -> Value {
        self.values.get(oid).cloned().unwrap_or(Value::NoSuchObject)
    }

    /// GetNext: the first object after `start` (or at it, if `include`) and before `end`
    /// (when `end` is not empty).
    pub fn next(&self, start: &[u32], include: bool, end: &[u32]) -> (Vec<u32>, Value) {
        use std::ops::Bound;
        let lower = if include {
            Bound::Included(start.to_vec())
        } else {
            Bound::Excluded(start.to_vec())
        };
        match self.values.range((lower, Bound::Unbounded)).next() {
            Some((o, v)) if end.is_empty() || o.as_slice() < end => (o.clone(), v.clone()),
            _ => (start.to_vec(), Value::EndOfMibView),
        }
    }
}

/// What the thread keeps between seconds to notice changes.
struct Watch {
    links: BTreeMap<String, i32>,
    drops: BTreeMap<String, (u64, bool)>,
}

pub fn spawn(cfg: Snmp, control: PathBuf) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("snmp".into())
        .spawn(move || {
            crate::process::yield_to_workers();
            let started = Instant::now();
            let mut watch = Watch {
                links: BTreeMap::new(),
                drops: BTreeMap::new(),
            };
            // Each lost session is logged once, not each failed retry.
            let mut quiet = false;
            loop {
                let mut registered = false;
                let result = session(&cfg, &control, started, &mut watch, &mut registered);
                if registered {
                    quiet = false;
                }
                let why = match result {
                    Ok(()) => "the master closed the session".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                if !quiet {
                    crate::logging::warn(format!(
                        "snmp: AgentX master {}: {why}; retrying every 2 s",
                        cfg.master
                    ));
                    quiet = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })?;
    Ok(())
}

/// A connection to the master, Unix or TCP.
enum Conn {
    Unix(UnixStream),
    Tcp(std::net::TcpStream),
}

impl Conn {
    fn open(master: &str) -> std::io::Result<Conn> {
        let c = match master.strip_prefix("tcp:") {
            Some(addr) => Conn::Tcp(std::net::TcpStream::connect(addr)?),
            None => Conn::Unix(UnixStream::connect(master)?),
        };
        let t = Some(Duration::from_millis(250));
        match &c {
            Conn::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
            }
        }
        Ok(c)
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Unix(s) => s,
            Conn::Tcp(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads one PDU (header and payload); `None` on a read timeout before its first byte.
fn read_pdu(c: &mut Conn) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 20];
    let s = c.io();
    match s.read(&mut head[..1]) {
        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    read_full(s, &mut head[1..])?;
    let h = Header::from_bytes(&head)?;
    if h.payload_length > 1 << 20 {
        return Err(std::io::Error::other("AgentX PDU larger than 1 MiB"));
    }
    let mut pdu = head.to_vec();
    pdu.resize(20 + h.payload_length as usize, 0);
    read_full(s, &mut pdu[20..])?;
    Ok(Some(pdu))
}

/// read_exact that rides over read timeouts (the rest of a PDU is on its way).
fn read_full(s: &mut dyn ReadWrite, mut buf: &mut [u8]) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !buf.is_empty() {
        match s.read(buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fetch(
    base: &[u32],
    control: &std::path::Path,
) -> anyhow::Result<(View, Report, Vec<PortStatus>)> {
    let report = crate::control::client::fetch_stats(control)?;
    let status = crate::control::client::fetch_status(control)?;
    let view = View::build(base, &report, &status.ports);
    Ok((view, report, status.ports))
}

fn session(
    cfg: &Snmp,
    control: &std::path::Path,
    started: Instant,
    watch: &mut Watch,
    registered: &mut bool,
) -> anyhow::Result<()> {
    let mut c = Conn::open(&cfg.master)?;
    let mut packet_id = 1u32;
    let mut open = Open::new(id(&cfg.base_oid), "vxspan packet broker");
    open.timeout = Duration::from_secs(5);
    open.header.packet_id = packet_id;
    c.io().write_all(&open.to_bytes()?)?;
    let session_id = wait_response(&mut c, packet_id)?.session_id;
    packet_id += 1;
    let mut reg = Register::new(id(&cfg.base_oid));
    reg.header.session_id = session_id;
    reg.header.packet_id = packet_id;
    c.io().write_all(&reg.to_bytes()?)?;
    wait_response(&mut c, packet_id)
        .map_err(|e| anyhow::anyhow!("registering {}: {e:#}", id(&cfg.base_oid)))?;
    *registered = true;
    crate::logging::log(format!(
        "snmp: AgentX sub-agent registered {} with {}",
        id(&cfg.base_oid),
        cfg.master
    ));
    let (mut view, report, ports) = fetch(&cfg.base_oid, control)?;
    let mut fetched = Instant::now();
    let mut last_check = Instant::now();
    // The first look sets the baseline: no notification for the state found at start.
    observe(cfg, watch, &report, &ports, 0.0);
    let uptime = || started.elapsed();
    loop {
        if last_check.elapsed() >= Duration::from_secs(1) {
            let dt = last_check.elapsed().as_secs_f64();
            last_check = Instant::now();
            let (v, report, ports) = fetch(&cfg.base_oid, control)?;
            view = v;
            fetched = Instant::now();
            for vb in observe(cfg, watch, &report, &ports, dt) {
                packet_id += 1;
                let mut list = vec![
                    VarBind::new(
                        id(SYS_UPTIME),
                        Value::TimeTicks((uptime().as_millis() / 10) as i32),
                    ),
                    VarBind::new(id(SNMP_TRAP_OID), Value::ObjectIdentifier(id(&vb.0))),
                ];
                list.extend(vb.1);
                let mut n = Notify::new(VarBindList(list));
                n.header.session_id = session_id;
                n.header.packet_id = packet_id;
                c.io().write_all(&n.to_bytes()?)?;
            }
        }
        let Some(raw) = read_pdu(&mut c)? else {
            continue;
        };
        let h = Header::from_bytes(&raw)?;
        if fetched.elapsed() > Duration::from_millis(500)
            && matches!(h.ty, Type::Get | Type::GetNext | Type::GetBulk)
        {
            view = fetch(&cfg.base_oid, control)?.0;
            fetched = Instant::now();
        }
        match respond(&view, &raw, uptime())? {
            Reply::Send(bytes) => c.io().write_all(&bytes)?,
            Reply::Nothing => {}
            Reply::Close => return Ok(()),
        }
    }
}

/// What to do with a PDU from the master.
pub enum Reply {
    Send(Vec<u8>),
    Nothing,
    /// The master closed the session.
    Close,
}

/// Answers one PDU from the master (a whole PDU: header and payload) from `view`. Pure: what
/// the fuzz target drives with arbitrary bytes.
pub fn respond(view: &View, raw: &[u8], uptime: Duration) -> std::io::Result<Reply> {
    let h = Header::from_bytes(raw)?;
    let mut resp = Response::from_header(&h);
    resp.sys_uptime = uptime;
    // SNMP names have at most 128 sub-identifiers; a longer one (possible once the master's
    // "internet" prefix is expanded) cannot be echoed back, so the request is refused whole.
    let fits = |list: &[SearchRange]| {
        list.iter()
            .all(|sr| parts(&sr.start).len() <= MAX_SUBIDS && parts(&sr.end).len() <= MAX_SUBIDS)
    };
    let refuse = |mut resp: Response| -> std::io::Result<Reply> {
        resp.res_error = pdu::ResError::ProcessingError;
        Ok(Reply::Send(resp.to_bytes()?))
    };
    let vbs: Option<Vec<VarBind>> = match h.ty {
        Type::Get => {
            let g = pdu::Get::from_bytes(raw)?;
            if !fits(&g.sr.0) {
                return refuse(resp);
            }
            Some(
                g.sr.0
                    .iter()
                    .map(|sr| VarBind::new(sr.start.clone(), view.get(&parts(&sr.start))))
                    .collect(),
            )
        }
        Type::GetNext => {
            let g = pdu::GetNext::from_bytes(raw)?;
            if !fits(&g.sr.0) {
                return refuse(resp);
            }
            Some(g.sr.0.iter().map(|sr| next_vb(view, sr)).collect())
        }
        Type::GetBulk => {
            let g = pdu::GetBulk::from_bytes(raw)?;
            if !fits(&g.sr.0) {
                return refuse(resp);
            }
            let nr = usize::from(g.non_repeaters).min(g.sr.0.len());
            let mut out: Vec<VarBind> = g.sr.0[..nr].iter().map(|sr| next_vb(view, sr)).collect();
            let mut cursors: Vec<SearchRange> = g.sr.0[nr..].to_vec();
            for _ in 0..g.max_repetitions.min(1000) {
                if cursors.is_empty() {
                    break;
                }
                let mut all_end = true;
                for sr in cursors.iter_mut() {
                    let vb = next_vb(view, sr);
                    if vb.data != Value::EndOfMibView {
                        all_end = false;
                    }
                    sr.start = vb.name.clone();
                    sr.start.include = 0;
                    out.push(vb);
                }
                if all_end {
                    break;
                }
            }
            Some(out)
        }
        Type::Close => return Ok(Reply::Close),
        // Nothing in the subtree is writable.
        Type::TestSet | Type::CommitSet | Type::UndoSet | Type::CleanupSet => return refuse(resp),
        // Answers to our notifications, pings, and anything else.
        _ => None,
    };
    match vbs {
        Some(vbs) => {
            resp.vb = Some(VarBindList(vbs));
            Ok(Reply::Send(resp.to_bytes()?))
        }
        None => Ok(Reply::Nothing),
    }
}

fn next_vb(view: &View, sr: &SearchRange) -> VarBind {
    let (o, v) = view.next(&parts(&sr.start), sr.start.include != 0, &parts(&sr.end));
    VarBind::new(id(&o), v)
}

/// The res.error field of a Response PDU (RFC 2741 section 6.2.16), read directly: the crate's
/// Response parser multiplies the master's sysUpTime by 10 in 32 bits, which overflows once
/// snmpd has been up for 49.7 days.
pub fn response_error(raw: &[u8]) -> Option<u16> {
    let network_order = raw.get(2)? & (1 << pdu::NETWORK_BYTE_ORDER) != 0;
    let b = [*raw.get(24)?, *raw.get(25)?];
    Some(if network_order {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

/// Waits for the master's answer to our PDU `packet_id`; returns its header.
fn wait_response(c: &mut Conn, packet_id: u32) -> anyhow::Result<Header> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(raw) = read_pdu(c)? {
            let h = Header::from_bytes(&raw)?;
            if h.ty == Type::Response && h.packet_id == packet_id {
                match response_error(&raw) {
                    Some(0) => return Ok(h),
                    Some(code) => anyhow::bail!("the master refused (AgentX error {code})"),
                    None => anyhow::bail!("a truncated Response from the master"),
                }
            }
        }
    }
    anyhow::bail!("no answer from the master within 5 s")
}

/// Notifications due: link changes, and drop rates crossing the threshold upwards.
fn observe(
    cfg: &Snmp,
    w: &mut Watch,
    r: &Report,
    ports: &[PortStatus],
    dt: f64,
) -> Vec<(Vec<u32>, Vec<VarBind>)> {
    let mut out = Vec::new();
    let col = |c: u32, idx: u32| {
        let mut o = cfg.base_oid.clone();
        o.extend_from_slice(&[1, 1, c, idx]);
        id(&o)
    };
    let notification = |n: u32| {
        let mut o = cfg.base_oid.clone();
        o.extend_from_slice(&[0, n]);
        o
    };
    for (i, p) in ports.iter().enumerate() {
        let idx = i as u32 + 1;
        let status = oper_status(&p.link);
        let name = Value::OctetString(agentx::encodings::OctetString(p.name.clone()));
        if let Some(before) = w.links.insert(p.name.clone(), status) {
            if before != status && dt > 0.0 {
                let n = if status == 1 { 1 } else { 2 };
                out.push((
                    notification(n),
                    vec![
                        VarBind::new(col(2, idx), name.clone()),
                        VarBind::new(col(4, idx), Value::Integer(status)),
                    ],
                ));
            }
        }
        let dropped = r.interfaces.get(&p.name).map_or(0, |c| c.dropped_packets);
        let (prev, high) = w.drops.get(&p.name).copied().unwrap_or((dropped, false));
        let rate = if dt > 0.0 {
            dropped.saturating_sub(prev) as f64 / dt
        } else {
            0.0
        };
        let now_high = cfg.drop_rate.is_some_and(|t| rate > t as f64);
        if now_high && !high {
            out.push((
                notification(3),
                vec![
                    VarBind::new(col(2, idx), name),
                    VarBind::new(col(8, idx), Value::Counter64(dropped)),
                ],
            ));
        }
        w.drops.insert(p.name.clone(), (dropped, now_high));
    }
    out
}

/// A small view (two ports, two VLANs, one rule) for tests and the fuzz target.
pub fn example_view() -> View {
    let r: Report = serde_json::from_value(serde_json::json!({
        "interfaces": {
            "in": {"rx_packets": 10, "rx_bytes": 1000, "forwarded_packets": 7, "forwarded_bytes": 700,
                   "dropped_packets": 3, "dropped_bytes": 300, "drop_reasons": {},
                   "tx_packets": 0, "tx_bytes": 0, "tx_dropped_packets": 0, "tx_dropped_bytes": 0,
                   "tx_drop_reasons": {}}
        },
        "vlans": {"in": {"none": {"packets": 4, "bytes": 400, "dropped_packets": 1, "dropped_bytes": 100},
                         "10": {"packets": 6, "bytes": 600, "dropped_packets": 2, "dropped_bytes": 200}}},
        "rules": [{"name": "r", "matched_packets": 7, "matched_bytes": 700, "forwarded_packets": 7,
                   "sampled_out_packets": 0}]
    }))
    .unwrap();
    let ports = vec![
        PortStatus {
            name: "in".into(),
            role: "input".into(),
            interface: String::new(),
            link: "up".into(),
        },
        PortStatus {
            name: "out".into(),
            role: "output".into(),
            interface: String::new(),
            link: "gone".into(),
        },
    ];
    View::build(&[1, 3, 6, 1, 3, 8624], &r, &ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_in_oid_order() {
        let v = example_view();
        let base = [1, 3, 6, 1, 3, 8624];
        let o = |s: &[u32]| [&base[..], s].concat();
        assert_eq!(v.get(&o(&[1, 1, 5, 1])), Value::Counter64(10));
        assert_eq!(v.get(&o(&[1, 1, 4, 2])), Value::Integer(6));
        assert_eq!(v.get(&o(&[1, 2, 1, 2, 1, 0])), Value::Counter64(4));
        assert_eq!(v.get(&o(&[1, 2, 1, 2, 1, 10])), Value::Counter64(6));
        assert_eq!(v.get(&o(&[1, 3, 1, 3, 1])), Value::Counter64(7));
        assert_eq!(v.get(&o(&[9])), Value::NoSuchObject);
        // Walking from the base visits the port table column by column.
        let (first, _) = v.next(&base, false, &[]);
        assert_eq!(first, o(&[1, 1, 2, 1]));
        let (second, _) = v.next(&first, false, &[]);
        assert_eq!(second, o(&[1, 1, 2, 2]));
        let (at, _) = v.next(&first, true, &[]);
        assert_eq!(at, first);
        // The end of the range and of the view.
        assert_eq!(
            v.next(&base, false, &o(&[1, 1, 2, 1])).1,
            Value::EndOfMibView
        );
        assert_eq!(v.next(&o(&[2]), false, &[]).1, Value::EndOfMibView);
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(
            parts(&id(&[1, 3, 6, 1, 3, 8624, 1])),
            vec![1, 3, 6, 1, 3, 8624, 1]
        );
        assert!(parts(&ID::default()).is_empty());
    }

    #[test]
    fn getnext_and_getbulk_walk_the_subtree() {
        use agentx::encodings::SearchRangeList;
        let v = example_view();
        let base = [1, 3, 6, 1, 3, 8624];
        let mut g = pdu::GetNext::new(SearchRangeList(vec![SearchRange::new(
            id(&base),
            ID::default(),
        )]));
        let Ok(Reply::Send(bytes)) = respond(&v, &g.to_bytes().unwrap(), Duration::ZERO) else {
            panic!("no answer");
        };
        let r = Response::from_bytes(&bytes).unwrap();
        let vb = r.vb.unwrap();
        assert_eq!(parts(&vb.0[0].name), [&base[..], &[1, 1, 2, 1]].concat());
        let mut b = pdu::GetBulk::new(SearchRangeList(vec![SearchRange::new(
            id(&base),
            ID::default(),
        )]));
        b.max_repetitions = 1000;
        let Ok(Reply::Send(bytes)) = respond(&v, &b.to_bytes().unwrap(), Duration::ZERO) else {
            panic!("no answer");
        };
        let vbs = Response::from_bytes(&bytes).unwrap().vb.unwrap().0;
        // Every object once, in order, then the end of the view.
        assert_eq!(vbs.len(), v.values.len() + 1);
        assert_eq!(vbs.last().unwrap().data, Value::EndOfMibView);
        assert!(vbs
            .windows(2)
            .take(v.values.len() - 1)
            .all(|w| w[0].name < w[1].name));
    }
}
