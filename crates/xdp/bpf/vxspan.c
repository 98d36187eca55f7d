// SPDX-License-Identifier: MIT OR Apache-2.0
// (The license section below says "Dual MIT/GPL": the string the kernel asks of programs that use
// its GPL-only facilities. See packaging/copyright.)
//
// vxspan's kernel tier. One program, attached to every input port:
//
//   1. `in_slot[ingress ifindex]` says which input this is (0: not ours -> XDP_PASS);
//   2. the Ethernet header and up to VX_MAX_TAGS VLAN tags (TPIDs 0x8100, 0x88a8, 0x9100) are
//      walked with bounds checks; a frame cut short inside them is dropped as `malformed`, exactly as
//      the userspace classifier (vxspan-wire's L2Info::parse) decides;
//   3. `groups[input * 4096 + outer VID]` holds what the compiled plan decided for that (input,
//      VLAN) group -- drop (`no_rule`), redirect to one output, broadcast to a fan-out set, or hand the
//      frame to the userspace tier (AF_XDP socket if one is bound to this queue, else the stack, where
//      the AF_PACKET back-end reads it) -- next to the group's per-CPU counters. The value is per CPU,
//      so counting needs no atomics and loses nothing when several CPUs forward;
//   4. single-output groups get their output's VLAN action (push / pop / set) here; fan-out copies
//      get theirs from the devmap egress program `vxspan_egress`, which the loader attaches to the
//      fan-out entries of outputs that rewrite tags.
//
// A reload loads a fresh object (new maps) and swaps it in with bpf_link_update, so the tables are
// written once, before any packet sees them, and the swap is atomic. The layouts below are mirrored
// by `#[repr(C)]` types in src/maps.rs.
//
// Built twice: as is (loaded by aya, every mode), and with VX_VLAN_HINT (loaded by libbpf as a
// device-bound program per input, native mode only; src/hint.rs). The second asks the driver for
// a VLAN tag it took out of the frame (bpf_xdp_metadata_rx_vlan_tag: a veth peer sending through
// a VLAN sub-interface, a NIC stripping tags) and puts it back in front of the frame first, so the
// frame is classified, counted and forwarded as it was on the wire, as the AF_PACKET back-end does
// with tp_vlan_tci.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifdef VX_VLAN_HINT
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym;
#endif

#define VX_MAX_TAGS 8      /* vxspan_wire::vlan::MAX_TAGS */
#define VX_NVID 4096
#define VX_MAX_IFINDEX 4096
#define VX_MAX_OUTPUTS 64
#define VX_MAX_FAN 16      /* outputs in one fan-out set */
#define VX_FANSETS 8       /* distinct fan-out sets per loaded plan */

enum vx_action {
	VX_DROP = 0,      /* no rule selects the group: drop, count `no_rule` */
	VX_REDIRECT = 1,  /* one output: ports[arg] */
	VX_BROADCAST = 2, /* fan-out set `arg`: a copy to every output of fanN */
	VX_USERSPACE = 3, /* the userspace tier */
	VX_BALANCE = 4,   /* balance set `arg`: one output per flow (balance.h), then as VX_REDIRECT */
};

enum vx_vlan_op {
	VX_VLAN_NONE = 0,
	VX_VLAN_PUSH = 1,
	VX_VLAN_POP = 2,
	VX_VLAN_SET = 3,
};

/* One (input, VID) group: what to do, and its counters (one copy of the value per CPU). */
struct vx_group {
	__u32 action;
	__u32 arg;
	__u32 sample_n;    /* sample = N: keep 1 in N (0: every frame) */
	__u32 sample_slot; /* its count in `samples`; VX_SAMPLE_FLOW: by the flow hash instead */
	__u64 packets;
	__u64 bytes;
	__u64 dropped_packets;
	__u64 dropped_bytes;
	__u64 sampled_packets; /* sampled out, counted in packets too */
	__u64 sampled_bytes;
};

/* in_slot value: input index + 1 (0 = not an input), and flags. */
struct vx_input {
	__u32 slot1;
	__u32 flags;
};
#define VX_INPUT_USERSPACE 1 /* every frame of this input goes to userspace, malformed ones too */

/* Per input, per CPU: what is not kept per VID. */
struct vx_input_stats {
	__u64 malformed_packets;
	__u64 malformed_bytes;
	__u64 userspace_packets;
	__u64 userspace_bytes;
};

