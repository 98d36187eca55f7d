//! The control plane's side of the daemon: the control socket (server), its clients, and the
//! protocol they share. It depends on the protocol and the counters' types, never on the
//! datapath.

pub mod client;
pub mod proto;
pub mod server;
