//! Control requests the first worker answers between two batches.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

impl State {
    pub(super) fn serve(&mut self, stream: UnixStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let reply = match line.trim() {
            "status" => self.status().to_string(),
            "stats" => {
                self.read_ring_stats();
                self.read_xsk_stats();
                serde_json::to_string(&self.report()).unwrap_or_default()
            }
                        cmd if cmd == "capture" || cmd.starts_with("capture ") => {
                let name = cmd.strip_prefix("capture").unwrap_or("").trim();
                let rule = if name.is_empty() { Ok(None) } else { self.engine.plan().rules.iter().position(|r| r.name == name).map(Some).ok_or(name) };
                match rule {
                    Ok(rule) => {
                        // The stream is the reply: pcapng, one interface per input, until the
                        // client leaves (or a reload, which closes captures).
                        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                        if let Ok(w) = vxspan_io::pcap::Writer::pcapng_with_interfaces(stream, &self.engine.plan().input_descriptions()) {
                            log(format!("capture attached ({})", if name.is_empty() { "every forwarded frame" } else { name }));
                            self.ports.outputs.captures.attach(LiveCapture { w, rule, alive: true });
                        }
                        return;
                    }
                    Err(name) => serde_json::json!({ "error": format!("no rule named {name:?}") }).to_string(),
                }
            }
            "reload" => match self.reload() {
                Ok(msg) => {
                    log(&msg);
                    serde_json::json!({ "ok": msg }).to_string()
                }
                Err(e) => {
                    warn(format!(
                        "reload refused, the running configuration stays: {e}"
                    ));
                    serde_json::json!({ "error": e }).to_string()
                }
            },
            other => {
                serde_json::json!({ "error": format!("unknown command {other:?} (stats, status, reload, capture [RULE])") })
                    .to_string()
            }
        };
        let mut w = &stream;
        let _ = w.write_all(reply.as_bytes());
        let _ = w.write_all(b"\n");
    }
}
