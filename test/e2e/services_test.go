package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/namedns"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
)

// backendPod creates a pod labelled app=<app> on node that serves TCP on tcpPort (named "web") and UDP 81.
func backendPod(t *testing.T, ns, name, node, app string, tcpPort int32) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test", Ports: []corev1.ContainerPort{
				{Name: "web", ContainerPort: tcpPort, Protocol: corev1.ProtocolTCP},
				{Name: "dns", ContainerPort: 81, Protocol: corev1.ProtocolUDP}}}}}}
	if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// clientPod creates a pod that serves nothing a service selects (label role=client).
func clientPod(t *testing.T, ns, name, node string) pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"role": "client"}},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test"}}}}
	if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitRunning(t, ns, name)
}

type svcOpt func(*corev1.Service)

// createService creates a service selecting app=<app> with TCP 8080 -> "web" and UDP 8081 -> 81.
func createService(t *testing.T, ns, name, app string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 8081, TargetPort: intstr.FromInt32(81), Protocol: corev1.ProtocolUDP}}}}
	for _, o := range opts {
		o(s)
	}
	out, err := kube.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEndpoints waits until the service's EndpointSlices list exactly n ready endpoints.
func waitEndpoints(t *testing.T, ns, name string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d ready endpoints of %s/%s", n, ns, name), 60*time.Second, func() (bool, string) {
		list, err := kube.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					ready++
				}
			}
		}
		return ready == n, fmt.Sprintf("%d ready", ready)
	})
}

// probeFrom probes addr from a pod ("ns/name"), the external host ("external") or a node ("node:NAME").
func probeFrom(from, proto, addr string) (workload.Reply, error) {
	if node, ok := strings.CutPrefix(from, "node:"); ok {
		var r workload.Reply
		err := namedns.Do(nodeNetns(node), func() error {
			var perr error
			r, perr = workload.Probe(proto, addr, 3*time.Second)
			return perr
		})
		return r, err
	}
	netns, err := sandbox.PodNetns(stateDir, from) // "ns/name" or "external"
	if err != nil {
		return workload.Reply{}, err
	}
	var r workload.Reply
	err = ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var perr error
		r, perr = workload.Probe(proto, addr, 3*time.Second)
		return perr
	})
	return r, err
}

// answerers probes addr n times and returns who answered (sorted, deduplicated); any failure fails the test.
func answerers(t *testing.T, from, proto, addr string, n int) []string {
	t.Helper()
	var who []string
	for range n {
		r, err := probeFrom(from, proto, addr)
		if err != nil {
			t.Fatalf("%s -> %s over %s: %v", from, addr, proto, err)
		}
		who = append(who, r.Name)
	}
	slices.Sort(who)
	return slices.Compact(who)
}

// eventuallyAnswerers probes until the set of answerers over many probes is exactly want.
func eventuallyAnswerers(t *testing.T, from, proto, addr string, want []string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, fmt.Sprintf("%s -> %s over %s answered by %v", from, addr, proto, want), 45*time.Second, func() (bool, string) {
		var who []string
		for range 4 * len(want) {
			r, err := probeFrom(from, proto, addr)
			if err != nil {
				return false, err.Error()
			}
			who = append(who, r.Name)
		}
		slices.Sort(who)
		who = slices.Compact(who)
		return slices.Equal(who, want), fmt.Sprintf("answered by %v", who)
	})
}

func TestClusterIPFromEveryNodeReachesEveryBackend(t *testing.T) {
	ns := "svc-cip"
	namespace(t, ns)
	for _, n := range state.Nodes {
		backendPod(t, ns, "be-"+n.Name, n.Name, "be", 80)
	}
	svc := createService(t, ns, "be", "be")
	waitEndpoints(t, ns, "be", 3)
	all := []string{ns + "/be-node1", ns + "/be-node2", ns + "/be-node3"}
	tcp, udp := svc.Spec.ClusterIP+":8080", svc.Spec.ClusterIP+":8081"
	for _, n := range state.Nodes {
		c := clientPod(t, ns, "client-"+n.Name, n.Name)
		eventuallyAnswerers(t, c.key(), "tcp", tcp, all)
		eventuallyAnswerers(t, c.key(), "udp", udp, all)
		// Host-network clients (kubelet, node daemons) use Services through the management port.
		eventuallyAnswerers(t, "node:"+n.Name, "tcp", tcp, all)
	}
	// Scaling: a deleted backend leaves the rotation, a new one joins it.
	deletePod(t, pod{Namespace: ns, Name: "be-node2"})
	waitEndpoints(t, ns, "be", 2)
	eventuallyAnswerers(t, ns+"/client-node1", "tcp", tcp, []string{ns + "/be-node1", ns + "/be-node3"})
	backendPod(t, ns, "be-new", "node2", "be", 80)
	waitEndpoints(t, ns, "be", 3)
	eventuallyAnswerers(t, ns+"/client-node3", "tcp", tcp, []string{ns + "/be-new", ns + "/be-node1", ns + "/be-node3"})
}

