package controller

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// BenchmarkPolicyScale runs the real `kovn controller` binary ($KOVN_BIN, built by `make bench`) against a
// real kube-apiserver and an empty real NB:
//   - cold sync: 100 labelled namespaces, 10,000 pods (100 per namespace, on 20 nodes, 3 labels each) and 1,000
//     NetworkPolicies (10 per namespace: a podSelector on the app label; ingress from pods of the namespace with
//     a label, from namespaces with a label, from both, from an ipBlock; some egress; most with ports) exist
//     before the controller starts; time until every pod has its logical switch port and every policy's port
//     group holds exactly its pods (seen by an NB monitor), NB transactions committed (counted in the database
//     file), ACL, Address_Set and Port_Group rows, controller peak RSS; then whether every peer address set and
//     default-deny port group holds what it should;
//   - one pod label change: 30 times, a pod's labels change so that it leaves one policy's podSelector and
//     enters another's, and leaves peer selectors and enters others; latency from the patch call's return until
//     NB shows all the new memberships (port group ports, address set addresses), p50 and p99, NB rows changed
//     per change (seen by a monitor) and NB transactions per change.
//
// Sizes can be lowered with KOVN_BENCH_NS / KOVN_BENCH_POLICY_PODS (pods in all) / KOVN_BENCH_POLICIES (in
// all) / KOVN_BENCH_POLICY_NODES.
func BenchmarkPolicyScale(b *testing.B) {
	bin := os.Getenv("KOVN_BIN")
	if bin == "" {
		b.Skip("set KOVN_BIN to the kovn binary (make bench does)")
	}
	g := newPolicyBench(envInt("KOVN_BENCH_NS", 100), envInt("KOVN_BENCH_POLICY_PODS", 10000), envInt("KOVN_BENCH_POLICIES", 1000),
		envInt("KOVN_BENCH_POLICY_NODES", 20))
	const changes = 30
	for b.Loop() {
		e := newEnv(b, config.Default())
		w := watchPolicyRows(e)
		rows := watchRows(e.nb)
		ctx := context.Background()
		for i := range g.nodes {
			e.createNode(g.node(i), nil)
		}
		parallel(len(g.namespaces), 16, func(i int) error {
			ns := g.namespaces[i]
			_, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.name, Labels: ns.labels}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.name, Name: "default"}}
			if _, err := e.kube.CoreV1().ServiceAccounts(ns.name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		})
		parallel(len(g.pods), 16, func(i int) error {
			p := g.pods[i]
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
				Spec: corev1.PodSpec{NodeName: p.node, AutomountServiceAccountToken: new(bool),
					Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test"}}}}
			_, err := e.kube.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		parallel(len(g.policies), 16, func(i int) error {
			np := g.policies[i]
			_, err := e.kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		dbFile := filepath.Join(e.ovn.Dir, "nb.db")
		txBefore := countTxns(b, dbFile)

		start := time.Now()
		// 500 pods per node: node subnets of /22 rather than the default /24.
		pid := startPolicyController(b, e, bin, "--cluster-cidrs=10.244.0.0/16/22")
		// Converged: every pod has its port and every policy's port group its pods. Should it stop short (no
		// progress for a minute), the benchmark says what is missing and goes on from there.
		wantPG := g.wantPortGroups()
		lastProgress, lastSeen := start, [2]int{-1, -1}
		var ports, pgs int
		for {
			ports, pgs = w.lspCount(), w.completePortGroups(wantPG)
			if ports >= len(g.pods) && pgs == len(wantPG) {
				lastProgress = time.Now()
				break
			}
			if seen := [2]int{ports, pgs}; seen != lastSeen {
				lastSeen, lastProgress = seen, time.Now()
			}
			if time.Since(lastProgress) > time.Minute || time.Since(start) > 15*time.Minute {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		coldSync := lastProgress.Sub(start)
		incomplete := len(wantPG) - pgs
		if ports < len(g.pods) || incomplete > 0 {
			b.Logf("BUG: the cold sync stopped short: %d/%d ports, %d/%d port groups complete after %s; incomplete: %s",
				ports, len(g.pods), pgs, len(wantPG), coldSync.Round(time.Millisecond), w.incomplete(wantPG, 10))
		}
		txns := countTxns(b, dbFile) - txBefore
		// Let the controller finish whatever the cold sync still brings before counting rows and checking sets.
		waitQuiet(rows, time.Second, 3*time.Minute)
		nACL, nAS, nPeerAS, nPG := policyRowCounts(e)
		ips := g.podIPs(b, e)
		wrong, nWrong := w.wrongSets(g.wantAddressSets(ips), g.wantDenyGroups(), 10)
		if nWrong > 0 {
			b.Logf("BUG: after the cold sync, rows do not hold what they should:\n%s", strings.Join(wrong, "\n"))
		}

		var lat []time.Duration
		var touched []int
		txChanges := countTxns(b, dbFile)
		for k := range changes {
			c := g.change(k, ips)
			lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(c.ns, c.name)})
			if lsp == nil {
				b.Fatalf("change %d: no port for pod %s/%s", k, c.ns, c.name)
			}
			conds := c.conditions(lsp.UUID)
			arrived := w.expect(e, conds)
			rows.arm()
			if _, err := e.kube.CoreV1().Pods(c.ns).Patch(ctx, c.name, types.MergePatchType, npLabelsPatch(c.from, c.to), metav1.PatchOptions{}); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			select {
			case t1 := <-arrived:
				lat = append(lat, max(t1.Sub(t0), 0))
			case <-time.After(30 * time.Second):
				b.Fatalf("change %d (%s/%s %v -> %v): NB never showed %v", k, c.ns, c.name, c.from, c.to, w.pending())
			}
			time.Sleep(200 * time.Millisecond) // anything else the change writes lands meanwhile
			touched = append(touched, rows.count())
			rows.take()
		}
		txChanges = countTxns(b, dbFile) - txChanges
		rss := peakRSS(b, pid)
		slices.Sort(lat)
		avgRows, maxRows := 0.0, 0
		for _, n := range touched {
			avgRows += float64(n) / float64(len(touched))
			maxRows = max(maxRows, n)
		}
		b.ReportMetric(coldSync.Seconds(), "coldsync-s")
		b.ReportMetric(float64(txns), "coldsync-nb-txns")
		b.ReportMetric(float64(nACL), "acl-rows")
		b.ReportMetric(float64(nAS), "address-set-rows")
		b.ReportMetric(float64(nPG), "port-group-rows")
		b.ReportMetric(float64(rss)/1024, "peak-rss-MiB")
		b.ReportMetric(percentile(lat, 50), "change-p50-ms")
		b.ReportMetric(percentile(lat, 99), "change-p99-ms")
		b.ReportMetric(avgRows, "rows/change")
		b.ReportMetric(float64(txChanges)/changes, "nb-txns/change")
		b.ReportMetric(float64(incomplete), "coldsync-incomplete-pgs")
		b.ReportMetric(float64(nWrong), "wrong-rows")
		b.Logf("%d namespaces, %d pods on %d nodes, %d policies: cold sync %s, %d NB transactions, %d ACL, %d Address_Set (%d peer), %d Port_Group rows, controller peak RSS %d MiB, %d port groups incomplete and %d rows wrong after sync; %d pod label changes: p50 %.1f ms, p99 %.1f ms, NB rows changed per change avg %.2f max %d, %d NB transactions",
			len(g.namespaces), len(g.pods), g.nodes, len(g.policies), coldSync.Round(time.Millisecond), txns, nACL, nAS, nPeerAS, nPG, rss/1024, incomplete, nWrong,
			changes, percentile(lat, 50), percentile(lat, 99), avgRows, maxRows, txChanges)
	}
}

// startPolicyController is startControllerProcess with extra flags.
func startPolicyController(b *testing.B, e *env, bin string, args ...string) int {
	kc := filepath.Join(b.TempDir(), "kubeconfig")
	cfg := e.restConfig
	kubeconfig := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster: {server: %s, certificate-authority: %s}\nusers:\n- name: a\n  user: {token: %s}\ncontexts:\n- name: k\n  context: {cluster: k, user: a}\ncurrent-context: k\n",
		cfg.Host, cfg.TLSClientConfig.CAFile, cfg.BearerToken)
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		b.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, append([]string{"controller", "--kubeconfig=" + kc, "--nb-address=" + e.ovn.NBRemote,
		"--leader-elect=false", "--kube-api-qps=1000", "--log-level=warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if b.Failed() {
			b.Log(logs.String())
		}
	})
	return cmd.Process.Pid
}

// ---- the generated cluster ----

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
