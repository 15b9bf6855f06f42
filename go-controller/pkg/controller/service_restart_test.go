package controller

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/services"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// dbSnapshot renders every cached NB row by "table uuid", leaving out the rows (and the references to them)
// whose UUIDs are in drop.
func dbSnapshot(nb client.Client, drop map[string]bool) map[string]string {
	out := map[string]string{}
	for table := range nb.Schema().Tables {
		rows := nb.Cache().Table(table)
		if rows == nil {
			continue
		}
		for uuid, row := range rows.RowsShallow() {
			if !drop[uuid] {
				out[table+" "+uuid] = rowString(row, drop)
			}
		}
	}
	return out
}

// rowString renders a model's columns; sets are sorted and lose the values in drop.
func rowString(m model.Model, drop map[string]bool) string {
	v := reflect.ValueOf(m).Elem()
	var parts []string
	for i := range v.NumField() {
		f := v.Field(i)
		var s string
		switch f.Kind() {
		case reflect.Slice:
			var elems []string
			for j := range f.Len() {
				if e := fmt.Sprint(f.Index(j).Interface()); !drop[e] {
					elems = append(elems, e)
				}
			}
			sort.Strings(elems)
			s = fmt.Sprint(elems)
		case reflect.Pointer:
			s = "nil"
			if !f.IsNil() {
				s = fmt.Sprint(f.Elem().Interface())
			}
		default:
			s = fmt.Sprint(f.Interface())
		}
		parts = append(parts, v.Type().Field(i).Name+"="+s)
	}
	return strings.Join(parts, " ")
}

