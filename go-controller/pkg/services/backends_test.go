package services

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestBackends(t *testing.T) {
	two := ports(epp("http", corev1.ProtocolTCP, 8080), epp("dns", corev1.ProtocolUDP, 5353))
	tests := []struct {
		name     string
		eps      []*discoveryv1.EndpointSlice
		portName string
		proto    corev1.Protocol
		node     string
		want     []string
	}{
		{name: "no slices", portName: "http", proto: corev1.ProtocolTCP},
		{
			name:     "ready endpoints, sorted",
			eps:      []*discoveryv1.EndpointSlice{slice4("a", two, readyEP("n2", "10.244.2.5"), readyEP("n1", "10.244.1.5"))},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080", "10.244.2.5:8080"},
		},
		{
			name:     "port picked by name and protocol",
			eps:      []*discoveryv1.EndpointSlice{slice4("a", two, readyEP("n1", "10.244.1.5"))},
			portName: "dns", proto: corev1.ProtocolUDP,
			want: []string{"10.244.1.5:5353"},
		},
		{
			name:     "name matches, protocol does not",
			eps:      []*discoveryv1.EndpointSlice{slice4("a", two, readyEP("n1", "10.244.1.5"))},
			portName: "dns", proto: corev1.ProtocolTCP,
		},
		{
			name:     "protocol matches, name does not",
			eps:      []*discoveryv1.EndpointSlice{slice4("a", two, readyEP("n1", "10.244.1.5"))},
			portName: "metrics", proto: corev1.ProtocolTCP,
		},
		{
			name: "slice port without port number is skipped",
			eps: []*discoveryv1.EndpointSlice{slice4("a",
				ports(discoveryv1.EndpointPort{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP)}),
				readyEP("n1", "10.244.1.5"))},
			portName: "http", proto: corev1.ProtocolTCP,
		},
		{
			name: "unset protocol is TCP, not UDP",
			eps: []*discoveryv1.EndpointSlice{slice4("a", ports(epp("http", "", 8080)),
				readyEP("n1", "10.244.1.5"))},
			portName: "http", proto: corev1.ProtocolUDP,
		},
		{
			name: "unnamed service port matches nil and empty slice port names",
			eps: []*discoveryv1.EndpointSlice{
				slice4("a", ports(discoveryv1.EndpointPort{Port: ptr(int32(8080))}), readyEP("n1", "10.244.1.5")),
				slice4("b", ports(epp("", corev1.ProtocolTCP, 9090)), readyEP("n2", "10.244.2.5")),
			},
			portName: "", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080", "10.244.2.5:9090"},
		},
		{
			name: "condition matrix: ready ones only",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				ep("n1", nil, nil, nil, "10.244.1.1"), // all unset: ready
				ep("n1", yes, nil, nil, "10.244.1.2"),
				ep("n1", yes, yes, no, "10.244.1.3"),
				ep("n1", nil, nil, no, "10.244.1.4"), // ready unset: ready
				ep("n1", no, no, no, "10.244.1.5"),
				ep("n1", no, yes, yes, "10.244.1.6"),
				ep("n1", no, no, yes, "10.244.1.7"),
				ep("n1", no, nil, nil, "10.244.1.8"),
			)},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.1:8080", "10.244.1.2:8080", "10.244.1.3:8080", "10.244.1.4:8080"},
		},
		{
			name: "none ready: serving terminating ones, never terminating not serving",
			eps: []*discoveryv1.EndpointSlice{
				slice4("a", two, notReadyEP("n1", "10.244.1.5"), termServingEP("n1", "10.244.1.6")),
				slice4("b", two, termNotServingEP("n2", "10.244.2.5"), termServingEP("n2", "10.244.2.6")),
			},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.6:8080", "10.244.2.6:8080"},
		},
		{
			name: "none ready or serving: nothing",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				notReadyEP("n1", "10.244.1.5"), termNotServingEP("n1", "10.244.1.6"))},
			portName: "http", proto: corev1.ProtocolTCP,
		},
		{
			name: "ready in one slice hides serving terminating in another",
			eps: []*discoveryv1.EndpointSlice{
				slice4("a", two, termServingEP("n1", "10.244.1.6")),
				slice4("b", two, readyEP("n2", "10.244.2.5")),
			},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.2.5:8080"},
		},
		{
			name: "node filter: ready on node",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				readyEP("n1", "10.244.1.5"), readyEP("n2", "10.244.2.5"), readyEP("", "10.244.9.9"))},
			portName: "http", proto: corev1.ProtocolTCP, node: "n2",
			want: []string{"10.244.2.5:8080"},
		},
		{
			name: "node filter: node's serving terminating ones when it has no ready one",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				readyEP("n1", "10.244.1.5"), termServingEP("n2", "10.244.2.5"), termNotServingEP("n2", "10.244.2.6"))},
			portName: "http", proto: corev1.ProtocolTCP, node: "n2",
			want: []string{"10.244.2.5:8080"},
		},
		{
			name:     "node filter: endpoints without node name never local",
			eps:      []*discoveryv1.EndpointSlice{slice4("a", two, readyEP("", "10.244.9.9"))},
			portName: "http", proto: corev1.ProtocolTCP, node: "n1",
		},
		{
			name: "duplicates within and across slices removed",
			eps: []*discoveryv1.EndpointSlice{
				slice4("a", two, readyEP("n1", "10.244.1.5", "10.244.1.5"), readyEP("n1", "10.244.1.5")),
				slice4("b", two, readyEP("n1", "10.244.1.5"), readyEP("n2", "10.244.2.5")),
			},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080", "10.244.2.5:8080"},
		},
		{
			name: "same address with different port numbers in two slices kept twice",
			eps: []*discoveryv1.EndpointSlice{
				slice4("a", ports(epp("http", corev1.ProtocolTCP, 8080)), readyEP("n1", "10.244.1.5")),
				slice4("b", ports(epp("http", corev1.ProtocolTCP, 9090)), readyEP("n1", "10.244.1.5")),
			},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080", "10.244.1.5:9090"},
		},
		{
			name: "IPv6 and FQDN slices and non-IPv4 addresses ignored",
			eps: []*discoveryv1.EndpointSlice{
				sliceOf(discoveryv1.AddressTypeIPv6, "v6", two, readyEP("n1", "fd00:10:244:1::5")),
				sliceOf(discoveryv1.AddressTypeFQDN, "fqdn", two, readyEP("n1", "db.example.com")),
				slice4("v4", two, readyEP("n1", "fd00:10:244:1::6", "not-an-ip", "10.244.1.5")),
			},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080"},
		},
		{
			name: "ready and terminating (publishNotReadyAddresses) is ready",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				readyEP("n1", "10.244.1.5"), ep("n1", yes, no, yes, "10.244.1.6"))},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.5:8080", "10.244.1.6:8080"},
		},
		{
			name: "serving unset on terminating endpoint is serving",
			eps: []*discoveryv1.EndpointSlice{slice4("a", two,
				ep("n1", no, nil, yes, "10.244.1.6"))},
			portName: "http", proto: corev1.ProtocolTCP,
			want: []string{"10.244.1.6:8080"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Backends(tt.eps, tt.portName, tt.proto, tt.node)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Backends(%q, %s, node %q):\ngot  %q\nwant %q", tt.portName, tt.proto, tt.node, got, tt.want)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	for _, tt := range []struct {
		in   []LB
		want []string
	}{
		{in: nil, want: []string{}},
		{in: []LB{{ID: "node-n2-tcp"}, {ID: "cluster-udp"}, {ID: "cluster-tcp"}, {ID: "node-n1-tcp-internal"}},
			want: []string{"cluster-tcp", "cluster-udp", "node-n1-tcp-internal", "node-n2-tcp"}},
	} {
		if got := IDs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("IDs(%v) = %q, want %q", ids(tt.in), got, tt.want)
		}
	}
}
