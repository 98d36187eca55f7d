//! The daemon process's own figures, from /proc/self: what `status` and `/metrics` report.

/// The process's own CPU time (seconds) and resident memory (bytes), from /proc/self.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

impl Process {
    pub fn read() -> Process {
        let mut p = Process::default();
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces), from field 3 on.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                p.cpu_seconds = (utime + stime) / ticks;
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                p.resident_bytes = kb * 1024;
            }
        }
        p
    }
}

/// Lowers the calling thread's scheduling priority to nice 10: a control-plane thread (the
/// control socket and its clients, metrics, SNMP, the reload preparer, capture writers) yields
/// the CPU to the packet workers whenever both want it, so a burst of clients on a busy
/// machine delays answers rather than frames. Raising one's own nice value needs no privilege;
/// where it is refused (a system call filter), the thread keeps the default priority.
pub fn yield_to_workers() {
    // SAFETY: gettid has no preconditions; setpriority takes integers (this thread's id).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
