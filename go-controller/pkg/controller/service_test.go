package controller

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
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
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/services"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// Options every service load balancer carries; the gateway router's copy under externalTrafficPolicy Local
// also keeps the client IP.
const (
	lbOpts     = "map[event:false reject:true]"
	lbOptsSNAT = "map[event:false reject:true skip_snat:true]"
	groupAt    = "[group " + services.ClusterGroup + "]"
)

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

func TestServiceClusterIPLoadBalancers(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("n1", nil)
	e.createNode("n2", nil)
	web := e.createService("svc", "web", corev1.ServiceSpec{Ports: []corev1.ServicePort{
		svcPort("http", corev1.ProtocolTCP, 80, 0), svcPort("https", corev1.ProtocolTCP, 443, 0),
		svcPort("dns", corev1.ProtocolUDP, 53, 0), svcPort("sctp", corev1.ProtocolSCTP, 9000, 0),
	}})
	empty := e.createService("svc", "empty", corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	notReady := readyEndpoint("10.244.1.6", "n2")
	notReady.Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(false), Terminating: new(false)}
	terminating := readyEndpoint("10.244.1.7", "n2")
	terminating.Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)}
	e.putSlice("svc", "web", "web-abc", []discoveryv1.EndpointPort{
		epPort("http", corev1.ProtocolTCP, 8080), epPort("https", corev1.ProtocolTCP, 8443),
		epPort("dns", corev1.ProtocolUDP, 5353), epPort("sctp", corev1.ProtocolSCTP, 9000),
	}, readyEndpoint("10.244.0.5", "n1"), readyEndpoint("10.244.1.5", "n2"), notReady, terminating)

	// One load balancer per protocol, all in the cluster group, nowhere else; no endpoint: the VIP rejects.
	ip, ipEmpty := web.Spec.ClusterIP, empty.Spec.ClusterIP
	want := fmt.Sprintf(`
Service_svc/web_TCP_cluster tcp vips=map[%[1]s:443:10.244.0.5:8443,10.244.1.5:8443 %[1]s:80:10.244.0.5:8080,10.244.1.5:8080] options=%[2]s ids=%[3]s on=%[6]s
Service_svc/web_UDP_cluster udp vips=map[%[1]s:53:10.244.0.5:5353,10.244.1.5:5353] options=%[2]s ids=%[4]s on=%[6]s
Service_svc/web_SCTP_cluster sctp vips=map[%[1]s:9000:10.244.0.5:9000,10.244.1.5:9000] options=%[2]s ids=%[5]s on=%[6]s
Service_svc/empty_TCP_cluster tcp vips=map[%[7]s:80:] options=%[2]s ids=%[8]s on=%[6]s`,
		ip, lbOpts, ids("svc/web", "cluster-tcp"), ids("svc/web", "cluster-udp"), ids("svc/web", "cluster-sctp"), groupAt,
		ipEmpty, ids("svc/empty", "cluster-tcp"))
	e.waitLBs("svc", want)
	e.settle(c)
	e.waitLBs("svc", want)

	// The group is on every node switch and on the cluster router.
	grp, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancerGroup{Name: services.ClusterGroup})
	if grp == nil {
		t.Fatal("no cluster load-balancer group")
	}
	for _, n := range []string{"n1", "n2"} {
		sw, _ := nbops.Lookup(e.nb, &nbdb.LogicalSwitch{Name: n})
		if sw == nil || !slices.Equal(sw.LoadBalancerGroup, []string{grp.UUID}) {
			t.Errorf("switch %s: load_balancer_group %v, want [%s]", n, sw.LoadBalancerGroup, grp.UUID)
		}
	}
	cr, _ := nbops.Lookup(e.nb, &nbdb.LogicalRouter{Name: topology.ClusterRouter})
	if cr == nil || !slices.Equal(cr.LoadBalancerGroup, []string{grp.UUID}) {
		t.Errorf("cluster router: load_balancer_group %v, want [%s]", cr.LoadBalancerGroup, grp.UUID)
	}

	// With no ready endpoint left, the serving-and-terminating ones serve.
	e.putSlice("svc", "web", "web-abc", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, notReady, terminating)
	e.waitLBs("svc", fmt.Sprintf(`
Service_svc/web_TCP_cluster tcp vips=map[%[1]s:443: %[1]s:80:10.244.1.7:8080] options=%[2]s ids=%[3]s on=%[6]s
Service_svc/web_UDP_cluster udp vips=map[%[1]s:53:] options=%[2]s ids=%[4]s on=%[6]s
Service_svc/web_SCTP_cluster sctp vips=map[%[1]s:9000:] options=%[2]s ids=%[5]s on=%[6]s
Service_svc/empty_TCP_cluster tcp vips=map[%[7]s:80:] options=%[2]s ids=%[8]s on=%[6]s`,
		ip, lbOpts, ids("svc/web", "cluster-tcp"), ids("svc/web", "cluster-udp"), ids("svc/web", "cluster-sctp"), groupAt,
		ipEmpty, ids("svc/empty", "cluster-tcp")))
}

