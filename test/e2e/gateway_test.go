package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// podsOnEveryNode creates one pod per sandbox node in ns and waits for them.
func podsOnEveryNode(t *testing.T, ns string) []pod {
	t.Helper()
	for _, n := range state.Nodes {
		createPod(t, ns, "on-"+n.Name, n.Name)
	}
	var out []pod
	for _, n := range state.Nodes {
		out = append(out, waitRunning(t, ns, "on-"+n.Name))
	}
	return out
}

func nodeIP(node string) string {
	for _, n := range state.Nodes {
		if n.Name == node {
			return n.IP
		}
	}
	return ""
}

// external probes the external host from a pod and returns the client address the host saw.
func external(t *testing.T, from pod, proto string) netip.AddrPort {
	t.Helper()
	port := map[string]string{"tcp": "80", "udp": "81"}[proto]
	var r workload.Reply
	var err error
	for try := 0; try < 3; try++ { // a just-Ready pod may be a moment from programmed on its gateway
		if r, err = probe(from, proto, sandbox.ExternalIP+":"+port); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("%s (%s on %s) cannot reach the external host over %s: %v", from.key(), from.IP, from.Node, proto, err)
	}
	ap, perr := netip.ParseAddrPort(r.Client)
	if r.Name != "external" || perr != nil {
		t.Fatalf("%s: the external host answered %+v", from.key(), r)
	}
	return ap
}

func TestPodsLeaveTheClusterAsTheirNode(t *testing.T) {
	namespace(t, "egress")
	ports, _ := config.ParsePortRange(sandbox.SNATPortRange)
	for _, p := range podsOnEveryNode(t, "egress") {
		for _, proto := range []string{"tcp", "udp"} {
			seen := external(t, p, proto)
			if seen.Addr().String() != nodeIP(p.Node) {
				t.Errorf("%s on %s reached the external host over %s as %s, want its node IP %s", p.key(), p.Node, proto, seen, nodeIP(p.Node))
			}
			if seen.Port() < ports.Min || seen.Port() > ports.Max {
				t.Errorf("%s over %s: SNAT source port %d outside the configured range %s", p.key(), proto, seen.Port(), sandbox.SNATPortRange)
			}
		}
		if err := ping(podNetnsName(t, p), sandbox.ExternalIP); err != nil {
			t.Errorf("%s cannot ping the external host: %v", p.key(), err)
		}
	}
}

func TestPodsReachTheirOwnNodeAndOtherNodes(t *testing.T) {
	namespace(t, "hostpath")
	for _, p := range podsOnEveryNode(t, "hostpath") {
		for _, n := range state.Nodes {
			if err := ping(podNetnsName(t, p), n.IP); err != nil {
				t.Errorf("%s on %s cannot reach node %s (%s): %v", p.key(), p.Node, n.Name, n.IP, err)
			}
		}
	}
}

// routeToPods gives the external host routes to every node subnet through that node, as a routed network would
// have them, until the test ends.
func routeToPods(t *testing.T) {
	t.Helper()
	for _, n := range state.Nodes {
		node, err := kube.CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subnet, ok, err := annotations.ParseNodeSubnet(node.Annotations)
		if err != nil || !ok {
			t.Fatalf("node %s subnet: %v", n.Name, err)
		}
		if out, err := exec.Command("ip", "netns", "exec", "kovnsb-external", "ip", "route", "replace", subnet.String(), "via", n.IP).CombinedOutput(); err != nil {
			t.Fatalf("route to %s: %v %s", subnet, err, out)
		}
		t.Cleanup(func() {
			_ = exec.Command("ip", "netns", "exec", "kovnsb-external", "ip", "route", "del", subnet.String()).Run()
		})
	}
}

func setEgressSNAT(t *testing.T, ns string, value string) {
	t.Helper()
	annotateNamespace(t, ns, annotations.EgressSNAT, &value)
}

