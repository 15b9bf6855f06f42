package services

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// internalTrafficPolicy Local and NodePort services, with externalTrafficPolicy Cluster and Local.
func TestDesiredNodeLocal(t *testing.T) {
	runDesired(t, []desiredCase{
		// ---- internalTrafficPolicy Local ----
		{
			name: "internalTrafficPolicy Local: one per node with its endpoints, no cluster LB",
			svc:  newSvc(httpSvc, itpLocal),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"), readyEP("n1", "10.244.1.6"), readyEP("n2", "10.244.2.5"),
				readyEP("", "10.244.9.9"))}, // no node name: on no node
			want: []LB{
				localLB(n1, "tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.1.6:8080"}),
				localLB(n2, "tcp", vips{"10.96.0.10:80": "10.244.2.5:8080"}),
				localLB(n3, "tcp", vips{"10.96.0.10:80": ""}),
			},
		},
		{
			name:  "internalTrafficPolicy Local literal row",
			svc:   newSvc(httpSvc, itpLocal),
			eps:   eps12,
			nodes: []Node{n1},
			want: []LB{{
				ID: "local-n1-tcp", Name: "Service_default/web_TCP_local_n1", Protocol: "tcp",
				VIPs:     map[string]string{"10.96.0.10:80": "10.244.1.5:8080"},
				Options:  map[string]string{"reject": "true", "event": "false"},
				Switches: []string{"n1"},
			}},
		},
		{
			name: "internalTrafficPolicy Local: node falls back to its own serving terminating endpoints",
			svc:  newSvc(httpSvc, itpLocal),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"), termServingEP("n1", "10.244.1.6"),
				termServingEP("n2", "10.244.2.5"), termNotServingEP("n2", "10.244.2.6"))},
			nodes: []Node{n1, n2},
			want: []LB{
				localLB(n1, "tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"}),
				localLB(n2, "tcp", vips{"10.96.0.10:80": "10.244.2.5:8080"}),
			},
		},
		{
			name: "internalTrafficPolicy Local with tcp and udp and NodePorts",
			svc: newSvc(withType(corev1.ServiceTypeNodePort), itpLocal, withPorts(
				sp("http", corev1.ProtocolTCP, 80, 30080), sp("dns", corev1.ProtocolUDP, 53, 30053))),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", ports(
				epp("http", corev1.ProtocolTCP, 8080), epp("dns", corev1.ProtocolUDP, 5353)),
				readyEP("n1", "10.244.1.5"), readyEP("n2", "10.244.2.5"))},
			want: []LB{
				localLB(n1, "tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"}),
				localLB(n2, "tcp", vips{"10.96.0.10:80": "10.244.2.5:8080"}),
				localLB(n3, "tcp", vips{"10.96.0.10:80": ""}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": all12}),
				localLB(n1, "udp", vips{"10.96.0.10:53": "10.244.1.5:5353"}),
				localLB(n2, "udp", vips{"10.96.0.10:53": "10.244.2.5:5353"}),
				localLB(n3, "udp", vips{"10.96.0.10:53": ""}),
				nodeLB(n1, "udp", vips{"192.168.1.11:30053": "10.244.1.5:5353,10.244.2.5:5353"}),
				nodeLB(n2, "udp", vips{"192.168.1.12:30053": "10.244.1.5:5353,10.244.2.5:5353"}),
			},
		},

		// ---- NodePort ----
		{
			name: "NodePort, externalTrafficPolicy Cluster: node LBs on GR and switch, none without node IP",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeNodePort)),
			eps:  eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": all12}),
			},
		},
		{
			name:  "NodePort, externalTrafficPolicy Cluster literal rows",
			svc:   newSvc(httpNP, withType(corev1.ServiceTypeNodePort)),
			eps:   eps12,
			nodes: []Node{n1, n3},
			want: []LB{
				{
					ID: "cluster-tcp", Name: "Service_default/web_TCP_cluster", Protocol: "tcp",
					VIPs:    map[string]string{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"},
					Options: map[string]string{"reject": "true", "event": "false"},
					Groups:  []string{"kovn_cluster_lbs"},
				},
				{
					ID: "node-n1-tcp", Name: "Service_default/web_TCP_node_n1", Protocol: "tcp",
					VIPs:     map[string]string{"192.168.1.11:30080": "10.244.1.5:8080,10.244.2.5:8080"},
					Options:  map[string]string{"reject": "true", "event": "false"},
					Switches: []string{"n1"}, Routers: []string{"GR_n1"},
				},
			},
		},
		{
			name: "NodePort, externalTrafficPolicy Cluster, no endpoints: node VIPs reject",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeNodePort)),
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": ""}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": ""}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": ""}),
			},
		},
		{
			name: "NodePort, externalTrafficPolicy Local: GR copy local + skip_snat, internal copy all",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeNodePort), etpLocal),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"), readyEP("n1", "10.244.1.6"), readyEP("n3", "10.244.3.5"))},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080,10.244.1.6:8080,10.244.3.5:8080"}),
				gwLocalLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080,10.244.1.6:8080"}),
				internalLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080,10.244.1.6:8080,10.244.3.5:8080"}),
				gwLocalLB(n2, "tcp", vips{"192.168.1.12:30080": ""}),
				internalLB(n2, "tcp", vips{"192.168.1.12:30080": "10.244.1.5:8080,10.244.1.6:8080,10.244.3.5:8080"}),
			},
		},
		{
			name:  "NodePort, externalTrafficPolicy Local literal rows",
			svc:   newSvc(httpNP, withType(corev1.ServiceTypeNodePort), etpLocal),
			eps:   eps12,
			nodes: []Node{n2},
			want: []LB{
				{
					ID: "cluster-tcp", Name: "Service_default/web_TCP_cluster", Protocol: "tcp",
					VIPs:    map[string]string{"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"},
					Options: map[string]string{"reject": "true", "event": "false"},
					Groups:  []string{"kovn_cluster_lbs"},
				},
				{
					ID: "node-n2-tcp-external", Name: "Service_default/web_TCP_node_n2_external", Protocol: "tcp",
					VIPs:    map[string]string{"192.168.1.12:30080": "10.244.2.5:8080"},
					Options: map[string]string{"reject": "true", "event": "false", "skip_snat": "true"},
					Routers: []string{"GR_n2"},
				},
				{
					ID: "node-n2-tcp-internal", Name: "Service_default/web_TCP_node_n2_internal", Protocol: "tcp",
					VIPs:     map[string]string{"192.168.1.12:30080": "10.244.1.5:8080,10.244.2.5:8080"},
					Options:  map[string]string{"reject": "true", "event": "false"},
					Switches: []string{"n2"},
				},
			},
		},
		{
			name: "NodePort, externalTrafficPolicy Local: node falls back to its own serving terminating endpoints",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeNodePort), etpLocal),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", httpSlice,
				readyEP("n1", "10.244.1.5"), termServingEP("n2", "10.244.2.5"))},
			nodes: []Node{n2},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080"}),
				gwLocalLB(n2, "tcp", vips{"192.168.1.12:30080": "10.244.2.5:8080"}),
				internalLB(n2, "tcp", vips{"192.168.1.12:30080": "10.244.1.5:8080"}),
			},
		},
		{
			name: "NodePort with tcp and udp ports",
			svc: newSvc(withType(corev1.ServiceTypeNodePort), withPorts(
				sp("http", corev1.ProtocolTCP, 80, 30080),
				sp("dns", corev1.ProtocolUDP, 53, 30053),
				sp("https", corev1.ProtocolTCP, 443, 30443),
			)),
			eps: []*discoveryv1.EndpointSlice{slice4("web-a", ports(
				epp("http", corev1.ProtocolTCP, 8080), epp("https", corev1.ProtocolTCP, 8443), epp("dns", corev1.ProtocolUDP, 5353)),
				readyEP("n1", "10.244.1.5"))},
			nodes: []Node{n1, n2},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": "10.244.1.5:8080", "10.96.0.10:443": "10.244.1.5:8443"}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080", "192.168.1.11:30443": "10.244.1.5:8443"}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": "10.244.1.5:8080", "192.168.1.12:30443": "10.244.1.5:8443"}),
				clusterLB("udp", vips{"10.96.0.10:53": "10.244.1.5:5353"}),
				nodeLB(n1, "udp", vips{"192.168.1.11:30053": "10.244.1.5:5353"}),
				nodeLB(n2, "udp", vips{"192.168.1.12:30053": "10.244.1.5:5353"}),
			},
		},
		{
			name:  "NodePort without any node with a gateway: cluster LB only",
			svc:   newSvc(httpNP, withType(corev1.ServiceTypeNodePort)),
			eps:   eps12,
			nodes: []Node{n3},
			want:  []LB{clusterLB("tcp", vips{"10.96.0.10:80": all12})},
		},
	})
}

