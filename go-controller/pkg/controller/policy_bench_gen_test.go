package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

type pbNamespace struct {
	name   string
	labels map[string]string
}

type pbPod struct {
	ns, name, node string
	labels, orig   map[string]string // now, as created
}

type policyBench struct {
	nodes      int
	namespaces []pbNamespace
	nsLabels   map[string]map[string]string
	pods       []pbPod
	policies   []*networkingv1.NetworkPolicy
	peers      []policy.Peer // distinct
}

var pbRoles = []string{"frontend", "backend", "db"}

func newPolicyBench(nNS, nPods, nPolicies, nodes int) *policyBench {
	g := &policyBench{nodes: nodes, nsLabels: map[string]map[string]string{}}
	perNS, polPerNS := max(nPods/nNS, 1), max(nPolicies/nNS, 1)
	for i := range nNS {
		env := "dev"
		if i%2 == 0 {
			env = "prod"
		}
		ns := pbNamespace{name: fmt.Sprintf("pol-%03d", i), labels: map[string]string{"team": fmt.Sprintf("t%d", i%10), "env": env}}
		g.namespaces = append(g.namespaces, ns)
		g.nsLabels[ns.name] = ns.labels
		for j := range perNS {
			l := map[string]string{"app": fmt.Sprintf("app-%d", j%10), "role": pbRoles[(j/10)%3], "version": fmt.Sprintf("v%d", j%2+1)}
			g.pods = append(g.pods, pbPod{ns: ns.name, name: fmt.Sprintf("p-%04d", j), node: g.node((i*perNS + j) % nodes), labels: l, orig: l})
		}
		for k := range polPerNS {
			g.policies = append(g.policies, pbPolicy(ns.name, i, k))
		}
	}
	seen := map[string]bool{}
	for _, np := range g.policies {
		for _, p := range policy.AllPeers(np) {
			if !seen[p.Key()] {
				seen[p.Key()] = true
				g.peers = append(g.peers, p)
			}
		}
	}
	return g
}

func (g *policyBench) node(i int) string { return fmt.Sprintf("pnode-%02d", i) }

// pbPolicy is policy k of namespace i: it selects app-<k%10>, and its rules follow k%5.
func pbPolicy(ns string, i, k int) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("np-%02d", k)},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *npSel("app", fmt.Sprintf("app-%d", k%10))}}
	s := &np.Spec
	switch k % 5 {
	case 0: // from the namespace's frontends, on one port
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("role", "frontend")}},
			Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 8080)}}}
	case 1: // from the frontends of one team's namespaces, on two ports
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: npSel("team", fmt.Sprintf("t%d", (i+k)%10)), PodSelector: npSel("role", "frontend")}},
			Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 443), npPort(tcp, 8443)}}}
	case 2: // from the next app; to the namespace's databases and DNS anywhere
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("app", fmt.Sprintf("app-%d", (k+1)%10))}}}}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("role", "db")}}, Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 5432)}},
			{Ports: []networkingv1.NetworkPolicyPort{npPort(udp, 53)}},
		}
	case 3: // from every prod namespace; to an external block on 443
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: npSel("env", "prod")}}}}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8",
			Except: []string{"10.244.0.0/16"}}}}, Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 443)}}}
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	case 4: // from the namespace's backends and a block; to team t0's namespaces on 9090
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: npSel("role", "backend")},
			{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.0.0/16"}}}, Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 8080)}}}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: npSel("team", "t0")}},
			Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, 9090)}}}
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

// wantPortGroups is the number of ports each policy's port group should hold.
func (g *policyBench) wantPortGroups() map[string]int {
	out := map[string]int{}
	for _, np := range g.policies {
		n := 0
		for _, p := range g.pods {
			if policy.Selects(np, p.ns, p.labels) {
				n++
			}
		}
		out[policy.PortGroupName(np.Namespace, np.Name)] = n
	}
	return out
}

// wantDenyGroups is the number of ports each namespace's default-deny port groups should hold.
func (g *policyBench) wantDenyGroups() map[string]int {
	out := map[string]int{}
	byNS := map[string][]*networkingv1.NetworkPolicy{}
	for _, np := range g.policies {
		byNS[np.Namespace] = append(byNS[np.Namespace], np)
	}
	for ns, nps := range byNS {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			n, any := 0, false
			for _, p := range g.pods {
				if p.ns != ns {
					continue
				}
				for _, np := range nps {
					in, eg := policy.Types(np)
					if isolates := (d == policy.Ingress && in) || (d == policy.Egress && eg); isolates {
						any = true
						if policy.Selects(np, p.ns, p.labels) {
							n++
							break
						}
					}
				}
			}
			if any {
				out[policy.DenyPortGroupName(ns, d)] = n
			}
		}
	}
	return out
}