/* What a copy leaving through an output undergoes: truncation (cut_to: its largest length after
 * the VLAN action, 0 = whole), MTU (largest layer 3 payload, 0 = no limit; with VX_OUT_TRUNCATE
 * oversize copies are cut to fit instead of dropped) and VLAN action, in the engine's order:
 * VLAN action, truncation, MTU. The tail is cut before the head is rewritten, which gives the
 * same bytes because cut_to (64 or more) stays clear of the layer 2 header. */
struct vx_out_cfg {
	__u32 vlan_op;
	__u32 vid;
	__u32 mtu;
	__u32 flags;
	__u32 cut_to;
	__u32 pad;
};
#define VX_OUT_TRUNCATE 1
#define VX_OUT_TUNNEL 2 /* the output is a tunnel: `tunnels` and `nexthops` hold its headers */
#define VX_OUT_RATE 4   /* rate_limit: `buckets` holds its token bucket */

/* Per output, per CPU: its configuration (same on every CPU) and its counters. */
struct vx_output {
	struct vx_out_cfg cfg;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 link_down_packets; /* the devmap had no entry for it: the port is gone */
	__u64 link_down_bytes;
	__u64 mtu_exceeded_packets;
	__u64 mtu_exceeded_bytes;
	__u64 rate_limited_packets; /* over the output's rate_limit */
	__u64 rate_limited_bytes;
};

/* A fan-out set: which outputs its devmap holds (for the tx counters). */
struct vx_fanset {
	__u32 n;
	__u32 outputs[VX_MAX_FAN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_MAX_IFINDEX);
	__type(key, __u32);
	__type(value, struct vx_input);
} in_slot SEC(".maps");

/* max_entries is set by the loader to inputs * 4096. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_NVID);
	__type(key, __u32);
	__type(value, struct vx_group);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vx_input_stats);
} in_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_output);
} outputs SEC(".maps");

/* The egress-side view of the outputs, keyed by ifindex (the devmap egress program knows no more). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_out_cfg);
} egress_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_FANSETS);
	__type(key, __u32);
	__type(value, struct vx_fanset);
} fansets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} ports SEC(".maps");

#define FANMAP(n)                                                  \
	struct {                                                   \
		__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);            \
		__uint(max_entries, VX_MAX_FAN);                   \
		__type(key, __u32);                                \
		__type(value, struct bpf_devmap_val);              \
	} fan##n SEC(".maps")
FANMAP(0);
FANMAP(1);
FANMAP(2);
FANMAP(3);
FANMAP(4);
FANMAP(5);
FANMAP(6);
FANMAP(7);

/* Tunnel outputs originated in the kernel tier (src/tunnel.rs builds these). */
enum vx_tun_kind {
	VX_TUN_ERSPAN2 = 1,
	VX_TUN_ERSPAN3 = 2,
	VX_TUN_GRE = 3,
	VX_TUN_VXLAN = 4,
	VX_TUN_GENEVE = 5,
};
#define VX_TUN_KEY 1 /* GRE: a key is configured */

struct vx_tunnel {
	__u32 kind;
	__u32 flags;
	__u32 key;     /* GRE key, or the VNI of VXLAN / Geneve (host order) */
	__u16 session; /* ERSPAN session id, or the UDP destination port of VXLAN / Geneve */
	__u8 dscp;
	__u8 ttl;
	__u32 dst4;    /* network order */
	__u32 src4;    /* the configured source, network order (0: the route's) */
	__u32 slot;    /* its entry in tun_seq, nexthops and tun_dev (stable across reloads) */
};

/* Where a tunnel output's copies leave, from the kernel's route and neighbour tables, by slot:
 * written by the daemon's next-hop thread (vxspan::nexthop), which follows route and neighbour
 * changes. ifindex 0: not resolved (or the egress device cannot take XDP frames in this mode),
 * the frame goes to userspace. The program copies the entry once to its stack. */
struct vx_nexthop {
	__u32 ifindex;
	__u32 src4; /* network order */
	__u8 smac[6];
	__u8 dmac[6];
	__u32 mtu;  /* the route's (or egress device's) MTU: bounds the outer IP packet */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_tunnel);
} tunnels SEC(".maps");

