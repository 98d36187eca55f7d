/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* The flow hash of vxspan-core, in the XDP program: SipHash-1-3, keyed by the instance's hash key
 * (vxspan_core::hashkey), over the 39 bytes of the symmetric flow key (vxspan_wire::flow::FlowKey:
 * source and destination address in 16 bytes each, the IP protocol, both ports, the EtherType
 * after the tags). Both tiers must compute the same value for a frame: it picks a balanced output,
 * decides flow sampling and gives VXLAN / Geneve copies their UDP source port.
 *
 * FlowKey::extract parses IP with etherparse's lax slicing; flow_key below follows it for the
 * frames it can read the same way here, and answers -1 for the others (an IPv4 authentication
 * header, IPv6 extension headers, an IP version that disagrees with the EtherType, headers beyond
 * the first buffer of a multi-buffer frame), which go to the userspace tier. What the lax parser
 * rejects (a header cut short, IHL below 5, an unknown version) is keyed on the MAC addresses,
 * as there. Included by vxspan.c only. */

#ifndef VX_FLOWHASH_H
#define VX_FLOWHASH_H

/* The hash key, written by the loader (tables.rs: Tables::hash_key). */
struct vx_hashkey {
	__u64 k0;
	__u64 k1;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vx_hashkey);
} hashkey SEC(".maps");

/* FlowKey::to_bytes, padded to 40 bytes (the last byte is not hashed); SipHash reads it as five
 * little-endian words (the BPF target is little-endian here, as the x86 it is built on). */
union vx_flowkey {
	struct {
		__u8 src[16];
		__u8 dst[16];
		__u8 proto;
		__u8 ports[4]; /* source then destination, network order */
		__u8 ethertype[2];
		__u8 pad;
	};
	__u64 w[5];
};

/* The key being built, per CPU: in a map, not on the stack, where the compiler would split it into
 * forty byte-sized variables and spill them past the verifier's stack limit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union vx_flowkey);
} flowscratch SEC(".maps");

static __always_inline __u64 rotl64(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1;                                                          \
		v1 = rotl64(v1, 13);                                               \
		v1 ^= v0;                                                          \
		v0 = rotl64(v0, 32);                                               \
		v2 += v3;                                                          \
		v3 = rotl64(v3, 16);                                               \
		v3 ^= v2;                                                          \
		v0 += v3;                                                          \
		v3 = rotl64(v3, 21);                                               \
		v3 ^= v0;                                                          \
		v2 += v1;                                                          \
		v1 = rotl64(v1, 17);                                               \
		v1 ^= v2;                                                          \
		v2 = rotl64(v2, 32);                                               \
	} while (0)

/* SipHash-1-3 of the key's 39 bytes (the siphasher crate's SipHasher13 with `write` then
 * `finish`): four 8-byte words, then the last 7 bytes with the length in the top byte. */
static __always_inline __u64 sip13_flow(const struct vx_hashkey *k, const union vx_flowkey *f)
{
	__u64 v0 = k->k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k->k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k->k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k->k1 ^ 0x7465646279746573ULL;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		__u64 m = f->w[i];
		if (i == 4)
			m = (m & 0x00ffffffffffffffULL) | (39ULL << 56);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Whether a is below b, as bytes compare (a 16-byte address). */
static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	}
	return 0;
}

/* FlowKey::symmetric: the lower (address, port) endpoint first. */
static __always_inline void flowkey_symmetric(union vx_flowkey *f)
{
	int c = addr_cmp(f->src, f->dst);
	__u16 sp = ((__u16)f->ports[0] << 8) | f->ports[1];
	__u16 dp = ((__u16)f->ports[2] << 8) | f->ports[3];
	if (c < 0 || (c == 0 && sp <= dp))
		return;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u8 t = f->src[i];
		f->src[i] = f->dst[i];
		f->dst[i] = t;
	}
	__u8 p0 = f->ports[0], p1 = f->ports[1];
	f->ports[0] = f->ports[2];
	f->ports[1] = f->ports[3];
	f->ports[2] = p0;
	f->ports[3] = p1;
}

/* The ports of a transport that starts with them (TCP, UDP, SCTP, UDP-Lite). */
static __always_inline int has_ports(__u8 proto)
{
	return proto == 6 || proto == 17 || proto == 132 || proto == 136;
}

/* The IPv6 next-header values etherparse walks (or stops at) as extension headers. */
static __always_inline int is_v6_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 44 || nh == 50 || nh == 51 || nh == 60 || nh == 135 ||
	       nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