// wantAddressSets is the number of IPs each peer address set should hold.
func (g *policyBench) wantAddressSets(ips map[string]string) map[string]int {
	out := map[string]int{}
	for _, peer := range g.peers {
		n := 0
		for _, p := range g.pods {
			if ips[p.ns+"/"+p.name] != "" && peer.MatchesPod(p.ns, g.nsLabels[p.ns], p.labels) {
				n++
			}
		}
		out[peer.AddressSetName()] = n
	}
	return out
}

// podIPs reads every pod's IP from its network annotation.
func (g *policyBench) podIPs(b *testing.B, e *env) map[string]string {
	list, err := e.kube.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range list.Items {
		if n, ok, err := annotations.ParsePodNetwork(p.Annotations); ok && err == nil {
			out[p.Namespace+"/"+p.Name] = n.IPs[0].Addr().String()
		}
	}
	return out
}

// pbChange is one pod label change and the memberships it must bring.
type pbChange struct {
	ns, name, ip    string
	from, to        map[string]string
	pgIn, pgOut     []string
	peerIn, peerOut []string
}

// change k moves a pod of app-0 with role frontend to app-1 with role backend (or, when an earlier change
// moved it, back), in namespace k (mod the namespaces).
func (g *policyBench) change(k int, ips map[string]string) pbChange {
	ns := g.namespaces[k%len(g.namespaces)].name
	var cands []int
	for i, p := range g.pods {
		if p.ns == ns && p.orig["app"] == "app-0" && p.orig["role"] == "frontend" {
			cands = append(cands, i)
		}
	}
	p := &g.pods[cands[(k/len(g.namespaces))%len(cands)]]
	from, to := p.labels, p.orig
	if from["role"] == "frontend" {
		to = map[string]string{"app": "app-1", "role": "backend", "version": from["version"]}
	}
	c := pbChange{ns: ns, name: p.name, ip: ips[ns+"/"+p.name], from: from, to: to}
	for _, np := range g.policies {
		if was, is := policy.Selects(np, ns, from), policy.Selects(np, ns, to); was != is {
			if name := policy.PortGroupName(np.Namespace, np.Name); is {
				c.pgIn = append(c.pgIn, name)
			} else {
				c.pgOut = append(c.pgOut, name)
			}
		}
	}
	for _, peer := range g.peers {
		if was, is := peer.MatchesPod(ns, g.nsLabels[ns], from), peer.MatchesPod(ns, g.nsLabels[ns], to); was != is {
			if is {
				c.peerIn = append(c.peerIn, peer.AddressSetName())
			} else {
				c.peerOut = append(c.peerOut, peer.AddressSetName())
			}
		}
	}
	p.labels = to
	return c
}

func (c pbChange) conditions(lspUUID string) []pbCond {
	var out []pbCond
	for _, n := range c.pgIn {
		out = append(out, pbCond{table: nbdb.PortGroupTable, name: n, value: lspUUID, want: true})
	}
	for _, n := range c.pgOut {
		out = append(out, pbCond{table: nbdb.PortGroupTable, name: n, value: lspUUID, want: false})
	}
	for _, n := range c.peerIn {
		out = append(out, pbCond{table: nbdb.AddressSetTable, name: n, value: c.ip, want: true})
	}
	for _, n := range c.peerOut {
		out = append(out, pbCond{table: nbdb.AddressSetTable, name: n, value: c.ip, want: false})
	}
	return out
}

// ---- watching NB ----

type pbCond struct {
	table, name, value string
	want               bool
}

// policyRowWatch follows, in the NB client cache, the pod ports of the bench namespaces, the size of every port
// group and address set, and when the conditions of an expected change all hold.
type policyRowWatch struct {
	mu    sync.Mutex
	lsps  int
	size  map[string]int // table + " " + name -> members
	conds []pbCond
	sat   []bool
	fire  chan time.Time
}

