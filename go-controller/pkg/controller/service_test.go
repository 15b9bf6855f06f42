package controller

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
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
