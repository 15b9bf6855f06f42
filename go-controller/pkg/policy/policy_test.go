package policy_test

import (
	"reflect"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/policy"
)

func TestTypes(t *testing.T) {
	ing := []networkingv1.NetworkPolicyIngressRule{{}}
	egr := []networkingv1.NetworkPolicyEgressRule{{}}
	in, eg := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	tests := []struct {
		name                 string
		spec                 networkingv1.NetworkPolicySpec
		wantIngress, wantEgr bool
	}{
		{"omitted, no rules: ingress only", networkingv1.NetworkPolicySpec{}, true, false},
		{"omitted, ingress rules: ingress only", networkingv1.NetworkPolicySpec{Ingress: ing}, true, false},
		{"omitted, egress rules: both", networkingv1.NetworkPolicySpec{Egress: egr}, true, true},
		{"omitted, both rules: both", networkingv1.NetworkPolicySpec{Ingress: ing, Egress: egr}, true, true},
		{"omitted, empty non-nil egress list: ingress only",
			networkingv1.NetworkPolicySpec{Egress: []networkingv1.NetworkPolicyEgressRule{}}, true, false},
		{"explicit Ingress, egress rules ignored", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{in}, Egress: egr}, true, false},
		{"explicit Egress, ingress rules ignored", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{eg}, Ingress: ing}, false, true},
		{"explicit Egress without rules", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{eg}}, false, true},
		{"explicit both", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{in, eg}}, true, true},
		{"explicit both, reversed", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{eg, in}}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotIn, gotEg := policy.Types(newPolicy(tt.spec))
			if gotIn != tt.wantIngress || gotEg != tt.wantEgr {
				t.Errorf("Types = %v, %v; want %v, %v", gotIn, gotEg, tt.wantIngress, tt.wantEgr)
			}
		})
	}
}

