package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// TestPolicyRestartForgetsPodsDeletedWhileDown: a pod deleted while no controller runs must not stay in the
// peer address sets (its IP goes to the next pod, which the policies would then treat as the old one).
func TestPolicyRestartForgetsPodsDeletedWhileDown(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	e.npCreate(allowWeb())
	e.waitPolicyRows("allow-web's rows", f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"),
		f.ip("web/db-1"), npLogging{}, npLogging{}))
	e.settle(f.c)
	f.stop()
	e.deletePod("web", "client-1")
	e.eventually("client-1 gone", func() (bool, string) {
		_, err := e.kube.CoreV1().Pods("web").Get(context.Background(), "client-1", metav1.GetOptions{})
		return err != nil, fmt.Sprint(err)
	})
	f.c, f.stop = e.startController()
	e.settle(f.c)
	e.waitPolicyRows("client-1's IP gone from the client set", f.allowWebRows([]string{"web_web-1", "web_web-2"}, nil, f.ip("mon/prom-1"),
		f.ip("web/db-1"), npLogging{}, npLogging{}))
}

// TestPolicyIPv6IPBlock: a policy with an IPv6 ipBlock gets a Warning Event and its other rules still apply.
func TestPolicyIPv6IPBlock(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	e.npCreate(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "v6"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", "web"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64"}}}},
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("role", "client")}, {IPBlock: &networkingv1.IPBlock{CIDR: "2001:db8::/32"}}},
					Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, 80)}},
			},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}},
		}})
	msg := e.waitEvent("web", "v6", "PolicyNotFullyHonoured")
	if !strings.Contains(msg, "IPv6") {
		t.Errorf("event message %q does not say the block is IPv6", msg)
	}
	pg := policy.PortGroupName("web", "v6")
	web := []string{"web_web-1", "web_web-2"}
	e.waitPolicyRows("v6's IPv4 rules", npJoin(
		npPolicyRows("web", "v6", web, map[string][2]string{
			"ingress-1": {"", fmt.Sprintf("outport == @%s && ip4 && ip4.src == $%s && ((tcp && tcp.dst == 80))", pg, peerClient.AddressSetName())},
			"egress-0":  {"", fmt.Sprintf("inport == @%s && ip4 && ip4.dst == 10.0.0.0/8", pg)},
		}, npLogging{}),
		npDenyRows("web", policy.Ingress, web, npLogging{}), npDenyRows("web", policy.Egress, web, npLogging{}),
		[]string{npPeerRow(peerClient, f.ip("web/client-1"))}))
}

// TestPolicyNamespaceIsolation: kovn.io/isolation=true makes the namespace's pods accept traffic only from the
// namespace; false removes it.
func TestPolicyNamespaceIsolation(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	on := "true"
	e.annotate("namespace", "", "web", "kovn.io/isolation", &on)
	all := []string{"web_web-1", "web_web-2", "web_db-1", "web_client-1", "web_idle-1"}
	ips := f.ip("web/web-1", "web/web-2", "web/db-1", "web/client-1", "web/idle-1")
	e.waitPolicyRows("isolation rows", npJoin(npIsolationRows("web", all, ips, npLogging{})))
	e.createPod("web", "late", "n2")
	ip := e.podIP("web", "late").String()
	e.waitPolicyRows("isolation rows with a new pod", npJoin(npIsolationRows("web", append(all, "web_late"), append(ips, ip), npLogging{})))
	off := "false"
	e.annotate("namespace", "", "web", "kovn.io/isolation", &off)
	e.waitPolicyRows("no isolation", "")
}