/* Two entries per slot (slot * 2 + generation), and per slot the generation in use: the
 * next-hop thread writes the entry not in use, then flips the generation (one aligned 32-bit
 * store), so the program never reads an entry half written. Arrays rather than a hash map: an
 * array lookup is a few instructions, inlined by the verifier. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_nexthop);
} nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, __u32);
} nh_gen SEC(".maps");

/* The next ERSPAN sequence number per tunnel slot, shared by every CPU (one atomic add per copy)
 * and, mapped, by the userspace tier, which takes its numbers from the same counter. This map,
 * nexthops, tun_dev and clock outlive an object: a reload's object reuses them (loader.rs), so
 * sequences continue across reloads without a gap or a repeat. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, __u32);
} tun_seq SEC(".maps");

/* Per sampling rule (by slot), the frames it has seen, in both tiers: the userspace tier maps
 * this array and takes its counts from the same values, so `sample = N` keeps exactly 1 in N
 * of a rule's frames across CPUs and tiers. Outlives an object, as tun_seq does. */
#define VX_MAX_SAMPLES 256
#define VX_SAMPLE_FLOW 0xffffffffu /* vx_group.sample_slot of `mode = "flow"` */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, VX_MAX_SAMPLES);
	__type(key, __u32);
	__type(value, __u64);
} samples SEC(".maps");

/* Per tunnel slot and generation (as nexthops), the next hop's egress device, for a bulking
 * redirect: an entry and its device change together when the generation flips. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2 * VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, __u32);
} tun_dev SEC(".maps");

/* CLOCK_REALTIME - CLOCK_BOOTTIME in nanoseconds, written when the object is loaded: ERSPAN
 * III timestamps are the frame's arrival on the real-time clock, as the userspace tier's (a
 * step of the real-time clock is seen at the next load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} clock SEC(".maps");

/* Per tunnel output, per CPU: frames handed to userspace because the next hop was not
 * resolved (the userspace tier sends them, and the kernel resolves the neighbour). */
struct vx_tun_stats {
	__u64 unresolved_packets;
	__u64 unresolved_bytes;
	__u64 error_packets; /* could not be rewritten (no headroom): tx_error */
	__u64 error_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VX_MAX_OUTPUTS);
	__type(key, __u32);
	__type(value, struct vx_tun_stats);
} tun_stats SEC(".maps");

/* AF_XDP sockets of the userspace tier: input * VX_MAX_QUEUES + RX queue (max_entries set by the
 * loader to inputs * VX_MAX_QUEUES). */
#define VX_MAX_QUEUES 64
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, VX_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

static __always_inline int is_tpid(__u16 t)
{
	return t == bpf_htons(0x8100) || t == bpf_htons(0x88a8) || t == bpf_htons(0x9100);
}

/* Walks the Ethernet header and tag stack as vxspan_wire's L2Info::parse does. Returns 0 and fills
 * the outer VID (0 when untagged), whether there is a tag, and the layer 3 offset; -1 if the frame
 * ends inside its header or tags, or has more than VX_MAX_TAGS tags. */
static __always_inline int parse_l2(void *data, void *data_end, __u32 *vid, int *tagged, __u32 *l3)
{
	__u32 off = 12;
	*vid = 0;
	*tagged = 0;
	for (int i = 0; i <= VX_MAX_TAGS; i++) {
		__u16 *tp = data + off;
		if ((void *)(tp + 1) > data_end)
			return -1;
		if (!is_tpid(*tp)) {
			*l3 = off + 2;
			return 0;
		}
		if (i == VX_MAX_TAGS)
			return -1;
		/* the TCI and the EtherType after it must be there */
		if ((void *)(tp + 3) > data_end)
			return -1;
		if (i == 0) {
			*vid = bpf_ntohs(tp[1]) & 0x0fff;
			*tagged = 1;
		}
		off += 4;
	}
	return -1;
}

#include "flowhash.h"
#include "balance.h"
#include "ratelimit.h"

/* Puts a tag (TPID `proto`, network order; TCI `tci`) after the MAC addresses. 0, or -1. */
static __always_inline int push_tag(struct xdp_md *ctx, __be16 proto, __u16 tci)
{
	if (bpf_xdp_adjust_head(ctx, -4))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 *w = data;
	if ((void *)(w + 4) > data_end)
		return -1;
	w[0] = w[1];
	w[1] = w[2];
	w[2] = w[3];
	__u16 *t = data + 12;
	t[0] = proto;
	t[1] = bpf_htons(tci);
	return 0;
}

