package annotations

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNodeGatewayRoundTripAndErrors(t *testing.T) {
	g := NodeGatewayInfo{ChassisID: "node1", Bridge: "br-ex", MAC: "0A:58:C0:A8:E6:0B", IP: netip.MustParsePrefix("192.168.230.11/24"),
		NextHop: netip.MustParseAddr("192.168.230.254")}
	v, err := MarshalNodeGateway(g)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := ParseNodeGateway(map[string]string{NodeGateway: v})
	if err != nil || !ok || got.MAC != "0a:58:c0:a8:e6:0b" || got.IP != g.IP || got.NextHop != g.NextHop {
		t.Fatalf("round trip: %+v %v %v", got, ok, err)
	}
	g.NextHop = netip.Addr{}
	v, _ = MarshalNodeGateway(g)
	if strings.Contains(v, "nextHop") {
		t.Errorf("unset next hop written: %s", v)
	}
	if _, ok, err := ParseNodeGateway(nil); ok || err != nil {
		t.Errorf("absent: %v %v", ok, err)
	}
	for _, bad := range []string{
		`{`,
		`{"chassisID":"n","bridge":"br-ex","mac":"01:00:00:00:00:01","ip":"192.168.1.1/24"}`,
		`{"chassisID":"n","bridge":"br-ex","mac":"0a:00:00:00:00:01","ip":"192.168.1.1"}`,
		`{"chassisID":"n","bridge":"br-ex","mac":"0a:00:00:00:00:01","ip":"fd00::1/64"}`,
		`{"bridge":"br-ex","mac":"0a:00:00:00:00:01","ip":"192.168.1.1/24"}`,
		`{"chassisID":"n","bridge":"br-ex","mac":"0a:00:00:00:00:01","ip":"192.168.1.1/24","nextHop":"192.168.1.1"}`,
	} {
		if _, ok, err := ParseNodeGateway(map[string]string{NodeGateway: bad}); ok || err == nil || !strings.Contains(err.Error(), NodeGateway) {
			t.Errorf("%s: ok=%v err=%v", bad, ok, err)
		}
	}
}

func TestParseEgressSNAT(t *testing.T) {
	for in, want := range map[string]bool{"true": true, "false": false, " False ": false, "1": true} {
		got, set, err := ParseEgressSNAT(map[string]string{EgressSNAT: in})
		if err != nil || !set || got != want {
			t.Errorf("%q: %v %v %v", in, got, set, err)
		}
	}
	if _, set, err := ParseEgressSNAT(map[string]string{}); set || err != nil {
		t.Errorf("absent: %v %v", set, err)
	}
	if _, _, err := ParseEgressSNAT(map[string]string{EgressSNAT: "off"}); err == nil {
		t.Error("\"off\" accepted")
	}
}