// annotateNamespace sets (or with nil removes) one annotation of a namespace.
func annotateNamespace(t *testing.T, ns, key string, value *string) {
	t.Helper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)
	if _, err := kube.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestNamespaceWithoutSNATLeavesWithPodIPs(t *testing.T) {
	namespace(t, "routed")
	setEgressSNAT(t, "routed", "false")
	routeToPods(t)
	pods := podsOnEveryNode(t, "routed")
	for _, p := range pods {
		eventually(t, p.key()+" seen with its own IP", 20*time.Second, func() (bool, string) {
			seen := external(t, p, "tcp")
			return seen.Addr().String() == p.IP, fmt.Sprintf("external host saw %s, want %s", seen, p.IP)
		})
		if seen := external(t, p, "udp"); seen.Addr().String() != p.IP {
			t.Errorf("%s over udp seen as %s, want %s", p.key(), seen, p.IP)
		}
	}
	// Pod to pod across nodes keeps the pod IPs either way.
	if r := mustReach(t, pods[0], pods[1], "tcp"); r.Client[:len(pods[0].IP)+1] != pods[0].IP+":" {
		t.Errorf("pod to pod seen as %s, want %s", r.Client, pods[0].IP)
	}
	// Turning SNAT on applies to the running pods.
	setEgressSNAT(t, "routed", "true")
	for _, p := range pods {
		eventually(t, p.key()+" seen as its node", 20*time.Second, func() (bool, string) {
			seen := external(t, p, "tcp")
			return seen.Addr().String() == nodeIP(p.Node), fmt.Sprintf("external host saw %s, want %s", seen, nodeIP(p.Node))
		})
	}
}

func TestRemovedNodeTakesItsGatewayRows(t *testing.T) {
	ctx := context.Background()
	nb, err := ovndb.ConnectNB(ctx, ovndb.Config{Address: "unix:" + filepath.Join(stateDir, "ovn", "nb.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	gw, _ := annotations.MarshalNodeGateway(annotations.NodeGatewayInfo{ChassisID: "ghost", Bridge: "br-ex",
		MAC: "0a:58:c0:a8:e6:63", IP: netip.MustParsePrefix("192.168.230.99/24"), NextHop: netip.MustParseAddr(sandbox.ExternalIP)})
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ghost", Annotations: map[string]string{annotations.NodeGateway: gw}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	count := func() (int, string) {
		rows, err := nbops.ListOwned(nb, nil)
		if err != nil {
			return -1, err.Error()
		}
		n := 0
		for _, r := range rows {
			if r.ID.Kind == "Node" && r.ID.Key == "ghost" {
				n++
			}
		}
		gr, _ := nbops.Lookup(nb, &nbdb.LogicalRouter{Name: topology.GatewayRouter("ghost")})
		return n, "rows " + strconv.Itoa(n) + ", gateway router present: " + strconv.FormatBool(gr != nil)
	}
	eventually(t, "ghost's gateway router", 20*time.Second, func() (bool, string) {
		gr, _ := nbops.Lookup(nb, &nbdb.LogicalRouter{Name: topology.GatewayRouter("ghost")})
		n, why := count()
		return gr != nil && n >= 14, why
	})
	if err := kube.CoreV1().Nodes().Delete(ctx, "ghost", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ghost's rows gone", 20*time.Second, func() (bool, string) {
		n, why := count()
		return n == 0, why
	})
}

func TestExemptDestinationsSeePodIPs(t *testing.T) {
	namespace(t, "exempt")
	routeToPods(t)
	for _, p := range podsOnEveryNode(t, "exempt") {
		r, err := probe(p, "tcp", sandbox.NoSNATIP+":80")
		if err != nil {
			t.Fatalf("%s cannot reach %s: %v", p.key(), sandbox.NoSNATIP, err)
		}
		if ap, _ := netip.ParseAddrPort(r.Client); ap.Addr().String() != p.IP {
			t.Errorf("%s reached %s (in --no-snat-destinations %s) as %s, want its own IP %s", p.key(), sandbox.NoSNATIP,
				sandbox.NoSNATDestinations, r.Client, p.IP)
		}
		if seen := external(t, p, "tcp"); seen.Addr().String() != nodeIP(p.Node) {
			t.Errorf("%s reached %s as %s, want its node IP", p.key(), sandbox.ExternalIP, seen)
		}
	}
}