func TestSelects(t *testing.T) {
	tests := []struct {
		name   string
		podSel metav1.LabelSelector
		ns     string
		labels map[string]string
		want   bool
	}{
		{"empty selector, pod of the namespace", metav1.LabelSelector{}, "ns1", map[string]string{"app": "x"}, true},
		{"empty selector, unlabelled pod", metav1.LabelSelector{}, "ns1", nil, true},
		{"empty selector, pod of another namespace", metav1.LabelSelector{}, "ns2", nil, false},
		{"matchLabels match", *sel("app", "db"), "ns1", map[string]string{"app": "db", "x": "y"}, true},
		{"matchLabels mismatch", *sel("app", "db"), "ns1", map[string]string{"app": "web"}, false},
		{"matchLabels match in another namespace", *sel("app", "db"), "ns2", map[string]string{"app": "db"}, false},
		{"matchLabels: all must hold", *sel("app", "db", "tier", "be"), "ns1", map[string]string{"app": "db"}, false},
		{"In", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", metav1.LabelSelectorOpIn, "a", "b")}},
			"ns1", map[string]string{"app": "b"}, true},
		{"NotIn holds without the label", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", metav1.LabelSelectorOpNotIn, "a")}},
			"ns1", nil, true},
		{"NotIn", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", metav1.LabelSelectorOpNotIn, "a")}},
			"ns1", map[string]string{"app": "a"}, false},
		{"Exists", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", metav1.LabelSelectorOpExists)}},
			"ns1", map[string]string{"app": ""}, true},
		{"DoesNotExist", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", metav1.LabelSelectorOpDoesNotExist)}},
			"ns1", map[string]string{"app": "a"}, false},
		{"invalid selector selects nothing", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("app", "Bogus", "a")}},
			"ns1", map[string]string{"app": "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := newPolicy(networkingv1.NetworkPolicySpec{PodSelector: tt.podSel})
			if got := policy.Selects(np, tt.ns, tt.labels); got != tt.want {
				t.Errorf("Selects(%s, %v) = %v, want %v", tt.ns, tt.labels, got, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	// Hashes computed with `printf %s ... | sha256sum | cut -c1-16`.
	tests := []struct{ name, got, want string }{
		{"policy port group", policy.PortGroupName("ns1", "pol"), "kovn_np_605cb9e26dce6c8b"},
		{"policy port group 2", policy.PortGroupName("default", "allow-db"), "kovn_np_73b46646b25fbf18"},
		{"ingress deny port group", policy.DenyPortGroupName("ns1", policy.Ingress), "kovn_deny_ingress_4d2b33d1dfddd7bb"},
		{"egress deny port group", policy.DenyPortGroupName("ns1", policy.Egress), "kovn_deny_egress_4d2b33d1dfddd7bb"},
		{"peer address set", policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")}.AddressSetName(), "kovn_peer_a3a3db4ac2685dd0"},
		{"long policy name stays short", policy.PortGroupName("team-payments-production", "allow-ingress-from-frontend-and-monitoring-namespaces"),
			"kovn_np_265603cbc48066df"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestNamesAreValidStableAndDistinct(t *testing.T) {
	peers := []policy.Peer{
		{Namespace: "ns1", PodSelector: sel("app", "db")},
		{Namespace: "ns2", PodSelector: sel("app", "db")},
		{Namespace: "ns1", NamespaceSelector: sel()},
		{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel("app", "db")},
		{Namespace: "ns1", NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("x", "Bogus")}}},
	}
	type gen struct {
		what string
		f    func() string
	}
	var gens []gen
	for _, p := range peers {
		gens = append(gens, gen{"address set of " + p.Key(), p.AddressSetName})
	}
	for _, nn := range [][2]string{{"ns1", "pol"}, {"ns2", "pol"}, {"ns1", "pol2"}, {"a-b", "c"}, {"a", "b-c"},
		{"x", strings.Repeat("n", 253)}} {
		gens = append(gens, gen{"port group of " + nn[0] + "/" + nn[1], func() string { return policy.PortGroupName(nn[0], nn[1]) }})
	}
	for _, ns := range []string{"ns1", "ns2"} {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			gens = append(gens, gen{"deny port group of " + ns + " " + string(d), func() string { return policy.DenyPortGroupName(ns, d) }})
		}
	}
	seen := map[string]string{}
	for _, g := range gens {
		name := g.f()
		if !identifier.MatchString(name) {
			t.Errorf("%s: %q is not an OVN identifier (letters, digits, underscores, starting with a letter)", g.what, name)
		}
		if len(name) > 64 {
			t.Errorf("%s: %q is %d characters long", g.what, name, len(name))
		}
		if again := g.f(); again != name {
			t.Errorf("%s: not stable: %q then %q", g.what, name, again)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the name %q", g.what, other, name)
		}
		seen[name] = g.what
	}
}

func TestPeerKey(t *testing.T) {
	in, notIn, exists := metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists
	tests := []struct {
		name string
		peer policy.Peer
		want string
	}{
		{"pod selector: own namespace", policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")}, "ns=ns1;podSel={app=db}"},
		{"namespace selector: all its pods", policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")}, "nsSel={team=a};pods=all"},
		{"namespace selector ignores the policy namespace", policy.Peer{Namespace: "other", NamespaceSelector: sel("team", "a")}, "nsSel={team=a};pods=all"},
		{"both", policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel("app", "db")}, "nsSel={team=a};podSel={app=db}"},
		{"all namespaces", policy.Peer{Namespace: "ns1", NamespaceSelector: sel()}, "nsSel={};pods=all"},
		{"all pods of own namespace", policy.Peer{Namespace: "ns1", PodSelector: sel()}, "ns=ns1;pods=all"},
		{"sorted requirements", policy.Peer{Namespace: "ns1", PodSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"z": "1", "app": "db"},
			MatchExpressions: []metav1.LabelSelectorRequirement{expr("tier", notIn, "y", "x"), expr("env", exists), expr("b", in, "2", "1")},
		}}, "ns=ns1;podSel={app=db,b in (1,2),env,tier notin (x,y),z=1}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.peer.Key(); got != tt.want {
				t.Errorf("Key() = %q, want %q", got, tt.want)
			}
			if got, want := tt.peer.AddressSetName(), asName(tt.want); got != want {
				t.Errorf("AddressSetName() = %q, want %q", got, want)
			}
		})
	}
}

func TestPeerKeyEquality(t *testing.T) {
	in, notIn, exists := metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists
	reqs := func(rs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: rs}
	}
	tests := []struct {
		name  string
		a, b  policy.Peer
		equal bool
	}{
		{"matchExpressions in another order, values in another order",
			policy.Peer{Namespace: "ns1", PodSelector: reqs(expr("app", in, "x", "y"), expr("env", exists), expr("t", notIn, "a", "b"))},
			policy.Peer{Namespace: "ns1", PodSelector: reqs(expr("t", notIn, "b", "a"), expr("env", exists), expr("app", in, "y", "x"))}, true},
		{"matchLabels and matchExpressions mixed, in another order", policy.Peer{Namespace: "ns1",
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"b": "2", "a": "1"}, MatchExpressions: []metav1.LabelSelectorRequirement{expr("c", exists), expr("d", in, "1")}}},
			policy.Peer{Namespace: "ns1",
				PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("d", in, "1"), expr("c", exists)}, MatchLabels: map[string]string{"a": "1", "b": "2"}}}, true},
		{"namespace selectors in another order",
			policy.Peer{Namespace: "ns1", NamespaceSelector: reqs(expr("a", exists), expr("b", exists)), PodSelector: sel("app", "db")},
			policy.Peer{Namespace: "ns1", NamespaceSelector: reqs(expr("b", exists), expr("a", exists)), PodSelector: sel("app", "db")}, true},
		{"same namespace selector from policies of different namespaces share",
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")},
			policy.Peer{Namespace: "ns2", NamespaceSelector: sel("team", "a")}, true},
		{"pod selector in different namespaces",
			policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")},
			policy.Peer{Namespace: "ns2", PodSelector: sel("app", "db")}, false},
		{"different pod selectors",
			policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")},
			policy.Peer{Namespace: "ns1", PodSelector: sel("app", "web")}, false},
		{"pod selector vs pods of selected namespaces",
			policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")},
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("app", "db")}, false},
		{"all namespaces vs some",
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel()},
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")}, false},
		{"namespace selector alone vs with pod selector",
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")},
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel("app", "db")}, false},
		{"own namespace's pods vs all namespaces' pods",
			policy.Peer{Namespace: "ns1", PodSelector: sel()},
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := tt.a.Key(), tt.b.Key()
			if (ka == kb) != tt.equal {
				t.Errorf("keys %q and %q: equal = %v, want %v", ka, kb, ka == kb, tt.equal)
			}
			if (tt.a.AddressSetName() == tt.b.AddressSetName()) != tt.equal {
				t.Errorf("address sets %q and %q: equal = %v, want %v", tt.a.AddressSetName(), tt.b.AddressSetName(),
					tt.a.AddressSetName() == tt.b.AddressSetName(), tt.equal)
			}
		})
	}
}

