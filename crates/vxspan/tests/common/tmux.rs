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

/// The resident memory of `pid` or, if it is a shell, of its child, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let pid = if comm.trim() == "vxspan" {
        pid
    } else {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    vm_rss_kb(pid)
}

/// VmRSS of a process, in kB.
pub fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
