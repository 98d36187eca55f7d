//! Zero-copy views and emitters for the headers vxspan touches.
//!
//! The layout follows smoltcp's wire module: a `Frame<T: AsRef<[u8]>>` view over any buffer,
//! `new_checked` (length checked once, after which no accessor can panic), and a plain `Repr`
//! with `parse` / `emit` that are mirror images of each other.
//!
//! IPv4, IPv6 (with extension headers), UDP, TCP and ICMP / ICMPv6 are not written again here:
//! [`etherparse`]'s slices do that well (measured at about 2.6 ns per 5-tuple on these machines)
//! and are re-exported. This crate adds what vxspan needs around them: Ethernet with stacked
//! 802.1Q / 802.1ad / 0x9100 tags ([`ethernet`], [`vlan`]), in-place VLAN push / pop / rewrite,
//! and the flow key used for sampling and load balancing ([`flow`]); and the tunnel headers vxspan
//! terminates and originates: [`gre`] (with PPTP's enhanced GRE), [`erspan`] types II and III,
//! [`vxlan`] and VXLAN-GPE, [`geneve`], and [`mpls`] label stacks.
//!
//! Nothing in this crate allocates except the emitters that append to a caller's `Vec`, and
//! nothing panics on any byte sequence: the fuzz targets in `fuzz/` and the bit-flip tests check it.
#![deny(unsafe_code)]

pub mod erspan;
pub mod ethernet;
pub mod flow;
pub mod geneve;
pub mod gre;
pub mod mpls;
pub mod vlan;
pub mod vxlan;

pub use erspan::{ErspanIIIPacket, ErspanIIIRepr, ErspanIIPacket, ErspanIIRepr, ErspanPlatform};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use etherparse;
pub use flow::FlowKey;
pub use geneve::{GeneveOption, GenevePacket, GeneveRepr};
pub use gre::{GrePacket, GreProtocol, GreRepr};
pub use mpls::{MplsInner, MplsLabel, MplsPayload, MplsStack};
pub use vlan::{L2Info, VlanTag};
pub use vxlan::{VxlanGpePacket, VxlanGpeProtocol, VxlanGpeRepr, VxlanPacket, VxlanRepr};

/// The one error type of the wire layer: small and `Copy`, because a malformed packet is
/// counted as a drop by the caller, never propagated up a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or the header's own length field) requires.
    Truncated,
    /// A field holds a value the header does not allow.
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated header"),
            Error::Malformed => f.write_str("malformed header"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// A deterministic xorshift64 generator (Marsaglia's 13 / 7 / 17) for the property tests of
/// every crate (no `rand` dependency). Not for anything a sender could predict against.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next value modulo `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = self.next_u64() as u8;
        }
    }
}