/* Applies a VLAN action to the frame at ctx. Returns the change in length (+4, 0, -4), or -100 if
 * the frame could not be rewritten (it is then sent unchanged, as the userspace tier does). */
static __always_inline int vlan_apply(struct xdp_md *ctx, __u32 op, __u32 vid)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *tpid = data + 12;

	if (op == VX_VLAN_NONE)
		return 0;
	/* The EtherType is all an untagged frame needs (a 14-byte frame takes a push, as in the
	 * engine); a tag's TCI follows it. */
	if ((void *)(tpid + 1) > data_end)
		return -100;
	int tagged = is_tpid(*tpid);
	if (tagged && (void *)(tpid + 2) > data_end)
		return -100;
	if (op == VX_VLAN_SET && tagged) {
		__u16 *tci = tpid + 1;
		if ((void *)(tci + 1) > data_end)
			return -100;
		*tci = bpf_htons((bpf_ntohs(*tci) & 0xf000) | (vid & 0x0fff));
		return 0;
	}
	if (op == VX_VLAN_POP) {
		if (!tagged)
			return 0;
		/* move the two MAC addresses 4 bytes up, over the tag, then drop the first 4 bytes */
		__u32 *w = data;
		if ((void *)(w + 4) > data_end)
			return -100;
		w[3] = w[2];
		w[2] = w[1];
		w[1] = w[0];
		if (bpf_xdp_adjust_head(ctx, 4))
			return -100;
		return -4;
	}
	/* push (or set on an untagged frame): a new 802.1Q tag after the MAC addresses */
	return push_tag(ctx, bpf_htons(0x8100), vid & 0x0fff) ? -100 : 4;
}

/* How much a VLAN action changes a frame's length. */
static __always_inline int vlan_delta(__u32 op, int tagged)
{
	if (op == VX_VLAN_PUSH || (op == VX_VLAN_SET && !tagged))
		return 4;
	if (op == VX_VLAN_POP && tagged)
		return -4;
	return 0;
}

static __always_inline long broadcast(__u32 set)
{
	const __u64 f = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS;
	switch (set) {
	case 0: return bpf_redirect_map(&fan0, 0, f);
	case 1: return bpf_redirect_map(&fan1, 0, f);
	case 2: return bpf_redirect_map(&fan2, 0, f);
	case 3: return bpf_redirect_map(&fan3, 0, f);
	case 4: return bpf_redirect_map(&fan4, 0, f);
	case 5: return bpf_redirect_map(&fan5, 0, f);
	case 6: return bpf_redirect_map(&fan6, 0, f);
	case 7: return bpf_redirect_map(&fan7, 0, f);
	}
	return XDP_ABORTED;
}

static __always_inline int to_userspace(struct xdp_md *ctx, __u32 slot, __u64 bytes)
{
	struct vx_input_stats *s = bpf_map_lookup_elem(&in_stats, &slot);
	if (s) {
		s->userspace_packets++;
		s->userspace_bytes += bytes;
	}
	__u32 q = ctx->rx_queue_index;
	if (q >= VX_MAX_QUEUES)
		return XDP_PASS;
	/* No socket bound there: the stack, where the AF_PACKET ring reads it. */
	return bpf_redirect_map(&xsks, slot * VX_MAX_QUEUES + q, XDP_PASS);
}

