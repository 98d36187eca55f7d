// The far end of benches/live-forwarding.sh: drops every frame at XDP, after the veth counted
// it (rx_packets). Native redirects into its peer are delivered only if it runs XDP; dropping
// here keeps the kernel stack above it out of every row (tunnel copies addressed to its MAC
// would otherwise be routed and dropped by IP, other frames discarded earlier: unequal work).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp.frags")
int sink_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