func TestNamedTargetPortIsResolvedPerEndpoint(t *testing.T) {
	ns := "svc-named"
	namespace(t, ns)
	backendPod(t, ns, "on80", "node1", "be", 80)
	backendPod(t, ns, "on8080", "node2", "be", 8080) // "web" is 8080 here
	svc := createService(t, ns, "be", "be")
	waitEndpoints(t, ns, "be", 2)
	c := clientPod(t, ns, "client", "node3")
	eventuallyAnswerers(t, c.key(), "tcp", svc.Spec.ClusterIP+":8080", []string{ns + "/on80", ns + "/on8080"})
}

// routeVia makes the external host send traffic for ip to a node, as a router or a load-balancer announcer would.
func routeVia(t *testing.T, ip, nodeIP string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", "kovnsb-external", "ip", "route", "replace", ip+"/32", "via", nodeIP).CombinedOutput(); err != nil {
		t.Fatalf("route %s via %s: %v %s", ip, nodeIP, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", "kovnsb-external", "ip", "route", "del", ip+"/32").Run()
	})
}

func TestNodePortExternalIPAndLoadBalancerFromOutside(t *testing.T) {
	ns := "svc-ext"
	namespace(t, ns)
	backendPod(t, ns, "be-1", "node1", "be", 80)
	backendPod(t, ns, "be-3", "node3", "be", 80)
	extIP, lbIP := "192.168.231.10", "192.168.231.20"
	svc := createService(t, ns, "be", "be", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalIPs = []string{extIP}
	})
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbIP}}
	if _, err := kube.CoreV1().Services(ns).UpdateStatus(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, ns, "be", 2)
	all := []string{ns + "/be-1", ns + "/be-3"}
	tcpNP, udpNP := svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort
	for _, n := range state.Nodes {
		eventuallyAnswerers(t, "external", "tcp", fmt.Sprintf("%s:%d", n.IP, tcpNP), all)
		eventuallyAnswerers(t, "external", "udp", fmt.Sprintf("%s:%d", n.IP, udpNP), all)
	}
	// Every node's host reaches its own NodePorts (hostnat: no packet leaves the host) and another node's.
	for i, n := range state.Nodes {
		other := state.Nodes[(i+1)%len(state.Nodes)]
		eventuallyAnswerers(t, "node:"+n.Name, "tcp", fmt.Sprintf("%s:%d", n.IP, tcpNP), all)
		eventuallyAnswerers(t, "node:"+n.Name, "udp", fmt.Sprintf("%s:%d", n.IP, udpNP), all)
		eventuallyAnswerers(t, "node:"+n.Name, "tcp", fmt.Sprintf("%s:%d", other.IP, tcpNP), all)
	}
	routeVia(t, extIP, nodeIP("node2"))
	routeVia(t, lbIP, nodeIP("node3"))
	eventuallyAnswerers(t, "external", "tcp", extIP+":8080", all)
	eventuallyAnswerers(t, "external", "tcp", lbIP+":8080", all)
	eventuallyAnswerers(t, "external", "udp", lbIP+":8081", all)
	// So does every node's host (hostnat translates them to the ClusterIP).
	for _, n := range state.Nodes {
		eventuallyAnswerers(t, "node:"+n.Name, "tcp", extIP+":8080", all)
		eventuallyAnswerers(t, "node:"+n.Name, "udp", lbIP+":8081", all)
	}
	// Pods reach the same addresses.
	c := clientPod(t, ns, "client", "node2")
	eventuallyAnswerers(t, c.key(), "tcp", extIP+":8080", all)
	eventuallyAnswerers(t, c.key(), "tcp", fmt.Sprintf("%s:%d", nodeIP("node2"), tcpNP), all)
}

