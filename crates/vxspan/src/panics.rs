//! The process's panic report: one line per panic, at most one a second.
//!
//! The engine catches a panic while it processes a frame (the frame is counted as
//! `internal_error`). Rust's default hook would print each one and, with `RUST_BACKTRACE` set,
//! resolve a backtrace first: tens of milliseconds on a packet thread, during which its ring
//! overflows, for every frame that hits the same bug. This hook prints the message and where it
//! was raised, and of the panics within a second of the last one shown only their count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Replaces the default panic hook (see the module documentation).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let now = Instant::now();
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let more = SUPPRESSED.swap(0, Ordering::Relaxed);
        let more = if more > 0 {
            format!(" ({more} more since the last one shown)")
        } else {
            String::new()
        };
        eprintln!(
            "vxspan: internal error in thread {}: {msg} at {at}{more}",
            thread.name().unwrap_or("?")
        );
    }));
}
