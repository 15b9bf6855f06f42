package openflow

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// unhex reads hand-written hex: whitespace is ignored and "#" starts a comment up to the end of the line.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flowModBytes(t *testing.T, f Flow, xid uint32) []byte {
	t.Helper()
	mod, _, err := addFlowMod(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mod.marshal(xid)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The expected bytes below are written from the OpenFlow 1.3 spec and OVS's nx_action_conntrack, field by
// field, not produced by the encoder.
var goldenFlowMods = []struct {
	name string
	flow Flow
	want string
}{{
	name: "commit with mark, then output",
	flow: Flow{Cookie: 0x1234, Priority: 100, Match: Match{InPort: 1, EthType: EthTypeIPv4},
		Actions: []Action{Ct{Commit: true, Zone: 64000, SetMark: u32(1)}, Output(2)}},
	want: `
		04 0e 0088 00000007                   # version 1.3, FLOW_MOD, length 136, xid 7
		0000000000001234 0000000000000000     # cookie, cookie_mask
		00 00 0000 0000 0064                  # table 0, ADD, idle 0, hard 0, priority 100
		ffffffff ffffffff ffffffff 0000 0000  # buffer_id, out_port, out_group, flags, pad
		0001 0012                             # OXM match, length 4+14
		80000004 00000001                     # in_port=1
		80000a02 0800                         # eth_type=0x0800
		000000000000                          # pad to 24
		0004 0040 00000000                    # APPLY_ACTIONS, length 64
		ffff 0028 00002320 0023               # experimenter action, length 40, Nicira, NXAST_CT
		0001 00000000 fa00 ff 000000 0000     # flags commit, zone_src none, zone 64000, no recirc, pad, alg
		0019 0010 0001d604 00000001 00000000  # nested SET_FIELD ct_mark=1, padded to 16
		0000 0010 00000002 ffff 000000000000  # OUTPUT port 2, max_len 0xffff, pad
	`,
}, {
	name: "ct state and mark in table 1",
	flow: Flow{Cookie: 0x1234, Table: 1, Priority: 200,
		Match:   Match{CtState: CtTrk | CtEst, CtStateMask: CtTrk | CtEst, CtMark: 1, CtMarkMask: ^uint32(0)},
		Actions: []Action{Output(1)}},
	want: `
		04 0e 0060 00000007
		0000000000001234 0000000000000000
		01 00 0000 0000 00c8                  # table 1, priority 200
		ffffffff ffffffff ffffffff 0000 0000
		0001 0018                             # length 4+20, no padding needed
		0001d308 00000022 00000022            # NXM_NX_CT_STATE with mask: +trk+est
		0001d604 00000001                     # NXM_NX_CT_MARK, exact
		0004 0018 00000000
		0000 0010 00000001 ffff 000000000000
	`,
}, {
	name: "udp port and masked destination to LOCAL",
	flow: Flow{Cookie: 0x1234, Priority: 300, Match: Match{InPort: 2, EthType: EthTypeIPv4, IPProto: IPProtoUDP,
		TpDst: 6081, IPv4Dst: netip.MustParsePrefix("10.244.1.1/16")}, Actions: []Action{Output(PortLocal)}},
	want: `
		04 0e 0078 00000007
		0000000000001234 0000000000000000
		00 00 0000 0000 012c
		ffffffff ffffffff ffffffff 0000 0000
		0001 0029                             # length 4+37
		80000004 00000002                     # in_port=2
		80000a02 0800                         # eth_type=ip
		80001401 11                           # ip_proto=17
		80001908 0af40000 ffff0000            # ipv4_dst=10.244.0.0/16 (host bits cleared)
		80002002 17c1                         # udp_dst=6081
		00000000000000                        # pad to 48
		0004 0018 00000000
		0000 0010 fffffffe ffff 000000000000  # output:LOCAL
	`,
}, {
	name: "recirculate without commit, tcp to a source host",
	flow: Flow{Cookie: 0x1234, Priority: 1, Match: Match{EthType: EthTypeIPv4, IPProto: IPProtoTCP, TpDst: 443,
		IPv4Src: netip.MustParsePrefix("192.168.1.2/32")}, Actions: []Action{Ct{Zone: 7, Table: u8(1)}}},
	want: `
		04 0e 0070 00000007
		0000000000001234 0000000000000000
		00 00 0000 0000 0001
		ffffffff ffffffff ffffffff 0000 0000
		0001 001d                             # length 4+25
		80000a02 0800
		80001401 06                           # ip_proto=6
		80001604 c0a80102                     # ipv4_src=192.168.1.2, exact
		80001c02 01bb                         # tcp_dst=443
		000000                                # pad to 32
		0004 0020 00000000
		ffff 0018 00002320 0023
		0000 00000000 0007 01 000000 0000     # no commit, zone 7, recirculate to table 1
	`,
}}

func TestFlowModGoldenBytes(t *testing.T) {
	for _, tc := range goldenFlowMods {
		t.Run(tc.name, func(t *testing.T) {
			got, want := flowModBytes(t, tc.flow, 7), unhex(t, tc.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s:\ngot  %x\nwant %x", tc.flow, got, want)
			}
		})
	}
}

func TestDropFlowHasNoInstructions(t *testing.T) {
	got := flowModBytes(t, Flow{Cookie: 1, Priority: 5}, 1)
	want := unhex(t, `
		04 0e 0038 00000001
		0000000000000001 0000000000000000
		00 00 0000 0000 0005
		ffffffff ffffffff ffffffff 0000 0000
		0001 0004 00000000                    # empty match
	`)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestOtherMessagesGoldenBytes(t *testing.T) {
	hello, _ := helloMessage(1)
	stats, _ := flowStatsRequest(5, 0x1234)
	barrier, _ := simpleMessage(typeBarrierRequest, 9, nil)
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"hello", hello, "04 00 0010 00000001  0001 0008 00000010  # VERSIONBITMAP element: 1.3 only"},
		{"flow stats request", stats, `
			04 12 0038 00000005
			0001 0000 00000000                    # OFPMP_FLOW, flags, pad
			ff 000000 ffffffff ffffffff 00000000  # all tables, out_port ANY, out_group ANY, pad
			0000000000001234 ffffffffffffffff     # cookie under a full mask
			0001 0004 00000000                    # match all
		`},
		{"barrier", barrier, "04 14 0008 00000009"},
	} {
		if want := unhex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s:\ngot  %x\nwant %x", tc.name, tc.got, want)
		}
	}
}

