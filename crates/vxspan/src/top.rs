//! `vxspan top`: a live dashboard of a running instance, through its control socket (so it
//! works over SSH and on a console).
//!
//! Once a second it reads `stats` (the counters) and `status` (ports, link state, VLAN
//! groups, tiers, the process's memory). [`Model`] turns consecutive snapshots into per-second
//! rates kept for the last 800 seconds per port and per input VLAN (a bounded ring: nothing
//! grows over hours); rates come from the time between the two snapshots, so they are right
//! from the first second. The screen is drawn with ratatui on crossterm.
//!
//! Keys: LEFT / RIGHT cycle ports, UP / DOWN walk the selected input's VLANs, HOME / END jump
//! to the first / last port, B / P / D chart bytes, packets or drops, ? help, Q quits.

use crate::control::proto::{link_usable, Status};
use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::crossterm::{execute, terminal};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Clear, Dataset, GraphType, Paragraph};
use ratatui::Frame;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vxspan_core::Report;

/// Seconds of history per series (VxSPAN's chart is 800 seconds wide).
pub const HISTORY: usize = 800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bytes,
    Packets,
    Drops,
}

impl Mode {
    fn unit(self) -> &'static str {
        match self {
            Mode::Bytes => "bit/s",
            Mode::Packets => "pkt/s",
            Mode::Drops => "drops/s",
        }
    }
}

/// One series' cumulative counters, or its rates over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub rx_bytes: f64,
    pub rx_packets: f64,
    pub rx_drops: f64,
    pub tx_bytes: f64,
    pub tx_packets: f64,
    pub tx_drops: f64,
}

impl Sample {
    /// The (rx, tx) pair a mode shows; bytes are shown as bits.
    pub fn pick(&self, mode: Mode) -> (f64, f64) {
        match mode {
            Mode::Bytes => (self.rx_bytes * 8.0, self.tx_bytes * 8.0),
            Mode::Packets => (self.rx_packets, self.tx_packets),
            Mode::Drops => (self.rx_drops, self.tx_drops),
        }
    }

    fn rate(&self, prev: &Sample, dt: f64) -> Sample {
        let d = |a: f64, b: f64| (a - b).max(0.0) / dt;
        Sample {
            rx_bytes: d(self.rx_bytes, prev.rx_bytes),
            rx_packets: d(self.rx_packets, prev.rx_packets),
            rx_drops: d(self.rx_drops, prev.rx_drops),
            tx_bytes: d(self.tx_bytes, prev.tx_bytes),
            tx_packets: d(self.tx_packets, prev.tx_packets),
            tx_drops: d(self.tx_drops, prev.tx_drops),
        }
    }
}

/// The cumulative counters of every series in a report: ports by name, input VLANs as
/// `port/vlan`.
fn totals(r: &Report) -> BTreeMap<String, Sample> {
    let mut m = BTreeMap::new();
    for (name, p) in &r.interfaces {
        m.insert(
            name.clone(),
            Sample {
                rx_bytes: p.rx_bytes as f64,
                rx_packets: p.rx_packets as f64,
                rx_drops: p.dropped_packets as f64,
                tx_bytes: p.tx_bytes as f64,
                tx_packets: p.tx_packets as f64,
                tx_drops: p.tx_dropped_packets as f64,
            },
        );
    }
    for (port, vlans) in &r.vlans {
        for (vlan, c) in vlans {
            m.insert(
                format!("{port}/{vlan}"),
                Sample {
                    rx_bytes: c.bytes as f64,
                    rx_packets: c.packets as f64,
                    rx_drops: c.dropped_packets as f64,
                    ..Sample::default()
                },
            );
        }
    }
    m
}

