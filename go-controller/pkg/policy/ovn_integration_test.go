package policy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
	"github.com/kovn-io/kovn/go-controller/pkg/policy"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
	"github.com/kovn-io/kovn/ovsdb-models/sbdb"
)

// Deliberately broken ACLs: the check must find these, or finding nothing else proves nothing.
var controlMatches = []string{
	"outport == @kovn_control && (ip4.src == 10.0.0.1 || tcp",
	"outport == @kovn_control && ip4.src == $kovn_no_such_set",
}

// TestTranslationsAcceptedByOVN writes every translation of translateCases (acl_test.go; each case as its own
// policy), the default-deny ACLs and the node ACL into a real Northbound database with ovn-northd running, and
// waits for their logical flows. ovn-northd 23.03 copies ACL matches into logical flows without parsing them (it
// logs nothing even for the broken control ACLs), so its log is only checked for warnings; the parse check is
// done by ovn-trace, which parses every logical flow of the Southbound database as ovn-controller would and
// warns about each one it cannot parse.
func TestTranslationsAcceptedByOVN(t *testing.T) {
	o := startOVN(t)
	c := o.NB
	must := mustOps(t)

	// A switch with the policies' pod (p1) and a peer pod (p2).
	var ops []ovsdb.Operation
	p1 := &nbdb.LogicalSwitchPort{Name: "p1", Addresses: []string{"0a:58:0a:f4:01:05 10.244.1.5"}}
	p2 := &nbdb.LogicalSwitchPort{Name: "p2", Addresses: []string{"0a:58:0a:f4:01:06 10.244.1.6"}}
	ops = append(ops, must(nbops.Create(c, p1))...)
	ops = append(ops, must(nbops.Create(c, p2))...)

	var ours []string // every match we produced
	acls := func(as []policy.ACL) []string {
		var uuids []string
		for _, a := range as {
			row := aclRow(a)
			ops = append(ops, must(nbops.Create(c, row))...)
			uuids = append(uuids, row.UUID)
			ours = append(ours, a.Match)
		}
		return uuids
	}
	portGroup := func(name string, aclUUIDs []string) {
		ops = append(ops, must(nbops.Create(c, &nbdb.PortGroup{Name: name, Ports: []string{p1.UUID}, ACLs: aclUUIDs}))...)
	}

	sets := map[string]bool{}
	for i, tc := range translateCases() {
		np := newPolicy(tc.spec)
		np.Name = fmt.Sprintf("case-%d", i)
		tr := policy.Translate(np, (&fakeNamed{table: tc.named}).resolve)
		if len(tr.ACLs) > 0 {
			portGroup(tr.PortGroup, acls(tr.ACLs))
		}
		for _, p := range tr.Peers {
			if name := p.AddressSetName(); !sets[name] {
				sets[name] = true
				ops = append(ops, must(nbops.Create(c, &nbdb.AddressSet{Name: name, Addresses: []string{"10.244.1.6"}}))...)
			}
		}
	}
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		portGroup(policy.DenyPortGroupName("ns1", d), acls(policy.DenyACLs("ns1", d)))
	}
	nodeACLs := acls([]policy.ACL{policy.NodeACL("node1", "10.244.1.2")})
	ls := &nbdb.LogicalSwitch{Name: "s1", Ports: []string{p1.UUID, p2.UUID}, ACLs: nodeACLs}
	ops = append(ops, must(nbops.Create(c, ls))...)

	var controls []string
	for i, m := range controlMatches {
		row := &nbdb.ACL{Direction: nbdb.ACLDirectionToLport, Priority: 1001, Match: m, Action: nbdb.ACLActionAllowRelated,
			ExternalIDs: map[string]string{"id": fmt.Sprintf("control-%d", i)}}
		ops = append(ops, must(nbops.Create(c, row))...)
		controls = append(controls, row.UUID)
	}
	portGroup("kovn_control", controls)

	if _, err := nbops.Transact(context.Background(), c, ops); err != nil {
		t.Fatalf("NB refused the rows: %v", err)
	}
	t.Logf("%d ACL matches of ours, %d address sets", len(ours), len(sets))

	// Wait until ovn-northd has turned every ACL, ours and the controls, into logical flows.
	want := append(append([]string{}, ours...), controlMatches...)
	var missing []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var flows []sbdb.LogicalFlow
		if err := o.SB.List(context.Background(), &flows); err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for _, m := range want {
			found := false
			for _, f := range flows {
				if strings.Contains(f.Match, m) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovn-northd made no logical flow of %d ACL matches, e.g. %q; northd log:\n%s", len(missing), missing[0], o.LogTail("northd"))
		}
	}

	// ovn-northd must not have complained about anything.
	if log, err := os.ReadFile(filepath.Join(o.Dir, "northd.log")); err != nil {
		t.Errorf("read northd log: %v", err)
	} else {
		for _, line := range strings.Split(string(log), "\n") {
			if regexp.MustCompile(`(?i)\|(WARN|ERR|EMER)\||syntax error|pars(e|ing)`).MatchString(line) {
				t.Errorf("ovn-northd: %s", line)
			}
		}
	}

	// ovn-trace parses every logical flow and logs "<match>: parsing expression failed (<error>)" for each bad one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ovn-trace", "--db="+o.SBRemote, "--minimal", "s1",
		`inport == "p2" && eth.src == 0a:58:0a:f4:01:06 && eth.dst == 0a:58:0a:f4:01:05 && `+
			`ip4.src == 10.244.1.6 && ip4.dst == 10.244.1.5 && ip.ttl == 64 && tcp.dst == 5432`)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+o.Dir, "OVS_LOGDIR="+o.Dir, "OVN_RUNDIR="+o.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ovn-trace: %v\n%s", err, out)
	}
	failed := regexp.MustCompile(`(?m)^.*\|WARN\|(.*): parsing expression failed \((.*)\)$`).FindAllStringSubmatch(string(out), -1)
	var failedMatches []string
	for _, f := range failed {
		failedMatches = append(failedMatches, f[1]+"  ->  "+f[2])
	}
	sort.Strings(failedMatches)
	for _, cm := range controlMatches {
		if !slices.ContainsFunc(failedMatches, func(f string) bool { return strings.Contains(f, cm) }) {
			t.Errorf("the check is blind: ovn-trace did not reject the control match %q; its output:\n%s", cm, out)
		}
	}
	for _, m := range ours {
		for _, f := range failedMatches {
			if strings.Contains(f, m) {
				t.Errorf("OVN cannot parse our match %q: %s", m, f)
			}
		}
	}
	for _, f := range failedMatches {
		if !containsAny(f, controlMatches) && !containsAny(f, ours) {
			t.Errorf("ovn-trace rejected a logical flow: %s", f)
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func startOVN(t *testing.T) *ovntest.OVN {
	t.Helper()
	if testing.Short() {
		t.Skip("starts ovsdb-server and ovn-northd")
	}
	for _, bin := range []string{"ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-trace"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed: run `make deps` (make test does)", bin)
		}
	}
	return ovntest.Start(t, ovntest.Options{Northd: true})
}

func mustOps(t *testing.T) func([]ovsdb.Operation, error) []ovsdb.Operation {
	return func(ops []ovsdb.Operation, err error) []ovsdb.Operation {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ops
	}
}

func aclRow(a policy.ACL) *nbdb.ACL {
	row := &nbdb.ACL{Direction: nbdb.ACLDirection(a.Direction), Priority: a.Priority, Match: a.Match,
		Action: nbdb.ACLAction(a.Action), Options: a.Options, ExternalIDs: map[string]string{"id": a.ID}}
	if a.Name != "" {
		name := a.Name
		row.Name = &name
	}
	return row
}

// TestTranslationVerdictsInOVN checks what a translated policy lets through, by tracing packets with
// ovn-trace: the pod q1 (10.244.2.5) is selected by a policy isolating it both ways, q2 (10.244.2.6) is a peer
// pod (in the peer's address set) and sends with any source address (no port security).
func TestTranslationVerdictsInOVN(t *testing.T) {
	o := startOVN(t)
	c := o.NB
	must := mustOps(t)

	np := newPolicy(networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress: ingressRules(networkingv1.NetworkPolicyIngressRule{
			From: from(podPeer(sel("app", "db")), ipBlock("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16")),
			Ports: ports(port(corev1.ProtocolTCP, num(5432)), portRange(corev1.ProtocolTCP, 8000, 8100),
				port(corev1.ProtocolUDP, nil)),
		}),
		Egress: egressRules(networkingv1.NetworkPolicyEgressRule{
			To:    from(ipBlock("0.0.0.0/0", "10.0.0.0/8")),
			Ports: ports(port(corev1.ProtocolTCP, num(443))),
		}, networkingv1.NetworkPolicyEgressRule{
			To:    from(podPeer(sel("app", "db"))),
			Ports: ports(port(corev1.ProtocolTCP, named("http"))),
		}),
	})
	tr := policy.Translate(np, (&fakeNamed{table: map[string]map[int32][]string{
		"egress/1/http/tcp": {8080: {"10.244.2.6"}},
	}}).resolve)
	if len(tr.ACLs) != 3 || len(tr.Peers) != 1 || len(tr.Warnings) != 0 {
		t.Fatalf("unexpected translation: %+v", tr)
	}

	var ops []ovsdb.Operation
	q1 := &nbdb.LogicalSwitchPort{Name: "q1", Addresses: []string{"0a:58:0a:f4:02:05 10.244.2.5"}}
	q2 := &nbdb.LogicalSwitchPort{Name: "q2", Addresses: []string{"0a:58:0a:f4:02:06 10.244.2.6"}}
	ops = append(ops, must(nbops.Create(c, q1))...)
	ops = append(ops, must(nbops.Create(c, q2))...)
	ops = append(ops, must(nbops.Create(c, &nbdb.LogicalSwitch{Name: "s2", Ports: []string{q1.UUID, q2.UUID}}))...)
	ops = append(ops, must(nbops.Create(c, &nbdb.AddressSet{Name: tr.Peers[0].AddressSetName(), Addresses: []string{"10.244.2.6"}}))...)
	portGroup := func(name string, acls []policy.ACL) {
		var uuids []string
		for _, a := range acls {
			row := aclRow(a)
			ops = append(ops, must(nbops.Create(c, row))...)
			uuids = append(uuids, row.UUID)
		}
		ops = append(ops, must(nbops.Create(c, &nbdb.PortGroup{Name: name, Ports: []string{q1.UUID}, ACLs: uuids}))...)
	}
	portGroup(tr.PortGroup, tr.ACLs)
	portGroup(policy.DenyPortGroupName("ns1", policy.Ingress), policy.DenyACLs("ns1", policy.Ingress))
	portGroup(policy.DenyPortGroupName("ns1", policy.Egress), policy.DenyACLs("ns1", policy.Egress))
	if _, err := nbops.Transact(context.Background(), c, ops); err != nil {
		t.Fatalf("NB refused the rows: %v", err)
	}

	// Wait for the flows of the last ACL.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var flows []sbdb.LogicalFlow
		if err := o.SB.List(context.Background(), &flows); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(flows, func(f sbdb.LogicalFlow) bool { return strings.Contains(f.Match, tr.ACLs[2].Match) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovn-northd made no logical flow of %q", tr.ACLs[2].Match)
		}
	}

	const (
		toQ1   = `inport == "q2" && eth.src == 0a:58:0a:f4:02:06 && eth.dst == 0a:58:0a:f4:02:05 && ip4.dst == 10.244.2.5 && ip.ttl == 64`
		fromQ1 = `inport == "q1" && eth.src == 0a:58:0a:f4:02:05 && eth.dst == 0a:58:0a:f4:02:06 && ip4.src == 10.244.2.5 && ip.ttl == 64`
	)
	tests := []struct {
		name, flow, out string // out: the port the packet reaches, "" when dropped
	}{
		{"ingress from the peer pod to 5432", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 5432`, "q1"},
		{"ingress from the peer pod to 5433", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 5433`, ""},
		{"ingress from the peer pod to 8000 (range start)", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 8000`, "q1"},
		{"ingress from the peer pod to 8100 (range end)", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 8100`, "q1"},
		{"ingress from the peer pod to 8101", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 8101`, ""},
		{"ingress from the peer pod to 7999", toQ1 + ` && ip4.src == 10.244.2.6 && tcp.dst == 7999`, ""},
		{"ingress from the peer pod, any UDP port", toQ1 + ` && ip4.src == 10.244.2.6 && udp.dst == 9999`, "q1"},
		{"ingress SCTP is not allowed", toQ1 + ` && ip4.src == 10.244.2.6 && sctp.dst == 5432`, ""},
		{"ingress from the ipBlock", toQ1 + ` && ip4.src == 10.3.0.7 && tcp.dst == 5432`, "q1"},
		{"ingress from the first except", toQ1 + ` && ip4.src == 10.1.0.7 && tcp.dst == 5432`, ""},
		{"ingress from the second except", toQ1 + ` && ip4.src == 10.2.255.255 && tcp.dst == 5432`, ""},
		{"ingress from outside the ipBlock", toQ1 + ` && ip4.src == 172.16.0.1 && tcp.dst == 5432`, ""},
		{"egress to the internet on 443", fromQ1 + ` && ip4.dst == 8.8.8.8 && tcp.dst == 443`, "q2"},
		{"egress to the internet on 80", fromQ1 + ` && ip4.dst == 8.8.8.8 && tcp.dst == 80`, ""},
		{"egress to the excepted block on 443", fromQ1 + ` && ip4.dst == 10.9.9.9 && tcp.dst == 443`, ""},
		{"egress to the peer's named port", fromQ1 + ` && ip4.dst == 10.244.2.6 && tcp.dst == 8080`, "q2"},
		{"egress to the peer, other port", fromQ1 + ` && ip4.dst == 10.244.2.6 && tcp.dst == 8081`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ovn-trace", "--db="+o.SBRemote, "--minimal", "--ct=new", "--ct=new", "s2", tt.flow)
			cmd.Env = append(os.Environ(), "OVS_RUNDIR="+o.Dir, "OVS_LOGDIR="+o.Dir, "OVN_RUNDIR="+o.Dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ovn-trace: %v\n%s", err, out)
			}
			got := ""
			if m := regexp.MustCompile(`output\("([^"]+)"\)`).FindSubmatch(out); m != nil {
				got = string(m[1])
			}
			if got != tt.out {
				t.Errorf("packet reaches %q, want %q; trace:\n%s", got, tt.out, out)
			}
		})
	}
}