func diffSnapshots(got, want map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, "missing "+k+": "+w)
		} else if g != w {
			lines = append(lines, "changed "+k+":\n  got:  "+g+"\n  want: "+w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, "extra "+k+": "+g)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestServiceRestartRemovesStaleRowsAndChangesNothingElse(t *testing.T) {
	e := newEnv(t, config.Default())
	c, stop := e.startController()
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.createNode("n2", nil)
	e.waitNodeRows([]string{"gw1", "n2"}, []string{"gw1"})
	port := []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080), epPort("dns", corev1.ProtocolUDP, 5353)}
	eps := []discoveryv1.Endpoint{readyEndpoint("10.244.0.60", "gw1"), readyEndpoint("10.244.1.60", "n2")}
	e.createService("svc", "keep", corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	e.createService("svc", "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 30080)}})
	e.createService("svc", "itp", corev1.ServiceSpec{InternalTrafficPolicy: new(corev1.ServiceInternalTrafficPolicyLocal),
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	for _, name := range []string{"gone", "shrink"} {
		e.createService("svc", name, corev1.ServiceSpec{Ports: []corev1.ServicePort{
			svcPort("http", corev1.ProtocolTCP, 80, 0), svcPort("dns", corev1.ProtocolUDP, 53, 0)}})
	}
	for _, s := range []string{"keep", "np", "itp", "gone", "shrink"} {
		e.putSlice("svc", s, s+"-1", port, eps...)
	}
	// keep 1, np cluster + gw1 router copy + gw1 internal, itp one per node (2), gone 2, shrink 2.
	e.eventually("load balancers", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Count(d, "\n")+1 == 10, d
	})
	e.settle(c)
	stop()

	// While no controller runs: a service is deleted, another loses its UDP port, and a load balancer of a
	// service that never existed appears (in the cluster group and on a switch).
	gone := lbUUIDs(e.nb, "svc", "gone")
	if len(gone) != 2 {
		t.Fatalf("gone has %d load balancers, want 2", len(gone))
	}
	shrinkUDP, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: "Service_svc/shrink_UDP_cluster"})
	if shrinkUDP == nil {
		t.Fatal("no UDP load balancer of shrink")
	}
	gone = append(gone, shrinkUDP.UUID)
	e.updateService("svc", "shrink", func(s *corev1.Service) { s.Spec.Ports = s.Spec.Ports[:1] })
	if err := e.kube.CoreV1().Services("svc").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.kube.DiscoveryV1().EndpointSlices("svc").Delete(context.Background(), "gone-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ghost := &nbdb.LoadBalancer{Name: "Service_ghost/old_TCP_cluster", Protocol: new("tcp"),
		Vips: map[string]string{"10.96.99.99:80": "10.244.9.9:80"}, Options: map[string]string{"reject": "true"},
		ExternalIDs: ownership.NewOwner(ownership.KindService, "ghost", "old").ID("cluster-tcp").ExternalIDs(nil)}
	ops, err := nbops.CreateOrUpdate(e.nb, ghost)
	for _, step := range []func() ([]ovsdb.Operation, error){
		func() ([]ovsdb.Operation, error) {
			g := &nbdb.LoadBalancerGroup{Name: services.ClusterGroup}
			return nbops.InsertToSet(e.nb, g, &g.LoadBalancer, []string{ghost.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			sw := &nbdb.LogicalSwitch{Name: "n2"}
			return nbops.InsertToSet(e.nb, sw, &sw.LoadBalancer, []string{ghost.UUID})
		},
	} {
		if err == nil {
			var more []ovsdb.Operation
			more, err = step()
			ops = append(ops, more...)
		}
	}
	e.commit(ops, err)
	planted, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: ghost.Name})
	if planted == nil || len(lbAttachments(e.nb)[planted.UUID]) != 2 {
		t.Fatalf("planting the stale load balancer failed: %v", planted)
	}
	drop := map[string]bool{planted.UUID: true}
	for _, u := range gone {
		drop[u] = true
	}
	want := dbSnapshot(e.nb, drop)

	c2, stop2 := e.startController()
	e.settle(c2)
	if d := diffSnapshots(dbSnapshot(e.nb, nil), want); d != "" {
		t.Errorf("after restart NB differs from before minus the deleted service's, the removed port's and the stale load balancers:\n%s", d)
	}
	e.assertNoDanglingLBRefs()
	stop2()

	// A restart with nothing changed writes nothing.
	dbFile := filepath.Join(e.ovn.Dir, "nb.db")
	sizeBefore := fileSize(t, dbFile)
	c3, _ := e.startController()
	e.settle(c3)
	if n := c3.Stats().Transactions.Load(); n != 0 {
		t.Errorf("restart with nothing changed issued %d NB transactions", n)
	}
	if after := fileSize(t, dbFile); after != sizeBefore {
		t.Errorf("NB database grew from %d to %d bytes on a restart with nothing changed", sizeBefore, after)
	}
}

// TestServiceStaleRowDeletionSparesForeignLoadBalancers: a Load_Balancer row kovn does not own and that has no
// name (`ovn-nbctl create Load_Balancer vips=...` makes one) must survive a service dropping one of its own load
// balancers, and the service's row must go.
func TestServiceStaleRowDeletionSparesForeignLoadBalancers(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("n1", nil)
	e.waitNodeRows([]string{"n1"}, nil)
	foreign := &nbdb.LoadBalancer{Protocol: new("tcp"), Vips: map[string]string{"172.30.0.1:80": "172.30.1.1:80"}}
	e.commit(nbops.Create(e.nb, foreign))
	var lbs []*nbdb.LoadBalancer
	_ = e.nb.WhereCache(func(lb *nbdb.LoadBalancer) bool { return lb.Name == "" }).List(context.Background(), &lbs)
	if len(lbs) != 1 {
		t.Fatalf("%d nameless load balancers, want the one planted", len(lbs))
	}
	foreignUUID := lbs[0].UUID

	e.createService("svc", "s", corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	e.putSlice("svc", "s", "s-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, readyEndpoint("10.244.0.70", "n1"))
	e.eventually("the service's load balancer", func() (bool, string) {
		return len(lbUUIDs(e.nb, "svc", "s")) == 1, lbDump(e.nb, "svc")
	})
	e.settle(c)
	e.updateService("svc", "s", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
	})
	e.settle(c)
	if lb, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{UUID: foreignUUID}); lb == nil {
		t.Errorf("the foreign nameless load balancer %s was deleted", foreignUUID)
	}
	if u := lbUUIDs(e.nb, "svc", "s"); len(u) != 0 {
		t.Errorf("the ExternalName service still has load balancers %v", u)
	}
}

