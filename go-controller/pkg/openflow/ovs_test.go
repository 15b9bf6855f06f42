package openflow

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
)

const testCookie = 0x6b6f766e

func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }

// gatewayFlows are the kind of flows kovn puts on br-ex: 1 is the NIC, 2 the patch port to OVN.
func gatewayFlows() []Flow {
	return []Flow{
		{Priority: 100, Match: Match{InPort: 1, EthType: EthTypeIPv4},
			Actions: []Action{Ct{Commit: true, Zone: 64000, SetMark: u32(1)}, Output(2)}},
		{Priority: 100, Match: Match{InPort: 2, EthType: EthTypeIPv4},
			Actions: []Action{Ct{Zone: 64000, Table: u8(1)}}},
		{Table: 1, Priority: 100, Match: Match{CtState: CtTrk | CtEst, CtStateMask: CtTrk | CtEst, CtMark: 1, CtMarkMask: ^uint32(0)},
			Actions: []Action{Output(1)}},
		{Table: 1, Priority: 50, Match: Match{CtState: CtTrk | CtInv, CtStateMask: CtTrk | CtInv}},
		{Table: 1, Priority: 0, Actions: []Action{Output(PortLocal)}},
		{Priority: 120, Match: Match{InPort: 2, EthType: EthTypeIPv4, IPProto: IPProtoUDP, TpDst: 6081},
			Actions: []Action{Output(PortLocal)}},
		{Priority: 110, Match: Match{InPort: 2, EthType: EthTypeIPv4, IPv4Dst: netip.MustParsePrefix("10.244.0.0/16")},
			Actions: []Action{Output(1)}},
		{Priority: 10, Match: Match{EthType: EthTypeARP}, Actions: []Action{Output(PortLocal), Output(2)}},
	}
}

func withCookie(flows []Flow, cookie uint64) []Flow {
	for i := range flows {
		flows[i].Cookie = cookie
	}
	return flows
}

// ofctlFlow is how ovs-ofctl prints one of gatewayFlows: "table=N", its match tokens and its actions.
type ofctlFlow struct {
	table   string
	match   []string
	actions string
}

var gatewayOfctl = []ofctlFlow{
	{"table=0", []string{"priority=100", "ip", "in_port=1"}, "ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:2"},
	{"table=0", []string{"priority=100", "ip", "in_port=2"}, "ct(table=1,zone=64000)"},
	{"table=1", []string{"priority=100", "ct_state=+est+trk", "ct_mark=0x1"}, "output:1"},
	{"table=1", []string{"priority=50", "ct_state=+inv+trk"}, "drop"},
	{"table=1", []string{"priority=0"}, "LOCAL"},
	{"table=0", []string{"priority=120", "udp", "in_port=2", "tp_dst=6081"}, "LOCAL"},
	{"table=0", []string{"priority=110", "ip", "in_port=2", "nw_dst=10.244.0.0/16"}, "output:1"},
	{"table=0", []string{"priority=10", "arp"}, "LOCAL,output:2"},
}

