//! The `vxspan` command's library: the control plane (CLI commands, replay driver, traffic
//! generator). It never sits in the packet path itself; the engine does.

pub mod blast;
pub mod check;
pub mod control;
pub mod daemon;
pub mod fuzzing;
pub mod gen;
pub mod kernel;
pub mod lab;
pub mod logging;
pub mod metrics;
pub mod nexthop;
pub mod panics;
pub mod privileges;
pub mod process;
pub mod replay;
pub mod snmp;
pub mod top;
pub mod wake;

/// Exit code for an invalid configuration or command line.
pub const EXIT_INVALID: u8 = 2;
/// The exit status of `vxspan reload` when the file is valid but cannot be applied while
/// running (a setting read only at start, ports that cannot be opened): nothing was changed.
pub const EXIT_NOT_LIVE: u8 = 3;