// TestServiceSliceRelabelledToAnotherService: an EndpointSlice moved to another service (its
// kubernetes.io/service-name label changed) must leave the first service's load balancer too.
func TestServiceSliceRelabelledToAnotherService(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("n1", nil)
	tcp80 := []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}
	a := e.createService("svc", "a", corev1.ServiceSpec{Ports: tcp80})
	b := e.createService("svc", "b", corev1.ServiceSpec{Ports: tcp80})
	e.putSlice("svc", "a", "shared", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, readyEndpoint("10.244.0.80", "n1"))
	line := func(svc, ip, backends string) string {
		return fmt.Sprintf("Service_svc/%s_TCP_cluster tcp vips=map[%s:80:%s] options=%s ids=%s on=%s",
			svc, ip, backends, lbOpts, ids("svc/"+svc, "cluster-tcp"), groupAt)
	}
	e.waitLBs("svc", line("a", a.Spec.ClusterIP, "10.244.0.80:8080")+"\n"+line("b", b.Spec.ClusterIP, ""))
	e.settle(c)

	s, err := e.kube.DiscoveryV1().EndpointSlices("svc").Get(context.Background(), "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Labels[discoveryv1.LabelServiceName] = "b"
	if _, err := e.kube.DiscoveryV1().EndpointSlices("svc").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitLBs("svc", line("a", a.Spec.ClusterIP, "")+"\n"+line("b", b.Spec.ClusterIP, "10.244.0.80:8080"))
}

// TestServiceLeavesForeignSwitchesAndRoutersAlone: NB may hold switches and routers kovn does not own (an
// operator's `ovn-nbctl ls-add`). A node whose switch and gateway router do not exist yet (here: no node subnet
// left) has no load balancers, and no service load balancer is ever attached to those foreign rows.
func TestServiceLeavesForeignSwitchesAndRoutersAlone(t *testing.T) {
	cfg := config.Default()
	cfg.ClusterCIDRs = []config.ClusterCIDR{{CIDR: netip.MustParsePrefix("10.244.0.0/28"), HostPrefixLen: 29}} // two node subnets
	e := newEnv(t, cfg)
	e.commit(nbops.Create(e.nb, &nbdb.LogicalSwitch{Name: "operator-ls"}))
	e.commit(nbops.Create(e.nb, &nbdb.LogicalRouter{Name: "operator-lr"}))
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("n0", nil)
	e.nodeSubnet("n0")
	e.createNode("gw1", testGateway(t, 1))
	e.waitNodeRows([]string{"n0", "gw1"}, []string{"gw1"})
	e.createNode("gw2", testGateway(t, 2)) // no subnet left: no switch, no gateway router
	e.waitEvent("", "gw2", "NoSubnetLeft")

	port := []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}
	eps := []discoveryv1.Endpoint{readyEndpoint("10.244.0.3", "gw1"), readyEndpoint("10.244.0.4", "gw2")}
	e.createService("svc", "itp", corev1.ServiceSpec{InternalTrafficPolicy: new(corev1.ServiceInternalTrafficPolicyLocal),
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	e.createService("svc", "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 30080)}})
	e.putSlice("svc", "itp", "itp-1", port, eps...)
	e.putSlice("svc", "np", "np-1", port, eps...)
	e.eventually("load balancers on gw1", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Contains(d, "Service_svc/itp_TCP_local_gw1 ") && strings.Contains(d, "Service_svc/np_TCP_node_gw1 "), d
	})
	e.settle(c)
	d := lbDump(e.nb, "svc")
	if strings.Contains(d, "operator-") || strings.Contains(d, "_gw2") {
		t.Errorf("load balancers for a node without switch or gateway router, or on foreign rows:\n%s", d)
	}
}
