package nodeagent

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(name string, spec corev1.ServiceSpec, ingress ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: spec}
	for _, ip := range ingress {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func port(proto corev1.Protocol, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Protocol: proto, Port: port, NodePort: nodePort}
}

var testServices = []*corev1.Service{
	svc("np", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10",
		Ports: []corev1.ServicePort{port(corev1.ProtocolTCP, 80, 30080), port(corev1.ProtocolUDP, 53, 30053),
			port(corev1.ProtocolSCTP, 9, 30009), port("", 81, 30081)}}),
	svc("lb", corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.11",
		ExternalIPs: []string{"192.0.2.7", "2001:db8::7", "not-an-ip"},
		Ports:       []corev1.ServicePort{port(corev1.ProtocolTCP, 443, 30443)}}, "198.51.100.9"),
	svc("cluster", corev1.ServiceSpec{ClusterIP: "10.96.0.12", Ports: []corev1.ServicePort{port(corev1.ProtocolTCP, 80, 0)}}),
	svc("headless", corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, ExternalIPs: []string{"192.0.2.8"},
		Ports: []corev1.ServicePort{port(corev1.ProtocolTCP, 80, 30090)}}),
	svc("v6", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "fd00::10",
		Ports: []corev1.ServicePort{port(corev1.ProtocolTCP, 80, 30100)}}),
	svc("extname", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}),
}

func TestServiceTargets(t *testing.T) {
	got := ServiceTargets(testServices)
	// SCTP NodePorts are not steered; headless services have none; IPv6 and malformed external IPs are skipped.
	want := "{[{6 30080} {17 30053} {6 30081} {6 30443} {6 30100}] [192.0.2.7 198.51.100.9]}"
	if s := fmt.Sprint(got); s != want {
		t.Errorf("ServiceTargets:\n got %s\nwant %s", s, want)
	}
}

func TestHostNATRules(t *testing.T) {
	got := HostNATRules(testServices)
	// Services with an IPv4 ClusterIP: TCP and UDP NodePorts, and each port on each IPv4 external or ingress IP.
	want := "[tcp/30080->10.96.0.10:80 udp/30053->10.96.0.10:53 tcp/30081->10.96.0.10:81 tcp/30443->10.96.0.11:443 " +
		"tcp/192.0.2.7:443->10.96.0.11:443 tcp/198.51.100.9:443->10.96.0.11:443]"
	if s := fmt.Sprint(got); s != want {
		t.Errorf("HostNATRules:\n got %s\nwant %s", s, want)
	}
	proxy := corev1.LoadBalancerIPModeProxy
	lb := testServices[1].DeepCopy()
	lb.Spec.ExternalIPs = nil
	lb.Status.LoadBalancer.Ingress[0].IPMode = &proxy // the load balancer itself forwards to the nodes
	if s := fmt.Sprint(HostNATRules([]*corev1.Service{lb})); s != "[tcp/30443->10.96.0.11:443]" {
		t.Errorf("ipMode Proxy: %s", s)
	}
}
