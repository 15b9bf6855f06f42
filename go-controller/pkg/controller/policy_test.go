package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
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

// ---- building Kubernetes objects ----

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
func TestPolicyRows(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	if got := npDump(e.nb); got != "" {
		t.Fatalf("policy rows before any policy:\n%s", got)
	}
	e.npCreate(allowWeb())
	want := f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"), f.ip("web/db-1"), npLogging{}, npLogging{})
	e.waitPolicyRows("allow-web's rows", want)
	e.settle(f.c)
	if got := npDump(e.nb); got != want {
		t.Fatalf("rows changed after settling:\n%s", npLineDiff(got, want))
	}
	for _, n := range []string{policy.PortGroupName("web", "allow-web"), policy.DenyPortGroupName("web", policy.Ingress),
		policy.DenyPortGroupName("web", policy.Egress), peerClient.AddressSetName(), peerMon.AddressSetName()} {
		if !npNameRE.MatchString(n) {
			t.Errorf("row name %q is not kovn_<kind>_<16 hex digits>", n)
		}
	}
	if pgName := policy.PortGroupName("web", "allow-web"); pgName == policy.PortGroupName("web", "allow-web2") ||
		peerClient.AddressSetName() == peerDB.AddressSetName() {
		t.Errorf("names collide")
	}

	// A new pod the policy selects and the peers match joins right away; a deleted one leaves.
	e.createPod("web", "web-3", "n1", npWithLabels(map[string]string{"app": "web", "role": "client"}))
	ip3 := e.podIP("web", "web-3").String()
	want = f.allowWebRows([]string{"web_web-1", "web_web-2", "web_web-3"}, append(f.ip("web/client-1"), ip3), f.ip("mon/prom-1"),
		f.ip("web/db-1"), npLogging{}, npLogging{})
	e.waitPolicyRows("web-3 in the port groups and the client set", want)
	e.deletePod("web", "web-3")
	want = f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"), f.ip("web/db-1"), npLogging{}, npLogging{})
	e.waitPolicyRows("web-3 gone from the port groups and the client set", want)
}

// TestPolicySharedPeer: two policies with the same peer (spelled differently) share one address set, which
// stays while either uses it and goes with the last; a deleted policy takes its port group and ACLs, and the
// last one the namespace's deny groups.
func TestPolicySharedPeer(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	a := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "a"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", "web"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("role", "client")}}}}}}
	b := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "b"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", "db"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: metav1.LabelSelectorOpIn, Values: []string{"client"}}}}}}}}}}
	e.npCreate(a)
	e.npCreate(b)
	rowsA := npPolicyRows("web", "a", []string{"web_web-1", "web_web-2"}, map[string][2]string{
		"ingress-0": {"", fmt.Sprintf("outport == @%s && ip4 && ip4.src == $%s", policy.PortGroupName("web", "a"), peerClient.AddressSetName())}}, npLogging{})
	rowsB := npPolicyRows("web", "b", []string{"web_db-1"}, map[string][2]string{
		"ingress-0": {"", fmt.Sprintf("outport == @%s && ip4 && ip4.src == $%s", policy.PortGroupName("web", "b"), peerClient.AddressSetName())}}, npLogging{})
	clients := []string{npPeerRow(peerClient, f.ip("web/client-1"))}
	e.waitPolicyRows("a's and b's rows", npJoin(rowsA, rowsB, clients,
		npDenyRows("web", policy.Ingress, []string{"web_web-1", "web_web-2", "web_db-1"}, npLogging{})))
	e.settle(f.c)
	shared, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: peerClient.AddressSetName()})
	if shared == nil {
		t.Fatal("no shared address set")
	}

	e.npDelete("web", "a")
	e.waitPolicyRows("b's rows", npJoin(rowsB, clients, npDenyRows("web", policy.Ingress, []string{"web_db-1"}, npLogging{})))
	if as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: peerClient.AddressSetName()}); as == nil || as.UUID != shared.UUID {
		t.Errorf("the shared address set was replaced or removed while b uses it: %v", as)
	}

	e.npDelete("web", "b")
	e.waitPolicyRows("no policy rows", "")
	e.settle(f.c)
	var acls []*nbdb.ACL
	_ = e.nb.List(context.Background(), &acls)
	for _, acl := range acls {
		if k := acl.ExternalIDs["kovn.io/owner-kind"]; k == "NetworkPolicy" || k == "Namespace" || k == "PolicyPeer" {
			t.Errorf("ACL left: %v", acl)
		}
	}
}

// npACLSnapshot renders every ACL row by UUID.
func npACLSnapshot(nb client.Client) map[string]string {
	out := map[string]string{}
	for uuid, row := range nb.Cache().Table(nbdb.ACLTable).RowsShallow() {
		out[uuid] = rowString(row, nil)
	}
	return out
}