/// Everything the screen shows, fed with snapshots and the time they were taken.
pub struct Model {
    prev: Option<(f64, BTreeMap<String, Sample>)>,
    prev_rules: BTreeMap<String, (f64, f64)>,
    /// Per-second rates, newest last, at most [`HISTORY`] per series.
    pub history: BTreeMap<String, VecDeque<Sample>>,
    pub totals: BTreeMap<String, Sample>,
    /// Per rule: (matched, forwarded) packets per second, and totals.
    pub rules: Vec<(String, f64, f64, u64, u64)>,
    pub report: Report,
    pub status: Status,
    pub mode: Mode,
    pub port: usize,
    /// `None`: the whole port; `Some(i)`: the i-th VLAN of the selected input.
    pub vlan: Option<usize>,
    pub help: bool,
    pub error: Option<String>,
    pub cpu: Vec<f64>,
    pub mem: (u64, u64),
    cpu_prev: Vec<(u64, u64)>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

/// VLAN keys in numeric order, "none" first.
fn vlan_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| {
        s.parse::<u32>()
            .map_or((0, 0, s.to_owned()), |n| (1, n, String::new()))
    };
    key(a).cmp(&key(b))
}

impl Model {
    pub fn new() -> Model {
        Model {
            prev: None,
            prev_rules: BTreeMap::new(),
            history: BTreeMap::new(),
            totals: BTreeMap::new(),
            rules: Vec::new(),
            report: Report::default(),
            status: Status::default(),
            mode: Mode::Bytes,
            port: 0,
            vlan: None,
            help: false,
            error: None,
            cpu: Vec::new(),
            mem: (0, 0),
            cpu_prev: Vec::new(),
        }
    }

    /// Takes a snapshot taken at `t` seconds.
    pub fn update(&mut self, t: f64, report: Report, status: Status) {
        let now = totals(&report);
        let rules_now: BTreeMap<String, (f64, f64)> = report
            .rules
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    (r.matched_packets as f64, r.forwarded_packets as f64),
                )
            })
            .collect();
        if let Some((t0, before)) = &self.prev {
            let dt = t - t0;
            if dt > 0.0 {
                for (k, s) in &now {
                    let r = s.rate(before.get(k).unwrap_or(s), dt);
                    let h = self.history.entry(k.clone()).or_default();
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back(r);
                }
                // Series that vanished (a reload removed the port) are forgotten.
                self.history.retain(|k, _| now.contains_key(k));
                self.rules = report
                    .rules
                    .iter()
                    .map(|r| {
                        let (m0, f0) = self
                            .prev_rules
                            .get(&r.name)
                            .copied()
                            .unwrap_or((r.matched_packets as f64, r.forwarded_packets as f64));
                        (
                            r.name.clone(),
                            (r.matched_packets as f64 - m0).max(0.0) / dt,
                            (r.forwarded_packets as f64 - f0).max(0.0) / dt,
                            r.matched_packets,
                            r.forwarded_packets,
                        )
                    })
                    .collect();
            }
        }
        self.prev = Some((t, now.clone()));
        self.prev_rules = rules_now;
        self.totals = now;
        self.report = report;
        self.status = status;
        self.port = self.port.min(self.status.ports.len().saturating_sub(1));
        if self.vlan.is_some_and(|v| v >= self.vlans().len()) {
            self.vlan = None;
        }
    }

    /// The VLANs seen on the selected port (inputs only), in order.
    pub fn vlans(&self) -> Vec<String> {
        let Some(p) = self.status.ports.get(self.port) else {
            return Vec::new();
        };
        let mut v: Vec<String> = self
            .report
            .vlans
            .get(&p.name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| vlan_order(a, b));
        v
    }

    /// The series shown: the selected port, or one of its VLANs.
    pub fn selected(&self) -> (String, String) {
        let Some(p) = self.status.ports.get(self.port) else {
            return (String::new(), "no ports".into());
        };
        match self.vlan.and_then(|i| self.vlans().get(i).cloned()) {
            Some(v) => (format!("{}/{v}", p.name), format!("{} VLAN {v}", p.name)),
            None if p.interface == p.name || p.interface.is_empty() => {
                (p.name.clone(), p.name.clone())
            }
            None => (p.name.clone(), format!("{} ({})", p.name, p.interface)),
        }
    }

    /// Handles a key; returns false to quit.
    pub fn key(&mut self, code: KeyCode) -> bool {
        let n = self.status.ports.len().max(1);
        match code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return false,
            KeyCode::Right => {
                self.port = (self.port + 1) % n;
                self.vlan = None;
            }
            KeyCode::Left => {
                self.port = (self.port + n - 1) % n;
                self.vlan = None;
            }
            KeyCode::Home => {
                self.port = 0;
                self.vlan = None;
            }
            KeyCode::End => {
                self.port = n - 1;
                self.vlan = None;
            }
            KeyCode::Down => {
                let len = self.vlans().len();
                self.vlan = match self.vlan {
                    None if len > 0 => Some(0),
                    Some(i) if i + 1 < len => Some(i + 1),
                    other => other,
                };
            }
            KeyCode::Up => {
                self.vlan = match self.vlan {
                    Some(0) | None => None,
                    Some(i) => Some(i - 1),
                };
            }
            KeyCode::Char('b') | KeyCode::Char('B') => self.mode = Mode::Bytes,
            KeyCode::Char('p') | KeyCode::Char('P') => self.mode = Mode::Packets,
            KeyCode::Char('d') | KeyCode::Char('D') => self.mode = Mode::Drops,
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = !self.help,
            _ => {}
        }
        true
    }

    /// Per-CPU busy share and system memory (total, available), from /proc.
    fn read_system(&mut self) {
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            let now: Vec<(u64, u64)> = stat
                .lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .map(|l| {
                    let v: Vec<u64> = l
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    let total: u64 = v.iter().sum();
                    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                    (total, idle)
                })
                .collect();
            if now.len() == self.cpu_prev.len() {
                self.cpu = now
                    .iter()
                    .zip(&self.cpu_prev)
                    .map(|((t, i), (t0, i0))| {
                        let dt = t.saturating_sub(*t0) as f64;
                        if dt == 0.0 {
                            0.0
                        } else {
                            1.0 - i.saturating_sub(*i0) as f64 / dt
                        }
                    })
                    .collect();
            }
            self.cpu_prev = now;
        }
        if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            self.mem = (field("MemTotal:"), field("MemAvailable:"));
        }
    }
}

