/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* `rate_limit` in the XDP program: one byte token bucket per output, shared by every CPU (a spin
 * lock in the map value), with the arithmetic of vxspan-core's broker::TokenBucket: tokens in
 * byte-nanoseconds, refilled by the time since the last copy at the output's rate, capped at the
 * burst; a copy passes if the bucket holds its length. The engine computes in 128 bits; here the
 * elapsed time is first capped at the time that fills the bucket from empty, which changes no
 * result and keeps every sum within 64 bits for the rates and bursts Tables::build lets in
 * (burst <= 2^32 bytes, rate <= 2^40 bytes/s). The clock is CLOCK_BOOTTIME, as the receive
 * timestamps of the userspace tier's frames; an output's bucket lives in one tier only (the
 * placement puts every group that reaches a rate-limited output in the same tier). Included by
 * vxspan.c only. */

#ifndef VX_RATELIMIT_H
#define VX_RATELIMIT_H

struct vx_bucket {
	struct bpf_spin_lock lock;
	__u32 started;
	__u64 tokens; /* byte-nanoseconds */
	__u64 cap;    /* burst_bytes * 1e9 */
	__u64 rate;   /* bytes per second (= byte-nanoseconds per nanosecond) */
	__u64 fill;   /* nanoseconds that fill an empty bucket: cap / rate + 1 */
	__u64 last;   /* the time of the last copy, ns */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_bucket);
} buckets SEC(".maps");

/* Whether output o's bucket holds `bytes` now (and takes them if so). */
static __always_inline int rate_take(__u32 o, __u64 bytes)
{
	struct vx_bucket *b = bpf_map_lookup_elem(&buckets, &o);
	if (!b)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 need = bytes * 1000000000ULL;
	int ok;
	bpf_spin_lock(&b->lock);
	if (b->started && now > b->last) {
		__u64 dt = now - b->last;
		if (dt > b->fill)
			dt = b->fill;
		__u64 t = b->tokens + dt * b->rate;
		b->tokens = t < b->cap ? t : b->cap;
	}
	if (!b->started || now > b->last) {
		b->last = now;
		b->started = 1;
	}
	ok = b->tokens >= need;
	if (ok)
		b->tokens -= need;
	bpf_spin_unlock(&b->lock);
	return ok;
}

#endif