/* Copies the 4 port bytes at p, if the linear data has them; -1 if not. */
static __always_inline int read_ports(union vx_flowkey *f, __u8 *p, void *data_end)
{
	if ((void *)(p + 4) > data_end)
		return -1;
	f->ports[0] = p[0];
	f->ports[1] = p[1];
	f->ports[2] = p[2];
	f->ports[3] = p[3];
	return 0;
}

/* FlowKey::extract of the frame at data (whose layer 3 starts at l3, within the first
 * 14 + 4 * VX_MAX_TAGS bytes; `len` the whole frame's length). 0, or -1: only the userspace
 * tier keys this frame as vxspan-core does. */
static __always_inline int flow_key(void *data, void *data_end, __u64 len, __u32 l3,
				    union vx_flowkey *f)
{
	__builtin_memset(f, 0, sizeof(*f));
	if (l3 < 14 || l3 > 14 + 4 * VX_MAX_TAGS)
		return -1;
	__u8 *et = data + l3 - 2;
	if ((void *)(et + 2) > data_end)
		return -1;
	f->ethertype[0] = et[0];
	f->ethertype[1] = et[1];
	__u16 ethertype = ((__u16)et[0] << 8) | et[1];
	__u64 slice = len > l3 ? len - l3 : 0;
	__u8 *ip = data + l3;
	if ((ethertype == 0x0800 || ethertype == 0x86dd) && slice > 0) {
		if ((void *)(ip + 1) > data_end)
			return -1;
		__u8 version = ip[0] >> 4;
		if (version == 4 && ethertype == 0x0800) {
			__u32 hl = (ip[0] & 0xf) * 4;
			if (hl >= 20 && slice >= hl) {
				if ((void *)(ip + 20) > data_end)
					return -1;
				__u8 proto = ip[9];
				if (proto == 51)
					return -1; /* an authentication header: etherparse reads past it */
				__builtin_memcpy(f->src, ip + 12, 4);
				__builtin_memcpy(f->dst, ip + 16, 4);
				f->proto = proto;
				__u32 total = ((__u32)ip[2] << 8) | ip[3];
				int fragmented = (((ip[6] << 8) | ip[7]) & 0x3fff) != 0;
				__u64 payload = (total < hl || slice < total) ? slice - hl : total - hl;
				if (has_ports(proto) && !fragmented && payload >= 4)
					return read_ports(f, ip + hl, data_end);
				return 0;
			}
		} else if (version == 6 && ethertype == 0x86dd) {
			if (slice >= 40) {
				if ((void *)(ip + 40) > data_end)
					return -1;
				__u8 nh = ip[6];
				if (is_v6_ext(nh))
					return -1; /* extension headers: the userspace tier walks them */
				__builtin_memcpy(f->src, ip + 8, 16);
				__builtin_memcpy(f->dst, ip + 24, 16);
				f->proto = nh;
				__u32 plen = ((__u32)ip[4] << 8) | ip[5];
				__u64 payload = ((plen == 0 && slice > 40) || slice - 40 < plen) ? slice - 40 : plen;
				if (has_ports(nh) && payload >= 4)
					return read_ports(f, ip + 40, data_end);
				return 0;
			}
		} else if (version == 4 || version == 6) {
			return -1; /* the version disagrees with the EtherType: parsed by the version there */
		}
	}
	/* Not IP, or IP the lax parser rejects: keyed on the MAC addresses. */
	__u8 *mac = data;
	if ((void *)(mac + 12) > data_end)
		return -1;
	__builtin_memcpy(f->dst, mac, 6);
	__builtin_memcpy(f->src, mac + 6, 6);
	return 0;
}

/* The flow hash of the frame at ctx as it is now, in *h; -1 if only userspace can compute it.
 * A global function (a BPF-to-BPF call the verifier checks once, on its own): inlined at each of
 * its callers the program's stack would pass the verifier's 512 bytes, and as a static function
 * it would be verified again at each of its three call sites. */
__attribute__((noinline)) int flow_hash(struct xdp_md *ctx, __u64 *h)
{
	if (!h)
		return -1;
	__u32 zero = 0;
	struct vx_hashkey *k = bpf_map_lookup_elem(&hashkey, &zero);
	if (!k)
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 vid, l3;
	int tagged;
	if (parse_l2(data, data_end, &vid, &tagged, &l3))
		return -1;
	union vx_flowkey *f = bpf_map_lookup_elem(&flowscratch, &zero);
	if (!f)
		return -1;
	if (flow_key(data, data_end, bpf_xdp_get_buff_len(ctx), l3, f))
		return -1;
	flowkey_symmetric(f);
	*h = sip13_flow(k, f);
	return 0;
}

#endif