/// 1234567 -> "1.23M".
pub fn human(v: f64) -> String {
    let (d, s) = match v.abs() {
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    format!("{:.2}{s}", v / d)
}

fn draw(f: &mut Frame, m: &Model) {
    let area = f.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(12),
            Constraint::Length(8),
            Constraint::Length(3),
        ])
        .split(area);
    let mode = match m.mode {
        Mode::Bytes => "bytes",
        Mode::Packets => "packets",
        Mode::Drops => "drops",
    };
    let title = match &m.error {
        Some(e) => format!("vxspan top | {e}"),
        None => format!(
            "vxspan top | {} | datapath {}, {} worker(s) | reloads {} | showing {mode} | ? help, q quit",
            m.status.config, m.status.datapath, m.status.workers, m.status.reloads
        ),
    };
    f.render_widget(
        Paragraph::new(title).style(Style::default().add_modifier(Modifier::REVERSED)),
        rows[0],
    );
    let body = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(44), Constraint::Min(40)])
        .split(rows[1]);
    draw_ports(f, m, body[0]);
    let right = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(8), Constraint::Length(4)])
        .split(body[1]);
    draw_chart(f, m, right[0]);
    draw_figures(f, m, right[1]);
    let bottom = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[2]);
    draw_rules(f, m, bottom[0]);
    draw_drops(f, m, bottom[1]);
    draw_system(f, m, rows[3]);
    if m.help {
        draw_help(f, area);
    }
}

