//! What a reload changes: the running configuration against the new one, compared section by
//! section (pure: no I/O). A reload applies all of it or nothing: settings read only at start
//! (the management endpoints, the user, the XDP attach mode) make it "valid but not appliable
//! live", with each reason listed; everything else is applied, and the list of changes is what
//! the log and the reply say.

use vxspan_config::Config;

/// The changes between two valid configurations.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Diff {
    /// What changed, one line each (`rule web: changed`, `output tools: added`, ...).
    pub(super) changes: Vec<String>,
    /// Why the new configuration cannot be applied without a restart (empty: it can).
    pub(super) not_live: Vec<String>,
}

/// Lines for the named items of `old` and `new` that were added, removed or changed.
fn named<T: PartialEq>(
    what: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    out: &mut Vec<String>,
) {
    for o in old {
        match new.iter().find(|n| name(n) == name(o)) {
            None => out.push(format!("{what} {}: removed", name(o))),
            Some(n) if n != o => out.push(format!("{what} {}: changed", name(o))),
            Some(_) => {}
        }
    }
    for n in new {
        if !old.iter().any(|o| name(o) == name(n)) {
            out.push(format!("{what} {}: added", name(n)));
        }
    }
}

/// A rule without where it was written: moving a rule in the file does not change it.
fn rules(cfg: &Config) -> Vec<vxspan_config::Rule> {
    cfg.rules
        .iter()
        .map(|r| vxspan_config::Rule {
            path: String::new(),
            ..r.clone()
        })
        .collect()
}

pub(super) fn diff(old: &Config, new: &Config) -> Diff {
    let mut d = Diff::default();
    named(
        "input",
        &old.inputs,
        &new.inputs,
        |i| &i.name,
        &mut d.changes,
    );
    named(
        "output",
        &old.outputs,
        &new.outputs,
        |o| &o.name,
        &mut d.changes,
    );
    named(
        "rule",
        &rules(old),
        &rules(new),
        |r| &r.name,
        &mut d.changes,
    );
    named(
        "passthru",
        &old.passthru,
        &new.passthru,
        |p| &p.name,
        &mut d.changes,
    );
    if old.counters != new.counters {
        d.changes.push("counters: limits changed".into());
    }
    if old.hash_key != new.hash_key {
        d.changes
            .push("management.hash_key_file: a new flow hash key (balancing moves)".into());
    }
    let start_only = [
        (
            old.metrics != new.metrics,
            "management.metrics: the endpoint is bound at start",
        ),
        (
            old.snmp != new.snmp,
            "management.snmp_*: the AgentX session is set up at start",
        ),
        (
            old.control != new.control,
            "management.control: the control socket is bound at start",
        ),
        (
            old.control_group != new.control_group,
            "management.control_group: the control socket's group is set at start",
        ),
        (
            old.user != new.user,
            "management.user: privileges are dropped at start",
        ),
        (
            old.xdp_mode != new.xdp_mode,
            "xdp_mode: the XDP program's attach mode is chosen at start",
        ),
    ];
    d.not_live = start_only
        .iter()
        .filter(|(changed, _)| *changed)
        .map(|(_, why)| format!("{why} (restart vxspan to change it)"))
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        vxspan_config::parse(
            text,
            vxspan_config::Syntax::Toml,
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    const BASE: &str =
        "[inputs.mirror]\ninterface = \"eth0\"\n[outputs.tools]\ninterface = \"eth2\"\n\
        [outputs.arch]\npcap = { path = \"/var/lib/vxspan/a.pcap\" }\n\
        [[rules]]\nname = \"web\"\nfrom = \"mirror\"\nvlan = 10\nto = \"tools\"\n\
        [[rules]]\nname = \"all\"\nfrom = \"mirror\"\nto = \"arch\"\n";

    #[test]
    fn the_same_file_changes_nothing() {
        assert_eq!(diff(&cfg(BASE), &cfg(BASE)), Diff::default());
    }

    #[test]
    fn rules_outputs_and_archives_are_each_listed() {
        let new = BASE
            .replace("vlan = 10", "vlan = 11")
            .replace("a.pcap", "b.pcap")
            + "[outputs.more]\ninterface = \"eth3\"\n";
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(
            d.changes,
            [
                "output arch: changed",
                "output more: added",
                "rule web: changed"
            ]
        );
        assert!(d.not_live.is_empty());
    }

    #[test]
    fn moving_a_rule_is_no_change_and_removing_one_is() {
        let swapped =
            "[inputs.mirror]\ninterface = \"eth0\"\n[outputs.tools]\ninterface = \"eth2\"\n\
            [outputs.arch]\npcap = { path = \"/var/lib/vxspan/a.pcap\" }\n\
            [[rules]]\nname = \"all\"\nfrom = \"mirror\"\nto = \"arch\"\n\
            [[rules]]\nname = \"web\"\nfrom = \"mirror\"\nvlan = 10\nto = \"tools\"\n";
        assert!(diff(&cfg(BASE), &cfg(swapped)).changes.is_empty());
        let fewer = BASE.split("[[rules]]\nname = \"all\"").next().unwrap();
        let fewer = fewer.replace(
            "[outputs.arch]\npcap = { path = \"/var/lib/vxspan/a.pcap\" }\n",
            "",
        );
        let d = diff(&cfg(BASE), &cfg(&fewer));
        assert_eq!(d.changes, ["output arch: removed", "rule all: removed"]);
    }

    #[test]
    fn start_only_settings_are_refused_with_each_reason() {
        let new =
            BASE.to_string() + "[management]\nmetrics = \"127.0.0.1:9464\"\nuser = \"nobody\"\n";
        let d = diff(&cfg(BASE), &cfg(&new));
        assert_eq!(d.not_live.len(), 2, "{d:?}");
        assert!(d.not_live[0].starts_with("management.metrics"));
        assert!(d.not_live[1].starts_with("management.user"));
        assert!(d.not_live.iter().all(|r| r.contains("restart vxspan")));
    }
}