func startBridge(t *testing.T) (*ovntest.Node, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ovs-vswitchd and network namespaces")
	}
	n := ovntest.StartNode(t, "of")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spec := nodeovs.BridgeSpec{Name: "br-ex", DatapathType: "netdev", FailMode: "standalone"}
	if err := nodeovs.EnsureBridge(ctx, n.OVS, spec); err != nil {
		t.Fatal(err)
	}
	sock := n.Dir + "/br-ex.mgmt"
	for {
		if _, err := os.Stat(sock); err == nil {
			return n, sock
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never appeared", sock)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dial(t *testing.T, sock string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// flowStrings renders flows sorted, for comparison.
func flowStrings(flows []Flow) []string {
	var s []string
	for _, f := range flows {
		s = append(s, f.String())
	}
	slices.Sort(s)
	return s
}

func checkFlows(t *testing.T, c *Conn, want []Flow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Flows(ctx, testCookie)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := flowStrings(got), flowStrings(want); !slices.Equal(g, w) {
		t.Fatalf("installed flows:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// dumpFlows runs ovs-ofctl in the node, with the node's run directory, and returns its lines.
func dumpFlows(t *testing.T, n *ovntest.Node) []string {
	t.Helper()
	out, err := n.Exec("env", "OVS_RUNDIR="+n.Dir, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "br-ex")
	if err != nil {
		t.Fatalf("ovs-ofctl dump-flows: %v: %s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// findOfctl returns the ovs-ofctl line showing f, or "".
func findOfctl(lines []string, cookie string, f ofctlFlow) string {
	for _, l := range lines {
		head, actions, ok := strings.Cut(strings.TrimSpace(l), " actions=")
		tokens := strings.FieldsFunc(head, func(r rune) bool { return r == ',' || r == ' ' })
		if !ok || actions != f.actions || !slices.Contains(tokens, cookie) || !slices.Contains(tokens, f.table) {
			continue
		}
		if !slices.ContainsFunc(f.match, func(m string) bool { return !slices.Contains(tokens, m) }) &&
			len(tokens) == len(f.match)+5 { // cookie, duration, table, n_packets, n_bytes and the match
			return l
		}
	}
	return ""
}

func checkOfctl(t *testing.T, n *ovntest.Node, present, absent []ofctlFlow) {
	t.Helper()
	lines := dumpFlows(t, n)
	for _, f := range present {
		if findOfctl(lines, "cookie=0x6b6f766e", f) == "" {
			t.Errorf("ovs-ofctl does not show %v:\n%s", f, strings.Join(lines, "\n"))
		}
	}
	for _, f := range absent {
		if l := findOfctl(lines, "cookie=0x6b6f766e", f); l != "" {
			t.Errorf("ovs-ofctl still shows %s", l)
		}
	}
	if findOfctl(lines, "cookie=0x0", ofctlFlow{"table=0", []string{"priority=0"}, "NORMAL"}) == "" {
		t.Errorf("OVS's default flow is gone:\n%s", strings.Join(lines, "\n"))
	}
}

func TestReplaceOnARealVswitchd(t *testing.T) {
	n, sock := startBridge(t)
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	full := withCookie(gatewayFlows(), testCookie)
	if err := c.Replace(ctx, testCookie, full); err != nil {
		t.Fatal(err)
	}
	checkFlows(t, c, full)
	checkOfctl(t, n, gatewayOfctl, nil)

	// Again: nothing changes (a flow read back must be recognised as wanted, not deleted after its ADD).
	if err := c.Replace(ctx, testCookie, full); err != nil {
		t.Fatal(err)
	}
	checkFlows(t, c, full)

	// A smaller set: the arp flow changes its actions, four flows go.
	small := withCookie(gatewayFlows()[:3], testCookie)
	small = append(small, Flow{Cookie: testCookie, Priority: 10, Match: Match{EthType: EthTypeARP}, Actions: []Action{Output(PortNormal)}})
	if err := c.Replace(ctx, testCookie, small); err != nil {
		t.Fatal(err)
	}
	checkFlows(t, c, small)
	checkOfctl(t, n, append(slices.Clone(gatewayOfctl[:3]), ofctlFlow{"table=0", []string{"priority=10", "arp"}, "NORMAL"}), gatewayOfctl[3:])

	// Another cookie's flows are left alone, and vice versa.
	other := withCookie(gatewayFlows()[5:6], 0x77)
	if err := c.Replace(ctx, 0x77, other); err != nil {
		t.Fatal(err)
	}
	checkFlows(t, c, small)
	if err := c.Replace(ctx, testCookie, nil); err != nil {
		t.Fatal(err)
	}
	checkFlows(t, c, nil)
	if got, err := c.Flows(ctx, 0x77); err != nil || !slices.Equal(flowStrings(got), flowStrings(other)) {
		t.Fatalf("flows of cookie 0x77: %v, %v", got, err)
	}
}

func TestReplaceReportsTheSwitchsError(t *testing.T) {
	_, sock := startBridge(t)
	c := dial(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := withCookie(gatewayFlows()[:2], testCookie)
	if err := c.Replace(ctx, testCookie, good); err != nil {
		t.Fatal(err)
	}
	// ct needs an IP match: OVS rejects the flow with OFPBAC_MATCH_INCONSISTENT. Table 255 is OFPTT_ALL.
	bad := withCookie([]Flow{
		{Priority: 5, Match: Match{InPort: 3}, Actions: []Action{Ct{Commit: true}}},
		{Table: 255, Priority: 5, Actions: []Action{Output(1)}},
	}, testCookie)
	err := c.Replace(ctx, testCookie, append(withCookie(gatewayFlows()[:1], testCookie), bad...))
	var ofErr *Error
	if !errors.As(err, &ofErr) || ofErr.Type != 2 || ofErr.Code != 10 {
		t.Fatalf("Replace with invalid flows: %v", err)
	}
	for _, want := range []string{"OFPET_BAD_ACTION/OFPBAC_MATCH_INCONSISTENT", "in_port=3 actions=ct(commit)",
		"OFPET_FLOW_MOD_FAILED/OFPFMFC_BAD_TABLE_ID", "table=255,priority=5 actions=output:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	t.Logf("error: %v", err)
	// Nothing was deleted, and the connection still works.
	checkFlows(t, c, good)
}

func TestDialRefusesABridgeWithoutOpenFlow13(t *testing.T) {
	n, sock := startBridge(t)
	if out, err := n.Exec("ovs-vsctl", "--db="+n.DBRemote, "set", "bridge", "br-ex", "protocols=OpenFlow10"); err != nil {
		t.Fatalf("ovs-vsctl: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for { // ovs-vswitchd applies the setting a moment later
		c, err := Dial(ctx, sock)
		if err != nil {
			if !strings.Contains(err.Error(), "does not speak OpenFlow 1.3") {
				t.Fatal(err)
			}
			return
		}
		_ = c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDialFailsClearly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock := t.TempDir() + "/br-nope.mgmt"
	_, err := Dial(ctx, sock)
	if err == nil || !strings.Contains(err.Error(), sock) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Dial of a missing socket: %v", err)
	}
}