fn draw_ports(f: &mut Frame, m: &Model, area: Rect) {
    let mut lines = Vec::new();
    let vlans = m.vlans();
    for (i, p) in m.status.ports.iter().enumerate() {
        let sel = i == m.port && m.vlan.is_none();
        let color = if link_usable(&p.link) {
            Color::Green
        } else {
            Color::Red
        };
        let style = if sel {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        let arrow = if p.role == "input" { ">" } else { "<" };
        lines.push(Line::from(vec![
            Span::styled(format!("{arrow} {} ", p.name), style),
            Span::styled(format!("[{}]", p.link), Style::default().fg(color)),
            Span::raw(if p.interface == p.name {
                String::new()
            } else {
                format!(" {}", p.interface)
            }),
        ]));
        if p.role != "input" {
            continue;
        }
        for g in m.status.groups.iter().filter(|g| g.input == p.name) {
            // The status says "xdp" or "userspace" (as `vxspan check` and the metrics do).
            let tier = if g.tier == "xdp" { "xdp" } else { "user" };
            lines.push(Line::from(format!(
                "    vlan {} -> {} ({tier})",
                g.vlan,
                g.to.join(",")
            )));
        }
        if i == m.port {
            // A window of VLANs around the selection, so the outputs stay on screen.
            const SHOWN: usize = 6;
            let first = m.vlan.unwrap_or(0).saturating_sub(SHOWN / 2);
            let first = first.min(vlans.len().saturating_sub(SHOWN));
            if first > 0 {
                lines.push(Line::from(format!("      ... {first} VLANs above")));
            }
            for (j, v) in vlans.iter().enumerate().skip(first).take(SHOWN) {
                let style = if m.vlan == Some(j) {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default().fg(Color::DarkGray)
                };
                let pk = m
                    .totals
                    .get(&format!("{}/{v}", p.name))
                    .map_or(0.0, |s| s.rx_packets);
                lines.push(Line::from(Span::styled(
                    format!("      VLAN {v}: {} pkts", human(pk)),
                    style,
                )));
            }
            let below = vlans.len().saturating_sub(first + SHOWN);
            if below > 0 {
                lines.push(Line::from(format!("      ... {below} VLANs below")));
            }
        }
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Ports and mappings (<- -> ports, up/down VLANs)"),
        ),
        area,
    );
}

fn draw_chart(f: &mut Frame, m: &Model, area: Rect) {
    let (key, label) = m.selected();
    let empty = VecDeque::new();
    let h = m.history.get(&key).unwrap_or(&empty);
    let n = h.len();
    let mut rx = Vec::with_capacity(n);
    let mut tx = Vec::with_capacity(n);
    let (mut top, mut bottom) = (1.0f64, 1.0f64);
    for (i, s) in h.iter().enumerate() {
        let x = i as f64 - (n as f64 - 1.0);
        let (r, t) = s.pick(m.mode);
        rx.push((x, r));
        tx.push((x, -t));
        top = top.max(r);
        bottom = bottom.max(t);
    }
    // The scale follows what is on screen, down as well as up.
    let (top, bottom) = (top * 1.1, bottom * 1.1);
    let datasets = vec![
        Dataset::default()
            .name("rx")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Green))
            .data(&rx),
        Dataset::default()
            .name("tx")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&tx),
    ];
    let unit = m.mode.unit();
    let chart = Chart::new(datasets)
        .legend_position(None)
        .block(Block::default().borders(Borders::ALL).title(format!(
            "{label}: rx up (green), tx down (cyan), {unit}, last {} s",
            n
        )))
        .x_axis(
            Axis::default()
                .bounds([-(HISTORY as f64 - 1.0), 0.0])
                .labels(vec![
                    Line::from("-800 s"),
                    Line::from("-400 s"),
                    Line::from("now"),
                ]),
        )
        .y_axis(Axis::default().bounds([-bottom, top]).labels(vec![
            Line::from(format!("tx {}", human(bottom))),
            Line::from("0"),
            Line::from(format!("rx {}", human(top))),
        ]));
    f.render_widget(chart, area);
}

fn draw_figures(f: &mut Frame, m: &Model, area: Rect) {
    let (key, _) = m.selected();
    let unit = m.mode.unit();
    let now = m
        .history
        .get(&key)
        .and_then(|h| h.back())
        .map(|s| s.pick(m.mode));
    let avg = m.history.get(&key).filter(|h| !h.is_empty()).map(|h| {
        let (r, t) = h.iter().fold((0.0, 0.0), |(a, b), s| {
            let (r, t) = s.pick(m.mode);
            (a + r, b + t)
        });
        (r / h.len() as f64, t / h.len() as f64)
    });
    let total = m.totals.get(&key).map(|s| match m.mode {
        Mode::Bytes => (s.rx_bytes, s.tx_bytes),
        Mode::Packets => (s.rx_packets, s.tx_packets),
        Mode::Drops => (s.rx_drops, s.tx_drops),
    });
    let fmt = |v: Option<(f64, f64)>, i: usize| {
        v.map_or("-".to_string(), |p| human(if i == 0 { p.0 } else { p.1 }))
    };
    let total_unit = match m.mode {
        Mode::Bytes => "bytes",
        Mode::Packets => "packets",
        Mode::Drops => "drops",
    };
    let lines = vec![
        Line::from(format!(
            "rx  now {} {unit}   avg {} {unit}   total {} {total_unit}",
            fmt(now, 0),
            fmt(avg, 0),
            fmt(total, 0)
        )),
        Line::from(format!(
            "tx  now {} {unit}   avg {} {unit}   total {} {total_unit}",
            fmt(now, 1),
            fmt(avg, 1),
            fmt(total, 1)
        )),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("Rates")),
        area,
    );
}

