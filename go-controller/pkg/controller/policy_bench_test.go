package controller

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
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
		b.Fatal("set KOVN_BIN to the kovn binary (make bench does)")
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
		pid := startControllerProcess(b, e, bin, "--cluster-cidrs=10.244.0.0/16/22")
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

// ---- the generated cluster ----
