package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// Helpers of the Service integration tests: building services and slices, and rendering load balancers.

func svcPort(name string, proto corev1.Protocol, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port, NodePort: nodePort}
}

func epPort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: new(name), Protocol: new(proto), Port: new(port)}
}

func readyEndpoint(ip, node string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: new(node),
		Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)}}
}

// createService creates a service and returns it as the apiserver stored it (with its cluster IP).
func (e *env) createService(ns, name string, spec corev1.ServiceSpec) *corev1.Service {
	e.t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	out, err := e.kube.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) updateService(ns, name string, change func(*corev1.Service)) {
	e.t.Helper()
	ctx := context.Background()
	svc, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	change(svc)
	if _, err := e.kube.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// putSlice creates or replaces an EndpointSlice of a service (this test bed has no EndpointSlice controller).
func (e *env) putSlice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) {
	e.t.Helper()
	if err := putSliceErr(e, ns, svc, name, ports, eps); err != nil {
		e.t.Fatal(err)
	}
}

func putSliceErr(e *env, ns, svc, name string, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) error {
	ctx := context.Background()
	api := e.kube.DiscoveryV1().EndpointSlices(ns)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
		}
		_, err = api.Create(ctx, s, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cur.Ports, cur.Endpoints = ports, eps
	_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// lbAttachments maps each load balancer UUID to where it is attached ("group X", "switch X", "router X"), sorted.
func lbAttachments(nb client.Client) map[string][]string {
	ctx := context.Background()
	out := map[string][]string{}
	var groups []*nbdb.LoadBalancerGroup
	var switches []*nbdb.LogicalSwitch
	var routers []*nbdb.LogicalRouter
	_ = nb.List(ctx, &groups)
	_ = nb.List(ctx, &switches)
	_ = nb.List(ctx, &routers)
	for _, g := range groups {
		for _, u := range g.LoadBalancer {
			out[u] = append(out[u], "group "+g.Name)
		}
	}
	for _, s := range switches {
		for _, u := range s.LoadBalancer {
			out[u] = append(out[u], "switch "+s.Name)
		}
	}
	for _, r := range routers {
		for _, u := range r.LoadBalancer {
			out[u] = append(out[u], "router "+r.Name)
		}
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// lbLine renders a Load_Balancer row and its attachments on one line (fmt prints maps sorted by key).
func lbLine(lb *nbdb.LoadBalancer, on []string) string {
	proto := "-"
	if lb.Protocol != nil {
		proto = *lb.Protocol
	}
	if on == nil {
		on = []string{}
	}
	s := fmt.Sprintf("%s %s vips=%v options=%v ids=%v on=%v", lb.Name, proto, lb.Vips, lb.Options, lb.ExternalIDs, on)
	if len(lb.SelectionFields) > 0 {
		s += fmt.Sprintf(" sel=%v", lb.SelectionFields)
	}
	if len(lb.HealthCheck) > 0 || len(lb.IPPortMappings) > 0 {
		s += fmt.Sprintf(" health=%v mappings=%v", lb.HealthCheck, lb.IPPortMappings)
	}
	return s
}

// lbRows returns every Load_Balancer row by UUID, rendered by lbLine.
func lbRows(nb client.Client) map[string]string {
	var lbs []*nbdb.LoadBalancer
	_ = nb.List(context.Background(), &lbs)
	on := lbAttachments(nb)
	out := map[string]string{}
	for _, lb := range lbs {
		out[lb.UUID] = lbLine(lb, on[lb.UUID])
	}
	return out
}

// lbDump renders the load balancers of the services of namespace ns as sorted lines.
func lbDump(nb client.Client, ns string) string {
	var lines []string
	for _, l := range lbRows(nb) {
		if strings.HasPrefix(l, "Service_"+ns+"/") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// lbUUIDs returns the UUIDs of the load balancers a service owns.
func lbUUIDs(nb client.Client, ns, name string) []string {
	rows, _ := nbops.FindByOwner(nb, ownership.NewOwner(ownership.KindService, ns, name))
	var out []string
	for _, r := range rows {
		if r.Table == nbdb.LoadBalancerTable {
			out = append(out, r.UUID)
		}
	}
	return out
}

func (e *env) waitLBs(ns, want string) {
	e.t.Helper()
	want = sortLines(want)
	e.eventually("load balancers of namespace "+ns, func() (bool, string) {
		got := lbDump(e.nb, ns)
		return got == want, "got:\n" + got + "\nwant:\n" + want
	})
}

// ids renders the external_ids of a service's load balancer with ownership name id.
func ids(svc, id string) string {
	return fmt.Sprintf("map[kovn.io/name:%s kovn.io/owner:%s kovn.io/owner-kind:Service]", id, svc)
}

// testGateway is the gateway of node i: node IP 192.168.1.1<i>/24.
func testGateway(t *testing.T, i int) map[string]string {
	return gatewayAnnotation(t, annotations.NodeGatewayInfo{ChassisID: fmt.Sprintf("chassis-%d", i), Bridge: "br-ex",
		MAC: fmt.Sprintf("0a:00:00:00:01:%02x", i), IP: netip.MustParsePrefix(fmt.Sprintf("192.168.1.1%d/24", i)),
		NextHop: netip.MustParseAddr("192.168.1.1")})
}

// waitNodeRows waits for the nodes' switches and, for gws, their gateway routers.
func (e *env) waitNodeRows(nodes []string, gws []string) {
	e.t.Helper()
	e.eventually("node switches and gateway routers", func() (bool, string) {
		for _, n := range nodes {
			if sw, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: n}); sw == nil {
				return false, "no switch " + n
			}
		}
		for _, n := range gws {
			if gr, _ := nbops.Lookup(e.nb, &nbdb.LogicalRouter{Name: topology.GatewayRouter(n)}); gr == nil {
				return false, "no gateway router of " + n
			}
		}
		return true, ""
	})
}

// rowEvents records, while armed, the NB rows the client cache sees inserted, updated or deleted.
type rowEvents struct {
	mu    sync.Mutex
	armed bool
	got   []string
	n     map[string]int // by table
}

func watchRows(nb client.Client) *rowEvents {
	r := &rowEvents{n: map[string]int{}}
	rec := func(what, table string, m model.Model) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.armed {
			return
		}
		uuid := "?"
		if u, ok := m.(interface{ GetUUID() string }); ok {
			uuid = u.GetUUID()
		}
		r.got = append(r.got, what+" "+table+" "+uuid)
		r.n[table]++
	}
	nb.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(table string, m model.Model) { rec("insert", table, m) },
		UpdateFunc: func(table string, _, m model.Model) { rec("update", table, m) },
		DeleteFunc: func(table string, m model.Model) { rec("delete", table, m) },
	})
	return r
}

// arm starts recording afresh.
func (r *rowEvents) arm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed, r.got, r.n = true, nil, map[string]int{}
}

// take stops recording and returns the events, sorted.
func (r *rowEvents) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = false
	out := slices.Clone(r.got)
	slices.Sort(out)
	return out
}

// count returns how many rows changed so far, in every table but NB_Global (which ovn-northd writes).
func (r *rowEvents) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for t, n := range r.n {
		if t != nbdb.NBGlobalTable {
			total += n
		}
	}
	return total
}

// settle waits until the controller is idle and stays so.
func (e *env) settle(c *Controller) {
	e.t.Helper()
	e.waitIdle(c)
	time.Sleep(300 * time.Millisecond)
	e.waitIdle(c)
}
