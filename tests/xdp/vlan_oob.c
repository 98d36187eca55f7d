// A test fixture, not part of vxspan: a tc egress program that moves a frame's 802.1Q tag out of
// band, as a VLAN sub-interface with tx-vlan-offload on does (this kernel has no 8021q module).
// A frame with one 0x8100 tag leaves with the tag in skb->vlan_tci instead of in its bytes; the
// veth keeps it there, so the peer receives it out of band. Other frames pass unchanged.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("tc")
int vlan_oob(struct __sk_buff *skb)
{
	__u8 hdr[18];

	if (skb->vlan_present || bpf_skb_load_bytes(skb, 0, hdr, sizeof(hdr)) < 0)
		return TC_ACT_OK;
	if (hdr[12] != 0x81 || hdr[13] != 0x00)
		return TC_ACT_OK;
	// Double-tagged frames stay as they are: popping the outer tag would move the inner one.
	if ((hdr[16] == 0x81 || hdr[16] == 0x88 || hdr[16] == 0x91) && (hdr[17] == 0x00 || hdr[17] == 0xa8))
		return TC_ACT_OK;
	__u16 tci = ((__u16)hdr[14] << 8) | hdr[15];
	if (bpf_skb_vlan_pop(skb) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_vlan_push(skb, bpf_htons(0x8100), tci) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
