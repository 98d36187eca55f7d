//! The values of the XDP program's maps, laid out as `bpf/vxspan.c` declares them.

/// `struct vx_group`: one (input, VID) group's action and, per CPU, its counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxGroup {
    pub action: u32,
    pub arg: u32,
    /// `sample = N` (0: keep every frame) and the slot of its counter in `samples`.
    pub sample_n: u32,
    pub sample_slot: u32,
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub sampled_packets: u64,
    pub sampled_bytes: u64,
}

/// `struct vx_input`: the input slot + 1 of an ifindex (0: not an input) and its flags.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxInput {
    pub slot1: u32,
    pub flags: u32,
}

/// `VX_INPUT_USERSPACE`: every frame of the input goes to userspace.
pub const INPUT_USERSPACE: u32 = 1;

/// `struct vx_input_stats`, per input and CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxInputStats {
    pub malformed_packets: u64,
    pub malformed_bytes: u64,
    pub userspace_packets: u64,
    pub userspace_bytes: u64,
}

/// `struct vx_out_cfg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxOutCfg {
    pub vlan_op: u32,
    pub vid: u32,
    pub mtu: u32,
    pub flags: u32,
    pub cut_to: u32,
    pub pad: u32,
}

/// `VX_OUT_TRUNCATE`.
pub const OUT_TRUNCATE: u32 = 1;
/// `VX_OUT_TUNNEL`: the output is a tunnel originated in XDP.
pub const OUT_TUNNEL: u32 = 2;
/// `VX_OUT_RATE`: the output's copies pass its token bucket (`buckets`).
pub const OUT_RATE: u32 = 4;

/// `struct vx_bucket` (bpf/ratelimit.h): the lock word is the kernel's; written once, before
/// the program runs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxBucket {
    pub lock: u32,
    pub started: u32,
    pub tokens: u64,
    pub cap: u64,
    pub rate: u64,
    pub fill: u64,
    pub last: u64,
}

/// `struct vx_tunnel`: a tunnel output's fixed header fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxTunnel {
    pub kind: u32,
    pub flags: u32,
    pub key: u32,
    pub session: u16,
    pub dscp: u8,
    pub ttl: u8,
    /// Network order (the address's octets as they are on the wire).
    pub dst4: [u8; 4],
    /// The configured source (0.0.0.0: the route's).
    pub src4: [u8; 4],
    /// Its entry in `tun_seq`, `nexthops` and `tun_dev`.
    pub slot: u32,
}

/// `VX_SAMPLE_FLOW`: a group's `sample_slot` when it samples by the flow hash.
pub const SAMPLE_FLOW: u32 = u32::MAX;

/// `VX_TUN_KEY`.
pub const TUN_KEY: u32 = 1;

/// `struct vx_nexthop`: where a tunnel output's copies leave.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxNexthop {
    pub ifindex: u32,
    pub src4: [u8; 4],
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// The route's MTU (0: none).
    pub mtu: u32,
}

/// `struct vx_tun_stats`, per tunnel output and CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxTunStats {
    pub unresolved_packets: u64,
    pub unresolved_bytes: u64,
    pub error_packets: u64,
    pub error_bytes: u64,
}

/// `struct vx_output`, per output and CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxOutput {
    pub cfg: VxOutCfg,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub link_down_packets: u64,
    pub link_down_bytes: u64,
    pub mtu_exceeded_packets: u64,
    pub mtu_exceeded_bytes: u64,
    pub rate_limited_packets: u64,
    pub rate_limited_bytes: u64,
}

/// `struct vx_fanset`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxFanset {
    pub n: u32,
    pub outputs: [u32; crate::tables::MAX_FAN],
}

/// `struct vx_choice`: one output of a balance set.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxChoice {
    pub output: u32,
    pub weight: u32,
    pub name_id: u64,
}

/// `struct vx_balset`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxBalset {
    pub n: u32,
    pub pad: u32,
    pub c: [VxChoice; crate::tables::MAX_FAN],
}

// SAFETY: each type is #[repr(C)], made only of integers (any bit pattern is valid) and has no
// padding: u32 pairs precede the u64s, and VxFanset is 17 u32s.
unsafe impl aya::Pod for VxGroup {}
// SAFETY: as above.
unsafe impl aya::Pod for VxInput {}
// SAFETY: as above.
unsafe impl aya::Pod for VxInputStats {}
// SAFETY: as above.
unsafe impl aya::Pod for VxOutCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for VxOutput {}
// SAFETY: as above.
unsafe impl aya::Pod for VxFanset {}
// SAFETY: as above: 3 u32, u16 + 2 u8, 2 x 4 u8, u32 (28 bytes, alignment 4, no padding).
unsafe impl aya::Pod for VxTunnel {}
// SAFETY: as above: 2 u32, 12 u8, u32 (24 bytes, alignment 4, no padding).
unsafe impl aya::Pod for VxNexthop {}
// SAFETY: as above: four u64.
unsafe impl aya::Pod for VxTunStats {}
// SAFETY: as above: two u32 then a u64 (16 bytes, alignment 8, no padding).
unsafe impl aya::Pod for VxChoice {}
// SAFETY: as above: two u32 then five u64 (48 bytes, alignment 8, no padding).
unsafe impl aya::Pod for VxBucket {}
// SAFETY: as above: two u32 then 16 VxChoice (264 bytes, alignment 8, no padding).
unsafe impl aya::Pod for VxBalset {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_side() {
        assert_eq!(std::mem::size_of::<VxGroup>(), 64);
        assert_eq!(std::mem::size_of::<VxInput>(), 8);
        assert_eq!(std::mem::size_of::<VxInputStats>(), 32);
        assert_eq!(std::mem::size_of::<VxOutCfg>(), 24);
        assert_eq!(std::mem::size_of::<VxOutput>(), 88);
        assert_eq!(std::mem::size_of::<VxBucket>(), 48);
        assert_eq!(std::mem::size_of::<VxFanset>(), 68);
        assert_eq!(std::mem::size_of::<VxTunnel>(), 28);
        assert_eq!(std::mem::size_of::<VxNexthop>(), 24);
        assert_eq!(std::mem::size_of::<VxTunStats>(), 32);
        assert_eq!(std::mem::size_of::<VxChoice>(), 16);
        assert_eq!(std::mem::size_of::<VxBalset>(), 264);
    }
}