// externalIPs and LoadBalancer ingress IPs.
func TestDesiredExternal(t *testing.T) {
	runDesired(t, []desiredCase{
		// ---- externalIPs and LoadBalancer ----
		{
			name: "externalIPs on a ClusterIP service: node LBs on service ports, not in the cluster LB",
			svc:  newSvc(httpSvc, withExternalIPs("203.0.113.10", "2001:db8::10", "203.0.113.11", "203.0.113.10")),
			eps:  eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"203.0.113.10:80": all12, "203.0.113.11:80": all12}),
				nodeLB(n2, "tcp", vips{"203.0.113.10:80": all12, "203.0.113.11:80": all12}),
			},
		},
		{
			name: "LoadBalancer: NodePorts, ingress IPs and externalIPs in node LBs",
			svc: newSvc(httpNP, withType(corev1.ServiceTypeLoadBalancer), withExternalIPs("203.0.113.10"),
				withIngress(
					corev1.LoadBalancerIngress{IP: "198.51.100.7"},
					corev1.LoadBalancerIngress{Hostname: "lb.example.com"},
					corev1.LoadBalancerIngress{IP: "2001:db8::7"},
					corev1.LoadBalancerIngress{IP: "203.0.113.10"},
				)),
			eps: eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12, "203.0.113.10:80": all12, "198.51.100.7:80": all12}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": all12, "203.0.113.10:80": all12, "198.51.100.7:80": all12}),
			},
		},
		{
			name: "LoadBalancer, externalTrafficPolicy Local: ingress IP on GR copy with local endpoints",
			svc: newSvc(httpNP, withType(corev1.ServiceTypeLoadBalancer), etpLocal,
				withIngress(corev1.LoadBalancerIngress{IP: "198.51.100.7"})),
			eps: eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				gwLocalLB(n1, "tcp", vips{"192.168.1.11:30080": "10.244.1.5:8080", "198.51.100.7:80": "10.244.1.5:8080"}),
				internalLB(n1, "tcp", vips{"192.168.1.11:30080": all12, "198.51.100.7:80": all12}),
				gwLocalLB(n2, "tcp", vips{"192.168.1.12:30080": "10.244.2.5:8080", "198.51.100.7:80": "10.244.2.5:8080"}),
				internalLB(n2, "tcp", vips{"192.168.1.12:30080": all12, "198.51.100.7:80": all12}),
			},
		},
		{
			name: "LoadBalancer without NodePorts (allocateLoadBalancerNodePorts false)",
			svc: newSvc(httpSvc, withType(corev1.ServiceTypeLoadBalancer), func(s *corev1.Service) {
				s.Spec.AllocateLoadBalancerNodePorts = ptr(false)
			}, withIngress(corev1.LoadBalancerIngress{IP: "198.51.100.7"})),
			eps: eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"198.51.100.7:80": all12}),
				nodeLB(n2, "tcp", vips{"198.51.100.7:80": all12}),
			},
		},
		{
			name: "LoadBalancer not yet provisioned: NodePorts only",
			svc:  newSvc(httpNP, withType(corev1.ServiceTypeLoadBalancer)),
			eps:  eps12,
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12}),
				nodeLB(n2, "tcp", vips{"192.168.1.12:30080": all12}),
			},
		},
		{
			name: "LoadBalancer ingress ipMode VIP is used",
			svc: newSvc(httpNP, withType(corev1.ServiceTypeLoadBalancer),
				withIngress(corev1.LoadBalancerIngress{IP: "198.51.100.7", IPMode: ptr(corev1.LoadBalancerIPModeVIP)})),
			eps:   eps12,
			nodes: []Node{n1},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12, "198.51.100.7:80": all12}),
			},
		},
		{
			// KEP-1860: with ipMode Proxy the load balancer sends traffic to nodeIP:nodePort (or pods); the proxy
			// must not capture the ingress IP (kube-proxy skips it), or in-cluster clients bypass the load balancer
			// (its TLS termination, PROXY protocol, ...).
			name: "LoadBalancer ingress ipMode Proxy is not captured",
			svc: newSvc(httpNP, withType(corev1.ServiceTypeLoadBalancer),
				withIngress(corev1.LoadBalancerIngress{IP: "198.51.100.7", IPMode: ptr(corev1.LoadBalancerIPModeProxy)})),
			eps:   eps12,
			nodes: []Node{n1},
			want: []LB{
				clusterLB("tcp", vips{"10.96.0.10:80": all12}),
				nodeLB(n1, "tcp", vips{"192.168.1.11:30080": all12}),
			},
		},
	})
}
