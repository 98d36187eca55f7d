// The baseline of benches/live-forwarding.sh: every frame received on the interface this is
// attached to is redirected, untouched, to the interface TARGET_IFINDEX (set at compile time by
// the script). Nothing else: the fastest forwarding the kernel offers on this rig.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef TARGET_IFINDEX
#error "compile with -DTARGET_IFINDEX=N"
#endif

SEC("xdp")
int redirect_all(struct xdp_md *ctx)
{
	return bpf_redirect(TARGET_IFINDEX, 0);
}

char _license[] SEC("license") = "GPL";
