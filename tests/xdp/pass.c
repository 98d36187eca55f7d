// A test fixture, not part of vxspan: XDP_PASS on every frame, multi-buffer aware. The live XDP
// tests attach it (with `ip link set dev X xdpdrv obj ...`) to the peers of vxspan's output
// veths, because the kernel delivers a native-mode redirect into a veth only when the veth's
// peer runs an XDP program (or has GRO on, which would merge the frames under test).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp.frags")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
