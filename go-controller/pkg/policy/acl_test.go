package policy_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/policy"
)

// fakeNamed resolves named ports from a table keyed "direction/rule/name/proto", recording every call.
type fakeNamed struct {
	table map[string]map[int32][]string
	calls []string
}

func (f *fakeNamed) resolve(d policy.Direction, rule int, name, proto string) map[int32][]string {
	key := fmt.Sprintf("%s/%d/%s/%s", d, rule, name, proto)
	f.calls = append(f.calls, key)
	return f.table[key]
}

// Hand-written address set names, by peer key.
var (
	asDB      = asName("ns=ns1;podSel={app=db}")
	asWeb     = asName("ns=ns1;podSel={app=web}")
	asTeamA   = asName("nsSel={team=a};pods=all")
	asTeamADB = asName("nsSel={team=a};podSel={app=db}")
	asAllNS   = asName("nsSel={};pods=all")
	asDNS     = asName("nsSel={kubernetes.io/metadata.name=kube-system};podSel={k8s-app=kube-dns}")
)

var (
	peerDB      = policy.Peer{Namespace: "ns1", PodSelector: sel("app", "db")}
	peerWeb     = policy.Peer{Namespace: "ns1", PodSelector: sel("app", "web")}
	peerTeamA   = policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a")}
	peerTeamADB = policy.Peer{Namespace: "ns1", NamespaceSelector: sel("team", "a"), PodSelector: sel("app", "db")}
	peerAllNS   = policy.Peer{Namespace: "ns1", NamespaceSelector: sel()}
	peerDNS     = policy.Peer{Namespace: "ns1", NamespaceSelector: sel("kubernetes.io/metadata.name", "kube-system"),
		PodSelector: sel("k8s-app", "kube-dns")}
)

func ingressRules(rules ...networkingv1.NetworkPolicyIngressRule) []networkingv1.NetworkPolicyIngressRule {
	return rules
}

func egressRules(rules ...networkingv1.NetworkPolicyEgressRule) []networkingv1.NetworkPolicyEgressRule {
	return rules
}

func from(peers ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return peers }
func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort   { return ps }

type translateCase struct {
	name  string
	spec  networkingv1.NetworkPolicySpec
	named map[string]map[int32][]string // nil: no resolver at all
	want  policy.Translation
}