// nodePortWant renders the load balancers of the test's two NodePort services for the given gateway nodes
// (name -> node IP): np (externalTrafficPolicy Cluster, TCP 80/30080 and UDP 53/30053, external IP 172.20.0.5)
// and loc (externalTrafficPolicy Local, ClientIP affinity, TCP 81/30081). Endpoints: 10.244.0.10 on gw1 and
// 10.244.2.10 on n3.
func nodePortWant(npIP, locIP string, gws map[string]string) string {
	all := func(port int) string { return fmt.Sprintf("10.244.0.10:%d,10.244.2.10:%d", port, port) }
	local := map[string]string{"gw1": "10.244.0.10", "n3": "10.244.2.10"}
	lines := []string{
		fmt.Sprintf("Service_svc/np_TCP_cluster tcp vips=map[%s:80:%s] options=%s ids=%s on=%s", npIP, all(8080), lbOpts, ids("svc/np", "cluster-tcp"), groupAt),
		fmt.Sprintf("Service_svc/np_UDP_cluster udp vips=map[%s:53:%s] options=%s ids=%s on=%s", npIP, all(5353), lbOpts, ids("svc/np", "cluster-udp"), groupAt),
		fmt.Sprintf("Service_svc/loc_TCP_cluster tcp vips=map[%s:81:%s] options=%s ids=%s on=%s sel=[ip_src]", locIP, all(8081), lbOpts, ids("svc/loc", "cluster-tcp"), groupAt),
	}
	for n, nodeIP := range gws {
		on := fmt.Sprintf("[router GR_%s switch %s]", n, n)
		lines = append(lines,
			fmt.Sprintf("Service_svc/np_TCP_node_%s tcp vips=map[172.20.0.5:80:%s %s:30080:%s] options=%s ids=%s on=%s",
				n, all(8080), nodeIP, all(8080), lbOpts, ids("svc/np", "node-"+n+"-tcp"), on),
			fmt.Sprintf("Service_svc/np_UDP_node_%s udp vips=map[172.20.0.5:53:%s %s:30053:%s] options=%s ids=%s on=%s",
				n, all(5353), nodeIP, all(5353), lbOpts, ids("svc/np", "node-"+n+"-udp"), on))
		mine := ""
		if ip, ok := local[n]; ok {
			mine = ip + ":8081"
		}
		lines = append(lines,
			fmt.Sprintf("Service_svc/loc_TCP_node_%s_external tcp vips=map[%s:30081:%s] options=%s ids=%s on=[router GR_%s] sel=[ip_src]",
				n, nodeIP, mine, lbOptsSNAT, ids("svc/loc", "node-"+n+"-tcp-external"), n),
			fmt.Sprintf("Service_svc/loc_TCP_node_%s_internal tcp vips=map[%s:30081:%s] options=%s ids=%s on=[switch %s] sel=[ip_src]",
				n, nodeIP, all(8081), lbOpts, ids("svc/loc", "node-"+n+"-tcp-internal"), n))
	}
	return strings.Join(lines, "\n")
}