// TestPolicyACLLogging: kovn.io/acl-logging turns logging on for the namespace's ACLs, at the severities it
// names and through the kovn_acl_logging meter; an invalid value gets an Event.
func TestPolicyACLLogging(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	if m, _ := nbops.Lookup(e.nb, &nbdb.Meter{Name: topology.ACLLogMeter}); m == nil {
		t.Fatalf("no meter %s", topology.ACLLogMeter)
	}
	e.npCreate(allowWeb())
	rows := func(allow, deny string) string {
		return f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"), f.ip("web/db-1"), npLogging{allow}, npLogging{deny})
	}
	e.waitPolicyRows("rows without logging", rows("", ""))
	v := `{"deny":"warning","allow":"info"}`
	e.annotate("namespace", "", "web", "kovn.io/acl-logging", &v)
	e.waitPolicyRows("rows with logging", rows("info", "warning"))
	v = `{"deny":"alert"}`
	e.annotate("namespace", "", "web", "kovn.io/acl-logging", &v)
	e.waitPolicyRows("rows with deny logging only", rows("", "alert"))
	e.annotate("namespace", "", "web", "kovn.io/acl-logging", nil)
	e.waitPolicyRows("rows without logging again", rows("", ""))

	v = `{"deny":"loud"}`
	e.annotate("namespace", "", "web", "kovn.io/acl-logging", &v)
	if msg := e.waitEvent("", "web", "InvalidACLLogging"); !strings.Contains(msg, "loud") {
		t.Errorf("event message %q does not name the bad severity", msg)
	}
	e.settle(f.c)
	if got, want := npDump(e.nb), rows("", ""); got != want {
		t.Errorf("an invalid annotation changed the rows:\n%s", npLineDiff(got, want))
	}
}

// TestPolicyACLLoggingInvalidAtCreation: a namespace created with an invalid kovn.io/acl-logging gets the Event
// too, not only one whose annotation is changed to an invalid value.
func TestPolicyACLLoggingInvalidAtCreation(t *testing.T) {
	e := newEnv(t, config.Default())
	e.startController()
	e.npNamespace("bad", nil, map[string]string{"kovn.io/acl-logging": "not json"})
	e.waitEvent("", "bad", "InvalidACLLogging")
}

