package topology

import (
	"net/netip"
	"testing"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
)

func TestForNode(t *testing.T) {
	n := ForNode("node1", netip.MustParsePrefix("10.244.3.0/24"))
	for _, tc := range []struct{ what, got, want string }{
		{"switch", n.Switch.Name, "node1"},
		{"router port", n.RouterPort.Name, "rtos-node1"},
		{"router port network", n.RouterPort.Networks[0], "10.244.3.1/24"},
		{"router port mac", n.RouterPort.MAC, "0a:58:0a:f4:03:01"},
		{"switch router port", n.SwitchRouterPort.Name, "stor-node1"},
		{"switch router port type", n.SwitchRouterPort.Type, "router"},
		{"peer", n.SwitchRouterPort.Options["router-port"], "rtos-node1"},
		{"management port", n.ManagementPort.Name, "k8s-node1"},
		{"management address", n.ManagementPort.Addresses[0], "0a:58:0a:f4:03:02 10.244.3.2"},
		{"owner", n.Switch.ExternalIDs[ownership.KeyOwner], "node1"},
		{"owner kind", n.ManagementPort.ExternalIDs[ownership.KeyOwnerKind], "Node"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.what, tc.got, tc.want)
		}
	}
}

func TestForPod(t *testing.T) {
	cfg := config.Default()
	for _, tc := range []struct {
		name, ip, mac, wantAddr string
		mtu                     int
		encap                   string
	}{
		{"derived mac", "10.244.3.7", "", "0a:58:0a:f4:03:07 10.244.3.7", 1400, config.EncapGeneve},
		{"static mac", "10.244.3.8", "0a:00:00:00:00:01", "0a:00:00:00:00:01 10.244.3.8", 1400, config.EncapGeneve},
		{"vxlan mtu", "10.244.3.9", "", "0a:58:0a:f4:03:09 10.244.3.9", 1450, config.EncapVXLAN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.Encap = tc.encap
			subnet := netip.MustParsePrefix("10.244.3.0/24")
			n := PodNetwork(cfg, subnet, netip.MustParseAddr(tc.ip), tc.mac)
			if n.IPs[0].String() != tc.ip+"/24" || n.Gateways[0].String() != "10.244.3.1" || n.MTU != tc.mtu {
				t.Fatalf("network %+v", n)
			}
			if err := n.Validate(); err != nil {
				t.Fatal(err)
			}
			p := ForPod("my-ns", "web-0", "node7", n)
			if p.Name != "my-ns_web-0" || p.Addresses[0] != tc.wantAddr || p.PortSecurity[0] != tc.wantAddr {
				t.Fatalf("port %+v", p)
			}
			if p.ExternalIDs[ownership.KeyOwner] != "my-ns/web-0" || p.ExternalIDs[ownership.KeyOwnerKind] != "Pod" || p.ExternalIDs["pod"] != "web-0" || p.ExternalIDs[KeyNode] != "node7" {
				t.Fatalf("external_ids %v", p.ExternalIDs)
			}
		})
	}
}

func TestForCluster(t *testing.T) {
	c := ForCluster(config.Default())
	if c.Router.Name != ClusterRouter || c.JoinSwitch.Name != JoinSwitch || c.RouterJoinPort.Networks[0] != "100.64.0.1/16" ||
		c.JoinRouterPort.Options["router-port"] != c.RouterJoinPort.Name {
		t.Fatalf("cluster rows %+v %+v %+v", c.Router, c.RouterJoinPort, c.JoinRouterPort)
	}
}

func TestNamespaceAddressSet(t *testing.T) {
	if got := ForNamespace("kube-system", []string{"10.244.0.3"}); got.Name != "kovn_ns_kube_system" || got.ExternalIDs[ownership.KeyOwner] != "kube-system" {
		t.Fatalf("got %+v", got)
	}
}
