/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* `to = { balance = [...] }` in the XDP program: the weighted rendezvous of vxspan-core's
 * rendezvous.rs, in the same integers, so that a flow goes to the same output in both tiers.
 *
 * For a flow hash h and each output of the set (its plan index, weight and name id, written by the
 * loader from Tables::balsets): m = (mix(h ^ name_id) >> 11) + 1 in 1 .. 2^53, and its key is
 * (53 - log2(m)) / weight in 32.32 fixed point, log2 read from `log2tab` (rendezvous::LOG2_TABLE,
 * written by the loader) with linear interpolation. The least (key, name id, index) wins. An
 * output `out_up` marks down is skipped while another output of the set is up: the daemon writes
 * it beside the engine's own flag (one source of truth, so both tiers skip the same outputs;
 * every output starts up, in both, at a load or reload). Included by vxspan.c only. */

#ifndef VX_BALANCE_H
#define VX_BALANCE_H

#define VX_BALSETS 8      /* distinct balance sets per loaded plan */
#define VX_LOG2_BITS 10   /* rendezvous::LOG2_BITS */

struct vx_choice {
	__u32 output;
	__u32 weight;
	__u64 name_id;
};

struct vx_balset {
	__u32 n;
	__u32 pad;
	struct vx_choice c[VX_MAX_FAN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_BALSETS);
	__type(key, __u32);
	__type(value, struct vx_balset);
} balsets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, __u32);
} out_up SEC(".maps");

struct vx_log2tab {
	__u64 t[(1 << VX_LOG2_BITS) + 1];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vx_log2tab);
} log2tab SEC(".maps");

/* rendezvous::mix: splitmix64's finalizer. */
static __always_inline __u64 rv_mix(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* floor(log2(m)) for m >= 1 (BPF has no count-leading-zeros instruction). */
static __always_inline __u64 rv_ilog2(__u64 m)
{
	__u64 k = 0;
	if (m >> 32) { m >>= 32; k += 32; }
	if (m >> 16) { m >>= 16; k += 16; }
	if (m >> 8) { m >>= 8; k += 8; }
	if (m >> 4) { m >>= 4; k += 4; }
	if (m >> 2) { m >>= 2; k += 2; }
	if (m >> 1) { k += 1; }
	return k;
}

/* rendezvous::key. A global function: the verifier checks it once, on its own, and its callers
 * see a scalar (inlined sixteen times into the loop below, its constants multiplied the states the
 * verifier explores past its limit). */
__attribute__((noinline)) __u64 vx_rv_key(__u64 flow, __u64 name_id, __u32 weight)
{
	__u32 zero = 0;
	struct vx_log2tab *lt = bpf_map_lookup_elem(&log2tab, &zero);
	if (!lt)
		return ~0ULL;
	__u64 m = (rv_mix(flow ^ name_id) >> 11) + 1;
	__u64 k = rv_ilog2(m);
	__u64 f = k ? m << (64 - k) : 0;
	__u32 j = (__u32)(f >> (64 - VX_LOG2_BITS)) & ((1 << VX_LOG2_BITS) - 1);
	__u64 r = (f >> (64 - VX_LOG2_BITS - 22)) & ((1 << 22) - 1);
	__u64 a = lt->t[j], b = lt->t[j + 1];
	__u64 l = (k << 32) + a + (((b - a) * r) >> 22);
	return ((53ULL << 32) - l) / (weight ? weight : 1);
}

/* The output set `set` sends flow `flow` to, or -1 (no such set). Global, as vx_rv_key. */
__attribute__((noinline)) int balance_choose(__u64 flow, __u32 set)
{
	struct vx_balset *bs = bpf_map_lookup_elem(&balsets, &set);
	if (!bs || !bs->n)
		return -1;
	/* Pass 0 considers only outputs that are up; pass 1 every output, if none was. */
	for (int pass = 0; pass < 2; pass++) {
		int best = -1;
		__u64 bk = 0, bid = 0;
		for (int i = 0; i < VX_MAX_FAN; i++) {
			if (i >= bs->n)
				break;
			struct vx_choice *c = &bs->c[i];
			__u32 o = c->output;
			if (pass == 0) {
				__u32 *up = bpf_map_lookup_elem(&out_up, &o);
				if (up && !*up)
					continue;
			}
			__u64 k = vx_rv_key(flow, c->name_id, c->weight);
			if (best < 0 || k < bk || (k == bk && (c->name_id < bid ||
							     (c->name_id == bid && o < (__u32)best)))) {
				best = o;
				bk = k;
				bid = c->name_id;
			}
		}
		if (best >= 0)
			return best;
	}
	return -1;
}

#endif