func TestServiceNodePortLoadBalancers(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.createNode("gw2", testGateway(t, 2))
	e.createNode("n3", nil)
	e.waitNodeRows([]string{"gw1", "gw2", "n3"}, []string{"gw1", "gw2"})

	np := e.createService("svc", "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalIPs: []string{"172.20.0.5"},
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 30080), svcPort("dns", corev1.ProtocolUDP, 53, 30053)}})
	loc := e.createService("svc", "loc", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, SessionAffinity: corev1.ServiceAffinityClientIP,
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 81, 30081)}})
	eps := []discoveryv1.Endpoint{readyEndpoint("10.244.0.10", "gw1"), readyEndpoint("10.244.2.10", "n3")}
	e.putSlice("svc", "np", "np-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080), epPort("dns", corev1.ProtocolUDP, 5353)}, eps...)
	e.putSlice("svc", "loc", "loc-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8081)}, eps...)

	// Per node with a gateway: nodeIP:nodePort and the external IP, on its gateway router and its switch; with
	// externalTrafficPolicy Local the router's copy has the node's endpoints only and skips SNAT, and an
	// "internal" copy with every endpoint serves the node's pods. n3 has no gateway: no node load balancers.
	gws := map[string]string{"gw1": "192.168.1.11", "gw2": "192.168.1.12"}
	e.waitLBs("svc", nodePortWant(np.Spec.ClusterIP, loc.Spec.ClusterIP, gws))
	e.settle(c)
	e.waitLBs("svc", nodePortWant(np.Spec.ClusterIP, loc.Spec.ClusterIP, gws))

	// n3 gets a gateway: its node load balancers appear (with its local endpoint for loc).
	v := testGateway(t, 3)[annotations.NodeGateway]
	e.annotate("node", "", "n3", annotations.NodeGateway, &v)
	gws["n3"] = "192.168.1.13"
	e.waitLBs("svc", nodePortWant(np.Spec.ClusterIP, loc.Spec.ClusterIP, gws))

	// gw2 goes away: so do its node load balancers.
	e.deleteNode("gw2")
	delete(gws, "gw2")
	e.waitLBs("svc", nodePortWant(np.Spec.ClusterIP, loc.Spec.ClusterIP, gws))
	e.settle(c)
	e.assertNoDanglingLBRefs()
}

// TestServiceExternalTrafficPolicyChange: a NodePort service switching externalTrafficPolicy between Cluster and
// Local must end up exactly as if it had been created with the new policy; in particular, under Local the gateway
// router's copy (node endpoints only, skip_snat) must not stay attached to the node switch, where the "internal"
// copy now serves the node's pods.
func TestServiceExternalTrafficPolicyChange(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.createNode("n2", nil)
	e.waitNodeRows([]string{"gw1", "n2"}, []string{"gw1"})
	svc := e.createService("svc", "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 30080)}})
	e.putSlice("svc", "np", "np-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)},
		readyEndpoint("10.244.0.10", "gw1"), readyEndpoint("10.244.1.10", "n2"))
	all := "10.244.0.10:8080,10.244.1.10:8080"
	cluster := fmt.Sprintf("Service_svc/np_TCP_cluster tcp vips=map[%s:80:%s] options=%s ids=%s on=%s",
		svc.Spec.ClusterIP, all, lbOpts, ids("svc/np", "cluster-tcp"), groupAt)
	policyCluster := cluster + "\n" + fmt.Sprintf("Service_svc/np_TCP_node_gw1 tcp vips=map[192.168.1.11:30080:%s] options=%s ids=%s on=[router GR_gw1 switch gw1]",
		all, lbOpts, ids("svc/np", "node-gw1-tcp"))
	policyLocal := cluster + "\n" +
		fmt.Sprintf("Service_svc/np_TCP_node_gw1_external tcp vips=map[192.168.1.11:30080:10.244.0.10:8080] options=%s ids=%s on=[router GR_gw1]",
			lbOptsSNAT, ids("svc/np", "node-gw1-tcp-external")) + "\n" +
		fmt.Sprintf("Service_svc/np_TCP_node_gw1_internal tcp vips=map[192.168.1.11:30080:%s] options=%s ids=%s on=[switch gw1]",
			all, lbOpts, ids("svc/np", "node-gw1-tcp-internal"))
	e.waitLBs("svc", policyCluster)
	e.settle(c)

	e.updateService("svc", "np", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	e.waitLBs("svc", policyLocal)

	e.updateService("svc", "np", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	})
	e.waitLBs("svc", policyCluster)
}

func TestServiceEndpointChangeIsOneRowInOneTransaction(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	events := watchRows(e.nb)
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.createNode("n2", nil)
	e.waitNodeRows([]string{"gw1", "n2"}, []string{"gw1"})
	one := e.createService("svc", "one", corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}})
	e.createService("svc", "multi", corev1.ServiceSpec{Ports: []corev1.ServicePort{
		svcPort("http", corev1.ProtocolTCP, 80, 0), svcPort("dns", corev1.ProtocolUDP, 53, 0)}})
	e.createService("svc", "np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 30080)}})
	oneEps := []discoveryv1.Endpoint{readyEndpoint("10.244.0.21", "gw1"), readyEndpoint("10.244.0.22", "gw1"), readyEndpoint("10.244.1.23", "n2")}
	e.putSlice("svc", "one", "one-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, oneEps...)
	e.putSlice("svc", "multi", "multi-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080), epPort("dns", corev1.ProtocolUDP, 53)},
		readyEndpoint("10.244.0.31", "gw1"), readyEndpoint("10.244.1.32", "n2"))
	npEps := []discoveryv1.Endpoint{readyEndpoint("10.244.0.41", "gw1"), readyEndpoint("10.244.1.42", "n2")}
	e.putSlice("svc", "np", "np-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, npEps...)
	e.eventually("all load balancers", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Count(d, "\n")+1 == 5 && strings.Count(d, "10.244.") == 3+2*2+2*2, d
	})
	e.settle(c)

	// One endpoint of a one-port ClusterIP service changes: one Load_Balancer row, its vips only, one
	// transaction of one operation.
	before := lbRows(e.nb)
	oneLB, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: "Service_svc/one_TCP_cluster"})
	tx0, op0 := c.Stats().Transactions.Load(), c.Stats().Operations.Load()
	events.arm()
	oneEps[1] = readyEndpoint("10.244.0.29", "gw1")
	e.putSlice("svc", "one", "one-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, oneEps...)
	wantVIPs := map[string]string{one.Spec.ClusterIP + ":80": "10.244.0.21:8080,10.244.0.29:8080,10.244.1.23:8080"}
	e.eventually("new backend", func() (bool, string) {
		lb, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: "Service_svc/one_TCP_cluster"})
		return lb != nil && reflect.DeepEqual(lb.Vips, wantVIPs), fmt.Sprint(lb)
	})
	e.settle(c)
	got := events.take()
	if want := []string{"update Load_Balancer " + oneLB.UUID}; !slices.Equal(got, want) {
		t.Errorf("rows changed in NB: %v, want %v", got, want)
	}
	if tx, ops := c.Stats().Transactions.Load()-tx0, c.Stats().Operations.Load()-op0; tx != 1 || ops != 1 {
		t.Errorf("%d transactions of %d operations, want 1 of 1", tx, ops)
	}
	after := lbRows(e.nb)
	oneLB.Vips = wantVIPs
	wantAfter := maps.Clone(before)
	wantAfter[oneLB.UUID] = lbLine(oneLB, lbAttachments(e.nb)[oneLB.UUID])
	if !reflect.DeepEqual(after, wantAfter) {
		t.Errorf("load balancers after the change:\n%s\nwant:\n%s", mapLines(after), mapLines(wantAfter))
	}

	// A NodePort service's endpoint changes: its cluster and node load balancers, in one transaction.
	npUUIDs := lbUUIDs(e.nb, "svc", "np")
	tx0 = c.Stats().Transactions.Load()
	events.arm()
	npEps[0] = readyEndpoint("10.244.0.49", "gw1")
	e.putSlice("svc", "np", "np-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, npEps...)
	e.eventually("new NodePort backend", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Count(d, "10.244.0.49:8080") == 2, d
	})
	e.settle(c)
	got = events.take()
	var want []string
	for _, u := range npUUIDs {
		want = append(want, "update Load_Balancer "+u)
	}
	slices.Sort(want)
	if len(npUUIDs) != 2 || !slices.Equal(got, want) {
		t.Errorf("rows changed in NB: %v, want %v", got, want)
	}
	if tx := c.Stats().Transactions.Load() - tx0; tx != 1 {
		t.Errorf("%d transactions, want 1", tx)
	}

	// The same slice written again: nothing.
	tx0 = c.Stats().Transactions.Load()
	events.arm()
	e.putSlice("svc", "np", "np-1", []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}, npEps...)
	e.updateService("svc", "one", func(s *corev1.Service) { s.Labels = map[string]string{"touched": "yes"} })
	e.settle(c)
	if got := events.take(); len(got) != 0 || c.Stats().Transactions.Load() != tx0 {
		t.Errorf("unchanged objects rewritten: %d transactions, rows %v", c.Stats().Transactions.Load()-tx0, got)
	}
}

