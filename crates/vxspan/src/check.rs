//! `vxspan check`: load, validate, compile, and explain the plan.

use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use vxspan_core::plan::PlanDescription;
use vxspan_core::Plan;

/// Loads and compiles a configuration; on error prints it (file, key path, problem) and
/// returns the exit code for an invalid configuration.
pub fn load(path: &Path) -> Result<(vxspan_config::Config, Plan), ExitCode> {
    let cfg = vxspan_config::load(path).map_err(|e| {
        eprintln!("vxspan: invalid configuration: {e}");
        ExitCode::from(crate::EXIT_INVALID)
    })?;
    let plan = Plan::compile(&cfg, &vxspan_io::filter::Libpcap).map_err(|e| {
        eprintln!(
            "vxspan: invalid configuration: {}: {}: {}",
            path.display(),
            e.path,
            e.message
        );
        ExitCode::from(crate::EXIT_INVALID)
    })?;
    Ok((cfg, plan))
}

pub fn run(path: &Path, json: bool) -> Result<ExitCode> {
    let (cfg, plan) = match load(path) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let mut d = plan.describe(&cfg);
    // The placement `run` will use with the XDP tier (the default datapath): the same function
    // `status` shows.
    match crate::kernel::planned_tables(&plan) {
        Ok(t) => d.groups = crate::kernel::placed_groups(&plan, &cfg, Some(&t)),
        Err(e) => {
            d.groups = crate::kernel::placed_groups(&plan, &cfg, None);
            d.warnings.push(format!(
                "the XDP tier cannot run this plan ({e}): every group runs in userspace"
            ));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", render(&d));
    }
    for w in &d.warnings {
        eprintln!("vxspan: warning: {}: {w}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn destination(p: &vxspan_core::plan::PortDescription) -> String {
    match (&p.interface, &p.tunnel) {
        (Some(i), _) => format!("interface {i}"),
        (None, Some(t)) => format!("tunnel {t}"),
        (None, None) => "(no destination)".into(),
    }
}

fn render(d: &PlanDescription) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let form = match d.form {
        vxspan_config::Form::Vxspan => "VxSPAN form",
        vxspan_config::Form::Native => "native form",
    };
    let _ = writeln!(s, "{}: valid ({form})", d.file);
    if let Some(m) = d.xdp_mode {
        let _ = writeln!(
            s,
            "xdp_mode: {}",
            serde_json::to_value(m)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?")
        );
    }
    let _ = writeln!(s, "\ninputs:");
    for p in &d.inputs {
        let _ = writeln!(s, "  {:<16} {}", p.name, destination(p));
    }
    let _ = writeln!(s, "\noutputs:");
    for p in &d.outputs {
        let mut extra = String::new();
        if let Some(v) = &p.vlan {
            let _ = write!(extra, ", vlan {v}");
        }
        if let Some(t) = p.truncate {
            let _ = write!(extra, ", truncate {t}");
        }
        if let Some(m) = p.mtu {
            let _ = write!(extra, ", mtu {m}");
        }
        let _ = writeln!(s, "  {:<16} {}{extra}", p.name, destination(p));
    }
    let _ = writeln!(s, "\nrules:");
    for r in &d.rules {
        let _ = write!(
            s,
            "  {:<16} from {} vlan {}",
            r.name,
            r.from.join(","),
            r.vlan
        );
        if let (Some(f), Some(n)) = (&r.filter, r.filter_insns) {
            let _ = write!(s, " filter {f:?} ({n} BPF insns)");
        }
        if let Some(sm) = &r.sample {
            let _ = write!(
                s,
                " sample 1/{} ({})",
                sm.one_in,
                serde_json::to_value(sm.mode)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?")
            );
        }
        match &r.balance {
            None => {
                let _ = writeln!(s, " -> {}", r.to.join(", "));
            }
            Some(w) => {
                let w: Vec<String> = w.iter().map(u32::to_string).collect();
                let _ = writeln!(
                    s,
                    " -> balance {} (weights {}, one output per flow)",
                    r.to.join(", "),
                    w.join(", ")
                );
            }
        }
    }
    let _ = writeln!(s, "\nplacement (input, VLAN group -> tier):");
    for g in &d.groups {
        let tier = serde_json::to_value(g.tier)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let _ = writeln!(
            s,
            "  {:<10} vlan {:<12} rules {} -> {}  [{tier}: {}]",
            g.input,
            g.vlan,
            g.rules.join(","),
            g.to.join(", "),
            g.why
        );
    }
    for u in &d.unmatched {
        let _ = writeln!(
            s,
            "  {:<10} vlan {:<12} no rule -> dropped as no_rule  [xdp]",
            u.input, u.vlan
        );
    }
    s
}
