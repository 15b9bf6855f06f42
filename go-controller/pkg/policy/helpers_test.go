package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kovn-io/kovn/go-controller/pkg/policy"
)

// The policy most tests translate is ns1/pol: its port group is kovn_np_ + the first 8 bytes of
// sha256("ns1/pol") in hex (computed with sha256sum, not with the code under test).
const (
	testNS   = "ns1"
	testName = "pol"
	testPG   = "kovn_np_605cb9e26dce6c8b"
)

// asName is the address set name of a peer with this (hand-written) key: kovn_peer_ + sha256(key)[:8] in hex.
func asName(key string) string {
	h := sha256.Sum256([]byte(key))
	return "kovn_peer_" + hex.EncodeToString(h[:8])
}

func newPolicy(spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: testName}, Spec: spec}
}

// sel is a matchLabels selector of key/value pairs; sel() is the empty selector {} (selects everything).
func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	for i := 0; i+1 < len(kv); i += 2 {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func expr(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
}

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func nsPodPeer(ns, pods *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pods}
}

func ipBlock(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func protoPtr(p corev1.Protocol) *corev1.Protocol { return &p }

// port builds a NetworkPolicyPort: proto "" leaves the protocol out; port nil (pass nil) leaves the port out.
func port(proto corev1.Protocol, p *intstr.IntOrString) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Port: p}
	if proto != "" {
		np.Protocol = protoPtr(proto)
	}
	return np
}

func num(n int32) *intstr.IntOrString    { v := intstr.FromInt32(n); return &v }
func named(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

func portRange(proto corev1.Protocol, from, to int32) networkingv1.NetworkPolicyPort {
	p := port(proto, num(from))
	p.EndPort = &to
	return p
}

// ingressACL and egressACL are the expected allow ACLs of rule i of ns1/pol, written out by hand.
func ingressACL(i int, match string) policy.ACL {
	return policy.ACL{ID: fmt.Sprintf("ingress-%d", i), Name: fmt.Sprintf("ns1/pol:ingress:%d", i), Direction: "to-lport",
		Priority: 1001, Match: match, Action: "allow-related"}
}

func egressACL(i int, match string) policy.ACL {
	return policy.ACL{ID: fmt.Sprintf("egress-%d", i), Name: fmt.Sprintf("ns1/pol:egress:%d", i), Direction: "from-lport",
		Priority: 1001, Match: match, Action: "allow-related", Options: map[string]string{"apply-after-lb": "true"}}
}

// diffTranslation describes how got differs from want, field by field ("" when equal).
func diffTranslation(got, want policy.Translation) string {
	var d []string
	if got.PortGroup != want.PortGroup {
		d = append(d, fmt.Sprintf("PortGroup: got %q, want %q", got.PortGroup, want.PortGroup))
	}
	if got.Ingress != want.Ingress || got.Egress != want.Egress {
		d = append(d, fmt.Sprintf("Ingress/Egress: got %v/%v, want %v/%v", got.Ingress, got.Egress, want.Ingress, want.Egress))
	}
	if !reflect.DeepEqual(got.ACLs, want.ACLs) {
		d = append(d, fmt.Sprintf("ACLs: got %d, want %d", len(got.ACLs), len(want.ACLs)))
		for i := 0; i < max(len(got.ACLs), len(want.ACLs)); i++ {
			switch {
			case i >= len(got.ACLs):
				d = append(d, fmt.Sprintf("  ACL %d missing: %+v", i, want.ACLs[i]))
			case i >= len(want.ACLs):
				d = append(d, fmt.Sprintf("  ACL %d extra: %+v", i, got.ACLs[i]))
			case !reflect.DeepEqual(got.ACLs[i], want.ACLs[i]):
				d = append(d, fmt.Sprintf("  ACL %d:\n    got  %+v\n    want %+v", i, got.ACLs[i], want.ACLs[i]))
			}
		}
	}
	if !reflect.DeepEqual(got.Peers, want.Peers) {
		d = append(d, fmt.Sprintf("Peers:\n  got  %s\n  want %s", peerKeys(got.Peers), peerKeys(want.Peers)))
	}
	if !reflect.DeepEqual(got.Warnings, want.Warnings) {
		d = append(d, fmt.Sprintf("Warnings:\n  got  %q\n  want %q", got.Warnings, want.Warnings))
	}
	return strings.Join(d, "\n")
}

func peerKeys(ps []policy.Peer) string {
	var ks []string
	for _, p := range ps {
		ks = append(ks, fmt.Sprintf("{Namespace:%s Key:%s}", p.Namespace, p.Key()))
	}
	return "[" + strings.Join(ks, " ") + "]"
}

var identifier = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// checkMatch reports why s is not a plausible OVN match expression: parentheses and braces must balance (and
// nest properly), "$name" and "@name" must be identifiers, && and || may not be mixed without parentheses, and
// no operator may be left dangling.
func checkMatch(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("empty match")
	}
	type level struct {
		open    byte
		and, or bool
	}
	stack := []level{{}}
	expectOperand := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
		case c == '(' || c == '{':
			stack = append(stack, level{open: c})
			expectOperand = true
		case c == ')' || c == '}':
			top := stack[len(stack)-1]
			if len(stack) == 1 || (c == ')' && top.open != '(') || (c == '}' && top.open != '{') {
				return fmt.Errorf("unbalanced %q at %d in %q", c, i, s)
			}
			if expectOperand && top.open == '(' {
				return fmt.Errorf("empty or dangling operand before %q at %d in %q", c, i, s)
			}
			stack = stack[:len(stack)-1]
			expectOperand = false
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||"):
			if expectOperand {
				return fmt.Errorf("operator %q without left operand at %d in %q", s[i:i+2], i, s)
			}
			top := &stack[len(stack)-1]
			if top.open == '{' {
				return fmt.Errorf("logical operator inside a set at %d in %q", i, s)
			}
			if c == '&' {
				top.and = true
			} else {
				top.or = true
			}
			if top.and && top.or {
				return fmt.Errorf("&& and || mixed without parentheses at %d in %q", i, s)
			}
			i++
			expectOperand = true
		case c == '$' || c == '@':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if !identifier.MatchString(s[i+1 : j]) {
				return fmt.Errorf("%q at %d is not followed by an identifier in %q", c, i, s)
			}
			if j < len(s) && !strings.ContainsRune(" ,)}", rune(s[j])) {
				return fmt.Errorf("name after %q at %d runs into %q in %q", c, i, s[j], s)
			}
			i = j - 1
			expectOperand = false
		default:
			// A field, relational operator or constant: consume up to the next separator.
			j := i
			for j < len(s) && !strings.ContainsRune(" (){}", rune(s[j])) {
				j++
			}
			tok := s[i:j]
			if strings.Contains(tok, "&") || strings.Contains(tok, "|") {
				return fmt.Errorf("malformed token %q in %q", tok, s)
			}
			i = j - 1
			expectOperand = false
		}
	}
	if len(stack) != 1 {
		return fmt.Errorf("unclosed %q in %q", stack[len(stack)-1].open, s)
	}
	if expectOperand {
		return fmt.Errorf("dangling operator at the end of %q", s)
	}
	return nil
}