func translateCases() []translateCase {
	in, eg := networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress
	tcp, udp, sctp := corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP
	return []translateCase{
		// policyTypes and empty rule lists: isolation without allow ACLs (the deny port group does the rest).
		{name: "no policyTypes, no rules: ingress deny all",
			spec: networkingv1.NetworkPolicySpec{},
			want: policy.Translation{PortGroup: testPG, Ingress: true}},
		{name: "no policyTypes, empty non-nil ingress list: ingress deny all",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules()},
			want: policy.Translation{PortGroup: testPG, Ingress: true}},
		{name: "no policyTypes, egress rule: both directions",
			spec: networkingv1.NetworkPolicySpec{Egress: egressRules(networkingv1.NetworkPolicyEgressRule{})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Egress: true, ACLs: []policy.ACL{
				egressACL(0, "inport == @kovn_np_605cb9e26dce6c8b && ip4"),
			}}},
		{name: "explicit both types, empty lists: deny all both ways",
			spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{in, eg}},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Egress: true}},
		{name: "explicit Egress only: ingress rules ignored",
			spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{eg},
				Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{})},
			want: policy.Translation{PortGroup: testPG, Egress: true}},
		{name: "explicit Ingress only: egress rules ignored",
			spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{in},
				Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{}),
				Egress:  egressRules(networkingv1.NetworkPolicyEgressRule{Ports: ports(port(tcp, num(80)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4"),
			}}},

		// Rules with no from/to (all peers) and with no ports (all ports).
		{name: "ingress rule with neither from nor ports: allow all",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4"),
			}}},
		{name: "ingress rule with empty non-nil from: all peers",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: []networkingv1.NetworkPolicyPeer{}, Ports: []networkingv1.NetworkPolicyPort{}})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4"),
			}}},
		{name: "ingress rule with ports only: from anyone",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(tcp, num(80)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 80))"),
			}}},

		// Peers.
		{name: "podSelector peer: the policy's namespace",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(podPeer(sel("app", "db")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asDB),
			}}},
		{name: "namespaceSelector peer",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(nsPeer(sel("team", "a")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerTeamA}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asTeamA),
			}}},
		{name: "namespaceSelector and podSelector in one peer: AND, one address set",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(nsPodPeer(sel("team", "a"), sel("app", "db")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerTeamADB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asTeamADB),
			}}},
		{name: "two peers: OR",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(nsPeer(sel("team", "a")), podPeer(sel("app", "db")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerTeamA, peerDB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.src == $"+asTeamA+" || ip4.src == $"+asDB+")"),
			}}},
		{name: "empty namespaceSelector: all namespaces",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(nsPeer(sel()))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerAllNS}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asAllNS),
			}}},
		{name: "a peer used by two rules and both directions is listed once",
			spec: networkingv1.NetworkPolicySpec{
				Ingress: ingressRules(
					networkingv1.NetworkPolicyIngressRule{From: from(podPeer(sel("app", "db")))},
					networkingv1.NetworkPolicyIngressRule{From: from(podPeer(sel("app", "web")), podPeer(sel("app", "db")))}),
				Egress: egressRules(networkingv1.NetworkPolicyEgressRule{To: from(podPeer(sel("app", "db")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Egress: true, Peers: []policy.Peer{peerDB, peerWeb}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asDB),
				ingressACL(1, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.src == $"+asWeb+" || ip4.src == $"+asDB+")"),
				egressACL(0, "inport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.dst == $"+asDB),
			}}},

		// ipBlocks.
		{name: "ipBlock",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("172.16.0.0/12"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == 172.16.0.0/12"),
			}}},
		{name: "ipBlock with except",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("10.0.0.0/8", "10.1.0.0/16", "10.2.3.4/32"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.src == 10.0.0.0/8 && ip4.src != {10.1.0.0/16, 10.2.3.4/32})"),
			}}},
		{name: "ipBlock with host bits set is the network",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("192.168.1.7/24", "192.168.1.130/25"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.src == 192.168.1.0/24 && ip4.src != {192.168.1.128/25})"),
			}}},
		{name: "ipBlock and peers: OR",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("10.0.0.0/8", "10.1.0.0/16"), podPeer(sel("app", "db")), ipBlock("192.168.0.0/16"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((ip4.src == 10.0.0.0/8 && ip4.src != {10.1.0.0/16}) || "+
					"ip4.src == $"+asDB+" || ip4.src == 192.168.0.0/16)"),
			}}},
		{name: "IPv6 ipBlock alone: warning, no ACL",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("fd00::/8")), Ports: ports(port(tcp, num(80)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true,
				Warnings: []string{"ipBlock fd00::/8 is IPv6: kovn's cluster network is IPv4; the block is ignored"}}},
		{name: "IPv6 ipBlock next to a pod peer: warning, the peer stays",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("2001:db8::/32", "2001:db8:1::/48"), podPeer(sel("app", "db")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asDB),
			}, Warnings: []string{"ipBlock 2001:db8::/32 is IPv6: kovn's cluster network is IPv4; the block is ignored"}}},
		{name: "invalid CIDR: warning, no ACL",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("10.0.0.0/33"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true,
				Warnings: []string{`ipBlock "10.0.0.0/33" is not a CIDR`}}},
		{name: "invalid except: warning, the block is dropped",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(ipBlock("10.0.0.0/8", "nonsense"), ipBlock("192.168.0.0/16"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == 192.168.0.0/16"),
			}, Warnings: []string{`ipBlock 10.0.0.0/8: except "nonsense" is not an IPv4 CIDR`}}},

		// Ports.
		{name: "TCP, UDP and SCTP port numbers",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(tcp, num(80)), port(udp, num(53)), port(sctp, num(9000)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 80) || (udp && udp.dst == 53) || (sctp && sctp.dst == 9000))"),
			}}},
		{name: "protocol omitted: TCP",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port("", num(443)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 443))"),
			}}},
		{name: "port omitted: the whole protocol",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(udp, nil), port(sctp, nil))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (udp || sctp)"),
			}}},
		{name: "port and protocol omitted: all of TCP",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port("", nil))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (tcp)"),
			}}},
		{name: "endPort ranges",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(portRange(tcp, 32000, 32768), portRange(udp, 5000, 5000), portRange(sctp, 1, 2))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst >= 32000 && tcp.dst <= 32768) || "+
					"(udp && udp.dst == 5000) || (sctp && sctp.dst >= 1 && sctp.dst <= 2))"),
			}}},
		{name: "peers and ports together",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From:  from(podPeer(sel("app", "db")), ipBlock("10.0.0.0/8")),
				Ports: ports(port(tcp, num(5432)), port(udp, nil))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.src == $"+asDB+" || ip4.src == 10.0.0.0/8) && "+
					"((tcp && tcp.dst == 5432) || udp)"),
			}}},

		// Named ports.
		{name: "named port with several numbers",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port("", named("http")))})},
			named: map[string]map[int32][]string{"ingress/0/http/tcp": {
				8080: {"10.244.1.6", "10.244.1.5"},
				80:   {"10.244.2.3"},
			}},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 80 && ip4.dst == {10.244.2.3}) || "+
					"(tcp && tcp.dst == 8080 && ip4.dst == {10.244.1.5, 10.244.1.6}))"),
			}}},
		{name: "named port no pod has: no ACL",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				From: from(podPeer(sel("app", "db"))), Ports: ports(port(udp, named("dns")))})},
			named: map[string]map[int32][]string{},
			want:  policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}}},
		{name: "named port resolved to a number without IPs: that number is skipped",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(tcp, named("http")))})},
			named: map[string]map[int32][]string{"ingress/0/http/tcp": {81: {}, 80: {"10.244.1.5"}}},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 80 && ip4.dst == {10.244.1.5}))"),
			}}},
		{name: "unresolved named port next to a number: the number only",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(tcp, named("metrics")), port(tcp, num(9090)))})},
			named: map[string]map[int32][]string{},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 9090))"),
			}}},
		{name: "named port without a resolver: no ACL",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
				Ports: ports(port(tcp, named("http")))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true}},

		// Egress.
		{name: "egress: peers, ipBlock and ports, after load balancing",
			spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{eg}, Egress: egressRules(
				networkingv1.NetworkPolicyEgressRule{
					To:    from(nsPodPeer(sel("kubernetes.io/metadata.name", "kube-system"), sel("k8s-app", "kube-dns"))),
					Ports: ports(port(udp, num(53)), port(tcp, num(53)))},
				networkingv1.NetworkPolicyEgressRule{
					To:    from(podPeer(sel("app", "db")), ipBlock("0.0.0.0/0", "10.0.0.0/8", "169.254.169.254/32")),
					Ports: ports(port(tcp, num(5432)), portRange(tcp, 8000, 8100))},
				networkingv1.NetworkPolicyEgressRule{
					To:    from(podPeer(sel("app", "web"))),
					Ports: ports(port(tcp, named("http")))})},
			named: map[string]map[int32][]string{"egress/2/http/tcp": {8080: {"10.244.3.9"}}},
			want: policy.Translation{PortGroup: testPG, Egress: true, Peers: []policy.Peer{peerDNS, peerDB, peerWeb}, ACLs: []policy.ACL{
				egressACL(0, "inport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.dst == $"+asDNS+" && ((udp && udp.dst == 53) || (tcp && tcp.dst == 53))"),
				egressACL(1, "inport == @kovn_np_605cb9e26dce6c8b && ip4 && (ip4.dst == $"+asDB+
					" || (ip4.dst == 0.0.0.0/0 && ip4.dst != {10.0.0.0/8, 169.254.169.254/32})) && "+
					"((tcp && tcp.dst == 5432) || (tcp && tcp.dst >= 8000 && tcp.dst <= 8100))"),
				egressACL(2, "inport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.dst == $"+asWeb+
					" && ((tcp && tcp.dst == 8080 && ip4.dst == {10.244.3.9}))"),
			}}},
		{name: "egress IPv6 only: warning, no ACL, still isolated",
			spec: networkingv1.NetworkPolicySpec{Egress: egressRules(networkingv1.NetworkPolicyEgressRule{To: from(ipBlock("::/0"))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, Egress: true,
				Warnings: []string{"ipBlock ::/0 is IPv6: kovn's cluster network is IPv4; the block is ignored"}}},

		// Rule numbering and names.
		{name: "rules are numbered by their index, skipped rules included",
			spec: networkingv1.NetworkPolicySpec{Ingress: ingressRules(
				networkingv1.NetworkPolicyIngressRule{From: from(ipBlock("fd00::/8"))},
				networkingv1.NetworkPolicyIngressRule{From: from(ipBlock("10.0.0.0/8"))},
				networkingv1.NetworkPolicyIngressRule{Ports: ports(port(tcp, num(22)))})},
			want: policy.Translation{PortGroup: testPG, Ingress: true, ACLs: []policy.ACL{
				ingressACL(1, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == 10.0.0.0/8"),
				ingressACL(2, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ((tcp && tcp.dst == 22))"),
			}, Warnings: []string{"ipBlock fd00::/8 is IPv6: kovn's cluster network is IPv4; the block is ignored"}}},
	}
}

func TestTranslate(t *testing.T) {
	for _, tt := range translateCases() {
		t.Run(tt.name, func(t *testing.T) {
			var resolver policy.NamedPorts
			if tt.named != nil {
				resolver = (&fakeNamed{table: tt.named}).resolve
			}
			got := policy.Translate(newPolicy(tt.spec), resolver)
			if d := diffTranslation(got, tt.want); d != "" {
				t.Errorf("Translate differs:\n%s", d)
			}
			for _, a := range got.ACLs {
				if err := checkMatch(a.Match); err != nil {
					t.Errorf("ACL %s: %v", a.ID, err)
				}
				if len(a.Name) > 63 {
					t.Errorf("ACL %s: name %q longer than 63", a.ID, a.Name)
				}
			}
		})
	}
}

// Translating twice gives the same result: map iteration (named ports) must not leak into the matches.
func TestTranslateIsDeterministic(t *testing.T) {
	for _, tt := range translateCases() {
		if tt.named == nil {
			continue
		}
		first := policy.Translate(newPolicy(tt.spec), (&fakeNamed{table: tt.named}).resolve)
		for range 20 {
			if again := policy.Translate(newPolicy(tt.spec), (&fakeNamed{table: tt.named}).resolve); !reflect.DeepEqual(first, again) {
				t.Fatalf("%s: translations differ:\n%s", tt.name, diffTranslation(again, first))
			}
		}
	}
}

func TestTranslateAsksForNamedPortsPerDirectionRuleAndProtocol(t *testing.T) {
	np := newPolicy(networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress: ingressRules(
			networkingv1.NetworkPolicyIngressRule{Ports: ports(port(corev1.ProtocolTCP, num(1)))},
			networkingv1.NetworkPolicyIngressRule{Ports: ports(port("", named("http")), port(corev1.ProtocolUDP, named("dns")))}),
		Egress: egressRules(
			networkingv1.NetworkPolicyEgressRule{Ports: ports(port(corev1.ProtocolSCTP, named("sig")))}),
	})
	f := &fakeNamed{}
	policy.Translate(np, f.resolve)
	want := []string{"ingress/1/http/tcp", "ingress/1/dns/udp", "egress/0/sig/sctp"}
	if !slices.Equal(f.calls, want) {
		t.Errorf("resolver calls %q, want %q", f.calls, want)
	}

	// Directions a policy does not isolate are not translated: no resolver calls for them.
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	f = &fakeNamed{}
	policy.Translate(np, f.resolve)
	if want := []string{"ingress/1/http/tcp", "ingress/1/dns/udp"}; !slices.Equal(f.calls, want) {
		t.Errorf("ingress-only policy: resolver calls %q, want %q", f.calls, want)
	}
}

func TestTranslateLongNames(t *testing.T) {
	np := newPolicy(networkingv1.NetworkPolicySpec{Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{})})
	np.Namespace, np.Name = "team-payments-production", "allow-ingress-from-frontend-and-monitoring-namespaces"
	want := policy.Translation{PortGroup: "kovn_np_265603cbc48066df", Ingress: true, ACLs: []policy.ACL{{
		ID: "ingress-0", Name: "team-payments-production/allow-ingress-from-frontend-and-monito", Direction: "to-lport",
		Priority: 1001, Match: "outport == @kovn_np_265603cbc48066df && ip4", Action: "allow-related"}}}
	if d := diffTranslation(policy.Translate(np, nil), want); d != "" {
		t.Errorf("Translate differs:\n%s", d)
	}
}

