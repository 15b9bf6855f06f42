package controller

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// refRow looks up a row another row refers to. The tests read NB's cache while the controller writes, so the
// row may be gone already (or not there yet): then it records a line no expectation holds, and the caller's wait
// tries again.
func refRow[T model.Model](nb client.Client, m T, lines *[]string) (T, bool) {
	row, err := nbops.Lookup(nb, m)
	if err != nil || reflect.ValueOf(row).IsNil() {
		*lines = append(*lines, fmt.Sprintf("missing %T %v", m, err))
		return row, false
	}
	return row, true
}

// gatewayDump renders the NB rows of a node's gateway (and the cluster router rows pointing at it) as sorted
// lines, so a test can compare them exactly.
func gatewayDump(nb client.Client, node string) string {
	var lines []string
	gr, _ := nbops.Lookup(nb, &nbdb.LogicalRouter{Name: topology.GatewayRouter(node)})
	if gr != nil {
		lines = append(lines, fmt.Sprintf("router %s chassis=%s learn=%s dynamic=%s", gr.Name, gr.Options["chassis"],
			gr.Options["always_learn_from_arp_request"], gr.Options["dynamic_neigh_routers"]))
		for _, u := range gr.Ports {
			p, ok := refRow(nb, &nbdb.LogicalRouterPort{UUID: u}, &lines)
			if !ok {
				continue
			}
			lines = append(lines, fmt.Sprintf("router port %s %s %v", p.Name, p.MAC, p.Networks))
		}
		for _, u := range gr.StaticRoutes {
			r, ok := refRow(nb, &nbdb.LogicalRouterStaticRoute{UUID: u}, &lines)
			if !ok {
				continue
			}
			out := ""
			if r.OutputPort != nil {
				out = " dev " + *r.OutputPort
			}
			lines = append(lines, fmt.Sprintf("gw route %s via %s%s", r.IPPrefix, r.Nexthop, out))
		}
		for _, u := range gr.Nat {
			n, ok := refRow(nb, &nbdb.NAT{UUID: u}, &lines)
			if !ok {
				continue
			}
			exempt := ""
			if n.ExemptedExtIPs != nil {
				as, ok := refRow(nb, &nbdb.AddressSet{UUID: *n.ExemptedExtIPs}, &lines)
				if !ok {
					continue
				}
				exempt = fmt.Sprintf(" exempt %v", as.Addresses)
			}
			lines = append(lines, fmt.Sprintf("nat %s %s -> %s ports %q%s owner %s", n.Type, n.LogicalIP, n.ExternalIP,
				n.ExternalPortRange, exempt, n.ExternalIDs["kovn.io/owner"]))
		}
	}
	if sw, _ := nbops.Lookup(nb, &nbdb.LogicalSwitch{Name: topology.ExternalSwitch(node)}); sw != nil {
		for _, u := range sw.Ports {
			p, ok := refRow(nb, &nbdb.LogicalSwitchPort{UUID: u}, &lines)
			if !ok {
				continue
			}
			lines = append(lines, fmt.Sprintf("external switch port %s type=%s %v %v", p.Name, p.Type, p.Addresses, p.Options))
		}
	}
	join, _ := nbops.Lookup(nb, &nbdb.LogicalSwitch{Name: topology.JoinSwitch}) // made at start, never removed
	for _, u := range join.Ports {
		if p, ok := refRow(nb, &nbdb.LogicalSwitchPort{UUID: u}, &lines); ok && p.ExternalIDs[topology.KeyNode] == node {
			lines = append(lines, fmt.Sprintf("join port %s -> %s", p.Name, p.Options["router-port"]))
		}
	}
	cr, _ := nbops.Lookup(nb, &nbdb.LogicalRouter{Name: topology.ClusterRouter}) // likewise
	for _, u := range cr.StaticRoutes {
		if r, ok := refRow(nb, &nbdb.LogicalRouterStaticRoute{UUID: u}, &lines); ok && r.ExternalIDs[topology.KeyNode] == node {
			policy := "dst-ip"
			if r.Policy != nil {
				policy = *r.Policy
			}
			lines = append(lines, fmt.Sprintf("cluster route %s %s via %s", policy, r.IPPrefix, r.Nexthop))
		}
	}
	for _, u := range cr.Policies {
		if p, ok := refRow(nb, &nbdb.LogicalRouterPolicy{UUID: u}, &lines); ok && p.ExternalIDs[topology.KeyNode] == node {
			lines = append(lines, fmt.Sprintf("cluster policy %d %s %s %v", p.Priority, p.Match, p.Action, p.Nexthops))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func gatewayAnnotation(t *testing.T, g annotations.NodeGatewayInfo) map[string]string {
	v, err := annotations.MarshalNodeGateway(g)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{annotations.NodeGateway: v}
}

func (e *env) annotate(kind, ns, name, key string, value *string) {
	e.t.Helper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v))
	ctx := context.Background()
	var err error
	switch kind {
	case "node":
		_, err = e.kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	case "namespace":
		_, err = e.kube.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitDump(node, want string) {
	e.t.Helper()
	want = strings.TrimSpace(want)
	e.eventually("gateway rows of "+node, func() (bool, string) {
		got := gatewayDump(e.nb, node)
		return got == want, "got:\n" + got + "\nwant:\n" + want
	})
}

func TestGatewayRowsFollowTheNodeAndNamespaces(t *testing.T) {
	cfg := config.Default()
	cfg.Gateway.NoSNATDestinations = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
	cfg.Gateway.SNATPortRange = config.PortRange{Min: 20000, Max: 29999}
	e := newEnv(t, cfg)
	c, _ := e.startController()
	gw := annotations.NodeGatewayInfo{ChassisID: "chassis-gw1", Bridge: "br-ex", MAC: "0a:00:00:00:01:0b",
		IP: netip.MustParsePrefix("192.168.1.11/24"), NextHop: netip.MustParseAddr("192.168.1.1")}
	e.createNode("gw1", gatewayAnnotation(t, gw))
	subnet := e.nodeSubnet("gw1")
	if subnet.String() != "10.244.0.0/24" {
		t.Fatalf("subnet %s", subnet)
	}
	full := `
cluster policy 1004 inport == "rtos-gw1" && ip4.dst == 192.168.1.11 reroute [10.244.0.2]
cluster route dst-ip 100.64.0.2/32 via 100.64.0.2
cluster route src-ip 10.244.0.0/24 via 100.64.0.2
external switch port etor-GR_gw1 type=router [router] map[router-port:rtoe-GR_gw1]
external switch port lnet_gw1 type=localnet [unknown] map[network_name:physnet]
gw route 0.0.0.0/0 via 192.168.1.1 dev rtoe-GR_gw1
gw route 10.244.0.0/16 via 100.64.0.1
join port jtor-GR_gw1 -> rtoj-GR_gw1
nat snat 10.244.0.0/24 -> 192.168.1.11 ports "20000-29999" exempt [172.16.0.0/12] owner gw1
router GR_gw1 chassis=chassis-gw1 learn=false dynamic=true
router port rtoe-GR_gw1 0a:00:00:00:01:0b [192.168.1.11/24]
router port rtoj-GR_gw1 0a:58:64:40:00:02 [100.64.0.2/16]`
	e.waitDump("gw1", full)
	e.waitIdle(c)

	// Re-applying the same node changes nothing.
	node, _ := e.kube.CoreV1().Nodes().Get(context.Background(), "gw1", metav1.GetOptions{})
	ops, err := c.gatewayOps("gw1", subnet, &gw)
	if err != nil || len(ops) != 0 {
		t.Fatalf("re-apply of an unchanged gateway: %d ops (%v): %v", len(ops), err, ops)
	}
	before := c.Stats().Transactions.Load()
	if err := c.syncNode(context.Background(), node.Name); err != nil || c.Stats().Transactions.Load() != before {
		t.Fatalf("syncNode of an unchanged node: err %v, %d transactions", err, c.Stats().Transactions.Load()-before)
	}

	// A namespace that turns SNAT off: its pods get an identity NAT row; the change applies to running pods.
	e.createNamespace("routed")
	e.createNamespace("plain")
	e.createPod("routed", "r1", "gw1")
	e.createPod("plain", "p1", "gw1")
	r1, p1 := e.podIP("routed", "r1"), e.podIP("plain", "p1")
	e.waitIdle(c)
	e.waitDump("gw1", full)
	off, on := "false", "true"
	e.annotate("namespace", "", "routed", annotations.EgressSNAT, &off)
	withR1 := full + fmt.Sprintf("\nnat snat %s -> %s ports \"\" owner routed/r1", r1, r1)
	e.waitDump("gw1", sortLines(withR1))
	e.annotate("namespace", "", "routed", annotations.EgressSNAT, &on)
	e.waitDump("gw1", full)
	e.annotate("namespace", "", "routed", annotations.EgressSNAT, &off)
	e.waitDump("gw1", sortLines(withR1))
	bad := "sometimes"
	e.annotate("namespace", "", "plain", annotations.EgressSNAT, &bad)
	e.waitEvent("", "plain", "InvalidEgressAnnotation")
	e.waitIdle(c)
	e.waitDump("gw1", sortLines(withR1)) // p1 keeps the default
	_ = p1
	e.deletePod("routed", "r1")
	e.waitDump("gw1", full)

	// A malformed gateway annotation leaves the rows alone and says why.
	broken := `{"chassisID":"x"`
	e.annotate("node", "", "gw1", annotations.NodeGateway, &broken)
	e.waitEvent("", "gw1", "InvalidGatewayAnnotation")
	e.waitIdle(c)
	e.waitDump("gw1", full)

	// No next hop: no default route. No annotation: no gateway at all.
	gw.NextHop = netip.Addr{}
	v, _ := annotations.MarshalNodeGateway(gw)
	e.annotate("node", "", "gw1", annotations.NodeGateway, &v)
	e.waitDump("gw1", strings.ReplaceAll(full, "gw route 0.0.0.0/0 via 192.168.1.1 dev rtoe-GR_gw1\n", ""))
	e.annotate("node", "", "gw1", annotations.NodeGateway, nil)
	e.waitDump("gw1", "")
	e.waitIdle(c)
	e.assertNoGatewayRows("gw1")

	// Back, then the node goes away: everything of its gateway goes with it.
	v, _ = annotations.MarshalNodeGateway(annotations.NodeGatewayInfo{ChassisID: "chassis-gw1", Bridge: "br-ex",
		MAC: "0a:00:00:00:01:0b", IP: netip.MustParsePrefix("192.168.1.11/24")})
	e.annotate("node", "", "gw1", annotations.NodeGateway, &v)
	e.eventually("gateway back", func() (bool, string) { return strings.Contains(gatewayDump(e.nb, "gw1"), "router GR_gw1"), "" })
	e.deleteNode("gw1")
	e.waitDump("gw1", "")
	e.waitIdle(c)
	e.assertNoGatewayRows("gw1")
}

// assertNoGatewayRows checks that no row of any gateway table mentions the node.
func (e *env) assertNoGatewayRows(node string) {
	e.t.Helper()
	rows, err := nbops.ListOwned(e.nb, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rows {
		if strings.HasPrefix(r.ID.Name, gatewayRowPrefix) && r.ID.Key == node {
			e.t.Errorf("left behind: %s %s", r.Table, r.ID)
		}
	}
	var nats []*nbdb.NAT
	_ = e.nb.List(context.Background(), &nats)
	if len(nats) != 0 {
		e.t.Errorf("%d NAT rows left", len(nats))
	}
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
