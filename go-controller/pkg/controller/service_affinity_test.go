package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// A ClientIP service gets a load balancer that hashes on the client IP, never OVN's affinity_timeout, and a
// Warning Event saying that the timeout is not enforced; a service without affinity gets neither.
func TestServiceAffinityHashAndEvent(t *testing.T) {
	e := newEnv(t, config.Default())
	c, _ := e.startController()
	e.createNamespace("svc")
	e.createNode("gw1", testGateway(t, 1))
	e.waitNodeRows([]string{"gw1"}, []string{"gw1"})
	tcp80 := []corev1.ServicePort{svcPort("http", corev1.ProtocolTCP, 80, 0)}
	port := []discoveryv1.EndpointPort{epPort("http", corev1.ProtocolTCP, 8080)}
	timeout := int32(30)
	e.createService("svc", "sticky", corev1.ServiceSpec{Ports: tcp80, SessionAffinity: corev1.ServiceAffinityClientIP,
		SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}})
	e.createService("svc", "plain", corev1.ServiceSpec{Ports: tcp80})
	for _, name := range []string{"sticky", "plain"} {
		e.putSlice("svc", name, name+"-1", port, readyEndpoint("10.244.0.50", "gw1"), readyEndpoint("10.244.0.51", "gw1"))
	}
	lb := func(name string) *nbdb.LoadBalancer {
		row, _ := nbops.Lookup(e.nb, &nbdb.LoadBalancer{Name: "Service_svc/" + name + "_TCP_cluster"})
		return row
	}
	e.eventually("both load balancers", func() (bool, string) {
		s, p := lb("sticky"), lb("plain")
		return s != nil && p != nil, fmt.Sprintf("sticky %v plain %v", s != nil, p != nil)
	})
	if s := lb("sticky"); fmt.Sprint(s.SelectionFields) != "[ip_src]" || s.Options["affinity_timeout"] != "" {
		t.Errorf("sticky: selection_fields %v options %v, want [ip_src] and no affinity_timeout", s.SelectionFields, s.Options)
	}
	if p := lb("plain"); len(p.SelectionFields) != 0 {
		t.Errorf("plain: selection_fields %v, want none", p.SelectionFields)
	}
	if msg := e.waitEvent("svc", "sticky", "ServiceNotFullyHonoured"); !strings.Contains(msg, "the 30 s timeout is not enforced") {
		t.Errorf("event message %q", msg)
	}

	// Affinity turned off: the hash goes; the plain service never had an Event.
	e.updateService("svc", "sticky", func(s *corev1.Service) {
		s.Spec.SessionAffinity, s.Spec.SessionAffinityConfig = corev1.ServiceAffinityNone, nil
	})
	e.eventually("hash gone", func() (bool, string) {
		s := lb("sticky")
		return s != nil && len(s.SelectionFields) == 0, fmt.Sprint(s)
	})
	e.settle(c)
	list, err := e.kube.CoreV1().Events("svc").List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "plain").String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range list.Items {
		t.Errorf("plain service has an Event %s: %s", ev.Reason, ev.Message)
	}
}
