package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/client"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// Helpers of the NetworkPolicy integration tests: building policies and pods, and rendering the NB rows they
// should produce as sorted lines.

func npWithLabels(l map[string]string) podOpt {
	return func(p *corev1.Pod) { p.Labels = maps.Clone(l) }
}

// npWithNamedPort gives the pod's container a named TCP port.
func npWithNamedPort(name string, port int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports,
			corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
}

func npSel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func npPort(proto corev1.Protocol, port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

// npNamespace creates a namespace with labels and annotations, and its default service account.
func (e *env) npNamespace(name string, labels, annots map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annots}}
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}}
	if _, err := e.kube.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) npCreate(np *networkingv1.NetworkPolicy) {
	e.t.Helper()
	if _, err := e.kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(context.Background(), np, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) npDelete(ns, name string) {
	e.t.Helper()
	if err := e.kube.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// npLabelsPatch is a JSON merge patch that makes an object's labels exactly want (old keys set to null).
func npLabelsPatch(old, want map[string]string) []byte {
	l := map[string]any{}
	for k := range old {
		l[k] = nil
	}
	for k, v := range want {
		l[k] = v
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": l}})
	return b
}

func (e *env) npRelabelPod(ns, name string, labels map[string]string) {
	e.t.Helper()
	patch := npLabelsPatch(e.pod(ns, name).Labels, labels)
	if _, err := e.kube.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) npRelabelNamespace(name string, labels map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	ns, err := e.kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	// The apiserver keeps kubernetes.io/metadata.name whatever the patch says.
	if _, err := e.kube.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, npLabelsPatch(ns.Labels, labels), metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// ---- rendering the policy rows of NB ----

func npOwnerKey(ids map[string]string) string {
	return ids["kovn.io/owner-kind"] + ":" + ids["kovn.io/owner"] + "/" + ids["kovn.io/name"]
}

// npDump renders every Port_Group, every ACL owned by a NetworkPolicy or a Namespace or held by a port group,
// and every peer Address_Set (kovn_peer_*), one sorted line each, UUIDs replaced by what they name.
func npDump(nb client.Client) string {
	ctx := context.Background()
	var pgs []*nbdb.PortGroup
	var acls []*nbdb.ACL
	var sets []*nbdb.AddressSet
	_ = nb.List(ctx, &pgs)
	_ = nb.List(ctx, &acls)
	_ = nb.List(ctx, &sets)
	aclOwner := map[string]string{}
	for _, a := range acls {
		aclOwner[a.UUID] = npOwnerKey(a.ExternalIDs)
	}
	on := map[string][]string{}
	var lines []string
	for _, pg := range pgs {
		var ports, held []string
		for _, u := range pg.Ports {
			name := "?" + u
			if lsp, _ := nbops.Lookup(nb, &nbdb.LogicalSwitchPort{UUID: u}); lsp != nil {
				name = lsp.Name
			}
			ports = append(ports, name)
		}
		for _, u := range pg.ACLs {
			held = append(held, aclOwner[u])
			on[u] = append(on[u], pg.Name)
		}
		slices.Sort(ports)
		slices.Sort(held)
		lines = append(lines, npPGLine(pg.Name, ports, held, pg.ExternalIDs))
	}
	for _, a := range acls {
		kind := a.ExternalIDs["kovn.io/owner-kind"]
		if kind != "NetworkPolicy" && kind != "Namespace" && len(on[a.UUID]) == 0 {
			continue
		}
		slices.Sort(on[a.UUID])
		sev, meter, name := "", "", ""
		if a.Severity != nil {
			sev = *a.Severity
		}
		if a.Meter != nil {
			meter = *a.Meter
		}
		if a.Name != nil {
			name = *a.Name
		}
		lines = append(lines, npACLLine(on[a.UUID], a.ExternalIDs, name, a.Direction, a.Priority, a.Action, a.Match, a.Log, sev, meter, a.Options))
	}
	for _, as := range sets {
		if strings.HasPrefix(as.Name, "kovn_peer_") {
			addrs := slices.Clone(as.Addresses)
			slices.Sort(addrs)
			lines = append(lines, npASLine(as.Name, addrs, as.ExternalIDs))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func npPGLine(name string, ports, acls []string, ids map[string]string) string {
	if ports == nil {
		ports = []string{}
	}
	if acls == nil {
		acls = []string{}
	}
	return fmt.Sprintf("Port_Group %s ports=%v acls=%v ids=%v", name, ports, acls, ids)
}

func npACLLine(on []string, ids map[string]string, name, dir string, prio int, action, match string, log bool, sev, meter string,
	options map[string]string) string {
	if on == nil {
		on = []string{}
	}
	if options == nil {
		options = map[string]string{}
	}
	return fmt.Sprintf("ACL %s on=%v name=%q %s prio=%d %s match=%q log=%v severity=%q meter=%q options=%v ids=%v",
		npOwnerKey(ids), on, name, dir, prio, action, match, log, sev, meter, options, ids)
}

func npASLine(name string, addrs []string, ids map[string]string) string {
	if addrs == nil {
		addrs = []string{}
	}
	return fmt.Sprintf("Address_Set %s %v ids=%v", name, addrs, ids)
}

// ---- the rows a test expects ----

func npIDs(kind, owner, name string) map[string]string {
	return map[string]string{"kovn.io/owner-kind": kind, "kovn.io/owner": owner, "kovn.io/name": name}
}

// npLogging is the logging of an ACL: severity "" for none.
type npLogging struct{ sev string }

func (l npLogging) fields() (bool, string, string) {
	if l.sev == "" {
		return false, "", ""
	}
	return true, l.sev, topology.ACLLogMeter
}

// npPolicyRows returns the expected rows of a policy: its port group with ports, and its ACLs
// (id -> direction and match) logged as log says.
func npPolicyRows(ns, name string, ports []string, acls map[string][2]string, log npLogging) []string {
	pg := policy.PortGroupName(ns, name)
	owner := ns + "/" + name
	var held []string
	var lines []string
	for id, dm := range acls {
		held = append(held, "NetworkPolicy:"+owner+"/"+id)
		dir, parts := policy.ToLport, strings.SplitN(id, "-", 2)
		var options map[string]string
		if parts[0] == "egress" {
			dir, options = policy.FromLport, map[string]string{"apply-after-lb": "true"}
		}
		if dm[0] != "" {
			dir = dm[0]
		}
		l, sev, meter := log.fields()
		lines = append(lines, npACLLine([]string{pg}, npIDs("NetworkPolicy", owner, id), fmt.Sprintf("%s:%s:%s", owner, parts[0], parts[1]),
			dir, policy.AllowPriority, policy.AllowRelated, dm[1], l, sev, meter, options))
	}
	slices.Sort(held)
	slices.Sort(ports)
	return append(lines, npPGLine(pg, ports, held, npIDs("NetworkPolicy", owner, "port-group")))
}

// npDenyRows returns the expected rows of a namespace's default-deny port group of a direction.
func npDenyRows(ns string, d policy.Direction, ports []string, log npLogging) []string {
	pg := policy.DenyPortGroupName(ns, d)
	id := string(d) + "-deny"
	dir, field := policy.ToLport, "outport"
	var options map[string]string
	if d == policy.Egress {
		dir, field, options = policy.FromLport, "inport", map[string]string{"apply-after-lb": "true"}
	}
	l, sev, meter := log.fields()
	slices.Sort(ports)
	return []string{
		npPGLine(pg, ports, []string{"Namespace:" + ns + "/" + id}, npIDs("Namespace", ns, string(d)+"-deny-port-group")),
		npACLLine([]string{pg}, npIDs("Namespace", ns, id), ns+"/default-deny:"+string(d)+":0", dir, policy.DenyPriority, policy.Drop,
			fmt.Sprintf("%s == @%s && ip", field, pg), l, sev, meter, options),
	}
}

func npPeerRow(p policy.Peer, ips []string) string {
	slices.Sort(ips)
	return npASLine(p.AddressSetName(), ips, npIDs("PolicyPeer", p.Key(), "pod-ips"))
}

func npJoin(parts ...[]string) string {
	var lines []string
	for _, p := range parts {
		lines = append(lines, p...)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// npLineDiff shows the lines only one side has.
func npLineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func (e *env) waitPolicyRows(what, want string) {
	e.t.Helper()
	e.eventually(what, func() (bool, string) {
		got := npDump(e.nb)
		return got == want, "diff (- want, + got):\n" + npLineDiff(got, want)
	})
}

// ---- a cluster with pods in three namespaces ----

type npFixture struct {
	e    *env
	c    *Controller
	stop func()
	ips  map[string]string // "ns/name" -> IP
}

var npFixturePods = []struct {
	ns, name, node string
	labels         map[string]string
}{
	{"web", "web-1", "n1", map[string]string{"app": "web"}},
	{"web", "web-2", "n2", map[string]string{"app": "web"}},
	{"web", "db-1", "n1", map[string]string{"app": "db"}},
	{"web", "client-1", "n2", map[string]string{"role": "client"}},
	{"web", "idle-1", "n1", nil},
	{"mon", "prom-1", "n1", map[string]string{"app": "prom"}},
	{"other", "o-1", "n2", map[string]string{"app": "prom"}},
}

func newNPFixture(t *testing.T) *npFixture {
	e := newEnv(t, config.Default())
	c, stop := e.startController()
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	e.npNamespace("web", map[string]string{"team": "web"}, nil)
	e.npNamespace("mon", map[string]string{"role": "monitoring"}, nil)
	e.npNamespace("other", map[string]string{"role": "other"}, nil)
	f := &npFixture{e: e, c: c, stop: stop, ips: map[string]string{}}
	for _, p := range npFixturePods {
		e.createPod(p.ns, p.name, p.node, npWithLabels(p.labels))
	}
	f.waitPods()
	return f
}

// waitPods waits for every fixture pod's IP and port.
func (f *npFixture) waitPods() {
	f.e.t.Helper()
	for _, p := range npFixturePods {
		ip := f.e.podIP(p.ns, p.name)
		f.ips[p.ns+"/"+p.name] = ip.String()
		f.e.eventually("port of "+p.name, func() (bool, string) { return f.e.portOnSwitch(p.ns, p.name, p.node, ip) })
	}
	f.e.settle(f.c)
}

func (f *npFixture) ip(keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, f.ips[k])
	}
	return out
}

// allowWeb: the web pods accept TCP 8080 from the namespace's clients, from monitoring namespaces and from
// 172.16.0.0/16 but 172.16.1.0/24, and may reach the database on TCP 5432 and anything on UDP 53.
func allowWeb() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "allow-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: *npSel("app", "web"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: npSel("role", "client")},
					{NamespaceSelector: npSel("role", "monitoring")},
					{IPBlock: &networkingv1.IPBlock{CIDR: "172.16.0.0/16", Except: []string{"172.16.1.0/24"}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, 8080)},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("app", "db")}}, Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, 5432)}},
				{Ports: []networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolUDP, 53)}},
			},
		},
	}
}

