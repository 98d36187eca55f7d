//! The control protocol: what a client may ask (one line, at most [`MAX_REQUEST`] bytes) and
//! the replies' shapes, shared by the daemon's control server and every client (`vxspan
//! stats` / `status` / `reload` / `capture`, `top`, metrics, SNMP).
//!
//! A request is one line of text: `stats`, `status`, `reload`, `restart` or `capture [RULE]`. A reply is
//! one line of JSON (`stats`: a [`vxspan_core::Report`]; `status`: a [`Status`]; `reload`:
//! `{"ok": ...}` or `{"error": ...}`), except a capture, whose reply is the pcapng stream
//! itself, or one line of JSON with an `error`.

use std::collections::BTreeMap;

/// The longest request line accepted, newline included. The longest real request is a
/// capture of a rule with a long name; anything longer is refused unread.
pub const MAX_REQUEST: usize = 4096;

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Stats,
    Status,
    Reload,
    /// Execute the daemon's binary again in the same process, the kernel tier forwarding on.
    Restart,
    /// Stream the frames forwarded (all, or those of one rule) as pcapng.
    Capture(Option<String>),
}

impl Request {
    /// The request a line asks for, or why it is refused.
    pub fn parse(line: &str) -> Result<Request, String> {
        let line = line.trim();
        match line {
            "stats" => Ok(Request::Stats),
            "status" => Ok(Request::Status),
            "reload" => Ok(Request::Reload),
            "restart" => Ok(Request::Restart),
            "capture" => Ok(Request::Capture(None)),
            l => match l.strip_prefix("capture ") {
                Some(rule) if rule.trim().is_empty() => Ok(Request::Capture(None)),
                Some(rule) => Ok(Request::Capture(Some(rule.trim().to_owned()))),
                None => Err(format!(
                    "unknown command {:?} (stats, status, reload, restart, capture [RULE])",
                    l.chars().take(64).collect::<String>()
                )),
            },
        }
    }

    /// The line that asks for this request (without the newline).
    pub fn line(&self) -> String {
        match self {
            Request::Stats => "stats".into(),
            Request::Status => "status".into(),
            Request::Reload => "reload".into(),
            Request::Restart => "restart".into(),
            Request::Capture(None) => "capture".into(),
            Request::Capture(Some(r)) => format!("capture {r}"),
        }
    }
}

/// A one-line JSON error reply.
pub fn error_reply(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// A port as `status` lists it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PortStatus {
    pub name: String,
    pub role: String,
    pub interface: String,
    pub link: String,
}

/// Whether a `status` link state means the port can carry traffic: an interface that is up with
/// a carrier, or a port that has no link (a listening socket, a tunnel, a file).
pub fn link_usable(link: &str) -> bool {
    matches!(link, "up" | "listening" | "tunnel" | "file")
}

/// An (input, VLAN) group as `status` lists it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct GroupStatus {
    pub input: String,
    pub vlan: String,
    pub rules: Vec<String>,
    pub to: Vec<String>,
    pub tier: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Status {
    #[serde(default)]
    pub config: String,
    #[serde(default)]
    pub reloads: u64,
    /// Restarts in place (`vxspan restart`) since the process started.
    #[serde(default)]
    pub restarts: u64,
    #[serde(default)]
    pub datapath: String,
    /// Userspace workers (threads).
    #[serde(default)]
    pub workers: u64,
    #[serde(default)]
    pub rss_bytes: u64,
    #[serde(default)]
    pub ports: Vec<PortStatus>,
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// Per input, per VLAN key of the counters: the tier its frames run in now.
    #[serde(default)]
    pub vlan_tiers: BTreeMap<String, BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_junk_is_refused() {
        for r in [
            Request::Stats,
            Request::Status,
            Request::Reload,
            Request::Restart,
            Request::Capture(None),
            Request::Capture(Some("web".into())),
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r.clone()));
            assert_eq!(Request::parse(&format!("  {}\r\n", r.line())), Ok(r));
        }
        assert_eq!(Request::parse("capture   "), Ok(Request::Capture(None)));
        let e = Request::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(e.len() < 200, "the error quotes at most 64 characters: {e}");
        assert!(Request::parse("statsx").is_err());
        assert!(Request::parse("").is_err());
    }
}
