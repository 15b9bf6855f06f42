package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
)

// The truth-table suite: namespaces x, y, z (labelled ns=x, ...) with pods a, b, c (labelled pod=a, ...) on
// node1, node2, node3, each serving TCP 80 and 81 and UDP 80 and 81 (container ports named serve-PORT-PROTO).
// Every case probes every ordered pair of distinct pods and compares the reachability matrix with the one
// the NetworkPolicy API defines.

var (
	npNamespaces = []string{"x", "y", "z"}
	npPods       = []string{"a", "b", "c"}
)

// target is one port a case probes.
type target struct {
	proto string
	port  int
}

func (t target) String() string { return fmt.Sprintf("%s/%d", t.proto, t.port) }

var tcp80, tcp81, udp80, udp81 = target{"tcp", 80}, target{"tcp", 81}, target{"udp", 80}, target{"udp", 81}

// reach is an expected or observed matrix: reach[from][to] for pods "x/a".
type reach map[string]map[string]bool

func allPods() []string {
	var out []string
	for _, n := range npNamespaces {
		for _, p := range npPods {
			out = append(out, n+"/"+p)
		}
	}
	return out
}

// expect builds a matrix from a rule: allowed(from, to).
func expect(allowed func(from, to string) bool) reach {
	r := reach{}
	for _, f := range allPods() {
		r[f] = map[string]bool{}
		for _, t := range allPods() {
			if f != t {
				r[f][t] = allowed(f, t)
			}
		}
	}
	return r
}

func allAllowed(string, string) bool { return true }

func nsOf(p string) string { return p[:strings.Index(p, "/")] }

func (r reach) String() string {
	var b strings.Builder
	b.WriteString("from\\to")
	for _, t := range allPods() {
		b.WriteString(" " + t)
	}
	for _, f := range allPods() {
		b.WriteString("\n" + f + "    ")
		for _, t := range allPods() {
			switch {
			case f == t:
				b.WriteString("   - ")
			case r[f][t]:
				b.WriteString("   . ")
			default:
				b.WriteString("   X ")
			}
		}
	}
	return b.String()
}

func (r reach) equal(o reach) bool {
	for _, f := range allPods() {
		for _, t := range allPods() {
			if f != t && r[f][t] != o[f][t] {
				return false
			}
		}
	}
	return true
}

// policyBed is the suite's cluster state: pod IPs and network namespaces.
type policyBed struct {
	ips   map[string]string
	netns map[string]string
}

func setupPolicyBed(t *testing.T) *policyBed {
	t.Helper()
	b := &policyBed{ips: map[string]string{}, netns: map[string]string{}}
	for _, n := range npNamespaces {
		namespace(t, n)
		labelNamespace(t, n, map[string]*string{"ns": &n})
		for i, p := range npPods {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: n, Name: p, Labels: map[string]string{"pod": p}},
				Spec: corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/hostname": state.Nodes[i%len(state.Nodes)].Name},
					Containers: []corev1.Container{{Name: "c", Image: "kovn.io/test", Ports: []corev1.ContainerPort{
						{Name: "serve-80-tcp", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
						{Name: "serve-81-tcp", ContainerPort: 81, Protocol: corev1.ProtocolTCP},
						{Name: "serve-80-udp", ContainerPort: 80, Protocol: corev1.ProtocolUDP},
						{Name: "serve-81-udp", ContainerPort: 81, Protocol: corev1.ProtocolUDP}}}}}}
			if _, err := kube.CoreV1().Pods(n).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range npNamespaces {
		for _, p := range npPods {
			running := waitRunning(t, n, p)
			b.ips[n+"/"+p] = running.IP
			netns, err := sandbox.PodNetns(stateDir, n+"/"+p)
			if err != nil {
				t.Fatal(err)
			}
			b.netns[n+"/"+p] = netns
		}
	}
	return b
}

func labelNamespace(t *testing.T, name string, l map[string]*string) {
	t.Helper()
	var parts []string
	for k, v := range l {
		if v == nil {
			parts = append(parts, fmt.Sprintf("%q:null", k))
		} else {
			parts = append(parts, fmt.Sprintf("%q:%q", k, *v))
		}
	}
	patch := `{"metadata":{"labels":{` + strings.Join(parts, ",") + `}}}`
	if _, err := kube.CoreV1().Namespaces().Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func labelPod(t *testing.T, pod string, key string, value *string) {
	t.Helper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, key, v)
	ns, name, _ := strings.Cut(pod, "/")
	if _, err := kube.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// observe probes every pair on one target.
func (b *policyBed) observe(tg target) reach {
	r := reach{}
	type pair struct{ f, t string }
	var pairs []pair
	for _, f := range allPods() {
		r[f] = map[string]bool{}
		for _, t := range allPods() {
			if f != t {
				pairs = append(pairs, pair{f, t})
			}
		}
	}
	results := make([]bool, len(pairs))
	parallel(len(pairs), 24, func(i int) error {
		p := pairs[i]
		addr := fmt.Sprintf("%s:%d", b.ips[p.t], tg.port)
		_ = ns.WithNetNSPath(b.netns[p.f], func(ns.NetNS) error {
			for try := 0; try < 2 && !results[i]; try++ { // a lost UDP datagram is not a verdict
				rep, err := workload.Probe(tg.proto, addr, 700*time.Millisecond)
				results[i] = err == nil && rep.Name == p.t
				if err != nil && !strings.Contains(err.Error(), "timeout") {
					break // refused: a verdict
				}
			}
			return nil
		})
		return nil
	})
	for i, p := range pairs {
		r[p.f][p.t] = results[i]
	}
	return r
}

// check waits until the observed matrix of every target equals the expected one; on timeout it prints both.
func (b *policyBed) check(t *testing.T, name string, want map[target]reach) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		var bad []string
		for tg, w := range want {
			if got := b.observe(tg); !got.equal(w) {
				bad = append(bad, fmt.Sprintf("%s on %s:\nexpected:\n%s\nobserved:\n%s", name, tg, w, got))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reachability differs from the NetworkPolicy semantics (X = blocked, . = reached):\n%s", strings.Join(bad, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func applyPolicy(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	ctx := context.Background()
	cur, err := kube.NetworkingV1().NetworkPolicies(np.Namespace).Get(ctx, np.Name, metav1.GetOptions{})
	if err == nil {
		np.ResourceVersion = cur.ResourceVersion
		_, err = kube.NetworkingV1().NetworkPolicies(np.Namespace).Update(ctx, np, metav1.UpdateOptions{})
	} else {
		_, err = kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func deletePolicies(t *testing.T) {
	t.Helper()
	for _, n := range npNamespaces {
		if err := kube.NetworkingV1().NetworkPolicies(n).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func np(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return ps }

func port(proto corev1.Protocol, p intstr.IntOrString, end *int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p, EndPort: end}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
)