func TestExternalTrafficPolicyLocalKeepsTheClientIP(t *testing.T) {
	ns := "svc-etp"
	namespace(t, ns)
	backendPod(t, ns, "be-1", "node1", "be", 80)
	backendPod(t, ns, "be-2", "node2", "be", 80)
	svc := createService(t, ns, "be", "be", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer // NodePorts, and a health-check node port
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	waitEndpoints(t, ns, "be", 2)
	np := svc.Spec.Ports[0].NodePort
	for _, node := range []string{"node1", "node2"} {
		addr := fmt.Sprintf("%s:%d", nodeIP(node), np)
		eventuallyAnswerers(t, "external", "tcp", addr, []string{ns + "/be-" + node[4:]})
		r, err := probeFrom("external", "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.Client, sandbox.ExternalIP+":") {
			t.Errorf("%s: backend saw the client as %s, want the external host's %s", addr, r.Client, sandbox.ExternalIP)
		}
	}
	// node3 has no local endpoint: refused, not forwarded elsewhere.
	if _, err := probeFrom("external", "tcp", fmt.Sprintf("%s:%d", nodeIP("node3"), np)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("node3 without local endpoints: %v, want connection refused", err)
	}
	// The health-check node port tells a load balancer which nodes to use, as kube-proxy's does; it follows the
	// endpoints.
	hc := svc.Spec.HealthCheckNodePort
	if hc == 0 {
		t.Fatal("no health-check node port allocated")
	}
	wantHealth := func(node string, code, local int) {
		addr := fmt.Sprintf("%s:%d", nodeIP(node), hc)
		eventually(t, fmt.Sprintf("health check %s answers %d with %d local endpoints", addr, code, local), 30*time.Second,
			func() (bool, string) {
				gotCode, gotLocal, err := healthCheck(addr)
				return err == nil && gotCode == code && gotLocal == local, fmt.Sprintf("%d, %d local endpoints, %v", gotCode, gotLocal, err)
			})
	}
	wantHealth("node1", 200, 1)
	wantHealth("node2", 200, 1)
	wantHealth("node3", 503, 0)
	if err := kube.CoreV1().Pods(ns).Delete(context.Background(), "be-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wantHealth("node2", 503, 0)
	wantHealth("node1", 200, 1)
}

// healthCheck asks a health-check node port, from the external host, as a load balancer does: it returns the
// HTTP status and the number of local endpoints the answer reports.
func healthCheck(addr string) (int, int, error) {
	netns, err := sandbox.PodNetns(stateDir, "external")
	if err != nil {
		return 0, 0, err
	}
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
			var derr error
			c, derr = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, a)
			return derr
		})
		return c, err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var b struct {
		LocalEndpoints int `json:"localEndpoints"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return resp.StatusCode, 0, fmt.Errorf("body: %w", err)
	}
	return resp.StatusCode, b.LocalEndpoints, nil
}

func TestInternalTrafficPolicyLocalUsesOnlyTheNodesEndpoints(t *testing.T) {
	ns := "svc-itp"
	namespace(t, ns)
	backendPod(t, ns, "be-1", "node1", "be", 80)
	backendPod(t, ns, "be-2", "node2", "be", 80)
	local := corev1.ServiceInternalTrafficPolicyLocal
	svc := createService(t, ns, "be", "be", func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = &local })
	waitEndpoints(t, ns, "be", 2)
	addr := svc.Spec.ClusterIP + ":8080"
	c1, c3 := clientPod(t, ns, "c1", "node1"), clientPod(t, ns, "c3", "node3")
	eventuallyAnswerers(t, c1.key(), "tcp", addr, []string{ns + "/be-1"})
	if got := answerers(t, c1.key(), "tcp", addr, 8); !slices.Equal(got, []string{ns + "/be-1"}) {
		t.Errorf("client on node1 answered by %v, want only the node1 endpoint", got)
	}
	if _, err := probeFrom(c3.key(), "tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("client on node3 (no local endpoint): %v, want connection refused", err)
	}
}

func TestSessionAffinityPinsAClientAndHairpinWorks(t *testing.T) {
	ns := "svc-aff"
	namespace(t, ns)
	for _, n := range state.Nodes {
		backendPod(t, ns, "be-"+n.Name, n.Name, "be", 80)
	}
	svc := createService(t, ns, "be", "be", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP })
	waitEndpoints(t, ns, "be", 3)
	addr := svc.Spec.ClusterIP + ":8080"
	for _, n := range state.Nodes {
		c := clientPod(t, ns, "c-"+n.Name, n.Name)
		eventually(t, c.key()+" reaches the service", 30*time.Second, func() (bool, string) {
			_, err := probeFrom(c.key(), "tcp", addr)
			return err == nil, fmt.Sprint(err)
		})
		if got := answerers(t, c.key(), "tcp", addr, 10); len(got) != 1 {
			t.Errorf("%s with ClientIP affinity answered by %v, want one backend", c.key(), got)
		}
	}
	// The timeout is not enforced, and the Service says so.
	eventually(t, "ServiceNotFullyHonoured Event on the service", 30*time.Second, func() (bool, string) {
		list, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=be,reason=ServiceNotFullyHonoured"})
		if err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 1 && strings.Contains(list.Items[0].Message, "timeout is not enforced"), fmt.Sprint(list.Items)
	})
	// Hairpin: a backend reaching its own service through the VIP, answered by itself, sees the VIP as client.
	solo := createService(t, ns, "solo", "solo")
	backendPod(t, ns, "solo", "node1", "solo", 80)
	waitEndpoints(t, ns, "solo", 1)
	eventually(t, "hairpin", 30*time.Second, func() (bool, string) {
		r, err := probeFrom(ns+"/solo", "tcp", solo.Spec.ClusterIP+":8080")
		if err != nil {
			return false, err.Error()
		}
		return r.Name == ns+"/solo", fmt.Sprintf("%+v", r)
	})
}

func TestServiceWithoutEndpointsRefusesPromptly(t *testing.T) {
	ns := "svc-none"
	namespace(t, ns)
	svc := createService(t, ns, "none", "nothing-has-this-label")
	c := clientPod(t, ns, "client", "node2")
	eventually(t, "connection refused by the VIP", 30*time.Second, func() (bool, string) {
		_, err := probeFrom(c.key(), "tcp", svc.Spec.ClusterIP+":8080")
		return errors.Is(err, syscall.ECONNREFUSED), fmt.Sprint(err)
	})
	if _, err := probeFrom("node:node1", "tcp", svc.Spec.ClusterIP+":8080"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("from node1: %v, want connection refused", err)
	}
}
