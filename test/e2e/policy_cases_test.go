package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestNetworkPolicyTruthTables runs the cases of the upstream NetworkPolicy e2e suite (and kovn's namespace
// isolation) on one bed of 9 pods; each case starts from no policy.
func TestNetworkPolicyTruthTables(t *testing.T) {
	b := setupPolicyBed(t)
	t.Cleanup(func() { deletePolicies(t) })
	only := func(tg ...target) []target { return tg }
	tcp := only(tcp80)
	cases := []struct {
		name     string
		apply    func(t *testing.T)
		targets  []target
		allowed  func(from, to string) bool
		perTgt   map[target]func(from, to string) bool
		teardown func(t *testing.T)
	}{
		{name: "no policy: all reach all", apply: func(*testing.T) {}, targets: only(tcp80, udp81), allowed: allAllowed},
		{
			name: "default deny ingress in x",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly}))
			},
			targets: only(tcp80, udp80), allowed: func(f, to string) bool { return nsOf(to) != "x" },
		},
		{
			name: "default deny egress in x",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: egressOnly}))
			},
			targets: tcp, allowed: func(f, to string) bool { return nsOf(f) != "x" },
		},
		{
			name: "allow from the same namespace in x",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "same-ns", networkingv1.NetworkPolicySpec{
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return nsOf(to) != "x" || nsOf(f) == "x" },
		},
		{
			name: "allow x/a from namespace y",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "from-y", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return to != "x/a" || nsOf(f) == "y" },
		},
		{
			name: "AND: pod b in namespace y",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "and", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
						{NamespaceSelector: sel("ns", "y"), PodSelector: sel("pod", "b")}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return to != "x/a" || f == "y/b" },
		},
		{
			name: "OR: namespace y, or pod b of x",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "or", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
						{NamespaceSelector: sel("ns", "y")}, {PodSelector: sel("pod", "b")}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return to != "x/a" || nsOf(f) == "y" || f == "x/b" },
		},
		{
			name: "ipBlock of the pod network except y/b",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "ipblock", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
						{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16", Except: []string{b.ips["y/b"] + "/32"}}}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return to != "x/a" || f != "y/b" },
		},
		{
			name: "named port: x/a only on serve-81-tcp",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "named", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: ports(port(corev1.ProtocolTCP, intstr.FromString("serve-81-tcp"), nil))}}}))
			},
			perTgt: map[target]func(f, to string) bool{
				tcp80: func(f, to string) bool { return to != "x/a" },
				tcp81: allAllowed,
			},
		},
		{
			name: "port range: x/a on TCP 80-81 only",
			apply: func(t *testing.T) {
				end := int32(81)
				applyPolicy(t, np("x", "range", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: ports(port(corev1.ProtocolTCP, intstr.FromInt32(80), &end))}}}))
			},
			perTgt: map[target]func(f, to string) bool{
				tcp80: allAllowed, tcp81: allAllowed,
				udp80: func(f, to string) bool { return to != "x/a" },
			},
		},
		{
			name: "UDP 81 only into namespace y",
			apply: func(t *testing.T) {
				applyPolicy(t, np("y", "udp", networkingv1.NetworkPolicySpec{
					Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: ports(port(corev1.ProtocolUDP, intstr.FromInt32(81), nil))}}}))
			},
			perTgt: map[target]func(f, to string) bool{
				udp81: allAllowed,
				udp80: func(f, to string) bool { return nsOf(to) != "y" },
				tcp81: func(f, to string) bool { return nsOf(to) != "y" },
			},
		},
		{
			name: "egress from x/a to namespace y only",
			apply: func(t *testing.T) {
				applyPolicy(t, np("x", "egress", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"), PolicyTypes: egressOnly,
					Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}}}}))
			},
			targets: tcp, allowed: func(f, to string) bool { return f != "x/a" || nsOf(to) == "y" },
		},
		{
			name: "two policies are unioned",
			apply: func(t *testing.T) {
				for _, n := range []string{"y", "z"} {
					applyPolicy(t, np("x", "from-"+n, networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
						Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", n)}}}}}))
				}
			},
			targets: tcp, allowed: func(f, to string) bool { return to != "x/a" || nsOf(f) != "x" },
		},
		{
			name:    "namespace isolation annotation on z",
			apply:   func(t *testing.T) { annotateNamespace(t, "z", "kovn.io/isolation", strp("true")) },
			targets: tcp, allowed: func(f, to string) bool { return nsOf(to) != "z" || nsOf(f) == "z" },
			teardown: func(t *testing.T) { annotateNamespace(t, "z", "kovn.io/isolation", nil) },
		},
	}
	for _, c := range cases {
		ok := t.Run(c.name, func(t *testing.T) {
			c.apply(t)
			want := map[target]reach{}
			for _, tg := range c.targets {
				want[tg] = expect(c.allowed)
			}
			for tg, f := range c.perTgt {
				want[tg] = expect(f)
			}
			b.check(t, c.name, want)
		})
		deletePolicies(t)
		if c.teardown != nil {
			c.teardown(t)
		}
		if !ok {
			return
		}
	}
	t.Run("update, label changes and deletion", func(t *testing.T) { policyChanges(t, b) })
	t.Run("ACL logging names the policy that dropped", func(t *testing.T) { aclLogging(t, b) })
}

