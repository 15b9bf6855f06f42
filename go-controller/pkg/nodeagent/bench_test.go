package nodeagent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// BenchmarkCNIAdd measures CNI ADD as the runtime sees it (libcni executing kovn-cni) for pods whose network
// annotation is already present, one at a time: the time until the pod's port is in OVS (veth made, addresses
// set, port on br-int: the ADD without the wait for ovn-installed), and the whole ADD, which returns only once
// ovn-controller has installed the port. KOVN_BENCH_CNI_PODS sets the count (default 100).
func BenchmarkCNIAdd(b *testing.B) {
	n := envInt("KOVN_BENCH_CNI_PODS", 100)
	for b.Loop() {
		c := newCluster(b, true)
		var mu sync.Mutex
		seen := map[string]time.Time{}
		c.node.OVS.Cache().AddEventHandler(&cache.EventHandlerFuncs{AddFunc: func(table string, m model.Model) {
			if table == vswitchd.InterfaceTable {
				mu.Lock()
				seen[m.(*vswitchd.Interface).Name] = time.Now()
				mu.Unlock()
			}
		}})
		var sandboxes []*sandbox
		for i := range n {
			pod, _ := c.createPod("bench", fmt.Sprintf("pod-%03d", i))
			sandboxes = append(sandboxes, c.newSandbox(pod))
		}
		var wired, total []time.Duration
		for _, s := range sandboxes {
			start := time.Now()
			if _, err := c.cni.AddNetworkList(context.Background(), c.conf, c.rt(s)); err != nil {
				b.Fatal(err)
			}
			total = append(total, time.Since(start))
			mu.Lock()
			wired = append(wired, seen[podnet.HostVethName(s.id)].Sub(start))
			mu.Unlock()
		}
		slices.Sort(wired)
		slices.Sort(total)
		p := func(d []time.Duration, q int) float64 {
			return float64(d[min(len(d)*q/100, len(d)-1)].Microseconds()) / 1000
		}
		b.ReportMetric(p(wired, 50), "wired-p50-ms")
		b.ReportMetric(p(wired, 99), "wired-p99-ms")
		b.ReportMetric(p(total, 50), "add-p50-ms")
		b.ReportMetric(p(total, 99), "add-p99-ms")
		b.Logf("%d ADDs: port in OVS p50 %.1f ms p99 %.1f ms; whole ADD incl. ovn-installed p50 %.1f ms p99 %.1f ms",
			n, p(wired, 50), p(wired, 99), p(total, 50), p(total, 99))
	}
}
