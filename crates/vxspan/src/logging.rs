//! Operational logging: events (never per packet) on stderr, for journald.

use anyhow::Result;

/// An operational event (never per packet).
pub fn log(msg: impl std::fmt::Display) {
    tracing::info!("{msg}");
}

/// Something an operator should look at: a refused reload, a port that went away.
pub fn warn(msg: impl std::fmt::Display) {
    tracing::warn!("{msg}");
}

/// Structured logs on stderr (journald collects them under systemd, which stamps the time
/// itself). `level` is a tracing filter (`info`, `debug`, `vxspan=debug`, ...); the VXSPAN_LOG
/// environment variable, when set, wins. `json` prints one JSON object per event.
pub fn init_logging(level: &str, json: bool) -> Result<()> {
    use std::io::IsTerminal;
    let directive = std::env::var("VXSPAN_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .map_err(|e| anyhow::anyhow!("--log-level {directive:?}: {e}"))?;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = match (json, journald) {
        (true, _) => builder.json().try_init(),
        (false, true) => builder.without_time().try_init(),
        (false, false) => builder.try_init(),
    };
    // A second initialisation (tests calling run twice) keeps the first subscriber.
    let _ = result;
    Ok(())
}
