package nbops_test

import (
	"fmt"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// BenchmarkCreateLSPs measures how many logical switch ports per second the write layer commits to a real NB
// ovsdb-server, in transactions of 1, 100 and 1,000 ports: each port is built with CreateOrUpdate (a cache lookup
// by name, then an insert) and added to its switch with one mutation per transaction. Every 1,000 ports go to a
// fresh switch, as pods spread over nodes.
func BenchmarkCreateLSPs(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c := ovntest.StartNB(b).NB
			must := must(b)
			var ls *nbdb.LogicalSwitch
			n := 0
			for b.Loop() {
				var ops []ovsdb.Operation
				if n%1000 == 0 {
					node := ownership.NewOwner(ownership.KindNode, "", fmt.Sprintf("node%d", n/1000))
					ls = &nbdb.LogicalSwitch{Name: node.Key, ExternalIDs: node.ID("switch").ExternalIDs(nil)}
					ops = must(nbops.CreateOrUpdate(c, ls))
				}
				uuids := make([]string, 0, batch)
				for range batch {
					owner := ownership.NewOwner(ownership.KindPod, "bench", fmt.Sprintf("pod-%d", n))
					ip := fmt.Sprintf("10.%d.%d.%d", 128+n>>16&0x7f, n>>8&0xff, n&0xff)
					mac := fmt.Sprintf("0a:58:0a:%02x:%02x:%02x", 128+n>>16&0x7f, n>>8&0xff, n&0xff)
					lsp := &nbdb.LogicalSwitchPort{
						Name:         "bench_pod-" + fmt.Sprint(n),
						Addresses:    []string{mac + " " + ip},
						PortSecurity: []string{mac + " " + ip},
						ExternalIDs:  owner.ID("port").ExternalIDs(nil),
					}
					ops = append(ops, must(nbops.CreateOrUpdate(c, lsp))...)
					uuids = append(uuids, lsp.UUID)
					n++
				}
				ops = append(ops, must(nbops.InsertToSet(c, ls, &ls.Ports, uuids))...)
				commit(b, c, ops)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "LSPs/s")
		})
	}
}