// A policy that does not isolate a direction ignores that direction's rules (Kubernetes semantics), so the
// address sets of those rules' peers are not needed: no ACL refers to them.
func TestTranslatePeersOnlyOfIsolatedDirections(t *testing.T) {
	np := newPolicy(networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     ingressRules(networkingv1.NetworkPolicyIngressRule{From: from(podPeer(sel("app", "db")))}),
		Egress:      egressRules(networkingv1.NetworkPolicyEgressRule{To: from(nsPeer(sel("team", "a")))}),
	})
	got := policy.Translate(np, nil)
	want := policy.Translation{PortGroup: testPG, Ingress: true, Peers: []policy.Peer{peerDB}, ACLs: []policy.ACL{
		ingressACL(0, "outport == @kovn_np_605cb9e26dce6c8b && ip4 && ip4.src == $"+asDB),
	}}
	if d := diffTranslation(got, want); d != "" {
		t.Errorf("Translate differs:\n%s", d)
	}
}

func TestDenyACLs(t *testing.T) {
	tests := []struct {
		ns   string
		d    policy.Direction
		want []policy.ACL
	}{
		{"ns1", policy.Ingress, []policy.ACL{{ID: "deny", Name: "ns1/default-deny:ingress:0", Direction: "to-lport", Priority: 1000,
			Match: "outport == @kovn_deny_ingress_4d2b33d1dfddd7bb && ip", Action: "drop"}}},
		{"ns1", policy.Egress, []policy.ACL{{ID: "deny", Name: "ns1/default-deny:egress:0", Direction: "from-lport", Priority: 1000,
			Match: "inport == @kovn_deny_egress_4d2b33d1dfddd7bb && ip", Action: "drop", Options: map[string]string{"apply-after-lb": "true"}}}},
	}
	for _, tt := range tests {
		t.Run(string(tt.d), func(t *testing.T) {
			got := policy.DenyACLs(tt.ns, tt.d)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DenyACLs(%s, %s):\n got  %+v\n want %+v", tt.ns, tt.d, got, tt.want)
			}
			for _, a := range got {
				if err := checkMatch(a.Match); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestPriorities(t *testing.T) {
	if !(policy.BaselineBandLow < policy.BaselineBandHigh && policy.BaselineBandHigh < policy.DenyPriority &&
		policy.DenyPriority < policy.AllowPriority && policy.AllowPriority < policy.AdminBandLow &&
		policy.AdminBandLow < policy.AdminBandHigh && policy.AdminBandHigh <= 32767) {
		t.Errorf("priority bands out of order: baseline %d-%d, deny %d, allow %d, admin %d-%d", policy.BaselineBandLow,
			policy.BaselineBandHigh, policy.DenyPriority, policy.AllowPriority, policy.AdminBandLow, policy.AdminBandHigh)
	}
}

func TestNodeACL(t *testing.T) {
	got := policy.NodeACL("node1", "10.244.1.2")
	want := policy.ACL{ID: "node-allow", Name: "node node1 to its pods", Direction: "to-lport", Priority: 1001,
		Match: "ip4.src == 10.244.1.2", Action: "allow-related"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NodeACL:\n got  %+v\n want %+v", got, want)
	}
	if err := checkMatch(got.Match); err != nil {
		t.Error(err)
	}
}

// The match checker itself: it must reject what OVN rejects, or the checks above prove nothing.
func TestCheckMatch(t *testing.T) {
	good := []string{
		"outport == @pg1 && ip4",
		"ip4.src == $a_b && ((tcp && tcp.dst == 80) || udp)",
		"(ip4.src == 10.0.0.0/8 && ip4.src != {10.1.0.0/16, 10.2.0.0/16})",
		"ip4.dst == {10.0.0.1}",
	}
	bad := []string{
		"",
		"ip4 && (tcp",
		"ip4 && tcp)",
		"ip4.src == {10.0.0.1",
		"(ip4.src == {10.0.0.1)}",
		"ip4 && tcp || udp",
		"ip4.src == $ && ip4",
		"ip4.src == $1abc",
		"outport == @kovn-np-1",
		"ip4.src == $a.b",
		"ip4 && && tcp",
		"ip4 &&",
		"ip4 && ()",
		"|| ip4",
	}
	for _, s := range good {
		if err := checkMatch(s); err != nil {
			t.Errorf("checkMatch(%q) = %v, want ok", s, err)
		}
	}
	for _, s := range bad {
		if err := checkMatch(s); err == nil {
			t.Errorf("checkMatch(%q) = ok, want an error", s)
		}
	}
}