/* The IPv4 header checksum of the 20-byte header at ip (its check field 0). */
static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	__u32 s = 0;
	__u16 *w = (__u16 *)ip;
	for (int i = 0; i < 10; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Whether group g's sampling drops this frame (counted: packets and sampled): 1, 0, or -1 when
 * only the userspace tier can decide (flow mode, a frame flow_hash cannot key). Counter mode: one
 * atomic add on the rule's shared count, the frames that take a multiple of N are kept. Flow
 * mode: the flows whose hash is a multiple of N, as vxspan-core's engine keeps. */
static __always_inline int sampled_out(struct xdp_md *ctx, struct vx_group *g, __u64 bytes)
{
	__u32 n = g->sample_n;
	if (!n)
		return 0;
	__u32 slot = g->sample_slot;
	if (slot == VX_SAMPLE_FLOW) {
		__u64 h = 0;
		if (flow_hash(ctx, &h))
			return -1;
		if (h % n == 0)
			return 0;
	} else {
		__u64 *c = bpf_map_lookup_elem(&samples, &slot);
		if (!c)
			return 0;
		__u64 seen = __sync_fetch_and_add(c, 1);
		if (seen % n == 0)
			return 0;
	}
	g->packets++;
	g->bytes += bytes;
	g->sampled_packets++;
	g->sampled_bytes += bytes;
	return 1;
}

static __always_inline void tun_count(__u32 o, int unresolved, __u64 bytes)
{
	struct vx_tun_stats *s = bpf_map_lookup_elem(&tun_stats, &o);
	if (!s)
		return;
	if (unresolved) {
		s->unresolved_packets++;
		s->unresolved_bytes += bytes;
	} else {
		s->error_packets++;
		s->error_bytes += bytes;
	}
}

/* Originates a tunnel copy of the frame at ctx through output o, as vxspan-core's
 * encap::encapsulate does (same headers, same T bit, same VLAN / COS fields): truncation and
 * the VLAN action first, then the output's MTU on the outer IP packet, then the outer headers in
 * front, and a redirect to the next hop's device. `bytes` is the frame's length, `tagged`
 * whether it arrived with a tag. */
static __always_inline int tunnel_send(struct xdp_md *ctx, struct vx_output *out, __u32 o,
				       struct vx_tunnel *t, struct vx_nexthop *nhp, __u32 nk,
				       __u64 bytes, int tagged, __u64 flow)
{
	struct vx_nexthop nh = *nhp;
	__u32 slot = t->slot;
	__u32 *seqp = bpf_map_lookup_elem(&tun_seq, &slot);
	__u32 zero = 0;
	__u64 *clk = bpf_map_lookup_elem(&clock, &zero);
	if (!seqp || !clk) {
		tun_count(o, 0, bytes);
		return XDP_DROP;
	}
	__u32 kind = t->kind;
	/* GRE and ERSPAN headers, or UDP and the VXLAN / Geneve header. */
	__u32 tun_len = kind == VX_TUN_ERSPAN2 ? 16 : kind == VX_TUN_ERSPAN3 ? 20 :
			kind >= VX_TUN_VXLAN ? 16 : (t->flags & VX_TUN_KEY) ? 8 : 4;
	int truncated = 0;
	int d = vlan_delta(out->cfg.vlan_op, tagged);
	if (out->cfg.cut_to && bytes + d > out->cfg.cut_to) {
		int cut = (int)(bytes + d - out->cfg.cut_to);
		if (bpf_xdp_adjust_tail(ctx, -cut) == 0) {
			bytes -= cut;
			truncated = 1;
		}
	}
	int delta = vlan_apply(ctx, out->cfg.vlan_op, out->cfg.vid);
	if (delta == -100)
		delta = 0;
	__u64 inner = bytes + delta;
	/* The outer datagram fits its 16-bit length field, and the output's MTU if it has one. */
	__u64 room = 65535 - 20 - tun_len;
	if (out->cfg.mtu) {
		__u64 m = out->cfg.mtu > 20 + tun_len ? out->cfg.mtu - 20 - tun_len : 0;
		if (m < room)
			room = m;
	}
	/* The route's MTU bounds it as the output's does: the device would drop a bigger one. */
	if (nh.mtu) {
		__u64 m = nh.mtu > 20 + tun_len ? nh.mtu - 20 - tun_len : 0;
		if (m < room)
			room = m;
	}
	if (inner > room) {
		if (!(out->cfg.flags & VX_OUT_TRUNCATE) || room < 14) {
			out->mtu_exceeded_packets++;
			out->mtu_exceeded_bytes += inner;
			return XDP_DROP;
		}
		if (bpf_xdp_adjust_tail(ctx, -(int)(inner - room))) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		inner = room;
		truncated = 1;
	}

	/* VLAN and COS of the copy's outer tag, when its tag stack parses (0 otherwise). A copy
	 * neither cut nor retagged has the stack the caller parsed: its outer TCI is at 14. */
	__u32 vlan = 0, cos = 0;
	if (!truncated && !out->cfg.vlan_op) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u16 *tci = data + 14;
		if (tagged && (void *)(tci + 1) <= data_end) {
			vlan = bpf_ntohs(*tci) & 0x0fff;
			cos = bpf_ntohs(*tci) >> 13;
		}
	} else {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u32 vid, l3;
		int tg;
		if (parse_l2(data, data_end, &vid, &tg, &l3) == 0 && tg) {
			__u16 *tci = data + 14;
			if ((void *)(tci + 1) <= data_end) {
				vlan = bpf_ntohs(*tci) & 0x0fff;
				cos = bpf_ntohs(*tci) >> 13;
			}
		}
	}

	/* VXLAN and Geneve: the UDP source port from the flow hash of the copy as it is sent (its
	 * VLAN action and cut applied), as encap::encapsulate takes it. `flow` is the received
	 * frame's, which the caller computed (so the frame is one flow_hash keys; a cut or a tag does
	 * not make it one it cannot): the copy's is the same unless it was cut (the cut may reach
	 * the ports) or gained a tag (one too many makes its layer 2 unparsable). */
	__u32 sport = 0;
	if (kind >= VX_TUN_VXLAN) {
		__u64 h = flow;
		if ((truncated || d > 0) && flow_hash(ctx, &h)) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		sport = 49152 + (__u32)(h % 16384);
	}

	__u32 hdr = 14 + 20 + tun_len;
	if (bpf_xdp_adjust_head(ctx, -(int)hdr)) {
		tun_count(o, 0, inner);
		return XDP_DROP;
	}
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + 14;
	__u8 *l4 = data + 34;
	if ((void *)(l4 + 4) > data_end) {
		tun_count(o, 0, inner);
		return XDP_DROP;
	}
	__builtin_memcpy(eth->h_dest, nh.dmac, 6);
	__builtin_memcpy(eth->h_source, nh.smac, 6);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = t->dscp << 2;
	ip->tot_len = bpf_htons((__u16)(20 + tun_len + inner));
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = t->ttl;
	ip->protocol = kind >= VX_TUN_VXLAN ? 17 : 47; /* UDP or GRE */
	ip->check = 0;
	ip->saddr = t->src4 ? t->src4 : nh.src4;
	ip->daddr = t->dst4;
	ip->check = ipv4_csum(ip);

	__be32 *w = (__be32 *)l4;
	__u32 word0 = (vlan << 16) | (cos << 13) | ((__u32)truncated << 10) | (t->session & 0x3ff);
	if (kind == VX_TUN_ERSPAN2) {
		if ((void *)(w + 4) > data_end) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		__u32 en = (vlan || cos) ? 3 : 0;
		w[0] = bpf_htonl(0x10000000 | 0x000088be); /* S bit, ERSPAN I/II */
		w[1] = bpf_htonl(__sync_fetch_and_add(seqp, 1));
		w[2] = bpf_htonl((1u << 28) | word0 | (en << 11));
		w[3] = 0;
	} else if (kind == VX_TUN_ERSPAN3) {
		if ((void *)(w + 5) > data_end) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		__u64 now = bpf_ktime_get_boot_ns() + *clk;
		w[0] = bpf_htonl(0x10000000 | 0x000022eb); /* S bit, ERSPAN III */
		w[1] = bpf_htonl(__sync_fetch_and_add(seqp, 1));
		w[2] = bpf_htonl((2u << 28) | word0);
		w[3] = bpf_htonl((__u32)(now / 100));
		w[4] = bpf_htonl(1u << 1); /* granularity 01 (100 ns), ingress, Ethernet */
	} else if (kind >= VX_TUN_VXLAN) {
		if ((void *)(w + 4) > data_end) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		/* UDP (checksum 0, RFC 7348 / 8926), then VXLAN (I flag) or Geneve (no options,
		 * Ethernet payload), each with the VNI. */
		w[0] = bpf_htonl((sport << 16) | t->session);
		w[1] = bpf_htonl((__u32)(tun_len + inner) << 16);
		w[2] = bpf_htonl(kind == VX_TUN_VXLAN ? 0x08000000 : 0x00006558);
		w[3] = bpf_htonl(t->key << 8);
	} else {
		if ((void *)(w + 2) > data_end) {
			tun_count(o, 0, inner);
			return XDP_DROP;
		}
		if (t->flags & VX_TUN_KEY) {
			w[0] = bpf_htonl(0x20000000 | 0x00006558);
			w[1] = bpf_htonl(t->key);
		} else {
			w[0] = bpf_htonl(0x00006558);
		}
	}
	long r = bpf_redirect_map(&tun_dev, nk, 0);
	if (r != XDP_REDIRECT) {
		out->link_down_packets++;
		out->link_down_bytes += hdr + inner;
		return XDP_DROP;
	}
	/* Counted as sent: what the egress device then drops (a full ring) shows in its own
	 * counters only. Devices without XDP transmit are never in nexthops in native mode. */
	out->tx_packets++;
	out->tx_bytes += hdr + inner;
	return XDP_REDIRECT;
}

