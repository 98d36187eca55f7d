//! `vxspan lab`: the README's live demo builds its own namespace and veth pairs, forwards the
//! demo's traffic mix through `vxspan run`, agrees with itself to the frame, and leaves nothing
//! behind in the namespace it was started from.

mod common;

use std::process::Command;

fn links() -> String {
    let o = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn lab_forwards_accounts_and_cleans_up() {
    if common::netns::skipped() {
        return;
    }
    assert!(
        common::netns::is_root(),
        "live tests need root; set VXSPAN_SKIP_LIVE=1 to leave them out explicitly"
    );
    let before = links();
    let o = Command::new(env!("CARGO_BIN_EXE_vxspan"))
        .args(["lab", "--count", "5000"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("eth0: sent 5000, rx 5000,"), "{out}");
    assert!(out.contains("eth1: sent 5000, rx 5000,"), "{out}");
    assert_eq!(out.matches("  ok").count(), 4, "{out}");
    assert!(!out.contains("MISMATCH"), "{out}");
    assert!(out.contains("Every frame is accounted for"), "{out}");
    // Nothing of the lab is visible outside it, during or after.
    assert_eq!(links(), before);
    assert!(!links().contains("eth0-peer"));
}

#[test]
fn lab_without_privileges_says_what_it_needs() {
    if common::netns::skipped() || !common::netns::is_root() {
        return;
    }
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_vxspan"))
        .args(["lab", "--count", "10"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_SYS_ADMIN"), "{err}");
}
