package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lb(name string, etp corev1.ServiceExternalTrafficPolicy, hc int32) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: etp, HealthCheckNodePort: hc}}
}

func slice(svc, name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, Endpoints: eps}
}

func ep(node string, ready *bool, ips ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: ips, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestDesired(t *testing.T) {
	yes, no := true, false
	nodePort := lb("np", corev1.ServiceExternalTrafficPolicyLocal, 0)
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	services := []*corev1.Service{
		lb("web", corev1.ServiceExternalTrafficPolicyLocal, 32001),
		lb("empty", corev1.ServiceExternalTrafficPolicyLocal, 32002),
		lb("cluster", corev1.ServiceExternalTrafficPolicyCluster, 0),
		nodePort,
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("web", "web-a", ep("n1", &yes, "10.244.0.5"), ep("n1", nil, "10.244.0.6"), ep("n2", &yes, "10.244.1.5"),
			ep("n1", &no, "10.244.0.7")),
		slice("web", "web-b", ep("n1", &yes, "10.244.0.5")), // the same address in another slice counts once
		slice("empty", "empty-a", ep("n2", &yes, "10.244.1.9")),
		slice("cluster", "cluster-a", ep("n1", &yes, "10.244.0.8")),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "orphan"}, Endpoints: []discoveryv1.Endpoint{ep("n1", &yes, "10.244.0.9")}},
	}
	got := fmt.Sprint(Desired(services, slices, "n1"))
	want := "map[32001:{ns web 2} 32002:{ns empty 0}]"
	if got != want {
		t.Errorf("Desired on n1:\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(Desired(services, slices, "n2")); got != "map[32001:{ns web 1} 32002:{ns empty 1}]" {
		t.Errorf("Desired on n2: %s", got)
	}
}

// loopback opens health-check ports on 127.0.0.1 at ephemeral ports and remembers where each went.
type loopback struct {
	mu    sync.Mutex
	addrs map[uint16]string
	taken uint16
}

func (l *loopback) listen(port uint16) (net.Listener, error) {
	if port == l.taken {
		return nil, errors.New("address already in use")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		l.mu.Lock()
		l.addrs[port] = ln.Addr().String()
		l.mu.Unlock()
	}
	return ln, err
}

func (l *loopback) get(t *testing.T, port uint16) (int, body, error) {
	t.Helper()
	l.mu.Lock()
	addr := l.addrs[port]
	l.mu.Unlock()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return 0, body{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var b body
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("port %d: body %q: %v", port, raw, err)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("port %d: content type %q", port, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b, nil
}

func TestServer(t *testing.T) {
	l := &loopback{addrs: map[uint16]string{}, taken: 32009}
	s := NewServer(l.listen, slog.New(slog.DiscardHandler))
	defer s.Close()
	if err := s.Sync(map[uint16]Status{32001: {"ns", "web", 2}, 32002: {"ns", "empty", 0}}); err != nil {
		t.Fatal(err)
	}
	code, b, err := l.get(t, 32001)
	if err != nil || code != http.StatusOK || b.LocalEndpoints != 2 || b.Service.Name != "web" || !b.ServiceProxyHealthy {
		t.Errorf("32001: %d %+v %v", code, b, err)
	}
	if code, b, err := l.get(t, 32002); err != nil || code != http.StatusServiceUnavailable || b.LocalEndpoints != 0 {
		t.Errorf("32002: %d %+v %v", code, b, err)
	}
	// The endpoint goes; the port answers 503 at once. 32002 is closed, and a port another process holds fails
	// alone.
	err = s.Sync(map[uint16]Status{32001: {"ns", "web", 0}, 32009: {"ns", "blocked", 1}})
	if err == nil {
		t.Error("Sync with a taken port succeeded")
	}
	if code, _, err := l.get(t, 32001); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("32001 after its endpoints went: %d %v", code, err)
	}
	if _, _, err := l.get(t, 32002); err == nil {
		t.Error("32002 still answers after its service went")
	}
	if got := fmt.Sprint(s.Ports()); got != "[32001]" {
		t.Errorf("ports %s", got)
	}
	l.taken = 0 // freed: the next Sync opens it
	if err := s.Sync(map[uint16]Status{32001: {"ns", "web", 1}, 32009: {"ns", "blocked", 1}}); err != nil {
		t.Fatal(err)
	}
	if code, b, err := l.get(t, 32009); err != nil || code != http.StatusOK || b.Service.Name != "blocked" {
		t.Errorf("32009: %d %+v %v", code, b, err)
	}
}