func watchPolicyRows(e *env) *policyRowWatch {
	w := &policyRowWatch{size: map[string]int{}}
	see := func(table string, m model.Model, gone bool) {
		var name string
		var members []string
		switch r := m.(type) {
		case *nbdb.PortGroup:
			name, members = r.Name, r.Ports
		case *nbdb.AddressSet:
			name, members = r.Name, r.Addresses
		case *nbdb.LogicalSwitchPort:
			if strings.HasPrefix(r.Name, "pol-") {
				w.mu.Lock()
				if gone {
					w.lsps--
				} else {
					w.lsps++
				}
				w.mu.Unlock()
			}
			return
		default:
			return
		}
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		if gone {
			delete(w.size, table+" "+name)
			members = nil
		} else {
			w.size[table+" "+name] = len(members)
		}
		w.update(table, name, members, now)
	}
	e.nb.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(table string, m model.Model) { see(table, m, false) },
		UpdateFunc: func(table string, old, m model.Model) { see(table, m, false) },
		DeleteFunc: func(table string, m model.Model) { see(table, m, true) },
	})
	return w
}

// update evaluates the pending conditions on a row's new members; w.mu is held.
func (w *policyRowWatch) update(table, name string, members []string, now time.Time) {
	if w.fire == nil {
		return
	}
	for i, c := range w.conds {
		if c.table == table && c.name == name {
			w.sat[i] = slices.Contains(members, c.value) == c.want
		}
	}
	if !slices.Contains(w.sat, false) {
		w.fire <- now
		w.fire, w.conds, w.sat = nil, nil, nil
	}
}

// expect returns a channel that receives the time at which all conditions hold.
func (w *policyRowWatch) expect(e *env, conds []pbCond) <-chan time.Time {
	sat := make([]bool, len(conds))
	for i, c := range conds {
		var members []string
		if c.table == nbdb.PortGroupTable {
			if pg, _ := nbops.Lookup(e.nb, &nbdb.PortGroup{Name: c.name}); pg != nil {
				members = pg.Ports
			}
		} else if as, _ := nbops.Lookup(e.nb, &nbdb.AddressSet{Name: c.name}); as != nil {
			members = as.Addresses
		}
		sat[i] = slices.Contains(members, c.value) == c.want
	}
	ch := make(chan time.Time, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conds, w.sat, w.fire = conds, sat, ch
	if !slices.Contains(sat, false) {
		w.fire <- time.Now()
		w.fire, w.conds, w.sat = nil, nil, nil
	}
	return ch
}

func (w *policyRowWatch) pending() []pbCond {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []pbCond
	for i, c := range w.conds {
		if !w.sat[i] {
			out = append(out, c)
		}
	}
	return out
}

func (w *policyRowWatch) lspCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lsps
}

func (w *policyRowWatch) completePortGroups(want map[string]int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for name, members := range want {
		if got, ok := w.size[nbdb.PortGroupTable+" "+name]; ok && got == members {
			n++
		}
	}
	return n
}

func (w *policyRowWatch) incomplete(want map[string]int, limit int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, members := range want {
		if got, ok := w.size[nbdb.PortGroupTable+" "+name]; !ok || got != members {
			out = append(out, fmt.Sprintf("%s %d/%d (exists %v)", name, got, members, ok))
		}
	}
	slices.Sort(out)
	return strings.Join(out[:min(limit, len(out))], ", ")
}

// wrongSets lists the address sets and deny port groups whose sizes differ from want (at most limit shown).
func (w *policyRowWatch) wrongSets(sets, deny map[string]int, limit int) ([]string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	check := func(table string, want map[string]int) {
		for name, n := range want {
			if got, ok := w.size[table+" "+name]; !ok || got != n {
				out = append(out, fmt.Sprintf("%s %s: %d members (exists %v), want %d", table, name, got, ok, n))
			}
		}
	}
	check(nbdb.AddressSetTable, sets)
	check(nbdb.PortGroupTable, deny)
	slices.Sort(out)
	n := len(out)
	if n > limit {
		out = append(out[:limit], fmt.Sprintf("... and %d more", n-limit))
	}
	return out, n
}

// policyRowCounts counts the ACL, Address_Set (all and peer) and Port_Group rows in NB.
func policyRowCounts(e *env) (acls, sets, peerSets, pgs int) {
	cnt := func(table string) int {
		if t := e.nb.Cache().Table(table); t != nil {
			return t.Len()
		}
		return 0
	}
	var as []*nbdb.AddressSet
	_ = e.nb.List(context.Background(), &as)
	for _, s := range as {
		if strings.HasPrefix(s.Name, "kovn_peer_") {
			peerSets++
		}
	}
	return cnt(nbdb.ACLTable), len(as), peerSets, cnt(nbdb.PortGroupTable)
}