// Selectors that select exactly the same pods but are written in different forms. Sharing their address set is
// only an optimisation: different keys cost a duplicate address set, never wrong traffic.
func TestPeerKeyEquivalentForms(t *testing.T) {
	tests := []struct {
		name string
		a, b policy.Peer
	}{
		{"matchLabels vs matchExpressions In with one value",
			policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")},
			policy.Peer{Namespace: "ns1", PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				expr("app", metav1.LabelSelectorOpIn, "db")}}}},
		{"namespace selector without vs with empty pod selector",
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")},
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.a.Key() != tt.b.Key() {
				t.Errorf("equivalent peers get keys %q and %q (two address sets for one selector)", tt.a.Key(), tt.b.Key())
			}
		})
	}
}

func TestPeerMatches(t *testing.T) {
	type probe struct {
		ns              string
		nsLabels, pod   map[string]string
		wantNS, wantPod bool
	}
	lbl := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		peer   policy.Peer
		probes []probe
	}{
		{"pod selector: only the policy's namespace", policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")}, []probe{
			{"ns1", nil, lbl("app", "db"), true, true},
			{"ns1", lbl("team", "a"), lbl("app", "web"), true, false},
			{"ns1", nil, nil, true, false},
			{"ns2", lbl("kubernetes.io/metadata.name", "ns1"), lbl("app", "db"), false, false},
		}},
		{"empty pod selector: every pod of the namespace", policy.Peer{Namespace: "ns1", PodSelector: sel()}, []probe{
			{"ns1", nil, nil, true, true},
			{"ns2", nil, nil, false, false},
		}},
		{"namespace selector: every pod of matching namespaces, own included only if it matches",
			policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")}, []probe{
				{"ns2", lbl("team", "a"), nil, true, true},
				{"ns3", lbl("team", "a", "x", "y"), lbl("app", "anything"), true, true},
				{"ns1", lbl("team", "b"), lbl("app", "db"), false, false},
				{"ns1", nil, nil, false, false},
			}},
		{"both: AND", policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel("app", "db")}, []probe{
			{"ns2", lbl("team", "a"), lbl("app", "db"), true, true},
			{"ns2", lbl("team", "a"), lbl("app", "web"), true, false},
			{"ns2", lbl("team", "b"), lbl("app", "db"), false, false},
			{"ns1", nil, lbl("app", "db"), false, false},
		}},
		{"empty namespace selector: all namespaces", policy.Peer{Namespace: "ns1", NamespaceSelector: sel()}, []probe{
			{"ns1", nil, nil, true, true},
			{"kube-system", lbl("x", "y"), lbl("k8s-app", "kube-dns"), true, true},
		}},
		{"all namespaces, selected pods", policy.Peer{Namespace: "ns1", NamespaceSelector: sel(), PodSelector: sel("app", "db")}, []probe{
			{"ns9", nil, lbl("app", "db"), true, true},
			{"ns9", nil, lbl("app", "web"), true, false},
		}},
		{"invalid namespace selector matches nothing", policy.Peer{Namespace: "ns1",
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("x", "Bogus")}}}, []probe{
			{"ns1", lbl("x", "1"), nil, false, false},
		}},
		{"invalid pod selector matches nothing", policy.Peer{Namespace: "ns1",
			PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{expr("x", "Bogus")}}}, []probe{
			{"ns1", nil, lbl("x", "1"), true, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range tt.probes {
				if got := tt.peer.MatchesNamespace(p.ns, p.nsLabels); got != p.wantNS {
					t.Errorf("MatchesNamespace(%s, %v) = %v, want %v", p.ns, p.nsLabels, got, p.wantNS)
				}
				if got := tt.peer.MatchesPod(p.ns, p.nsLabels, p.pod); got != p.wantPod {
					t.Errorf("MatchesPod(%s, %v, %v) = %v, want %v", p.ns, p.nsLabels, p.pod, got, p.wantPod)
				}
				if got := tt.peer.Matcher().MatchesPod(p.ns, p.nsLabels, p.pod); got != p.wantPod {
					t.Errorf("Matcher().MatchesPod(%s, %v, %v) = %v, want %v", p.ns, p.nsLabels, p.pod, got, p.wantPod)
				}
			}
		})
	}
}