func mapLines(m map[string]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, k+" "+v)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// assertNoDanglingLBRefs checks that every load balancer a group, switch or router refers to exists.
func (e *env) assertNoDanglingLBRefs() {
	e.t.Helper()
	for u, on := range lbAttachments(e.nb) {
		if lb, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{UUID: u}); lb == nil {
			e.t.Errorf("%v refer to load balancer %s, which does not exist", on, u)
		}
	}
}

func TestServiceDeletionAndHeadlessRemoveRows(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.waitNodeRows([]string{"gw1"}, []string{"gw1"})
	port := []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}
	ep := readyEndpoint("10.244.0.50", "gw1")
	tcp80 := []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}
	for _, name := range []string{"keep", "ext"} {
		e.createService("svc", name, corev1.ServiceSpec{Ports: tcp80})
		e.putSlice("svc", name, name+"-1", port, ep)
	}
	for name, nodePort := range map[string]int32{"np": 30080, "np2": 30081} {
		e.createService("svc", name, corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
			Ports: []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, nodePort)}})
		e.putSlice("svc", name, name+"-1", port, ep)
	}
	e.createService("svc", "headless", corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: tcp80})
	e.putSlice("svc", "headless", "headless-1", port, ep)
	e.createService("svc", "extname", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"})
	e.eventually("load balancers", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Count(d, "10.244.0.50:8080") == 6, d // keep, ext, np and np2 (cluster + gw1)
	})
	e.settle(c)
	for _, name := range []string{"headless", "extname"} {
		if u := lbUUIDs(e.nb, "svc", name); len(u) != 0 {
			t.Errorf("service %s has load balancers %v", name, u)
		}
	}
	keep := lbRows(e.nb)[lbUUIDs(e.nb, "svc", "keep")[0]]

	// Deleted: its rows go, and so do the group's, the gateway router's and the switch's references to them.
	gone := lbUUIDs(e.nb, "svc", "np")
	if len(gone) != 2 {
		t.Fatalf("np has %d load balancers, want 2", len(gone))
	}
	if err := e.kube.CoreV1().Services("svc").Delete(context.Background(), "np", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("np's rows gone", func() (bool, string) {
		on := lbAttachments(e.nb)
		for _, u := range gone {
			if lb, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{UUID: u}); lb != nil || len(on[u]) > 0 {
				return false, fmt.Sprintf("%s: row %v, referred to by %v", u, lb != nil, on[u])
			}
		}
		return true, ""
	})

	// NodePort -> ClusterIP: the node load balancer goes, the cluster one stays as it was.
	np2 := lbUUIDs(e.nb, "svc", "np2")
	np2Cluster, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: "Service_svc/np2_TCP_cluster"})
	e.updateService("svc", "np2", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.Ports[0].NodePort = 0
		s.Spec.ExternalTrafficPolicy = ""
	})
	e.eventually("np2's node load balancer gone", func() (bool, string) {
		u := lbUUIDs(e.nb, "svc", "np2")
		return slices.Equal(u, []string{np2Cluster.UUID}), fmt.Sprintf("%v (was %v)", u, np2)
	})

	// ClusterIP -> ExternalName: no load balancer.
	e.updateService("svc", "ext", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
	})
	e.eventually("ext's rows gone", func() (bool, string) {
		u := lbUUIDs(e.nb, "svc", "ext")
		return len(u) == 0, fmt.Sprint(u)
	})
	// ExternalName -> ClusterIP: back.
	e.updateService("svc", "extname", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName, s.Spec.Ports = corev1.ServiceTypeClusterIP, "", tcp80
	})
	e.putSlice("svc", "extname", "extname-1", port, ep)
	e.eventually("extname's row", func() (bool, string) {
		d := lbDump(e.nb, "svc")
		return strings.Contains(d, "Service_svc/extname_TCP_cluster tcp vips=map[") && strings.Contains(d, ":80:10.244.0.50:8080]"), d
	})
	e.settle(c)
	if got := lbRows(e.nb)[lbUUIDs(e.nb, "svc", "keep")[0]]; got != keep {
		t.Errorf("an untouched service's row changed:\n%s\nwas:\n%s", got, keep)
	}
	e.assertNoDanglingLBRefs()
}