SEC("xdp.frags")
int vxspan_ingress(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct vx_input *in = bpf_map_lookup_elem(&in_slot, &ifindex);
	if (!in || !in->slot1)
		return XDP_PASS;
	__u32 slot = in->slot1 - 1;
#ifdef VX_VLAN_HINT
	{
		__be16 proto = 0;
		__u16 tci = 0;
		/* A tag the driver took out of the frame goes back in front of it. If it cannot
		 * (no headroom), the frame is treated as it arrived. */
		if (bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci) == 0)
			push_tag(ctx, proto ? proto : bpf_htons(0x8100), tci);
	}
#endif
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = bpf_xdp_get_buff_len(ctx);
	if (in->flags & VX_INPUT_USERSPACE)
		return to_userspace(ctx, slot, bytes);

	__u32 vid, l3;
	int tagged;
	int malformed = parse_l2(data, data_end, &vid, &tagged, &l3);
	if (malformed) {
		struct vx_input_stats *s = bpf_map_lookup_elem(&in_stats, &slot);
		if (s) {
			s->malformed_packets++;
			s->malformed_bytes += bytes;
		}
		return XDP_DROP;
	}

	__u32 key = slot * VX_NVID + vid;
	struct vx_group *g = bpf_map_lookup_elem(&groups, &key);
	if (!g)
		return XDP_DROP; /* the loader sizes the table for every input: cannot happen */
	if (g->action == VX_USERSPACE)
		return to_userspace(ctx, slot, bytes);
	__u32 action = g->action, o = g->arg;
	__u64 flow = 0;
	int have_flow = 0;
	if (action == VX_BALANCE) {
		if (flow_hash(ctx, &flow))
			return to_userspace(ctx, slot, bytes);
		int c = balance_choose(flow, o);
		if (c < 0)
			return XDP_DROP; /* the loader writes every set it refers to: cannot happen */
		o = c;
		have_flow = 1;
		action = VX_REDIRECT;
	}
	if (action == VX_REDIRECT) {
		struct vx_output *out = bpf_map_lookup_elem(&outputs, &o);
		struct vx_tunnel *t = bpf_map_lookup_elem(&tunnels, &o);
		if (out && t && (out->cfg.flags & VX_OUT_TUNNEL)) {
			__u32 ts = t->slot;
			__u32 *gen = bpf_map_lookup_elem(&nh_gen, &ts);
			__u32 nk = ts * 2 + (gen ? (*gen & 1) : 0);
			struct vx_nexthop *nh = bpf_map_lookup_elem(&nexthops, &nk);
			if (!nh || !nh->ifindex) {
				/* The userspace tier sends it; its socket makes the kernel resolve
				 * the next hop, which the nexthops table then learns. */
				tun_count(o, 1, bytes);
				return to_userspace(ctx, slot, bytes);
			}
			int so = sampled_out(ctx, g, bytes);
			if (so < 0)
				return to_userspace(ctx, slot, bytes);
			if (so)
				return XDP_DROP;
			if (!have_flow && t->kind >= VX_TUN_VXLAN && flow_hash(ctx, &flow))
				return to_userspace(ctx, slot, bytes); /* its UDP source port */
			g->packets++;
			g->bytes += bytes;
			return tunnel_send(ctx, out, o, t, nh, nk, bytes, tagged, flow);
		}
	}
	/* A frame without a rule (VX_DROP) is not sampled: the group has no rule to count. */
	if (action != VX_DROP) {
		int so = sampled_out(ctx, g, bytes);
		if (so < 0)
			return to_userspace(ctx, slot, bytes);
		if (so)
			return XDP_DROP;
	}
	g->packets++;
	g->bytes += bytes;
	if (action == VX_REDIRECT) {
		struct vx_output *out = bpf_map_lookup_elem(&outputs, &o);
		if (!out)
			return XDP_DROP;
		int d = vlan_delta(out->cfg.vlan_op, tagged);
		if (out->cfg.cut_to && bytes + d > out->cfg.cut_to) {
			int cut = (int)(bytes + d - out->cfg.cut_to);
			if (bpf_xdp_adjust_tail(ctx, -cut) == 0)
				bytes -= cut;
		}
		if (out->cfg.mtu && bytes - l3 > out->cfg.mtu) {
			if (!(out->cfg.flags & VX_OUT_TRUNCATE)) {
				out->mtu_exceeded_packets++;
				out->mtu_exceeded_bytes += bytes + vlan_delta(out->cfg.vlan_op, tagged);
				return XDP_DROP;
			}
			int cut = (int)(bytes - l3 - out->cfg.mtu);
			if (bpf_xdp_adjust_tail(ctx, -cut) == 0)
				bytes -= cut;
		}
		int delta = vlan_apply(ctx, out->cfg.vlan_op, out->cfg.vid);
		if (delta == -100)
			delta = 0;
		if ((out->cfg.flags & VX_OUT_RATE) && !rate_take(o, bytes + delta)) {
			out->rate_limited_packets++;
			out->rate_limited_bytes += bytes + delta;
			return XDP_DROP;
		}
		long r = bpf_redirect_map(&ports, o, 0);
		if (r != XDP_REDIRECT) {
			out->link_down_packets++;
			out->link_down_bytes += bytes + delta;
			return XDP_DROP;
		}
		out->tx_packets++;
		out->tx_bytes += bytes + delta;
		return XDP_REDIRECT;
	}
	if (action == VX_BROADCAST) {
		__u32 set = g->arg;
		struct vx_fanset *fs = bpf_map_lookup_elem(&fansets, &set);
		long r = broadcast(set);
		if (fs) {
			for (int i = 0; i < VX_MAX_FAN; i++) {
				if (i >= fs->n)
					break;
				__u32 o = fs->outputs[i];
				struct vx_output *out = bpf_map_lookup_elem(&outputs, &o);
				if (!out)
					continue;
				/* vxspan_egress cuts, drops or rewrites this copy as counted here */
				__u64 sent = bytes;
				int d = vlan_delta(out->cfg.vlan_op, tagged);
				if (out->cfg.cut_to && sent + d > out->cfg.cut_to)
					sent = out->cfg.cut_to - d;
				if (out->cfg.mtu && sent - l3 > out->cfg.mtu) {
					if (!(out->cfg.flags & VX_OUT_TRUNCATE)) {
						out->mtu_exceeded_packets++;
						out->mtu_exceeded_bytes += sent + d;
						continue;
					}
					sent = l3 + out->cfg.mtu;
				}
				sent += d;
				if (r == XDP_REDIRECT) {
					out->tx_packets++;
					out->tx_bytes += sent;
				} else {
					out->link_down_packets++;
					out->link_down_bytes += sent;
				}
			}
		}
		return r == XDP_REDIRECT ? XDP_REDIRECT : XDP_DROP;
	}
	g->dropped_packets++;
	g->dropped_bytes += bytes;
	return XDP_DROP;
}

