package services

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Nodes: two with a gateway (node IP) and one without.
var (
	n1       = Node{Name: "n1", IP: netip.MustParseAddr("192.168.1.11"), Switch: "n1", Router: "GR_n1"}
	n2       = Node{Name: "n2", IP: netip.MustParseAddr("192.168.1.12"), Switch: "n2", Router: "GR_n2"}
	n3       = Node{Name: "n3", Switch: "n3", Router: "GR_n3"} // no gateway: no IP
	allNodes = []Node{n1, n2, n3}
)

func ptr[T any](v T) *T { return &v }

// ---- Service constructors ----

type svcOpt func(*corev1.Service)

// newSvc returns default/web, a ClusterIP service with cluster IP 10.96.0.10 and a selector, changed by opts.
func newSvc(opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:            corev1.ServiceTypeClusterIP,
			ClusterIP:       "10.96.0.10",
			ClusterIPs:      []string{"10.96.0.10"},
			Selector:        map[string]string{"app": "web"},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func sp(name string, proto corev1.Protocol, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port, NodePort: nodePort}
}

func withPorts(ps ...corev1.ServicePort) svcOpt {
	return func(s *corev1.Service) { s.Spec.Ports = ps }
}

func withType(t corev1.ServiceType) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type = t
		if t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
}

func withClusterIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ClusterIP = ips[0]
		s.Spec.ClusterIPs = ips
	}
}

func etpLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func itpLocal(s *corev1.Service) {
	s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
}

func itpCluster(s *corev1.Service) {
	s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
}

func noSelector(s *corev1.Service) { s.Spec.Selector = nil }

func withExternalIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}

func withIngress(in ...corev1.LoadBalancerIngress) svcOpt {
	return func(s *corev1.Service) { s.Status.LoadBalancer.Ingress = in }
}

func clientIP(timeout *int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: timeout}}
	}
}

// ---- EndpointSlice constructors ----

// epp is an EndpointSlice port; proto "" leaves the protocol unset (TCP by API default).
func epp(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	p := discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(port)}
	if proto != "" {
		p.Protocol = ptr(proto)
	}
	return p
}

func slice4(name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return sliceOf(discoveryv1.AddressTypeIPv4, name, ports, eps...)
}