func TestPeersOf(t *testing.T) {
	tests := []struct {
		name  string
		peers []networkingv1.NetworkPolicyPeer
		want  []policy.Peer
	}{
		{"none", nil, nil},
		{"ipBlocks are not peers", []networkingv1.NetworkPolicyPeer{ipBlock("10.0.0.0/8")}, nil},
		{"a peer with no field is skipped", []networkingv1.NetworkPolicyPeer{{}}, nil},
		{"kinds, in order", []networkingv1.NetworkPolicyPeer{
			podPeer(sel("app", "db")), ipBlock("10.0.0.0/8"), nsPeer(sel("team", "a")), nsPodPeer(sel(), sel("app", "x")),
		}, []policy.Peer{
			{Namespace: "ns1", PodSelector: sel("app", "db")},
			{Namespace: "ns1", NamespaceSelector: sel("team", "a")},
			{Namespace: "ns1", NamespaceSelector: sel(), PodSelector: sel("app", "x")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policy.PeersOf("ns1", tt.peers); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PeersOf = %s, want %s", peerKeys(got), peerKeys(tt.want))
			}
		})
	}
}

func TestAllPeers(t *testing.T) {
	db := podPeer(sel("app", "db"))
	np := newPolicy(networkingv1.NetworkPolicySpec{
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{db, nsPeer(sel("team", "a"))}},
			{From: []networkingv1.NetworkPolicyPeer{ipBlock("10.0.0.0/8"), db}},
		},
		Egress: []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{nsPeer(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				expr("team", metav1.LabelSelectorOpIn, "a")}})}},
			{To: []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "db"))}},
		},
	})
	// "team in (a)" is "team=a": one peer.
	want := []policy.Peer{
		{Namespace: "ns1", PodSelector: sel("app", "db")},
		{Namespace: "ns1", NamespaceSelector: sel("team", "a")},
	}
	if got := policy.AllPeers(np); !reflect.DeepEqual(got, want) {
		t.Errorf("AllPeers = %s, want %s", peerKeys(got), peerKeys(want))
	}
}

func TestDescription(t *testing.T) {
	tests := []struct {
		ns, name string
		d        policy.Direction
		rule     int
		want     string
	}{
		{"ns1", "pol", policy.Ingress, 0, "ns1/pol:ingress:0"},
		{"ns1", "pol", policy.Egress, 12, "ns1/pol:egress:12"},
		// 63 characters exactly: kept whole.
		{"n", strings.Repeat("a", 51), policy.Ingress, 7, "n/" + strings.Repeat("a", 51) + ":ingress:7"},
		// 64 characters: the last one goes.
		{"n", strings.Repeat("a", 51), policy.Ingress, 10, "n/" + strings.Repeat("a", 51) + ":ingress:1"},
		{"team-payments-production", "allow-ingress-from-frontend-and-monitoring-namespaces", policy.Ingress, 0,
			"team-payments-production/allow-ingress-from-frontend-and-monito"},
	}
	for _, tt := range tests {
		got := policy.Description(tt.ns, tt.name, tt.d, tt.rule)
		if got != tt.want {
			t.Errorf("Description(%s, %s, %s, %d) = %q, want %q", tt.ns, tt.name, tt.d, tt.rule, got, tt.want)
		}
		if len(got) > 63 {
			t.Errorf("Description(%s, %s, %s, %d) is %d characters, OVN allows 63", tt.ns, tt.name, tt.d, tt.rule, len(got))
		}
	}
}
