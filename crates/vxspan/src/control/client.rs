//! Clients of the control socket: `vxspan stats`, `status`, `reload`, `restart`, `capture`, and the
//! fetches `top`, metrics and SNMP use.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vxspan_core::Report;

/// Sends one command to a running instance and returns its one-line JSON reply.
pub fn request(control: &Path, command: &str) -> Result<serde_json::Value> {
    request_within(control, command, Duration::from_secs(30))
}

/// [`request`], with the reply due within `timeout`.
pub fn request_within(
    control: &Path,
    command: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(control).with_context(|| {
        format!(
            "connecting to {} (is vxspan running? is --control right?)",
            control.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    serde_json::from_str(&line)
        .with_context(|| format!("reply from {}: {line:?}", control.display()))
}

/// The reply to `req` as `T`, due within `timeout`; an error reply is an error.
pub fn fetch_within<T: serde::de::DeserializeOwned>(
    control: &Path,
    req: &crate::control::proto::Request,
    timeout: Duration,
) -> Result<T> {
    let v = request_within(control, &req.line(), timeout)?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    Ok(serde_json::from_value(v)?)
}

/// The counters of a running instance: its `stats` reply.
pub fn fetch_stats(control: &Path) -> Result<Report> {
    Ok(serde_json::from_value(request(control, "stats")?)?)
}

/// The ports, groups and process figures of a running instance: its `status` reply.
pub fn fetch_status(control: &Path) -> Result<crate::control::proto::Status> {
    Ok(serde_json::from_value(request(control, "status")?)?)
}

pub fn status(control: &Path) -> Result<ExitCode> {
    let v = request(control, "status")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub fn stats(control: &Path, json: bool) -> Result<ExitCode> {
    let v = request(control, "stats")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r: Report = serde_json::from_value(v)?;
    print!("{}", render(&r));
    Ok(ExitCode::SUCCESS)
}

pub fn reload(control: &Path) -> Result<ExitCode> {
    let v = request(control, "reload")?;
    let lines = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|c| c.as_array())
            .map(|c| {
                c.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    match (v.get("ok"), v.get("error")) {
        (Some(ok), _) => {
            println!("{}", ok.as_str().unwrap_or("reloaded"));
            for c in lines("changes") {
                println!("  {c}");
            }
            Ok(ExitCode::SUCCESS)
        }
        (_, Some(_)) if v.get("not_live").is_some() => {
            eprintln!("vxspan: reload not applied, the running configuration stays: the file is valid, but:");
            for why in lines("not_live") {
                eprintln!("  {why}");
            }
            Ok(ExitCode::from(crate::EXIT_NOT_LIVE))
        }
        (_, Some(e)) => {
            eprintln!(
                "vxspan: reload refused, the running configuration stays: {}",
                e.as_str().unwrap_or("?")
            );
            // An error that is not the file's (a read-only client, a busy daemon) is 1.
            Ok(if v.get("invalid").is_some() {
                ExitCode::from(crate::EXIT_INVALID)
            } else {
                ExitCode::FAILURE
            })
        }
        _ => bail!("unexpected reply {v}"),
    }
}

/// How long `vxspan restart` waits for the new image to answer.
const RESTART_WAIT: Duration = Duration::from_secs(30);

/// `vxspan restart`: the daemon executes its binary again in the same process; this waits until
/// the new image answers `status` with one more restart counted. Exit 0 once it does, 1 if the
/// daemon refused (nothing stopped) or the new image did not answer in time.
pub fn restart(control: &Path) -> Result<ExitCode> {
    let before = fetch_status(control)?.restarts;
    let v = request(control, "restart")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        eprintln!("vxspan: restart refused, the daemon keeps running: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let pid = v
        .get("pid")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + RESTART_WAIT;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(st) = fetch_within::<crate::control::proto::Status>(
            control,
            &crate::control::proto::Request::Status,
            Duration::from_secs(2),
        ) {
            if st.restarts > before {
                println!(
                    "restarted in place: process {pid}, restart {} since it started; the kernel tier kept forwarding",
                    st.restarts
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    eprintln!(
        "vxspan: process {pid} was restarting but did not answer on {} within {RESTART_WAIT:?}; see its log",
        control.display()
    );
    Ok(ExitCode::FAILURE)
}

/// A counter table from a report alone (no plan at hand).
fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = crate::replay::port_table(r, r.interfaces.keys().map(String::as_str));
    let _ = writeln!(s, "\n{:<20} {:>10} {:>10}", "rule", "matched", "forwarded");
    for rule in &r.rules {
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>10}",
            rule.name, rule.matched_packets, rule.forwarded_packets
        );
    }
    s
}

/// `vxspan capture`: streams, as pcapng, the frames a running instance forwards (all, or those
/// of one rule) to `out` (`-` for standard output) until interrupted.
pub fn capture(control: &Path, rule: Option<&str>, out: &Path) -> Result<ExitCode> {
    let mut s = UnixStream::connect(control).with_context(|| {
        format!(
            "connecting to {} (is vxspan running? is --control right?)",
            control.display()
        )
    })?;
    s.write_all(format!("capture {}\n", rule.unwrap_or("")).as_bytes())?;
    let mut first = [0u8; 1];
    if std::io::Read::read(&mut s, &mut first)? == 0 {
        bail!("{} closed the capture", control.display());
    }
    if first[0] == b'{' {
        let mut line = String::from("{");
        BufReader::new(&s).read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        eprintln!(
            "vxspan: capture refused: {}",
            v["error"].as_str().unwrap_or(line.trim())
        );
        return Ok(ExitCode::from(crate::EXIT_INVALID));
    }
    let mut sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?)
    };
    sink.write_all(&first)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut s, &mut buf)?;
        if n == 0 {
            break;
        }
        if sink
            .write_all(&buf[..n])
            .and_then(|_| sink.flush())
            .is_err()
        {
            break; // the reader went away (e.g. tcpdump -c N finished)
        }
    }
    Ok(ExitCode::SUCCESS)
}
