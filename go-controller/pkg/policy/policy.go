// Package policy translates Kubernetes NetworkPolicies into OVN port groups, address sets and ACLs, as plain
// data (the controller applies it). It owns the translation rules and the names and priorities of the rows:
//
//   - one port group per policy, holding the pods its podSelector selects;
//   - per namespace and direction one default-deny port group, holding every pod some policy of the namespace
//     isolates in that direction, with a drop ACL (priority DenyPriority) shared by all its policies;
//   - one ACL per policy rule and direction (allow-related, so replies pass), priority AllowPriority;
//   - one address set per distinct peer selector, shared by every policy that uses it (Peer);
//   - ipBlocks inline in the match; named ports resolved per pod into IP lists.
//
// Priorities leave room for cluster-wide admin policies: AdminBand above namespace policies, BaselineBand
// below the default deny (reached only by pods no namespace policy isolates).
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ACL priorities.
const (
	// AdminBand is reserved for cluster-admin policies that override namespace policies (a later issue).
	AdminBandLow, AdminBandHigh = 20000, 29999
	// AllowPriority is the priority of namespace policy allow rules and of node-local traffic.
	AllowPriority = 1001
	// DenyPriority is the default deny of isolated pods.
	DenyPriority = 1000
	// BaselineBand is reserved for baseline admin policies, which apply only to non-isolated pods.
	BaselineBandLow, BaselineBandHigh = 500, 999
)

// Direction of a policy rule.
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// Types returns which directions a policy isolates its pods in: policyTypes, or when omitted, Ingress always
// and Egress when the policy has egress rules.
func Types(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// Selects reports whether the policy's podSelector selects a pod of its namespace with these labels.
func Selects(np *networkingv1.NetworkPolicy, podNS string, podLabels map[string]string) bool {
	if podNS != np.Namespace {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	return err == nil && sel.Matches(labels.Set(podLabels))
}

// PortGroupName is the name of a policy's port group: a name valid in OVN matches (@name) that stays short.
func PortGroupName(namespace, name string) string { return "kovn_np_" + hash(namespace+"/"+name) }

// DenyPortGroupName is the name of a namespace's default-deny port group for a direction.
func DenyPortGroupName(namespace string, d Direction) string {
	return "kovn_deny_" + string(d) + "_" + hash(namespace)
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// Peer is a pod selector a rule allows traffic from or to: pods matching PodSelector (nil: all) in the
// namespaces matching NamespaceSelector (nil: only Namespace, the policy's own).
type Peer struct {
	Namespace         string
	NamespaceSelector *metav1.LabelSelector
	PodSelector       *metav1.LabelSelector
}

// Key identifies the peer: policies with equal peers share one address set.
func (p Peer) Key() string {
	ns := "ns=" + p.Namespace
	if p.NamespaceSelector != nil {
		ns = "nsSel=" + selectorString(p.NamespaceSelector)
	}
	pod := "pods=all"
	if p.PodSelector != nil && (len(p.PodSelector.MatchLabels) > 0 || len(p.PodSelector.MatchExpressions) > 0) {
		pod = "podSel=" + selectorString(p.PodSelector)
	}
	return ns + ";" + pod
}

// AddressSetName is the name of the peer's address set.
func (p Peer) AddressSetName() string { return "kovn_peer_" + hash(p.Key()) }

// MatchesNamespace reports whether pods of a namespace with these labels can match the peer.
func (p Peer) MatchesNamespace(ns string, nsLabels map[string]string) bool {
	if p.NamespaceSelector == nil {
		return ns == p.Namespace
	}
	sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
	return err == nil && sel.Matches(labels.Set(nsLabels))
}

// MatchesPod reports whether a pod (its namespace's labels given) matches the peer. To match many pods, use
// Matcher once.
func (p Peer) MatchesPod(ns string, nsLabels, podLabels map[string]string) bool {
	return p.Matcher().MatchesPod(ns, nsLabels, podLabels)
}

// Matcher is a Peer with its selectors parsed and its address set named once, for matching many pods.
type Matcher struct {
	Peer
	AddressSet string
	ns, pod    labels.Selector // nil: the policy's own namespace / every pod
	invalid    bool
}

// Matcher parses the peer's selectors.
func (p Peer) Matcher() Matcher {
	m := Matcher{Peer: p, AddressSet: p.AddressSetName()}
	var err error
	if p.NamespaceSelector != nil {
		if m.ns, err = metav1.LabelSelectorAsSelector(p.NamespaceSelector); err != nil {
			m.invalid = true
		}
	}
	if p.PodSelector != nil {
		if m.pod, err = metav1.LabelSelectorAsSelector(p.PodSelector); err != nil {
			m.invalid = true
		}
	}
	return m
}

// MatchesPod reports whether a pod (its namespace's labels given) matches the peer; an invalid selector matches
// nothing.
func (m Matcher) MatchesPod(ns string, nsLabels, podLabels map[string]string) bool {
	switch {
	case m.invalid:
		return false
	case m.ns == nil && ns != m.Namespace:
		return false
	case m.ns != nil && !m.ns.Matches(labels.Set(nsLabels)):
		return false
	}
	return m.pod == nil || m.pod.Matches(labels.Set(podLabels))
}

// selectorString renders a label selector canonically (sorted requirements), so equal selectors share a key.
func selectorString(s *metav1.LabelSelector) string {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "invalid:" + s.String()
	}
	reqs, _ := sel.Requirements()
	parts := make([]string, 0, len(reqs))
	for _, r := range reqs {
		// k=v, k==v and "k in (v)" select the same pods: one spelling, so they share an address set.
		if vals := r.ValuesUnsorted(); len(vals) == 1 && (r.Operator() == "=" || r.Operator() == "==" || r.Operator() == "in") {
			parts = append(parts, r.Key()+"="+vals[0])
			continue
		}
		parts = append(parts, r.String())
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// PeersOf returns the pod-selecting peers of a rule's from/to list in namespace ns (ipBlocks are not peers).
func PeersOf(ns string, peers []networkingv1.NetworkPolicyPeer) []Peer {
	var out []Peer
	for _, p := range peers {
		if p.IPBlock != nil || (p.PodSelector == nil && p.NamespaceSelector == nil) {
			continue
		}
		out = append(out, Peer{Namespace: ns, NamespaceSelector: p.NamespaceSelector, PodSelector: p.PodSelector})
	}
	return out
}

// AllPeers returns every distinct peer the rules of a policy's isolated directions use.
func AllPeers(np *networkingv1.NetworkPolicy) []Peer {
	ingress, egress := Types(np)
	seen := map[string]bool{}
	var out []Peer
	add := func(ps []Peer) {
		for _, p := range ps {
			if !seen[p.Key()] {
				seen[p.Key()] = true
				out = append(out, p)
			}
		}
	}
	for _, r := range np.Spec.Ingress {
		if ingress {
			add(PeersOf(np.Namespace, r.From))
		}
	}
	for _, r := range np.Spec.Egress {
		if egress {
			add(PeersOf(np.Namespace, r.To))
		}
	}
	return out
}

// protoName is the OVN match keyword of a protocol.
func protoName(p *corev1.Protocol) string {
	if p == nil {
		return "tcp"
	}
	return strings.ToLower(string(*p))
}

// Description names a policy's rule for ACL names and logs ("ns/name:ingress:0"), cut to OVN's 63 characters.
func Description(namespace, name string, d Direction, rule int) string {
	s := fmt.Sprintf("%s/%s:%s:%d", namespace, name, d, rule)
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
