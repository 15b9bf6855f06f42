package controller

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// BenchmarkServiceScale runs the real `kovn controller` binary ($KOVN_BIN, built by `make bench`) against a
// real kube-apiserver and an empty real NB:
//   - cold sync: 3 nodes, 5,000 ClusterIP services (one TCP port) and their EndpointSlices of 10 endpoints each
//     exist before the controller starts; time until every service's load balancer is in NB with all its
//     backends, NB transactions committed (counted in the database file), Load_Balancer rows per service,
//     controller peak RSS;
//   - one endpoint change: 50 times in a row, one endpoint IP of one service's EndpointSlice changes; latency
//     from the update call's return to the new backend's arrival in that load balancer's vips in NB (p50, p99),
//     NB rows changed per change (seen by a monitor) and NB transactions per change.
//
// Sizes can be lowered with KOVN_BENCH_SERVICES / KOVN_BENCH_ENDPOINTS.
func BenchmarkServiceScale(b *testing.B) {
	bin := os.Getenv("KOVN_BIN")
	if bin == "" {
		b.Fatal("set KOVN_BIN to the kovn binary (make bench does)")
	}
	nSvc, nEps := envInt("KOVN_BENCH_SERVICES", 5000), envInt("KOVN_BENCH_ENDPOINTS", 10)
	const nodes, changes = 3, 50
	for b.Loop() {
		e := newEnv(b, config.Default())
		lbs := watchServiceLBs(e, "bench", nEps)
		rows := watchRows(e.nb)
		e.createNamespace("bench")
		for i := range nodes {
			e.createNode(fmt.Sprintf("node-%d", i), nil)
		}
		ctx := context.Background()
		parallel(nSvc, 16, func(i int) error {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: benchSvc(i)},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}}}
			_, err := e.kube.CoreV1().Services("bench").Create(ctx, svc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		parallel(nSvc, 16, func(i int) error {
			s := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: benchSvc(i) + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: benchSvc(i)}},
				AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)},
				Endpoints: benchEndpoints(i, nEps, nodes),
			}
			_, err := e.kube.DiscoveryV1().EndpointSlices("bench").Create(ctx, s, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		})
		dbFile := filepath.Join(e.ovn.Dir, "nb.db")
		txBefore := countTxns(b, dbFile)

		start := time.Now()
		pid := startControllerProcess(b, e, bin)
		for lbs.complete() < nSvc {
			time.Sleep(10 * time.Millisecond)
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("cold sync did not converge: %d/%d load balancers complete", lbs.complete(), nSvc)
			}
		}
		coldSync := time.Since(start)
		txns := countTxns(b, dbFile) - txBefore
		perSvc := float64(benchLBRows(e, "bench")) / float64(nSvc)
		// Let the controller finish whatever else the cold sync brought (nodes) before measuring changes.
		waitQuiet(rows, 500*time.Millisecond, time.Minute)

		var lat []time.Duration
		var touched []int
		txChanges := countTxns(b, dbFile)
		for k := range changes {
			i := k * nSvc / changes
			eps := benchEndpoints(i, nEps, nodes)
			newIP := fmt.Sprintf("10.244.255.%d", k+1) // outside the block benchEndpoints uses
			eps[0].Addresses = []string{newIP}
			lb := "Service_bench/" + benchSvc(i) + "_TCP_cluster"
			backend := newIP + ":8080"
			arrived := lbs.expect(lb, backend)
			rows.arm()
			s, err := e.kube.DiscoveryV1().EndpointSlices("bench").Get(ctx, benchSvc(i)+"-1", metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			s.Endpoints = eps
			if _, err := e.kube.DiscoveryV1().EndpointSlices("bench").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			select {
			case t1 := <-arrived:
				lat = append(lat, max(t1.Sub(t0), 0))
			case <-time.After(30 * time.Second):
				b.Fatalf("change %d: backend %s never reached %s", k, backend, lb)
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
		b.ReportMetric(perSvc, "lb-rows/svc")
		b.ReportMetric(float64(rss)/1024, "peak-rss-MiB")
		b.ReportMetric(percentile(lat, 50), "change-p50-ms")
		b.ReportMetric(percentile(lat, 99), "change-p99-ms")
		b.ReportMetric(avgRows, "rows/change")
		b.ReportMetric(float64(txChanges)/changes, "nb-txns/change")
		b.Logf("%d services x %d endpoints, %d nodes: cold sync %s, %d NB transactions, %.2f Load_Balancer rows per service, controller peak RSS %d MiB; %d endpoint changes: p50 %.1f ms, p99 %.1f ms, NB rows changed per change avg %.2f max %d, %d NB transactions",
			nSvc, nEps, nodes, coldSync.Round(time.Millisecond), txns, perSvc, rss/1024, changes, percentile(lat, 50), percentile(lat, 99), avgRows, maxRows, txChanges)
	}
}

func benchSvc(i int) string { return fmt.Sprintf("svc-%05d", i) }

// benchEndpoints are service i's endpoints: ready, on the nodes in turn, with IPs from 10.244.0.0 to
// 10.244.254.255 (10.244.255.0/24 is left for the changes).
func benchEndpoints(i, n, nodes int) []discoveryv1.Endpoint {
	base := netip.MustParseAddr("10.244.0.0").As4()
	out := make([]discoveryv1.Endpoint, n)
	for j := range n {
		idx := (i*n + j) % (255 * 256)
		ip := netip.AddrFrom4([4]byte{base[0], base[1], byte(idx / 256), byte(idx % 256)})
		out[j] = readyEndpoint(ip.String(), fmt.Sprintf("node-%d", j%nodes))
	}
	return out
}

// benchLBRows counts the Load_Balancer rows of the services of namespace ns.
func benchLBRows(e *env, ns string) int {
	var lbs []*nbdb.LoadBalancer
	_ = e.nb.WhereCache(func(lb *nbdb.LoadBalancer) bool {
		return lb.ExternalIDs[ownership.KeyOwnerKind] == string(ownership.KindService) &&
			strings.HasPrefix(lb.ExternalIDs[ownership.KeyOwner], ns+"/")
	}).List(context.Background(), &lbs)
	return len(lbs)
}

// waitQuiet waits until the monitor has seen no row change for quiet (at most limit).
func waitQuiet(r *rowEvents, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		r.arm()
		time.Sleep(quiet)
		if r.count() == 0 {
			break
		}
	}
	r.take()
}

