package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ACL is one desired ACL row.
type ACL struct {
	// ID is the row's ownership name within its owner ("ingress-0", "deny").
	ID        string
	Name      string // shown in OVN's ACL logs
	Direction string // to-lport (traffic to the pods) or from-lport (traffic from them)
	Priority  int
	Match     string
	Action    string // allow-related or drop
	Options   map[string]string
}

// OVN ACL directions and actions kovn uses.
const (
	ToLport      = "to-lport"
	FromLport    = "from-lport"
	AllowRelated = "allow-related"
	Drop         = "drop"
)

// NamedPorts resolves a named port of a rule: for each port number the named port has on the pods concerned
// (the policy's pods for ingress, the peers' pods for egress), their IPs.
type NamedPorts func(d Direction, rule int, name string, proto string) map[int32][]string

// Translation is the desired state of one policy.
type Translation struct {
	PortGroup       string
	Ingress, Egress bool
	ACLs            []ACL
	Peers           []Peer
	// Warnings are parts of the policy kovn cannot honour (it honours the rest).
	Warnings []string
}

// Translate returns a policy's ACLs (on its port group) and peers. named resolves named ports.
func Translate(np *networkingv1.NetworkPolicy, named NamedPorts) Translation {
	t := Translation{PortGroup: PortGroupName(np.Namespace, np.Name), Peers: AllPeers(np)}
	t.Ingress, t.Egress = Types(np)
	if t.Ingress {
		for i, r := range np.Spec.Ingress {
			t.addRule(np, Ingress, i, r.From, r.Ports, named)
		}
	}
	if t.Egress {
		for i, r := range np.Spec.Egress {
			t.addRule(np, Egress, i, r.To, r.Ports, named)
		}
	}
	return t
}

func (t *Translation) addRule(np *networkingv1.NetworkPolicy, d Direction, i int, peers []networkingv1.NetworkPolicyPeer,
	ports []networkingv1.NetworkPolicyPort, named NamedPorts) {
	dir, portField, peerField := ToLport, "outport", "ip4.src"
	if d == Egress {
		dir, portField, peerField = FromLport, "inport", "ip4.dst"
	}
	peerMatch, warns := t.peersMatch(peerField, np.Namespace, peers)
	t.Warnings = append(t.Warnings, warns...)
	if peerMatch == "false" {
		return // only peers kovn cannot express: allows nothing
	}
	portMatches := portsMatch(d, i, ports, named)
	if len(portMatches) == 0 {
		return // only named ports no pod has: allows nothing
	}
	match := fmt.Sprintf("%s == @%s && ip4", portField, t.PortGroup)
	if peerMatch != "" {
		match += " && " + peerMatch
	}
	if !(len(portMatches) == 1 && portMatches[0] == "") {
		match += " && (" + strings.Join(portMatches, " || ") + ")"
	}
	acl := ACL{ID: fmt.Sprintf("%s-%d", d, i), Name: Description(np.Namespace, np.Name, d, i), Direction: dir,
		Priority: AllowPriority, Match: match, Action: AllowRelated}
	if d == Egress {
		// Egress is judged on the real destination: after a Service VIP is load-balanced to a pod.
		acl.Options = map[string]string{"apply-after-lb": "true"}
	}
	t.ACLs = append(t.ACLs, acl)
}

// peersMatch returns the match of a rule's peers: "" for all, "false" for none it can express.
func (t *Translation) peersMatch(field, ns string, peers []networkingv1.NetworkPolicyPeer) (string, []string) {
	if len(peers) == 0 {
		return "", nil
	}
	var terms, warns []string
	for _, p := range peers {
		if p.IPBlock != nil {
			term, err := ipBlockMatch(field, p.IPBlock)
			if err != nil {
				warns = append(warns, err.Error())
				continue
			}
			terms = append(terms, term)
			continue
		}
		for _, peer := range PeersOf(ns, []networkingv1.NetworkPolicyPeer{p}) {
			terms = append(terms, fmt.Sprintf("%s == $%s", field, peer.AddressSetName()))
		}
	}
	switch len(terms) {
	case 0:
		return "false", warns
	case 1:
		return terms[0], warns
	}
	return "(" + strings.Join(terms, " || ") + ")", warns
}

