// SPDX-License-Identifier: MIT OR Apache-2.0
// (The license section below says "Dual MIT/GPL": the string the kernel asks of programs that use
// its GPL-only facilities. See packaging/copyright.)
//
// `vxspan blast`: run with BPF_PROG_TEST_RUN in live-frames mode, every frame the test run
// injects (as arriving on lo, ifindex 1) leaves through the interface in `target[0]`. The loader
// also attaches this program to that interface, so that the kernel's XDP dispatcher already
// holds it and each test run skips the dispatcher update (an RCU wait); real frames arriving
// there pass untouched.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} target SEC(".maps");

SEC("xdp.frags")
int vxspan_blast(struct xdp_md *ctx)
{
	if (ctx->ingress_ifindex != 1)
		return XDP_PASS;
	return bpf_redirect_map(&target, 0, XDP_DROP);
}

/* BPF_PROG_TEST_RUN reference for the micro-benchmark: the cheapest possible program. */
SEC("xdp")
int vxspan_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
