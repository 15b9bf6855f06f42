package controller

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// ownedRows returns "table uuid owner/name" for every kovn-owned row.
func (e *env) ownedRows() []string {
	rows, err := nbops.ListOwned(e.nb, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s %s %s", r.Table, r.UUID, r.ID))
	}
	return out
}

func (e *env) commit(ops []ovsdb.Operation, err error) {
	e.t.Helper()
	if err == nil {
		_, err = nbops.Transact(context.Background(), e.nb, ops)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestRestartRemovesStaleRowsAndChangesNothingElse(t *testing.T) {
	e := newEnv(t, config.Default())
	c, stop := e.startController()
	e.createNamespace("a")
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	for i := range 6 {
		e.createPod("a", fmt.Sprintf("p%d", i), []string{"n1", "n2"}[i%2])
	}
	for i := range 6 {
		e.podIP("a", fmt.Sprintf("p%d", i))
	}
	e.eventually("all ports", func() (bool, string) {
		n := e.nb.Cache().Table(nbdb.LogicalSwitchPortTable).Len()
		return n == 6+2*2+1, fmt.Sprintf("%d ports", n) // pods, 2 per node, join switch's router port
	})
	e.waitIdle(c)
	stop()
	before := e.ownedRows()

	// While no controller runs: a pod goes away, and rows whose owners never existed appear.
	gone := e.podIP("a", "p0")
	e.deletePod("a", "p0")
	ghostPod := ownership.NewOwner(ownership.KindPod, "a", "ghost")
	lsp := &nbdb.LogicalSwitchPort{Name: "a_ghost", Addresses: []string{"0a:58:0a:f4:00:63 10.244.0.99"}, ExternalIDs: ghostPod.ID("port").ExternalIDs(nil)}
	ops, err := nbops.CreateOrUpdate(e.nb, lsp)
	if err == nil {
		sw := &nbdb.LogicalSwitch{Name: "n1"}
		var more []ovsdb.Operation
		more, err = nbops.InsertToSet(e.nb, sw, &sw.Ports, []string{lsp.UUID})
		ops = append(ops, more...)
	}
	e.commit(ops, err)
	ghostNode := topology.ForNode("ghost-node", netipMust("10.244.200.0/24"))
	e.commit(nbops.CreateOrUpdate(e.nb, ghostNode.Switch))
	e.commit(nbops.CreateOrUpdate(e.nb, topology.ForNamespace("ghost-ns", []string{"10.244.9.9"})))
	as := &nbdb.AddressSet{Name: topology.NamespaceAddressSet("a")}
	e.commit(nbops.InsertToSet(e.nb, as, &as.Addresses, []string{"10.244.7.7"}))

	c2, stop2 := e.startController()
	e.waitIdle(c2)
	var want []string
	for _, r := range before {
		if !slices.Contains([]string{topology.PodPort("a", "p0")}, lspNameOf(e, r)) {
			want = append(want, r)
		}
	}
	if got := e.ownedRows(); !slices.Equal(got, want) {
		t.Fatalf("after restart the owned rows differ from before minus the deleted pod's port.\n got: %v\nwant: %v", got, want)
	}
	if got := e.addressSet("a"); slices.Contains(got, gone.String()) || slices.Contains(got, "10.244.7.7") || len(got) != 5 {
		t.Fatalf("address set of a after restart: %v", got)
	}
	stop2()

	// A restart with nothing changed writes nothing: no transaction, and the database file does not grow.
	dbFile := filepath.Join(e.ovn.Dir, "nb.db")
	sizeBefore := fileSize(t, dbFile)
	c3, _ := e.startController()
	e.waitIdle(c3)
	time.Sleep(500 * time.Millisecond) // let any late event through
	e.waitIdle(c3)
	if n := c3.Stats().Transactions.Load(); n != 0 {
		t.Fatalf("restart with nothing changed issued %d NB transactions", n)
	}
	if after := fileSize(t, dbFile); after != sizeBefore {
		t.Fatalf("NB database grew from %d to %d bytes on a restart with nothing changed", sizeBefore, after)
	}
}

// lspNameOf returns the LSP name of an ownedRows line, or "".
func lspNameOf(e *env, row string) string {
	var table, uuid string
	fmt.Sscanf(row, "%s %s", &table, &uuid)
	if table != nbdb.LogicalSwitchPortTable {
		return ""
	}
	m := e.nb.Cache().Table(table).Row(uuid)
	if m == nil {
		// Deleted since: only the pod deleted while the controller was down.
		return topology.PodPort("a", "p0")
	}
	return m.(*nbdb.LogicalSwitchPort).Name
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// A pod deleted and recreated under the same name on another node while no controller runs: the restarted
// controller moves the port to the new node's switch (never leaving it on two) and drops the old IP.
func TestPodRecreatedOnAnotherNodeMovesItsPort(t *testing.T) {
	e := newEnv(t, config.Default())
	_, stop := e.startController()
	e.createNamespace("mv")
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	e.createPod("mv", "x", "n1")
	oldIP := e.podIP("mv", "x")
	e.eventually("port on n1", func() (bool, string) { return e.portOnSwitch("mv", "x", "n1", oldIP) })
	stop()
	e.deletePod("mv", "x")
	e.createPod("mv", "x", "n2")
	c, _ := e.startController()
	newIP := e.podIP("mv", "x")
	e.eventually("port on n2", func() (bool, string) { return e.portOnSwitch("mv", "x", "n2", newIP) })
	e.waitIdle(c)
	sw1, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: "n1"})
	lsp, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort("mv", "x")})
	if slices.Contains(sw1.Ports, lsp.UUID) {
		t.Fatal("the pod's port is still on its old node's switch")
	}
	if got := e.addressSet("mv"); !slices.Equal(got, []string{newIP.String()}) {
		t.Fatalf("address set after the move: %v, want only %s", got, newIP)
	}
}