func ipBlockMatch(field string, b *networkingv1.IPBlock) (string, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return "", fmt.Errorf("ipBlock %q is not a CIDR", b.CIDR)
	}
	if !cidr.Addr().Is4() {
		return "", fmt.Errorf("ipBlock %s is IPv6: kovn's cluster network is IPv4; the block is ignored", cidr)
	}
	term := fmt.Sprintf("%s == %s", field, cidr.Masked())
	var except []string
	for _, e := range b.Except {
		p, err := netip.ParsePrefix(e)
		if err != nil || !p.Addr().Is4() {
			return "", fmt.Errorf("ipBlock %s: except %q is not an IPv4 CIDR", cidr, e)
		}
		except = append(except, p.Masked().String())
	}
	if len(except) > 0 {
		term = fmt.Sprintf("(%s && %s != {%s})", term, field, strings.Join(except, ", "))
	}
	return term, nil
}

// portsMatch returns the alternatives of a rule's ports; [""] means any port.
func portsMatch(d Direction, rule int, ports []networkingv1.NetworkPolicyPort, named NamedPorts) []string {
	if len(ports) == 0 {
		return []string{""}
	}
	var out []string
	for _, p := range ports {
		proto := protoName(p.Protocol)
		switch {
		case p.Port == nil:
			out = append(out, proto)
		case p.Port.Type == intstr.String:
			out = append(out, namedPortMatch(d, rule, p.Port.StrVal, proto, named)...)
		case p.EndPort != nil && *p.EndPort > p.Port.IntVal:
			out = append(out, fmt.Sprintf("(%s && %s.dst >= %d && %s.dst <= %d)", proto, proto, p.Port.IntVal, proto, *p.EndPort))
		default:
			out = append(out, fmt.Sprintf("(%s && %s.dst == %d)", proto, proto, p.Port.IntVal))
		}
	}
	return out
}

// namedPortMatch resolves a named port into (port number, IPs having it) alternatives: the destination IPs are
// the policy's pods (ingress) or the peers (egress) whose container port of that name has the number.
func namedPortMatch(d Direction, rule int, name, proto string, named NamedPorts) []string {
	if named == nil {
		return nil
	}
	byNumber := named(d, rule, name, proto)
	nums := make([]int32, 0, len(byNumber))
	for n := range byNumber {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var out []string
	for _, n := range nums {
		ips := slices.Clone(byNumber[n])
		slices.Sort(ips)
		if len(ips) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("(%s && %s.dst == %s && ip4.dst == {%s})", proto, proto, strconv.Itoa(int(n)), strings.Join(ips, ", ")))
	}
	return out
}

// DenyACLs returns the default-deny ACLs of a namespace's deny port group for a direction.
func DenyACLs(namespace string, d Direction) []ACL {
	pg := DenyPortGroupName(namespace, d)
	if d == Ingress {
		return []ACL{{ID: "deny", Name: Description(namespace, "default-deny", d, 0), Direction: ToLport, Priority: DenyPriority,
			Match: fmt.Sprintf("outport == @%s && ip", pg), Action: Drop}}
	}
	return []ACL{{ID: "deny", Name: Description(namespace, "default-deny", d, 0), Direction: FromLport, Priority: DenyPriority,
		Match: fmt.Sprintf("inport == @%s && ip", pg), Action: Drop, Options: map[string]string{"apply-after-lb": "true"}}}
}

// NodeACL lets a node's own host (its management port IP) reach the pods on its switch whatever the
// policies say, as kubelet probes need.
func NodeACL(node, mgmtIP string) ACL {
	return ACL{ID: "node-allow", Name: "node " + node + " to its pods", Direction: ToLport, Priority: AllowPriority,
		Match: fmt.Sprintf("ip4.src == %s", mgmtIP), Action: AllowRelated}
}