var (
	peerClient = policy.Peer{Namespace: "web", PodSelector: npSel("role", "client")}
	peerMon    = policy.Peer{Namespace: "web", NamespaceSelector: npSel("role", "monitoring")}
	peerDB     = policy.Peer{Namespace: "web", PodSelector: npSel("app", "db")}
)

// allowWebRows are the rows of allowWeb with the fixture's pods (mon holds the monitoring namespaces' IPs).
func (f *npFixture) allowWebRows(webPods, clients, mon, dbs []string, allow, deny npLogging) string {
	pg := policy.PortGroupName("web", "allow-web")
	return npJoin(
		npPolicyRows("web", "allow-web", webPods, map[string][2]string{
			"ingress-0": {"", fmt.Sprintf("outport == @%s && ip4 && (ip4.src == $%s || ip4.src == $%s || (ip4.src == 172.16.0.0/16 && ip4.src != {172.16.1.0/24})) && ((tcp && tcp.dst == 8080))",
				pg, peerClient.AddressSetName(), peerMon.AddressSetName())},
			"egress-0": {"", fmt.Sprintf("inport == @%s && ip4 && ip4.dst == $%s && ((tcp && tcp.dst == 5432))", pg, peerDB.AddressSetName())},
			"egress-1": {"", fmt.Sprintf("inport == @%s && ip4 && ((udp && udp.dst == 53))", pg)},
		}, allow),
		npDenyRows("web", policy.Ingress, webPods, deny),
		npDenyRows("web", policy.Egress, webPods, deny),
		[]string{npPeerRow(peerClient, clients), npPeerRow(peerMon, mon), npPeerRow(peerDB, dbs)},
	)
}

var npNameRE = regexp.MustCompile(`^kovn_(np|deny_ingress|deny_egress|peer)_[0-9a-f]{16}$`)

// TestPolicyRows: a policy with a podSelector, a namespaceSelector and an ipBlock peer and egress rules with
// ports becomes exactly its port group (the selected pods' ports, its ACLs), the namespace's default-deny port
// groups with their drop ACLs, and one address set per peer with exactly the matching pods' IPs.
