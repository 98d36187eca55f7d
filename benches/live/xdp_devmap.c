// A baseline of benches/live-forwarding.sh: every frame is redirected, untouched, through a
// one-entry devmap (bpf_redirect_map, which bulks transmits; the script writes the target's
// ifindex into `ports`). The fastest forwarding the kernel offers on this rig.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

SEC("xdp")
int redirect_map_all(struct xdp_md *ctx)
{
	return bpf_redirect_map(&ports, 0, 0);
}

char _license[] SEC("license") = "GPL";