/* Devmap egress program, on the fan-out entries: the truncation, MTU and VLAN action of the output this copy
 * is leaving through (vxspan_ingress counted the copy already, by the same test). */
SEC("xdp.frags/devmap")
int vxspan_egress(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->egress_ifindex;
	struct vx_out_cfg *c = bpf_map_lookup_elem(&egress_cfg, &ifindex);
	if (!c)
		return XDP_PASS;
	if (c->mtu || c->cut_to) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u32 vid, l3;
		int tagged;
		__u64 bytes = bpf_xdp_get_buff_len(ctx);
		if (parse_l2(data, data_end, &vid, &tagged, &l3) == 0) {
			int d = vlan_delta(c->vlan_op, tagged);
			if (c->cut_to && bytes + d > c->cut_to) {
				int cut = (int)(bytes + d - c->cut_to);
				if (bpf_xdp_adjust_tail(ctx, -cut) == 0)
					bytes -= cut;
			}
			if (c->mtu && bytes - l3 > c->mtu) {
				if (!(c->flags & VX_OUT_TRUNCATE))
					return XDP_DROP;
				bpf_xdp_adjust_tail(ctx, -(int)(bytes - l3 - c->mtu));
			}
		}
	}
	vlan_apply(ctx, c->vlan_op, c->vid);
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
