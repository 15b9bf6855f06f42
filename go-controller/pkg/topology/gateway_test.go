package topology

import (
	"net/netip"
	"testing"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
)

func TestGatewayJoinIPIsOnePerNodeSubnet(t *testing.T) {
	cfg := config.Default()
	cfg.ClusterCIDRs = []config.ClusterCIDR{
		{CIDR: netip.MustParsePrefix("10.244.0.0/16"), HostPrefixLen: 24},
		{CIDR: netip.MustParsePrefix("10.250.0.0/24"), HostPrefixLen: 26},
	}
	seen := map[netip.Addr]string{ClusterRouterJoinIP(cfg): "cluster router"}
	for _, tc := range []struct{ subnet, want string }{
		{"10.244.0.0/24", "100.64.0.2"},
		{"10.244.1.0/24", "100.64.0.3"},
		{"10.244.255.0/24", "100.64.1.1"},
		{"10.250.0.0/26", "100.64.1.2"},
		{"10.250.0.192/26", "100.64.1.5"},
	} {
		got, err := GatewayJoinIP(cfg, netip.MustParsePrefix(tc.subnet))
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.subnet, got, err, tc.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s: %s also used by %s", tc.subnet, got, other)
		}
		seen[got] = tc.subnet
	}
	for _, bad := range []string{"10.245.0.0/24", "10.244.0.0/25", "10.250.0.0/24"} {
		if _, err := GatewayJoinIP(cfg, netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestPodEgressNATOnlyWhenTheNamespaceDiffersFromTheDefault(t *testing.T) {
	pod, node := netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("192.168.1.11")
	on := config.Default()
	on.Gateway.SNATPortRange = config.PortRange{Min: 20000, Max: 29999}
	if n := PodEgressNAT(on, "a", "p", pod, node, true, "as-uuid"); n != nil {
		t.Errorf("SNAT like the default: %+v", n)
	}
	n := PodEgressNAT(on, "a", "p", pod, node, false, "as-uuid")
	if n == nil || n.LogicalIP != "10.244.0.5" || n.ExternalIP != "10.244.0.5" || n.ExternalPortRange != "" || n.ExemptedExtIPs != nil {
		t.Errorf("SNAT off under an SNAT default: %+v", n)
	}
	off := on
	off.Gateway.EgressSNAT = false
	n = PodEgressNAT(off, "a", "p", pod, node, true, "as-uuid")
	if n == nil || n.ExternalIP != "192.168.1.11" || n.ExternalPortRange != "20000-29999" || n.ExemptedExtIPs == nil || *n.ExemptedExtIPs != "as-uuid" {
		t.Errorf("SNAT on under a no-SNAT default: %+v", n)
	}
	if n.ExternalIDs["kovn.io/owner"] != "a/p" || n.ExternalIDs["kovn.io/owner-kind"] != "Pod" {
		t.Errorf("owner %v", n.ExternalIDs)
	}
}