// aclLogging turns on logging for namespace x and checks that ovn-controller on the destination's node logs
// the drop with the name of the namespace's default deny and the allow with the policy's rule.
func aclLogging(t *testing.T, b *policyBed) {
	annotateNamespace(t, "x", "kovn.io/acl-logging", strp(`{"deny":"warning","allow":"info"}`))
	t.Cleanup(func() { annotateNamespace(t, "x", "kovn.io/acl-logging", nil) })
	applyPolicy(t, np("x", "from-y", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "b"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}}}}))
	b.check(t, "x/b from y only", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/b" || nsOf(f) == "y" })})
	log := filepath.Join(stateDir, "logs", "node2-ovn-controller.log") // x/b runs on node2
	eventually(t, "ACL log lines for x/b", 30*time.Second, func() (bool, string) {
		b.observe(tcp80)
		data, err := os.ReadFile(log)
		if err != nil {
			return false, err.Error()
		}
		text := string(data)
		drop := strings.Contains(text, `name="x/default-deny:ingress:0", verdict=drop, severity=warning`)
		allow := strings.Contains(text, `name="x/from-y:ingress:0", verdict=allow, severity=info`)
		return drop && allow, fmt.Sprintf("drop logged %v, allow logged %v", drop, allow)
	})
}

// policyChanges checks that updates of a policy, of pod and namespace labels, and its deletion take effect.
func policyChanges(t *testing.T, b *policyBed) {
	applyPolicy(t, np("x", "changing", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}}}}))
	b.check(t, "from y", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" || nsOf(f) == "y" })})
	// Update: from z instead.
	applyPolicy(t, np("x", "changing", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "z")}}}}}))
	b.check(t, "updated to from z", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" || nsOf(f) == "z" })})
	// Pod labels: pods labelled role=client in any namespace.
	applyPolicy(t, np("x", "changing", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
			{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel("role", "client")}}}}}))
	b.check(t, "nobody labelled yet", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" })})
	labelPod(t, "y/c", "role", strp("client"))
	b.check(t, "y/c labelled", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" || f == "y/c" })})
	labelPod(t, "y/c", "role", nil)
	b.check(t, "label removed", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" })})
	// Namespace labels: namespaces labelled team=blue.
	applyPolicy(t, np("x", "changing", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "blue")}}}}}))
	labelNamespace(t, "z", map[string]*string{"team": strp("blue")})
	b.check(t, "z labelled blue", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" || nsOf(f) == "z" })})
	labelNamespace(t, "z", map[string]*string{"team": nil})
	b.check(t, "z unlabelled", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" })})
	// A pod that starts to match the policy's podSelector becomes isolated.
	labelPod(t, "x/b", "pod", strp("a"))
	b.check(t, "x/b now selected", map[target]reach{tcp80: expect(func(f, to string) bool { return to != "x/a" && to != "x/b" })})
	labelPod(t, "x/b", "pod", strp("b"))
	// Deletion: everything reachable again.
	deletePolicies(t)
	b.check(t, "deleted", map[target]reach{tcp80: expect(allAllowed)})
}

func strp(s string) *string { return &s }