// svcLBWatch follows the load balancers of a namespace's services in the NB client cache: how many have all their
// backends, and when an expected backend arrives in one.
type svcLBWatch struct {
	mu       sync.Mutex
	prefix   string
	eps      int
	done     map[string]bool
	expected map[string]svcLBExpect
}

type svcLBExpect struct {
	backend string
	ch      chan time.Time
}

func watchServiceLBs(e *env, ns string, eps int) *svcLBWatch {
	w := &svcLBWatch{prefix: "Service_" + ns + "/", eps: eps, done: map[string]bool{}, expected: map[string]svcLBExpect{}}
	see := func(table string, m model.Model) {
		if table != nbdb.LoadBalancerTable {
			return
		}
		lb := m.(*nbdb.LoadBalancer)
		if !strings.HasPrefix(lb.Name, w.prefix) {
			return
		}
		now := time.Now()
		complete := len(lb.Vips) > 0
		for _, v := range lb.Vips {
			complete = complete && v != "" && strings.Count(v, ",")+1 == w.eps
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if complete {
			w.done[lb.Name] = true
		}
		if x, ok := w.expected[lb.Name]; ok {
			for _, v := range lb.Vips {
				if strings.Contains(","+v+",", ","+x.backend+",") {
					x.ch <- now
					delete(w.expected, lb.Name)
					break
				}
			}
		}
	}
	e.nb.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(table string, _, m model.Model) { see(table, m) },
	})
	return w
}

func (w *svcLBWatch) complete() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done)
}

// expect returns a channel that receives the time backend arrives in the load balancer named lb.
func (w *svcLBWatch) expect(lb, backend string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	w.mu.Lock()
	w.expected[lb] = svcLBExpect{backend: backend, ch: ch}
	w.mu.Unlock()
	return ch
}