func TestOnlyTheLeaderWrites(t *testing.T) {
	e := newEnv(t, config.Default())
	le := LeaderElection{Namespace: "kube-system", Name: "kovn-controller",
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}

	type replica struct {
		cancel context.CancelFunc
		done   chan struct{}
		mu     sync.Mutex
		ctrl   *Controller
	}
	start := func(id string) *replica {
		r := &replica{done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		nb, err := ovndb.ConnectNB(ctx, ovndb.Config{Address: e.ovn.NBRemote})
		if err != nil {
			t.Fatal(err)
		}
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.kube.CoreV1().Events("")})
		l := le
		l.Identity = id
		go func() {
			defer close(r.done)
			defer nb.Close()
			_ = RunAsLeader(ctx, e.kube, l, testLogger(t), func(ctx context.Context) {
				c, err := New(Config{Cluster: e.cfg, NB: nb, Kube: e.kube, Logger: testLogger(t),
					Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kovn-controller"})})
				if err != nil {
					t.Error(err)
					return
				}
				r.mu.Lock()
				r.ctrl = c
				r.mu.Unlock()
				_ = c.Run(ctx)
			})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	ctrl := func(r *replica) *Controller { r.mu.Lock(); defer r.mu.Unlock(); return r.ctrl }

	a := start("replica-a")
	e.eventually("replica a leads", func() (bool, string) { return ctrl(a) != nil, "" })
	b := start("replica-b")
	e.createNamespace("x")
	e.createNode("n1", nil)
	e.createPod("x", "p1", "n1")
	ip := e.podIP("x", "p1")
	e.eventually("port of p1", func() (bool, string) { return e.portOnSwitch("x", "p1", "n1", ip) })
	time.Sleep(time.Second) // b has had several retry periods to (wrongly) start
	if ctrl(b) != nil {
		t.Fatal("the follower started a controller while the leader held the lease")
	}
	if ctrl(a).Stats().Transactions.Load() == 0 {
		t.Fatal("the leader wrote nothing")
	}

	// The leader stops and releases the lease: the follower takes over and serves new pods.
	a.cancel()
	<-a.done
	e.eventually("replica b leads", func() (bool, string) { return ctrl(b) != nil, "" })
	e.createPod("x", "p2", "n1")
	ip2 := e.podIP("x", "p2")
	e.eventually("port of p2", func() (bool, string) { return e.portOnSwitch("x", "p2", "n1", ip2) })
	if ip2 == ip {
		t.Fatalf("new leader handed out %s twice", ip)
	}
}

func netipMust(s string) netip.Prefix { return netip.MustParsePrefix(s) }
