//! vxspan's kernel tier (DESIGN.md layer 3): the XDP program in `bpf/vxspan.c`, built by build.rs
//! with clang, and what the rest of vxspan needs of it:
//!
//! - [`tables`]: the compiled plan as the kernel tier's tables (pure, tested without root);
//! - [`Datapath`]: loads the program with aya, fills the maps, attaches it to the inputs, swaps
//!   it atomically on reload, reads the per-CPU counters, and detaches on drop;
//! - [`Datapath::run_frame`]: BPF_PROG_TEST_RUN, for the tests that check the program's verdicts
//!   against the userspace classifier, and for the micro-benchmark;
//! - [`blast`]: a traffic generator on BPF_PROG_TEST_RUN with live frames (`vxspan blast`).

mod balance;
pub mod blast;
mod counters;
pub mod hint;
pub mod loader;
pub mod maps;
mod ratelimit;
pub mod shared;
pub mod tables;
pub mod tunnel;

pub use loader::{Datapath, Mode};
pub use tables::{Action, Tables};

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// The compiled XDP object (clang output from build.rs), aligned for the ELF parser.
pub fn object() -> &'static [u8] {
    static OBJ: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/vxspan.bpf.o")));
    &OBJ.0
}

/// The same program built with VX_VLAN_HINT, for device-bound loading ([`hint`]).
pub fn hint_object() -> &'static [u8] {
    static OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
        env!("OUT_DIR"),
        "/vxspan_hint.bpf.o"
    )));
    &OBJ.0
}

/// The traffic generator's object (bpf/blast.c).
pub fn blast_object() -> &'static [u8] {
    static OBJ: &Aligned<[u8]> =
        &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/blast.bpf.o")));
    &OBJ.0
}
