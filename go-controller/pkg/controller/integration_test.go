package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// podIP waits for the pod's network annotation and returns its IP.
func (e *env) podIP(ns, name string) netip.Addr {
	e.t.Helper()
	var ip netip.Addr
	e.eventually("network annotation on "+ns+"/"+name, func() (bool, string) {
		n, ok, err := annotations.ParsePodNetwork(e.pod(ns, name).Annotations)
		if !ok || err != nil {
			return false, fmt.Sprintf("ok=%v err=%v", ok, err)
		}
		ip = n.IPs[0].Addr()
		return true, ""
	})
	return ip
}

// portOnSwitch reports whether the pod's LSP exists with ip and is a port of the node's switch.
func (e *env) portOnSwitch(ns, name, node string, ip netip.Addr) (bool, string) {
	lsp, err := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(ns, name)})
	if err != nil || lsp == nil {
		return false, fmt.Sprintf("no LSP (%v)", err)
	}
	if !slices.Contains(lspIPs(lsp), ip.String()) {
		return false, fmt.Sprintf("LSP addresses %v", lsp.Addresses)
	}
	sw, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: node})
	if sw == nil || !slices.Contains(sw.Ports, lsp.UUID) {
		return false, "LSP not on switch " + node
	}
	return true, ""
}

func (e *env) addressSet(ns string) []string {
	as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: topology.NamespaceAddressSet(ns)})
	if as == nil {
		return nil
	}
	out := slices.Clone(as.Addresses)
	slices.Sort(out)
	return out
}

func sortedIPs(ips ...netip.Addr) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func (e *env) nodeSubnet(name string) netip.Prefix {
	e.t.Helper()
	var subnet netip.Prefix
	e.eventually("subnet of node "+name, func() (bool, string) {
		n, err := e.kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		p, ok, err := annotations.ParseNodeSubnet(n.Annotations)
		subnet = p
		return ok && err == nil, fmt.Sprint(n.Annotations)
	})
	return subnet
}

func TestNodesNamespacesAndPodsBecomeNB(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("web")
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	e.createPod("web", "p1", "n1")
	e.createPod("web", "p2", "n2")
	e.createPod("web", "host", "n1", hostNetwork)
	e.createPod("web", "pending", "")

	s1, s2 := e.nodeSubnet("n1"), e.nodeSubnet("n2")
	if s1 == s2 || s1.Bits() != 24 {
		t.Fatalf("node subnets %s %s", s1, s2)
	}
	e.eventually("node rows", func() (bool, string) {
		for _, n := range []string{"n1", "n2"} {
			sw, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: n})
			lrp, _ := nbops.Lookup(e.nb, &nbdb.LogicalRouterPort{Name: topology.RouterToSwitchPort(n)})
			mgmt, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.ManagementPort(n)})
			if sw == nil || lrp == nil || mgmt == nil || len(sw.Ports) < 2 {
				return false, fmt.Sprintf("node %s: switch %v router port %v management %v", n, sw != nil, lrp != nil, mgmt != nil)
			}
		}
		return true, ""
	})
	ip1, ip2 := e.podIP("web", "p1"), e.podIP("web", "p2")
	if !s1.Contains(ip1) || !s2.Contains(ip2) {
		t.Fatalf("pod IPs %s %s outside their node subnets %s %s", ip1, ip2, s1, s2)
	}
	e.eventually("pod ports", func() (bool, string) {
		if ok, why := e.portOnSwitch("web", "p1", "n1", ip1); !ok {
			return false, why
		}
		return e.portOnSwitch("web", "p2", "n2", ip2)
	})
	e.eventually("namespace address set", func() (bool, string) {
		got := e.addressSet("web")
		return slices.Equal(got, sortedIPs(ip1, ip2)), fmt.Sprint(got)
	})
	e.waitIdle(c)
	for _, name := range []string{"host", "pending"} {
		if _, ok := e.pod("web", name).Annotations[annotations.PodNetworks]; ok {
			t.Errorf("pod %s got a network", name)
		}
		if lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort("web", name)}); lsp != nil {
			t.Errorf("pod %s got a port", name)
		}
	}

	// A finished pod gives its IP back, and the next pod on the node gets it.
	e.setPodPhase("web", "p1", corev1.PodSucceeded)
	e.eventually("finished pod's port removed", func() (bool, string) {
		lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort("web", "p1")})
		return lsp == nil, "port still there"
	})
	e.createPod("web", "p3", "n1")
	if ip3 := e.podIP("web", "p3"); ip3 != ip1 {
		t.Fatalf("freed IP %s not reused: new pod got %s", ip1, ip3)
	}
	// A deleted pod loses its port and its address-set entry.
	e.deletePod("web", "p2")
	e.eventually("deleted pod cleaned up", func() (bool, string) {
		lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort("web", "p2")})
		return lsp == nil && !slices.Contains(e.addressSet("web"), ip2.String()), fmt.Sprint(e.addressSet("web"))
	})
	// A deleted node loses every row it owned, its pods' IPs leave the address sets, its subnet goes back.
	e.createPod("web", "p4", "n2")
	ip4 := e.podIP("web", "p4")
	e.eventually("p4 in the address set", func() (bool, string) {
		return slices.Contains(e.addressSet("web"), ip4.String()), fmt.Sprint(e.addressSet("web"))
	})
	e.deleteNode("n2")
	e.eventually("deleted node cleaned up", func() (bool, string) {
		sw, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: "n2"})
		lrp, _ := nbops.Lookup(e.nb, &nbdb.LogicalRouterPort{Name: topology.RouterToSwitchPort("n2")})
		return sw == nil && lrp == nil && !slices.Contains(e.addressSet("web"), ip4.String()),
			fmt.Sprintf("switch %v router port %v address set %v", sw != nil, lrp != nil, e.addressSet("web"))
	})
	e.deletePod("web", "p4")
	e.createNode("n3", nil)
	if s3 := e.nodeSubnet("n3"); s3 != s2 {
		t.Fatalf("freed subnet %s not reused: n3 got %s", s2, s3)
	}
	// A deleted namespace loses its address set.
	e.deletePod("web", "p3")
	e.deletePod("web", "host")
	e.deletePod("web", "pending")
	e.deleteNamespace("web")
	e.eventually("namespace address set removed", func() (bool, string) {
		as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: topology.NamespaceAddressSet("web")})
		return as == nil, "address set still there"
	})
}