func sliceOf(at discoveryv1.AddressType, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func ports(ps ...discoveryv1.EndpointPort) []discoveryv1.EndpointPort { return ps }

// ep is an endpoint on node ("" = no node name) with explicit conditions (nil = unset).
func ep(node string, ready, serving, terminating *bool, ips ...string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: ips,
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
	if node != "" {
		e.NodeName = ptr(node)
	}
	return e
}

var (
	yes = ptr(true)
	no  = ptr(false)
)

// The conditions the EndpointSlice controller writes for a pod.
func readyEP(node string, ips ...string) discoveryv1.Endpoint {
	return ep(node, yes, yes, no, ips...)
}

func notReadyEP(node string, ips ...string) discoveryv1.Endpoint {
	return ep(node, no, no, no, ips...)
}

func termServingEP(node string, ips ...string) discoveryv1.Endpoint {
	return ep(node, no, yes, yes, ips...)
}

func termNotServingEP(node string, ips ...string) discoveryv1.Endpoint {
	return ep(node, no, no, yes, ips...)
}

// ---- Expected load balancers ----

type vips = map[string]string

func opts() map[string]string { return map[string]string{"reject": "true", "event": "false"} }

func snatOpts() map[string]string {
	return map[string]string{"reject": "true", "event": "false", "skip_snat": "true"}
}

// clusterLB is "cluster-<proto>" in the cluster group.
func clusterLB(proto string, v vips) LB {
	return LB{ID: "cluster-" + proto, Name: "Service_default/web_" + strings.ToUpper(proto) + "_cluster",
		Protocol: proto, VIPs: v, Options: opts(), Groups: []string{ClusterGroup}}
}

// localLB is "local-<node>-<proto>" on the node's switch (internalTrafficPolicy Local).
func localLB(n Node, proto string, v vips) LB {
	return LB{ID: "local-" + n.Name + "-" + proto, Name: "Service_default/web_" + strings.ToUpper(proto) + "_local_" + n.Name,
		Protocol: proto, VIPs: v, Options: opts(), Switches: []string{n.Switch}}
}

// nodeLB is "node-<node>-<proto>" on the node's gateway router and switch (externalTrafficPolicy Cluster).
func nodeLB(n Node, proto string, v vips) LB {
	return LB{ID: "node-" + n.Name + "-" + proto, Name: "Service_default/web_" + strings.ToUpper(proto) + "_node_" + n.Name,
		Protocol: proto, VIPs: v, Options: opts(), Routers: []string{n.Router}, Switches: []string{n.Switch}}
}

// gwLocalLB is "node-<node>-<proto>-external" on the gateway router only, skip_snat (externalTrafficPolicy Local).
func gwLocalLB(n Node, proto string, v vips) LB {
	return LB{ID: "node-" + n.Name + "-" + proto + "-external", Name: "Service_default/web_" + strings.ToUpper(proto) + "_node_" + n.Name + "_external",
		Protocol: proto, VIPs: v, Options: snatOpts(), Routers: []string{n.Router}}
}

// internalLB is "node-<node>-<proto>-internal" on the node's switch (externalTrafficPolicy Local).
func internalLB(n Node, proto string, v vips) LB {
	return LB{ID: "node-" + n.Name + "-" + proto + "-internal",
		Name:     "Service_default/web_" + strings.ToUpper(proto) + "_node_" + n.Name + "_internal",
		Protocol: proto, VIPs: v, Options: opts(), Switches: []string{n.Switch}}
}

// affinity sets selection_fields ip_src on every load balancer.
func affinity(lbs ...LB) []LB {
	for i := range lbs {
		lbs[i].SelectionFields = []string{"ip_src"}
	}
	return lbs
}

// ---- Comparison ----

// normalize makes empty and nil slices equal (both mean "none"); maps are compared as they are.
func normalize(lbs []LB) []LB {
	out := make([]LB, len(lbs))
	for i, lb := range lbs {
		for _, s := range []*[]string{&lb.SelectionFields, &lb.Groups, &lb.Switches, &lb.Routers} {
			if len(*s) == 0 {
				*s = nil
			}
		}
		out[i] = lb
	}
	return out
}

func fmtLB(lb LB) string {
	var v []string
	for k, b := range lb.VIPs {
		v = append(v, fmt.Sprintf("%s=>[%s]", k, b))
	}
	slices.Sort(v)
	return fmt.Sprintf("{ID:%s Name:%s Protocol:%s VIPs:%v Options:%v SelectionFields:%v Groups:%v Switches:%v Routers:%v}",
		lb.ID, lb.Name, lb.Protocol, v, lb.Options, lb.SelectionFields, lb.Groups, lb.Switches, lb.Routers)
}

// diffLBs describes how got differs from want, "" when equal (order included).
func diffLBs(got, want []LB) string {
	got, want = normalize(got), normalize(want)
	if reflect.DeepEqual(got, want) && (got == nil) == (want == nil) {
		return ""
	}
	var b strings.Builder
	if (got == nil) != (want == nil) {
		fmt.Fprintf(&b, "got nil=%v, want nil=%v\n", got == nil, want == nil)
	}
	byID := func(lbs []LB) map[string]LB {
		m := map[string]LB{}
		for _, lb := range lbs {
			m[lb.ID] = lb
		}
		return m
	}
	g, w := byID(got), byID(want)
	for _, lb := range want {
		if o, ok := g[lb.ID]; !ok {
			fmt.Fprintf(&b, "missing: %s\n", fmtLB(lb))
		} else if !reflect.DeepEqual(o, lb) {
			fmt.Fprintf(&b, "differs:\n   got  %s\n   want %s\n", fmtLB(o), fmtLB(lb))
		}
	}
	for _, lb := range got {
		if _, ok := w[lb.ID]; !ok {
			fmt.Fprintf(&b, "unexpected: %s\n", fmtLB(lb))
		}
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "order or duplicates differ:\n   got  %v\n   want %v\n", ids(got), ids(want))
	}
	return b.String()
}

func ids(lbs []LB) []string {
	var out []string
	for _, lb := range lbs {
		out = append(out, lb.ID)
	}
	return out
}