// TestPolicyNamedPortFollowsPods: an ingress rule on a named port allows the port on every selected pod that
// has it, pods created after the policy included.
func TestPolicyNamedPortFollowsPods(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	e.createPod("web", "named-1", "n1", npWithLabels(map[string]string{"app": "api"}), npWithNamedPort("http", 8080))
	ip1 := e.podIP("web", "named-1").String()
	e.npCreate(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "named"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", "api"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromString("http"))}}}}}})
	match := func(ips ...string) string {
		slices.Sort(ips)
		return fmt.Sprintf("outport == @%s && ip4 && ((tcp && tcp.dst == 8080 && ip4.dst == {%s}))", policy.PortGroupName("web", "named"), strings.Join(ips, ", "))
	}
	aclMatch := func() string {
		acl, _ := nbops.Lookup(e.nb, &nbdb.ACL{ExternalIDs: npIDs("NetworkPolicy", "web/named", "ingress-0")})
		if acl == nil {
			return ""
		}
		return acl.Match
	}
	e.eventually("named port ACL", func() (bool, string) { m := aclMatch(); return m == match(ip1), m })
	e.createPod("web", "named-2", "n2", npWithLabels(map[string]string{"app": "api"}), npWithNamedPort("http", 8080))
	ip2 := e.podIP("web", "named-2").String()
	e.eventually("named port ACL with the new pod", func() (bool, string) { m := aclMatch(); return m == match(ip1, ip2), m })
}

// TestPolicyColdStartPortGroupsComplete: pods and policies that exist before the controller starts all end
// up in exactly their policies' port groups (the pod syncs and the policy syncs run at the same time).
func TestPolicyColdStartPortGroupsComplete(t *testing.T) {
	e := newEnv(t, config.Default())
	g := newPolicyBench(4, 400, 40, 4)
	ctx := context.Background()
	for i := range g.nodes {
		e.createNode(g.node(i), nil)
	}
	for _, ns := range g.namespaces {
		e.npNamespace(ns.name, ns.labels, nil)
	}
	parallel(len(g.pods), 8, func(i int) error {
		p := g.pods[i]
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
			Spec: corev1.PodSpec{NodeName: p.node, Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test"}}}}
		_, err := e.kube.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	for _, np := range g.policies {
		e.npCreate(np)
	}
	c, _ := e.startController()
	want := g.wantPortGroups()
	e.eventually("every pod's port", func() (bool, string) {
		n := 0
		for _, p := range g.pods {
			if lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(p.ns, p.name)}); lsp != nil {
				n++
			}
		}
		return n == len(g.pods), fmt.Sprintf("%d/%d ports", n, len(g.pods))
	})
	e.settle(c)
	var wrong []string
	for name, n := range want {
		pg, _ := nbops.Lookup(e.nb, &nbdb.PortGroup{Name: name})
		if pg == nil || len(pg.Ports) != n {
			got := -1
			if pg != nil {
				got = len(pg.Ports)
			}
			wrong = append(wrong, fmt.Sprintf("%s: %d ports, want %d", name, got, n))
		}
	}
	if len(wrong) > 0 {
		slices.Sort(wrong)
		t.Errorf("port groups without all their pods after the cold sync:\n%s", strings.Join(wrong, "\n"))
	}
}

// TestPolicyUpdate: a policy whose podSelector and peers change gets exactly the new rows: the new pods, the
// new peer's address set, and the old peer's set gone.
func TestPolicyUpdate(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	e.npCreate(allowWeb())
	e.waitPolicyRows("allow-web's rows", f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"),
		f.ip("web/db-1"), npLogging{}, npLogging{}))
	np, err := e.kube.NetworkingV1().NetworkPolicies("web").Get(context.Background(), "allow-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np.Spec.PodSelector = *npSel("app", "db")
	np.Spec.Ingress[0].From = np.Spec.Ingress[0].From[1:] // the client peer goes
	np.Spec.Egress = np.Spec.Egress[1:]                   // and so does the database peer
	if _, err := e.kube.NetworkingV1().NetworkPolicies("web").Update(context.Background(), np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pg := policy.PortGroupName("web", "allow-web")
	dbs := []string{"web_db-1"}
	e.waitPolicyRows("allow-web's new rows", npJoin(
		npPolicyRows("web", "allow-web", dbs, map[string][2]string{
			"ingress-0": {"", fmt.Sprintf("outport == @%s && ip4 && (ip4.src == $%s || (ip4.src == 172.16.0.0/16 && ip4.src != {172.16.1.0/24})) && ((tcp && tcp.dst == 8080))",
				pg, peerMon.AddressSetName())},
			"egress-0": {"", fmt.Sprintf("inport == @%s && ip4 && ((udp && udp.dst == 53))", pg)},
		}, npLogging{}),
		npDenyRows("web", policy.Ingress, dbs, npLogging{}), npDenyRows("web", policy.Egress, dbs, npLogging{}),
		[]string{npPeerRow(peerMon, f.ip("mon/prom-1"))}))
}

// TestPolicyIsolatedNamespaceDeleted: the rows of an isolated namespace go with the namespace.
func TestPolicyIsolatedNamespaceDeleted(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNode("n1", nil)
	e.npNamespace("iso", nil, map[string]string{"kovn.io/isolation": "true"})
	e.createPod("iso", "a", "n1")
	ip := e.podIP("iso", "a").String()
	e.waitPolicyRows("isolation rows", npJoin(npIsolationRows("iso", []string{"iso_a"}, []string{ip}, npLogging{})))
	e.settle(c)
	e.deletePod("iso", "a")
	e.deleteNamespace("iso")
	e.eventually("namespace gone", func() (bool, string) {
		_, err := e.kube.CoreV1().Namespaces().Get(context.Background(), "iso", metav1.GetOptions{})
		return err != nil, fmt.Sprint(err)
	})
	e.waitPolicyRows("no policy rows", "")
}

// A deleted node's pods leave the policy-peer address sets as well as the namespace's: their ports went with the
// node's switch, so their own teardown finds nothing to remove, and the node's subnet goes to another node.
func TestDeletedNodeLeavesPeerSets(t *testing.T) {
	e := newEnv(t, config.Default())
	e.startController()
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	e.npNamespace("web", nil, nil)
	client := npWithLabels(map[string]string{"app": "client"})
	e.createPod("web", "a", "n1", client)
	e.createPod("web", "b", "n2", client)
	e.npCreate(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "p"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", "server"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("app", "client")}}}}}})
	peer := policy.Peer{Namespace: "web", PodSelector: npSel("app", "client")}
	addrs := func(name string) []string {
		as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: name})
		if as == nil {
			return nil
		}
		slices.Sort(as.Addresses)
		return as.Addresses
	}
	e.eventually("both pods in the peer set", func() (bool, string) {
		got := addrs(peer.AddressSetName())
		return len(got) == 2, fmt.Sprint(got)
	})
	e.deleteNode("n2")
	e.eventually("n2's pod gone from the namespace and peer sets", func() (bool, string) {
		ns, pr := addrs(topology.NamespaceAddressSet("web")), addrs(peer.AddressSetName())
		return len(ns) == 1 && slices.Equal(ns, pr), fmt.Sprintf("namespace %v, peer %v", ns, pr)
	})
}
