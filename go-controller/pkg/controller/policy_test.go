package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/client"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// ---- building Kubernetes objects ----

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