// TestPolicyPodLabelChange: a pod's label change moves its port into or out of the policy's and the deny port
// groups and its IP into or out of peer address sets, by updating those rows only: the ACLs stay as they are.
func TestPolicyPodLabelChange(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	events := watchRows(e.nb)
	e.npCreate(allowWeb())
	e.waitPolicyRows("allow-web's rows", f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip("mon/prom-1"),
		f.ip("web/db-1"), npLogging{}, npLogging{}))
	e.settle(f.c)
	acls := npACLSnapshot(e.nb)
	pgUUID := func(name string) string {
		pg, _ := nbops.Lookup(e.nb, &nbdb.PortGroup{Name: name})
		if pg == nil {
			t.Fatalf("no port group %s", name)
		}
		return pg.UUID
	}
	asUUID := func(p policy.Peer) string {
		as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: p.AddressSetName()})
		if as == nil {
			t.Fatalf("no address set %s", p.AddressSetName())
		}
		return as.UUID
	}
	npPG, denyIn, denyEg := pgUUID(policy.PortGroupName("web", "allow-web")), pgUUID(policy.DenyPortGroupName("web", policy.Ingress)),
		pgUUID(policy.DenyPortGroupName("web", policy.Egress))

	for _, step := range []struct {
		what                string
		pod                 string
		labels              map[string]string
		web, clients, dbs   []string
		changedPGs, changed []string
	}{
		{what: "client-1 becomes a web pod", pod: "client-1", labels: map[string]string{"app": "web"},
			web: []string{"web_web-1", "web_web-2", "web_client-1"}, clients: nil, dbs: f.ip("web/db-1"),
			changedPGs: []string{npPG, denyIn, denyEg}, changed: []string{asUUID(peerClient)}},
		{what: "client-1 a client again", pod: "client-1", labels: map[string]string{"role": "client"},
			web: []string{"web_web-1", "web_web-2"}, clients: f.ip("web/client-1"), dbs: f.ip("web/db-1"),
			changedPGs: []string{npPG, denyIn, denyEg}, changed: []string{asUUID(peerClient)}},
		{what: "db-1 no longer a database", pod: "db-1", labels: map[string]string{"app": "db2"},
			web: []string{"web_web-1", "web_web-2"}, clients: f.ip("web/client-1"), dbs: nil,
			changed: []string{asUUID(peerDB)}},
		{what: "web-2 becomes a client and a database", pod: "web-2", labels: map[string]string{"app": "db", "role": "client"},
			web: []string{"web_web-1"}, clients: f.ip("web/client-1", "web/web-2"), dbs: f.ip("web/web-2"),
			changedPGs: []string{npPG, denyIn, denyEg}, changed: []string{asUUID(peerClient), asUUID(peerDB)}},
		{what: "a label no selector reads", pod: "web-1", labels: map[string]string{"app": "web", "version": "v2"},
			web: []string{"web_web-1"}, clients: f.ip("web/client-1", "web/web-2"), dbs: f.ip("web/web-2")},
	} {
		tx0 := f.c.Stats().Transactions.Load()
		events.arm()
		e.npRelabelPod("web", step.pod, step.labels)
		e.waitPolicyRows(step.what, f.allowWebRows(step.web, step.clients, f.ip("mon/prom-1"), step.dbs, npLogging{}, npLogging{}))
		e.settle(f.c)
		got := events.take()
		var want []string
		for _, u := range step.changedPGs {
			want = append(want, "update Port_Group "+u)
		}
		for _, u := range step.changed {
			want = append(want, "update Address_Set "+u)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: NB rows changed %v, want %v", step.what, got, want)
		}
		wantTx := int64(1)
		if len(want) == 0 {
			wantTx = 0
		}
		if tx := f.c.Stats().Transactions.Load() - tx0; tx != wantTx {
			t.Errorf("%s: %d NB transactions, want %d", step.what, tx, wantTx)
		}
		if d := diffSnapshots(npACLSnapshot(e.nb), acls); d != "" {
			t.Errorf("%s: ACL rows changed:\n%s", step.what, d)
		}
	}
}

