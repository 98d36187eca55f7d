//! The values of the XDP program's maps, laid out as `bpf/vxspan.c` declares them.

/// `struct vx_group`: one (input, VID) group's action and, per CPU, its counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxGroup {
    pub action: u32,
    pub arg: u32,
    pub packets: u64,
    pub bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
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
}

/// `struct vx_fanset`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxFanset {
    pub n: u32,
    pub outputs: [u32; crate::tables::MAX_FAN],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_side() {
        assert_eq!(std::mem::size_of::<VxGroup>(), 40);
        assert_eq!(std::mem::size_of::<VxInput>(), 8);
        assert_eq!(std::mem::size_of::<VxInputStats>(), 32);
        assert_eq!(std::mem::size_of::<VxOutCfg>(), 24);
        assert_eq!(std::mem::size_of::<VxOutput>(), 72);
        assert_eq!(std::mem::size_of::<VxFanset>(), 68);
    }
}
