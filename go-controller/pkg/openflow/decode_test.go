package openflow

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
)

// Flow stats entries as a switch sends them (ofp_flow_stats: 48 fixed bytes, match, instructions).
const (
	statsCtEstablished = `
		0060 01 00 00000005 00000000          # length 96, table 1, pad, duration 5s
		0064 0000 0000 0000 00000000          # priority 100, idle, hard, flags, pad
		0000000000001234                      # cookie
		000000000000000a 0000000000000400     # packets, bytes
		0001 0018 0001d308 00000022 00000022 0001d604 00000001  # ct_state=+est+trk,ct_mark=1
		0004 0018 00000000 0000 0010 00000001 0000 000000000000 # output:1 (max_len 0)
	`
	statsCommit = `
		0088 00 00 00000005 00000000
		0064 0000 0000 0000 00000000
		0000000000001234
		0000000000000000 0000000000000000
		0001 0012 80000004 00000001 80000a02 0800 000000000000  # in_port=1,ip
		0004 0040 00000000
		ffff 0028 00002320 0023 0001 00000000 fa00 ff 000000 0000
		0019 0010 0001d604 00000001 00000000
		0000 0010 00000002 ffff 000000000000
	`
	// eth_src (OXM field 4) has no place in Match; goto_table is not decoded.
	statsUnknown = `
		0050 00 00 00000005 00000000
		0007 0000 0000 0000 00000000
		0000000000001234
		0000000000000000 0000000000000000
		0001 0014 80000806 0a580a000001 80000a02 0800 00000000  # dl_src=0a:58:0a:00:00:01,ip
		0001 0008 02 000000                                     # goto_table:2
	`
	// 10.0.0.0/255.0.255.0 is not a prefix.
	statsOddMask = `
		0050 00 00 00000005 00000000
		0007 0000 0000 0000 00000000
		0000000000001234
		0000000000000000 0000000000000000
		0001 001b 80000a02 0800 80001908 0a000000 ff00ff00  # ip,nw_dst=10.0.0.0/255.0.255.0
		80001401 11                                         # udp
		0000000000
	`
)

func TestParseFlowStats(t *testing.T) {
	body := unhex(t, statsCtEstablished+statsCommit+statsUnknown+statsOddMask)
	got, err := parseFlowStats(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []installed{
		{flow: withCookie(gatewayFlows()[2:3], 0x1234)[0], exact: true},
		{flow: withCookie(gatewayFlows()[0:1], 0x1234)[0], exact: true},
		{flow: Flow{Priority: 7, Cookie: 0x1234, Match: Match{EthType: EthTypeIPv4},
			Actions: []Action{opaque{"instruction(type=1)"}}}},
		{flow: Flow{Priority: 7, Cookie: 0x1234, Match: Match{EthType: EthTypeIPv4, IPProto: IPProtoUDP}}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	matches := [][]byte{body[48:72], body[96+48 : 96+72], body[232+48 : 232+72], body[312+48 : 312+80]}
	for i := range want {
		if got[i].exact != want[i].exact || !reflect.DeepEqual(got[i].flow, want[i].flow) {
			t.Errorf("entry %d: got %s (exact %v), want %s (exact %v)", i, got[i].flow, got[i].exact, want[i].flow, want[i].exact)
		}
		if !bytes.Equal(got[i].match, matches[i]) {
			t.Errorf("entry %d: raw match %x, want %x", i, got[i].match, matches[i])
		}
	}
}

func TestParseFlowStatsRejectsTruncatedEntries(t *testing.T) {
	body := unhex(t, statsCommit)
	for _, b := range [][]byte{body[:40], body[:len(body)-8], append([]byte{0, 0x10}, body[2:]...)} {
		if _, err := parseFlowStats(b); err == nil {
			t.Errorf("parseFlowStats(%x) succeeded", b)
		}
	}
}

// Whatever the encoder sends, the decoder reads back as the same normalized Match.
func TestMatchRoundTrip(t *testing.T) {
	for _, m := range []Match{
		{},
		{InPort: PortLocal, EthType: EthTypeARP},
		{EthType: EthTypeIPv4, IPProto: IPProtoTCP, TpDst: 80, IPv4Src: netip.MustParsePrefix("10.1.2.3/24"),
			IPv4Dst: netip.MustParsePrefix("0.0.0.0/0")},
		{EthType: EthTypeIPv4, IPv4Dst: netip.MustParsePrefix("10.1.2.3/32"), CtState: CtNew | CtEst, CtStateMask: CtNew,
			CtMark: 0xff, CtMarkMask: 0xf0},
	} {
		norm, err := m.normalize()
		if err != nil {
			t.Fatal(err)
		}
		got, exact, n, err := parseMatch(appendMatch(nil, norm))
		if err != nil || !exact || n%8 != 0 || got != norm {
			t.Errorf("%s: read back %s (exact %v, %d bytes, %v)", norm, got, exact, n, err)
		}
	}
}
