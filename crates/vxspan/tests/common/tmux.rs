//! A terminal program under tmux (for `vxspan top`), and the resident memory of processes.

use super::netns::wait_for;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tmux session, killed when dropped.
pub struct Tmux(pub String);

impl Tmux {
    /// `vxspan top --control CONTROL` in a new 160 x 45 session called `name`.
    pub fn top(name: String, control: &std::path::Path) -> Tmux {
        let tmux = Tmux(name);
        let cmd = format!(
            "{} top --control {}",
            env!("CARGO_BIN_EXE_vxspan"),
            control.display()
        );
        assert!(Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &tmux.0,
                "-x",
                "160",
                "-y",
                "45",
                &cmd
            ])
            .status()
            .unwrap()
            .success());
        tmux
    }

    /// The process the session's pane runs.
    pub fn pane_pid(&self) -> u32 {
        let o = Command::new("tmux")
            .args(["list-panes", "-t", &self.0, "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    }

    pub fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    pub fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the screen contains every needle; returns the screen.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        let mut screen = String::new();
        wait_for(Duration::from_secs(8), || {
            screen = self.screen();
            needles.iter().all(|n| screen.contains(n))
        });
        for n in needles {
            assert!(screen.contains(n), "{n:?} not on screen:\n{screen}");
        }
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// The process `pid` names or, if it is a shell, its child.
fn vxspan_pid(pid: u32) -> u32 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "vxspan" {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The resident memory of `pid` or, if it is a shell, of its child, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    vm_rss_kb(vxspan_pid(pid))
}

/// Checks `vxspan top`'s memory (run by `pid` or its shell) against the product's bar of
/// `limit_kb` of RSS and returns what it measured, for the log.
///
/// The bar is for the shipped (release) binary. A debug build's RSS is mostly the code pages
/// of a 130 MB unoptimised binary (about 14 MB mapped, fault-around included): there the
/// bar applies to what top itself holds, its anonymous memory (heap, stacks), at half the
/// limit.
pub fn check_top_rss(pid: u32, limit_kb: u64) -> String {
    let pid = vxspan_pid(pid);
    // One read: the three figures are of the same moment.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status_kb(&status, name).unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    let (total, anon, file) = (field("VmRSS:"), field("RssAnon:"), field("RssFile:"));
    let seen = format!("VmRSS {total} kB (anonymous {anon} kB, file {file} kB)");
    if cfg!(debug_assertions) {
        assert!(anon < limit_kb / 2, "vxspan top (debug build): {seen}");
    } else {
        assert!(total < limit_kb, "vxspan top: {seen}");
    }
    seen
}

/// VmRSS of a process, in kB.
pub fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status_kb(&status, "VmRSS:").unwrap()
}

/// The figure (kB) of the line starting with `name` (`"VmRSS:"`) in a /proc/PID/status text.
fn status_kb(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