// TestPolicyNamespaceLabelChange: a namespace's label change moves its pods' IPs into or out of the address
// sets of namespaceSelector peers, and nothing else.
func TestPolicyNamespaceLabelChange(t *testing.T) {
	f := newNPFixture(t)
	e := f.e
	events := watchRows(e.nb)
	e.npCreate(allowWeb())
	rows := func(mon ...string) string {
		return f.allowWebRows([]string{"web_web-1", "web_web-2"}, f.ip("web/client-1"), f.ip(mon...), f.ip("web/db-1"), npLogging{}, npLogging{})
	}
	e.waitPolicyRows("allow-web's rows", rows("mon/prom-1"))
	e.settle(f.c)
	acls := npACLSnapshot(e.nb)
	mon, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: peerMon.AddressSetName()})

	for _, step := range []struct {
		what   string
		ns     string
		labels map[string]string
		mon    []string
		change bool
	}{
		{"other becomes a monitoring namespace", "other", map[string]string{"role": "monitoring", "extra": "x"}, []string{"mon/prom-1", "other/o-1"}, true},
		{"mon stops being one", "mon", map[string]string{"role": "none"}, []string{"other/o-1"}, true},
		{"a label no selector reads", "other", map[string]string{"role": "monitoring"}, []string{"other/o-1"}, false},
		{"both back", "mon", map[string]string{"role": "monitoring"}, []string{"mon/prom-1", "other/o-1"}, true},
		{"other back", "other", map[string]string{"role": "other"}, []string{"mon/prom-1"}, true},
	} {
		events.arm()
		e.npRelabelNamespace(step.ns, step.labels)
		e.waitPolicyRows(step.what, rows(step.mon...))
		e.settle(f.c)
		var want []string
		if step.change {
			want = []string{"update Address_Set " + mon.UUID}
		}
		if got := events.take(); !slices.Equal(got, want) {
			t.Errorf("%s: NB rows changed %v, want %v", step.what, got, want)
		}
		if d := diffSnapshots(npACLSnapshot(e.nb), acls); d != "" {
			t.Errorf("%s: ACL rows changed:\n%s", step.what, d)
		}
	}
}

// TestPolicyRestartWritesNothing: a controller restarted with nothing changed commits no transaction and leaves
// the rows as they were; one restarted after a policy was deleted and a pod relabelled while it was down
// converges.
func TestPolicyRestartWritesNothing(t *testing.T) {
	e := newEnv(t, config.Default())
	c, stop := e.startController()
	f := &npFixture{e: e, c: c, ips: map[string]string{}}
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	e.npNamespace("web", map[string]string{"team": "web"}, map[string]string{"kovn.io/acl-logging": `{"deny":"warning","allow":"info"}`})
	e.npNamespace("mon", map[string]string{"role": "monitoring"}, map[string]string{"kovn.io/isolation": "true"})
	e.npNamespace("other", map[string]string{"role": "other"}, nil)
	for _, p := range npFixturePods {
		e.createPod(p.ns, p.name, p.node, npWithLabels(p.labels))
	}
	f.waitPods()
	e.npCreate(allowWeb())
	e.npCreate(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "deny-all"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}})
	e.eventually("policy rows", func() (bool, string) {
		d := npDump(e.nb)
		return strings.Count(d, "Port_Group ") == 8, d // allow-web + 2 deny, mon isolation + deny ingress, deny-all + 2 deny
	})
	e.settle(c)
	stop()
	before := dbSnapshot(e.nb, nil)
	dbFile := filepath.Join(e.ovn.Dir, "nb.db")
	size := fileSize(t, dbFile)

	c2, stop2 := e.startController()
	e.settle(c2)
	if n := c2.Stats().Transactions.Load(); n != 0 {
		t.Errorf("restart with nothing changed committed %d NB transactions", n)
	}
	if d := diffSnapshots(dbSnapshot(e.nb, nil), before); d != "" {
		t.Errorf("restart with nothing changed changed NB:\n%s", d)
	}
	if s := fileSize(t, dbFile); s != size {
		t.Errorf("NB database grew from %d to %d bytes on a restart with nothing changed", size, s)
	}
	stop2()

	// While no controller runs: other's policy is deleted and client-1 becomes a web pod.
	e.npDelete("other", "deny-all")
	e.npRelabelPod("web", "client-1", map[string]string{"app": "web"})
	c3, _ := e.startController()
	f.c = c3
	e.settle(c3)
	log := npLogging{"info"}
	want := npJoin(strings.Split(f.allowWebRows([]string{"web_web-1", "web_web-2", "web_client-1"}, nil, f.ip("mon/prom-1"), f.ip("web/db-1"),
		log, npLogging{"warning"}), "\n"), npIsolationRows("mon", []string{"mon_prom-1"}, f.ip("mon/prom-1"), npLogging{}))
	e.waitPolicyRows("rows after changes while down", want)
}

func npIsolationRows(ns string, ports, ips []string, log npLogging) []string {
	peer := policy.Peer{Namespace: ns, PodSelector: &metav1.LabelSelector{}}
	pg := policy.PortGroupName(ns, ":isolation")
	rows := npPolicyRows(ns, ":isolation", ports, map[string][2]string{
		"ingress-0": {"", fmt.Sprintf("outport == @%s && ip4 && ip4.src == $%s", pg, peer.AddressSetName())}}, log)
	rows = append(rows, npDenyRows(ns, policy.Ingress, ports, npLogging{})...)
	return append(rows, npPeerRow(peer, ips))
}