func TestBadInputGetsEventsAndOthersKeepWorking(t *testing.T) {
	cfg := config.Default()
	// Two node subnets of 8 addresses: 4 pod IPs each (.3 to .6).
	cfg.ClusterCIDRs = []config.ClusterCIDR{{CIDR: netip.MustParsePrefix("10.244.0.0/28"), HostPrefixLen: 29}}
	e := newEnv(t, cfg)
	e.startController()
	e.createNamespace("bad")
	e.createNode("n1", nil)
	e.createNode("n2", map[string]string{annotations.NodeSubnets: "not json"})
	e.createNode("n3", nil)

	e.nodeSubnet("n1")
	e.nodeSubnet("n2") // the malformed annotation is replaced
	e.waitEvent("", "n2", "InvalidSubnetAnnotation")
	if msg := e.waitEvent("", "n3", "NoSubnetLeft"); !strings.Contains(msg, "10.244.0.0/28") {
		t.Errorf("NoSubnetLeft message does not name the cluster CIDR: %q", msg)
	}
	s1 := e.nodeSubnet("n1")

	e.createPod("bad", "malformed", "n1", withAnnotations(map[string]string{annotations.PodNetworks: "{"}))
	e.createPod("bad", "outside", "n1", withAnnotations(map[string]string{annotations.RequestedIP: "10.99.0.9"}))
	e.createPod("bad", "gateway", "n1", withAnnotations(map[string]string{annotations.RequestedIP: s1.Addr().Next().String()}))
	e.createPod("bad", "garbage", "n1", withAnnotations(map[string]string{annotations.RequestedIP: "ten"}))
	static := s1.Addr().Next().Next().Next().Next().Next().Next() // .6, the last pod address
	e.createPod("bad", "static", "n1", withAnnotations(map[string]string{
		annotations.RequestedIP: static.String(), annotations.RequestedMAC: "0a:00:00:00:00:42"}))

	e.waitEvent("bad", "malformed", "InvalidNetworkAnnotation")
	ipMalformed := e.podIP("bad", "malformed")
	if msg := e.waitEvent("bad", "outside", "StaticIPRefused"); !strings.Contains(msg, "10.99.0.9") {
		t.Errorf("StaticIPRefused message does not name the IP: %q", msg)
	}
	e.waitEvent("bad", "gateway", "StaticIPRefused")
	e.waitEvent("bad", "garbage", "InvalidStaticAddress")
	if ip := e.podIP("bad", "static"); ip != static {
		t.Fatalf("static pod got %s, want %s", ip, static)
	}
	if n, _, _ := annotations.ParsePodNetwork(e.pod("bad", "static").Annotations); n.MAC != "0a:00:00:00:00:42" {
		t.Fatalf("static MAC not honoured: %s", n.MAC)
	}
	// .3 (malformed) and .6 (static) are taken: two more fit, the third finds the subnet exhausted.
	e.createPod("bad", "f1", "n1")
	e.createPod("bad", "f2", "n1")
	e.podIP("bad", "f1")
	e.podIP("bad", "f2")
	e.createPod("bad", "f3", "n1")
	e.waitEvent("bad", "f3", "SubnetExhausted")
	// Pods on a node without a subnet wait; everything else kept working.
	e.createPod("bad", "on-n3", "n3")
	for _, p := range []string{"malformed", "static", "f1", "f2"} {
		ip := e.podIP("bad", p)
		e.eventually("port of "+p, func() (bool, string) { return e.portOnSwitch("bad", p, "n1", ip) })
	}
	if ipMalformed != s1.Addr().Next().Next().Next() {
		t.Errorf("malformed pod got %s", ipMalformed)
	}
	for _, p := range []string{"outside", "gateway", "garbage", "f3", "on-n3"} {
		if lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort("bad", p)}); lsp != nil {
			t.Errorf("pod %s got a port", p)
		}
	}
	// Freeing an address lets the waiting pod in (its retry is rate-limited, not dropped).
	e.deletePod("bad", "f1")
	e.podIP("bad", "f3")
}
