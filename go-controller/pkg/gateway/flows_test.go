package gateway

import (
	"net/netip"
	"strings"
	"testing"
)

// TestDesiredFlows checks the rendered steering flows, with and without the gateway router's patch port, for
// both tunnel types. Port 1 is the NIC, 2 the patch port.
func TestDesiredFlows(t *testing.T) {
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	two := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("172.30.0.0/20")}
	const c = "cookie=0x6b6f766e6777,"
	hostOnly := func(port string) []string {
		return []string{
			c + "table=0,priority=300,in_port=LOCAL,udp,tp_dst=" + port + " actions=output:1",
			c + "table=0,priority=300,in_port=1,udp,tp_dst=" + port + " actions=output:LOCAL",
			c + "table=0,priority=100,in_port=LOCAL actions=output:1",
			c + "table=0,priority=5,in_port=1 actions=output:LOCAL",
		}
	}
	withPatch := []string{
		c + "table=0,priority=110,in_port=2,ip actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:1",
		c + "table=0,priority=100,in_port=2 actions=output:1",
		c + "table=0,priority=50,in_port=1,ip actions=ct(zone=64000,table=1)",
		c + "table=0,priority=10,in_port=1,arp actions=output:LOCAL,output:2",
		c + "table=1,priority=100,ct_state=+est+trk,ct_mark=0x1 actions=output:2",
		c + "table=1,priority=100,ct_state=+rel+trk,ct_mark=0x1 actions=output:2",
		c + "table=1,priority=0 actions=output:LOCAL",
	}
	cidrFlow := func(cidr string) string {
		return c + "table=0,priority=100,in_port=1,ip,nw_dst=" + cidr + " actions=output:2"
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		port  uint16
		cidrs []netip.Prefix
		ports flowPorts
		want  []string
	}{
		{"geneve host only", 6081, cidrs, flowPorts{NIC: 1}, hostOnly("6081")},
		{"vxlan host only", 4789, cidrs, flowPorts{NIC: 1}, hostOnly("4789")},
		{"geneve with patch", 6081, cidrs, flowPorts{NIC: 1, Patch: 2},
			cat(hostOnly("6081"), withPatch, []string{cidrFlow("10.244.0.0/16")})},
		{"vxlan with patch", 4789, cidrs, flowPorts{NIC: 1, Patch: 2},
			cat(hostOnly("4789"), withPatch, []string{cidrFlow("10.244.0.0/16")})},
		{"two cluster CIDRs", 6081, two, flowPorts{NIC: 1, Patch: 2},
			cat(hostOnly("6081"), withPatch, []string{cidrFlow("10.244.0.0/16"), cidrFlow("172.30.0.0/20")})},
		{"no cluster CIDRs", 6081, nil, flowPorts{NIC: 1, Patch: 2}, cat(hostOnly("6081"), withPatch)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{cfg: Config{EncapPort: tc.port, ClusterCIDRs: tc.cidrs}}
			flows := g.desiredFlows(tc.ports)
			if got, want := FlowsString(flows), strings.Join(tc.want, "\n"); got != want {
				t.Fatalf("flows:\n%s\nwant:\n%s", got, want)
			}
			// The switch identifies a flow by table, priority and match: no two may share them, or one would
			// silently overwrite the other.
			seen := map[string]bool{}
			for _, f := range flows {
				if f.Cookie != Cookie {
					t.Errorf("flow %s: cookie 0x%x, want 0x%x", f, f.Cookie, Cookie)
				}
				key := f.String()[:strings.Index(f.String(), " actions=")]
				if seen[key] {
					t.Errorf("two flows with %s", key)
				}
				seen[key] = true
			}
		})
	}
}

// TestDesiredFlowsPortNumbers checks that the flows follow the port numbers they are given.
func TestDesiredFlowsPortNumbers(t *testing.T) {
	g := &Gateway{cfg: Config{EncapPort: 6081, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	flows := FlowsString(g.desiredFlows(flowPorts{NIC: 7, Patch: 42}))
	for _, want := range []string{
		"in_port=7,udp,tp_dst=6081 actions=output:LOCAL",
		"in_port=LOCAL actions=output:7",
		"in_port=42,ip actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:7",
		"in_port=7,arp actions=output:LOCAL,output:42",
		"in_port=7,ip,nw_dst=10.244.0.0/16 actions=output:42",
	} {
		if !strings.Contains(flows, want) {
			t.Errorf("no flow with %q in:\n%s", want, flows)
		}
	}
	if strings.Contains(flows, "in_port=1,") || strings.Contains(flows, "output:2\n") {
		t.Errorf("flows name ports other than 7 and 42:\n%s", flows)
	}
	if n := len(g.desiredFlows(flowPorts{NIC: 7})); n != 4 {
		t.Errorf("without the patch port: %d flows, want 4", n)
	}
}