func TestInvalidFlowsAreRefusedBeforeSending(t *testing.T) {
	for _, tc := range []struct {
		flow Flow
		want string
	}{
		{Flow{Match: Match{IPProto: IPProtoUDP}}, "needs eth_type"},
		{Flow{Match: Match{EthType: EthTypeIPv4, IPProto: IPProtoICMP, TpDst: 1}}, "tp_dst"},
		{Flow{Match: Match{EthType: EthTypeARP, IPv4Dst: netip.MustParsePrefix("10.0.0.0/8")}}, "nw_dst needs eth_type"},
		{Flow{Match: Match{EthType: EthTypeIPv4, IPv4Src: netip.MustParsePrefix("fd00::/64")}}, "not an IPv4 prefix"},
		{Flow{Actions: []Action{Ct{Table: u8(255)}}}, "table 255"},
		{Flow{Actions: []Action{nil}}, "nil"},
		{Flow{Actions: []Action{Output(0)}}, "port 0"},
		{Flow{Actions: []Action{opaque{"action(type=7)"}}}, "cannot be re-encoded"},
	} {
		if _, _, err := addFlowMod(tc.flow); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.flow, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cookie uint64
		flows  []Flow
		want   string
	}{
		{0, nil, "cookie 0x0"},
		{^uint64(0), nil, "cookie 0xffffffffffffffff"},
		{1, []Flow{{Cookie: 2}}, "has cookie 0x2"},
		{1, []Flow{{Cookie: 1, Priority: 3}, {Cookie: 1, Priority: 3, Actions: []Action{Output(1)}}}, "flows 0 and 1"},
	} {
		if _, _, err := prepare(tc.cookie, tc.flows); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("prepare(0x%x, %v): error %v, want one mentioning %q", tc.cookie, tc.flows, err, tc.want)
		}
	}
}

func TestFlowString(t *testing.T) {
	for _, tc := range []struct {
		flow Flow
		want string
	}{
		{gatewayFlows()[0], "table=0,priority=100,in_port=1,ip actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:2"},
		{gatewayFlows()[1], "table=0,priority=100,in_port=2,ip actions=ct(zone=64000,table=1)"},
		{withCookie(gatewayFlows()[2:3], 0x2a)[0], "cookie=0x2a,table=1,priority=100,ct_state=+est+trk,ct_mark=0x1 actions=output:1"},
		{gatewayFlows()[3], "table=1,priority=50,ct_state=+inv+trk actions=drop"},
		{gatewayFlows()[5], "table=0,priority=120,in_port=2,udp,tp_dst=6081 actions=output:LOCAL"},
		{gatewayFlows()[6], "table=0,priority=110,in_port=2,ip,nw_dst=10.244.0.0/16 actions=output:1"},
		{gatewayFlows()[7], "table=0,priority=10,arp actions=output:LOCAL,output:2"},
		{Flow{Match: Match{EthType: 0x86dd, CtState: CtTrk, CtStateMask: CtTrk | CtNew, CtMark: 2, CtMarkMask: 0xf}},
			"table=0,priority=0,dl_type=0x86dd,ct_state=-new+trk,ct_mark=0x2/0xf actions=drop"},
		{Flow{Match: Match{EthType: EthTypeIPv4, IPProto: 47, IPv4Src: netip.MustParsePrefix("1.2.3.4/32")},
			Actions: []Action{Output(PortNormal), opaque{"action(type=7)"}}},
			"table=0,priority=0,ip,nw_proto=47,nw_src=1.2.3.4 actions=output:NORMAL,action(type=7)"},
	} {
		if got := tc.flow.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