fn draw_rules(f: &mut Frame, m: &Model, area: Rect) {
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<18} {:>10} {:>10} {:>10}",
            "rule", "match/s", "fwd/s", "matched"
        ),
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    for (name, mr, fr, mt, _) in &m.rules {
        lines.push(Line::from(format!(
            "{:<18} {:>10} {:>10} {:>10}",
            name,
            human(*mr),
            human(*fr),
            human(*mt as f64)
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("Rules")),
        area,
    );
}

fn draw_drops(f: &mut Frame, m: &Model, area: Rect) {
    let mut lines = Vec::new();
    if let Some(p) = m.status.ports.get(m.port) {
        if let Some(r) = m.report.interfaces.get(&p.name) {
            let reasons = r
                .drop_reasons
                .iter()
                .map(|(k, v)| ("rx", k, v))
                .chain(r.tx_drop_reasons.iter().map(|(k, v)| ("tx", k, v)))
                .filter(|(_, _, v)| **v > 0);
            for (dir, k, v) in reasons {
                lines.push(Line::from(format!("{dir} {k:<20} {}", human(*v as f64))));
            }
            if lines.is_empty() {
                lines.push(Line::from("no drops"));
            }
        }
        if let Some(t) = m.report.tunnels.get(&p.name) {
            for (id, c) in t {
                lines.push(Line::from(format!(
                    "tunnel {id:<16} {} pkts",
                    human(c.packets as f64)
                )));
            }
        }
    }
    let title = format!(
        "Drops and tunnels: {}",
        m.status.ports.get(m.port).map_or("", |p| p.name.as_str())
    );
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_system(f: &mut Frame, m: &Model, area: Rect) {
    let cpus: Vec<String> = m
        .cpu
        .iter()
        .enumerate()
        .map(|(i, c)| format!("cpu{i} {:>3.0}%", c * 100.0))
        .collect();
    let (total, avail) = m.mem;
    let line = format!(
        "{}   memory {} used of {}   vxspan run RSS {}",
        cpus.join("  "),
        human(total.saturating_sub(avail) as f64),
        human(total as f64),
        human(m.status.rss_bytes as f64)
    );
    f.render_widget(
        Paragraph::new(line).block(Block::default().borders(Borders::ALL).title("System")),
        area,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let w = 56.min(area.width);
    let h = 13.min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let text = vec![
        Line::from("LEFT / RIGHT   previous / next port"),
        Line::from("UP / DOWN      walk the selected input's VLANs"),
        Line::from("HOME / END     first / last port"),
        Line::from("B              chart bits per second"),
        Line::from("P              chart packets per second"),
        Line::from("D              chart drops per second"),
        Line::from("?              this help"),
        Line::from("Q              quit"),
        Line::from(""),
        Line::from("Rates are per second between two samples."),
    ];
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title("Help")),
        r,
    );
}

fn fetch(control: &Path) -> Result<(Report, Status)> {
    Ok((
        crate::control::client::fetch_stats(control)?,
        crate::control::client::fetch_status(control)?,
    ))
}

/// Puts the terminal back (also on a panic).
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

pub fn top(control: &Path, interval: Duration) -> Result<ExitCode> {
    // Fail before touching the terminal if nothing is running there.
    let (report, status) = fetch(control)?;
    let start = Instant::now();
    let mut model = Model::new();
    model.read_system();
    model.update(0.0, report, status);

    terminal::enable_raw_mode()?;
    execute!(
        std::io::stdout(),
        terminal::EnterAlternateScreen,
        ratatui::crossterm::cursor::Hide
    )?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        hook(info);
    }));
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend)?;
    let result = (|| -> Result<()> {
        let mut next = start + interval;
        loop {
            term.draw(|f| draw(f, &model))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind == KeyEventKind::Press && !model.key(k.code) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= next {
                next += interval;
                model.read_system();
                match fetch(control) {
                    Ok((r, s)) => {
                        model.error = None;
                        model.update(start.elapsed().as_secs_f64(), r, s);
                    }
                    Err(e) => model.error = Some(format!("{e:#} (retrying)")),
                }
            }
        }
    })();
    restore();
    result.map(|_| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rx: u64, tx: u64) -> Report {
        let mut r = Report::default();
        let p: vxspan_core::counters::PortReport = serde_json::from_value(serde_json::json!({
            "rx_packets": rx, "rx_bytes": rx * 100, "forwarded_packets": rx, "forwarded_bytes": 0,
            "dropped_packets": 0, "dropped_bytes": 0, "drop_reasons": {},
            "tx_packets": tx, "tx_bytes": tx * 100, "tx_dropped_packets": 0, "tx_dropped_bytes": 0,
            "tx_drop_reasons": {}
        }))
        .unwrap();
        r.interfaces.insert("in".into(), p);
        r
    }

    fn status() -> Status {
        serde_json::from_value(serde_json::json!({
            "ports": [
                {"name": "in", "role": "input", "interface": "eth0", "link": "up"},
                {"name": "out", "role": "output", "interface": "eth1", "link": "up"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn rates_use_the_time_between_samples_from_the_first_second() {
        let mut m = Model::new();
        m.update(0.0, report(0, 0), status());
        m.update(0.5, report(500, 250), status());
        let s = *m.history["in"].back().unwrap();
        assert_eq!(s.pick(Mode::Packets), (1000.0, 500.0));
        assert_eq!(s.pick(Mode::Bytes), (800_000.0, 400_000.0));
    }

    #[test]
    fn history_is_bounded() {
        let mut m = Model::new();
        for i in 0..(HISTORY as u64 + 100) {
            m.update(i as f64, report(i * 10, 0), status());
        }
        assert_eq!(m.history["in"].len(), HISTORY);
    }

    #[test]
    fn keys_move_the_selection_and_switch_modes() {
        let mut m = Model::new();
        m.update(0.0, report(0, 0), status());
        assert_eq!(m.port, 0);
        assert!(m.key(KeyCode::Right));
        assert_eq!(m.port, 1);
        m.key(KeyCode::Right);
        assert_eq!(m.port, 0);
        m.key(KeyCode::End);
        assert_eq!(m.port, 1);
        m.key(KeyCode::Home);
        assert_eq!(m.port, 0);
        m.key(KeyCode::Char('p'));
        assert_eq!(m.mode, Mode::Packets);
        m.key(KeyCode::Char('d'));
        assert_eq!(m.mode, Mode::Drops);
        m.key(KeyCode::Char('?'));
        assert!(m.help);
        assert!(!m.key(KeyCode::Char('q')));
    }

    /// Each group of the selected input is listed with the tier `vxspan status` gives it.
    #[test]
    fn groups_show_their_tier() {
        let mut st = status();
        st.groups = serde_json::from_value(serde_json::json!([
            {"input": "in", "vlan": "10", "rules": ["a"], "to": ["out"], "tier": "xdp"},
            {"input": "in", "vlan": "20", "rules": ["b"], "to": ["out"], "tier": "userspace"}
        ]))
        .unwrap();
        let mut m = Model::new();
        m.update(0.0, report(0, 0), st);
        let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(140, 45)).unwrap();
        term.draw(|f| draw(f, &m)).unwrap();
        let text: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("vlan 10 -> out (xdp)"), "{text}");
        assert!(text.contains("vlan 20 -> out (user)"), "{text}");
    }

    #[test]
    fn vlans_sort_numerically() {
        let mut v = vec!["100", "none", "12", "9"];
        v.sort_by(|a, b| vlan_order(a, b));
        assert_eq!(v, ["none", "9", "12", "100"]);
    }
}