// ---- Desired ----

var (
	httpSvc   = withPorts(sp("http", corev1.ProtocolTCP, 80, 0))
	httpNP    = withPorts(sp("http", corev1.ProtocolTCP, 80, 30080))
	httpSlice = ports(epp("http", corev1.ProtocolTCP, 8080))
)

type desiredCase struct {
	name  string
	svc   *corev1.Service
	eps   []*discoveryv1.EndpointSlice
	nodes []Node // allNodes when nil
	want  []LB
}

var (
	eps12 = []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
		readyEP("n1", "10.244.1.5"), readyEP("n2", "10.244.2.5"))}
	all12 = "10.244.1.5:8080,10.244.2.5:8080"
)

// runDesired runs Desired on each case and compares every load balancer it returns.
func runDesired(t *testing.T, tests []desiredCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := tt.nodes
			if nodes == nil {
				nodes = allNodes
			}
			if d := diffLBs(Desired(tt.svc, tt.eps, nodes), tt.want); d != "" {
				t.Errorf("Desired:\n%s", d)
			}
		})
	}
}

// ClusterIP services: ports, protocols, endpoint selection and conditions, affinity.
func TestDesiredClusterIP(t *testing.T) {
	runDesired(t, []desiredCase{
		// ---- ClusterIP basics ----
		{
			name: "clusterip single tcp port",
			svc:  newSvc(httpSvc),
			eps:  eps12,
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": all12})},
		},
		{
			name: "clusterip literal row",
			svc:  newSvc(httpSvc),
			eps:  eps12,
			want: []LB{{
				ID: "cluster-tcp", Name: "Service_default/web_TCP_cluster", Protocol: "tcp",
				VIPs:    map[string]string{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"},
				Options: map[string]string{"reject": "true", "event": "false"},
				Groups:  []string{"kovn_cluster_lbs"},
			}},
		},
		{
			name: "internalTrafficPolicy Cluster set explicitly is the default",
			svc:  newSvc(httpSvc, itpCluster),
			eps:  eps12,
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": all12})},
		},
		{
			name: "service port and slice port without protocol are TCP",
			svc:  newSvc(withPorts(sp("http", "", 80, 0))),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", ports(epp("http", "", 8080)),
				readyEP("n1", "10.244.1.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"})},
		},
		{
			name: "unnamed single port, slice port name nil",
			svc:  newSvc(withPorts(sp("", corev1.ProtocolTCP, 80, 0))),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a",
				ports(discoveryv1.EndpointPort{Port: ptr(int32(8080))}), readyEP("n1", "10.244.1.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"})},
		},
		{
			name: "tcp udp sctp ports: one load balancer per protocol",
			svc: newSvc(withPorts(
				sp("http", corev1.ProtocolTCP, 80, 0),
				sp("dns", corev1.ProtocolUDP, 53, 0),
				sp("https", corev1.ProtocolTCP, 443, 0),
				sp("diameter", corev1.ProtocolSCTP, 3868, 0),
			)),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", ports(
				epp("http", corev1.ProtocolTCP, 8080),
				epp("https", corev1.ProtocolTCP, 8443),
				epp("dns", corev1.ProtocolUDP, 5353),
				epp("diameter", corev1.ProtocolSCTP, 3868),
			), readyEP("n1", "10.244.1.5"), readyEP("n2", "10.244.2.5"))},
			want: []LB{
				clusterLB("tcp", vips{
					"10.96.0.10:80":  "10.244.1.5:8080,10.244.2.5:8080",
					"10.96.0.10:443": "10.244.1.5:8443,10.244.2.5:8443",
				}),
				clusterLB("udp", vips{"10.96.0.10:53": "10.244.1.5:5353,10.244.2.5:5353"}),
				clusterLB("sctp", vips{"10.96.0.10:3868": "10.244.1.5:3868,10.244.2.5:3868"}),
			},
		},
		{
			name: "same port number on tcp and udp",
			svc: newSvc(withPorts(
				sp("dns-tcp", corev1.ProtocolTCP, 53, 0),
				sp("dns", corev1.ProtocolUDP, 53, 0),
			)),
			eps: []*discoveryv1.EndpointSlice{slice4("dns-a", ports(
				epp("dns", corev1.ProtocolUDP, 5353),
				epp("dns-tcp", corev1.ProtocolTCP, 5353),
			), readyEP("n1", "10.244.1.5"))},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:53": "10.244.1.5:5353"}),
				clusterLB("udp", vips{"10.96.0.10:53": "10.244.1.5:5353"}),
			},
		},
		{
			name: "named target port resolved per slice",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{
				slice4("web-v1", ports(epp("http", corev1.ProtocolTCP, 8080)), readyEP("n1", "10.244.1.5")),
				slice4("web-v2", ports(epp("http", corev1.ProtocolTCP, 9090)), readyEP("n2", "10.244.2.6")),
			},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.6:9090"})},
		},
		{
			name: "service without selector, manual slice without node names or conditions",
			svc:  newSvc(noSelector, withPorts(sp("", corev1.ProtocolTCP, 5432, 0))),
			eps: []*discoveryv1.EndpointSlice{slice4("db-manual", ports(epp("", corev1.ProtocolTCP, 5432)),
				discoveryv1.Endpoint{Addresses: []string{"192.168.50.10"}},
				discoveryv1.Endpoint{Addresses: []string{"192.168.50.11"}})},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:5432": "192.168.50.10:5432,192.168.50.11:5432"})},
		},
		{
			name: "headless service",
			svc:  newSvc(httpSvc, withClusterIPs(corev1.ClusterIPNone)),
			eps:  eps12,
			want: nil,
		},
		{
			name: "ExternalName service",
			svc: newSvc(httpSvc, func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeExternalName
				s.Spec.ExternalName = "db.example.com"
				s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.Selector = "", nil, nil
			}),
			want: nil,
		},
		{
			name: "service without ports",
			svc:  newSvc(),
			eps:  eps12,
			want: nil,
		},
		{
			name: "dual-stack cluster IPs: IPv4 VIP only",
			svc:  newSvc(httpSvc, withClusterIPs("10.96.0.10", "fd00:10:96::a")),
			eps:  eps12,
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": all12})},
		},

		// ---- endpoint selection ----
		{
			name: "ready endpoints only",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"),
				notReadyEP("n1", "10.244.1.6"),
				termServingEP("n2", "10.244.2.5"),
				termNotServingEP("n2", "10.244.2.6"),
				ep("n2", nil, nil, nil, "10.244.2.7"), // conditions unset: ready
			)},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.7:8080"})},
		},
		{
			name: "none ready: serving terminating ones",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				notReadyEP("n1", "10.244.1.6"),
				termServingEP("n2", "10.244.2.5"),
				termNotServingEP("n2", "10.244.2.6"),
				termServingEP("n1", "10.244.1.5"),
			)},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"})},
		},
		{
			name: "terminating not serving never used",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				termNotServingEP("n1", "10.244.1.5"), notReadyEP("n2", "10.244.2.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": ""})},
		},
		{
			name: "duplicates across slices removed, backends sorted",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{
				slice4("web-a", httpSlice, readyEP("n2", "10.244.3.5"), readyEP("n1", "10.244.2.5")),
				slice4("web-b", httpSlice, readyEP("n1", "10.244.2.5"), readyEP("n1", "10.244.1.5")),
			},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080,10.244.3.5:8080"})},
		},
		{
			name: "IPv6 and FQDN slices ignored",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{
				sliceOf(discoveryv1.AddressTypeIPv6, "web-v6", httpSlice, readyEP("n1", "fd00:10:244:1::5")),
				sliceOf(discoveryv1.AddressTypeFQDN, "web-fqdn", httpSlice, readyEP("n1", "db.example.com")),
				slice4("web-v4", httpSlice, readyEP("n1", "10.244.1.5")),
			},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"})},
		},
		{
			name: "no endpoint slices: VIP rejects",
			svc:  newSvc(httpSvc),
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": ""})},
		},
		{
			name: "empty endpoint slice: VIP rejects",
			svc:  newSvc(httpSvc),
			eps:  []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice)},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": ""})},
		},
		{
			name: "endpoint port name mismatch: no backends",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", ports(epp("web", corev1.ProtocolTCP, 8080)),
				readyEP("n1", "10.244.1.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": ""})},
		},
		{
			name: "slice ports matched by protocol: a UDP port named like the TCP service port is not used",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{
				slice4("web-udp", ports(epp("http", corev1.ProtocolUDP, 8080)), readyEP("n1", "10.244.1.5")),
				slice4("web-tcp", ports(epp("http", corev1.ProtocolTCP, 9090)), readyEP("n2", "10.244.2.5")),
			},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.2.5:9090"})},
		},
		{
			name: "slice port with the name and protocol of another service port",
			svc:  newSvc(withPorts(sp("http", corev1.ProtocolTCP, 80, 0), sp("http-udp", corev1.ProtocolUDP, 80, 0))),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a",
				ports(epp("http", corev1.ProtocolUDP, 8080)), readyEP("n1", "10.244.1.5"))},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": ""}),
				clusterLB("udp", vips{"10.96.0.10:80": ""}),
			},
		},

		// ---- session affinity ----
		{
			// The package deliberately does not set affinity_timeout (see newLB): any timeout gives ip_src hashing.
			name: "sessionAffinity ClientIP, default timeout 10800",
			svc:  newSvc(httpSvc, clientIP(ptr(int32(corev1.DefaultClientIPServiceAffinitySeconds)))),
			eps:  eps12,
			want: affinity(clusterLB("tcp", vips{"10.96.0.10:80": all12})),
		},
		{
			name: "sessionAffinity ClientIP, no config",
			svc: newSvc(httpSvc, func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			}),
			eps:  eps12,
			want: affinity(clusterLB("tcp", vips{"10.96.0.10:80": all12})),
		},
		{
			name: "sessionAffinity ClientIP, custom timeout 600",
			svc:  newSvc(httpSvc, clientIP(ptr(int32(600)))),
			eps:  eps12,
			want: affinity(clusterLB("tcp", vips{"10.96.0.10:80": all12})),
		},
		{
			name: "sessionAffinity ClientIP on node load balancers too",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeNodePort), clientIP(nil)),
			eps:  eps12,
			want: affinity(
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": all12}),
			),
		},

		// ---- endpoint conditions edge cases (Kubernetes API semantics) ----
		{
			// publishNotReadyAddresses: the EndpointSlice controller sets ready=true even on terminating pods, and
			// "ready" means ready to receive traffic; kube-proxy uses such endpoints as ready.
			name: "ready and terminating (publishNotReadyAddresses) counts as ready",
			svc:  newSvc(httpSvc, func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"),
				ep("n2", yes, no, yes, "10.244.2.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"})},
		},
		{
			// The API: serving nil "should be interpreted as true".
			name: "serving unset on a terminating endpoint counts as serving",
			svc:  newSvc(httpSvc),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				ep("n1", no, nil, yes, "10.244.1.5"))},
			want: []LB{clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"})},
		},
	})
}

// Desired must not keep references to its inputs' slices or share maps between load balancers.
func TestDesiredOutputsIndependent(t *testing.T) {
	svc := newSvc(httpNP, withType(corev1.ServiceTypeNodePort), etpLocal)
	eps := []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice, readyEP("n1", "10.244.1.5"))}
	lbs := Desired(svc, eps, []Node{n1})
	if len(lbs) != 3 {
		t.Fatalf("got %v", ids(lbs))
	}
	lbs[1].VIPs["x"], lbs[1].Options["x"] = "y", "y"
	for _, lb := range []LB{lbs[0], lbs[2]} {
		if _, ok := lb.VIPs["x"]; ok {
			t.Errorf("%s shares VIPs with %s", lb.ID, lbs[1].ID)
		}
		if _, ok := lb.Options["x"]; ok {
			t.Errorf("%s shares Options with %s", lb.ID, lbs[1].ID)
		}
	}
	again := Desired(svc, eps, []Node{n1})
	if d := diffLBs(again, []LB{
		clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"}),
		gwLocalLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080"}),
		internalLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080"}),
	}); d != "" {
		t.Errorf("second call:\n%s", d)
	}
}

// ---- Backends ----
