package gateway

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
)

// bridgeMAC is the MAC the userspace datapath's br-ex must have: derived from the node IP.
var bridgeMAC = ipam.MACFromIP(netip.MustParsePrefix(nodeIP).Addr()).String()

// checkSetUp checks everything Setup promises for the test network's node.
func checkSetUp(t *testing.T, tn *testNode, g *Gateway, nicMAC string, nextHop netip.Addr) {
	t.Helper()
	// OVS: br-ex with its internal port and the NIC, the derived MAC asked for.
	eventually(t, 10*time.Second, "br-ex in OVS", func() (bool, string) {
		ifaces, err := nodeovs.BridgeInterfaces(tn.OVS, "br-ex")
		if err != nil || ifaces["eth0"] == nil || ifaces["br-ex"] == nil || len(ifaces) != 2 {
			return false, fmt.Sprintf("interfaces %v, err %v", slices.Sorted(maps.Keys(ifaces)), err)
		}
		return true, ""
	})
	br := tn.bridge("br-ex")
	if br.DatapathType != "netdev" || br.FailMode == nil || *br.FailMode != "standalone" || br.OtherConfig["hwaddr"] != bridgeMAC {
		t.Errorf("bridge row: datapath %q, fail mode %v, other_config %v", br.DatapathType, br.FailMode, br.OtherConfig)
	}
	// Kernel: the node IP and its routes on br-ex, nothing left on eth0, which no longer answers ARP.
	b, e := tn.link("br-ex"), tn.link("eth0")
	want := linkState{Exists: true, MAC: bridgeMAC, Up: true, Addrs: []string{nodeIP}, Routes: addressed}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("br-ex: %+v\nwant %+v%s", b, want, raceHint)
	}
	want = linkState{Exists: true, MAC: nicMAC, Up: true, NoARP: true}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("eth0: %+v\nwant %+v%s", e, want, raceHint)
	}
	for _, dev := range []string{"eth0", "br-ex"} {
		if v := tn.ipv6Disabled(dev); v != "1" {
			t.Errorf("%s: disable_ipv6 = %s, want 1", dev, v)
		}
	}
	// What the controller gets.
	wantInfo := annotations.NodeGatewayInfo{ChassisID: "node1", Bridge: "br-ex", MAC: bridgeMAC,
		IP: netip.MustParsePrefix(nodeIP), NextHop: nextHop}
	if g.Info() != wantInfo {
		t.Errorf("Info() = %+v, want %+v%s", g.Info(), wantInfo, raceHint)
	}
	if err := g.Info().Validate(); err != nil {
		t.Errorf("Info() does not validate: %v", err)
	}
	eventually(t, 10*time.Second, "bridge mapping", func() (bool, string) {
		v, ok := tn.mappings()
		return ok && v == "physnet:br-ex", fmt.Sprintf("%s = %q (set: %v)", KeyBridgeMappings, v, ok)
	})
}

// TestSetupMovesTheUplinkOntoTheBridge: Setup on a node whose eth0 holds the node IP, a default route and
// another route puts eth0 on br-ex and moves the addressing over, and the node still reaches its router and
// what lies behind it, now through OVS.
func TestSetupMovesTheUplinkOntoTheBridge(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	nicMAC := tn.link("eth0").MAC
	if got := tn.link("eth0"); !slices.Equal(got.Routes, addressed) {
		t.Fatalf("test network: eth0 routes %v, want %v", got.Routes, addressed)
	}

	g := tn.setup(tn.config())
	checkSetUp(t, tn, g, nicMAC, netip.MustParseAddr(routerIP))
	tn.ping(routerIP)
	tn.ping(farIP)

	// A configured next hop overrides the default route's.
	cfg := tn.config()
	cfg.NextHop = netip.MustParseAddr("192.168.50.254")
	g = tn.setup(cfg)
	checkSetUp(t, tn, g, nicMAC, cfg.NextHop)
}

// TestSetupAgainChangesNothing: a second and third Setup (agent restarts) find the addressing already on
// br-ex and change nothing, the bridge's MAC included, also some time later (ovs-vswitchd applies bridge
// settings asynchronously).
func TestSetupAgainChangesNothing(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	nicMAC := tn.link("eth0").MAC
	g := tn.setup(tn.config())
	checkSetUp(t, tn, g, nicMAC, netip.MustParseAddr(routerIP))
	brBefore, nicBefore := tn.link("br-ex"), tn.link("eth0")
	ofBefore := [2]openflow.Port{tn.ofport("br-ex"), tn.ofport("eth0")}
	rowBefore := *tn.bridge("br-ex")

	for i := range 2 {
		g2 := tn.setup(tn.config())
		if g2.Info() != g.Info() {
			t.Errorf("restart %d: Info() = %+v, want %+v", i+1, g2.Info(), g.Info())
		}
		// Give ovs-vswitchd time to apply anything the restart may have changed.
		for range 10 {
			time.Sleep(100 * time.Millisecond)
			if b := tn.link("br-ex"); !reflect.DeepEqual(b, brBefore) {
				t.Fatalf("restart %d: br-ex changed: %+v\nwas %+v", i+1, b, brBefore)
			}
		}
		if e := tn.link("eth0"); !reflect.DeepEqual(e, nicBefore) {
			t.Errorf("restart %d: eth0 changed: %+v\nwas %+v", i+1, e, nicBefore)
		}
		checkSetUp(t, tn, g2, nicMAC, netip.MustParseAddr(routerIP))
		if of := [2]openflow.Port{tn.ofport("br-ex"), tn.ofport("eth0")}; of != ofBefore {
			t.Errorf("restart %d: ofports %v, were %v", i+1, of, ofBefore)
		}
		row := *tn.bridge("br-ex")
		if row.UUID != rowBefore.UUID || !reflect.DeepEqual(row.OtherConfig, rowBefore.OtherConfig) ||
			!reflect.DeepEqual(row.ExternalIDs, rowBefore.ExternalIDs) || len(row.Ports) != len(rowBefore.Ports) {
			t.Errorf("restart %d: bridge row %+v, was %+v", i+1, row, rowBefore)
		}
	}
	tn.ping(farIP)

	// Without Interface the bridge is taken as it is: the same description comes out, and the NIC is still
	// found for the steering.
	cfg := tn.config()
	cfg.Interface = ""
	g3 := tn.setup(cfg)
	if g3.Info() != g.Info() {
		t.Errorf("Setup without Interface: Info() = %+v, want %+v", g3.Info(), g.Info())
	}
	p, err := g3.ports()
	if err != nil || p.NIC != ofBefore[1] || p.Patch != 0 {
		t.Errorf("Setup without Interface: ports %+v, %v; want NIC %d", p, err, ofBefore[1])
	}
}

// TestRunFlows: the steering follows the ports of br-ex (host only, then with the gateway router's patch
// port, then without it again), leaves flows with other cookies alone, and a new RunFlows (an agent
// restart) puts back flows something else deleted. The node keeps reaching its router throughout.
func TestRunFlows(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	nicMAC := tn.link("eth0").MAC
	g := tn.setup(tn.config())
	checkSetUp(t, tn, g, nicMAC, netip.MustParseAddr(routerIP))
	nic := tn.ofport("eth0")
	conn := tn.dialBridge()
	// A flow of someone else's, which kovn must never touch.
	tn.ofctl("add-flow", "br-ex", "cookie=0x1234,table=5,priority=1,actions=drop")
	foreign := installed(t, conn, 0x1234)
	if len(foreign) != 1 {
		t.Fatalf("foreign flow: %v", foreign)
	}

	stop := runFlows(t, g)
	hostOnly := g.desiredFlows(flowPorts{NIC: nic})
	if len(hostOnly) != 4 {
		t.Fatalf("host-only steering: %d flows", len(hostOnly))
	}
	waitFlows(t, conn, hostOnly)
	tn.ping(routerIP)
	tn.ping(farIP)

	// ovn-controller creates the patch port to the gateway router.
	patch := tn.addPatch()
	withPatch := g.desiredFlows(flowPorts{NIC: nic, Patch: patch})
	waitFlows(t, conn, withPatch)
	got := strings.Join(installed(t, conn, Cookie), "\n")
	for _, want := range []string{
		fmt.Sprintf("table=0,priority=110,in_port=%d,ip actions=ct(commit,zone=64000,exec(set_field:0x1->ct_mark)),output:%d", patch, nic),
		fmt.Sprintf("table=0,priority=50,in_port=%d,ip actions=ct(zone=64000,table=1)", nic),
		fmt.Sprintf("table=0,priority=10,in_port=%d,arp actions=output:LOCAL,output:%d", nic, patch),
		fmt.Sprintf("table=0,priority=100,in_port=%d,ip,nw_dst=10.244.0.0/16 actions=output:%d", nic, patch),
		fmt.Sprintf("table=1,priority=100,ct_state=+est+trk,ct_mark=0x1 actions=output:%d", patch),
		fmt.Sprintf("table=1,priority=100,ct_state=+rel+trk,ct_mark=0x1 actions=output:%d", patch),
		"table=1,priority=0 actions=output:LOCAL",
		fmt.Sprintf("table=0,priority=300,in_port=%d,udp,tp_dst=6081 actions=output:LOCAL", nic),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no installed flow with %q in:\n%s", want, got)
		}
	}
	// The host's traffic from the NIC now goes through conntrack and table 1 to LOCAL.
	tn.ping(routerIP)
	tn.ping(farIP)
	// ovs-ofctl sees the same flows as the OpenFlow client.
	dump := tn.ofctl("dump-flows", "br-ex", fmt.Sprintf("cookie=0x%x/-1", Cookie))
	if n := strings.Count(dump, "cookie=0x6b6f766e6777"); n != len(withPatch) {
		t.Errorf("ovs-ofctl shows %d kovn flows, want %d:\n%s", n, len(withPatch), dump)
	}

	// Someone deletes kovn's flows. RunFlows only re-installs unchanged flows every minute, too long to
	// wait for here; a change of ports brings them back at once.
	tn.ofctl("del-flows", "br-ex", fmt.Sprintf("cookie=0x%x/-1", Cookie))
	if got := installed(t, conn, Cookie); len(got) != 0 {
		t.Fatalf("flows left after del-flows: %v", got)
	}
	tn.deletePatch()
	waitFlows(t, conn, hostOnly)
	tn.ping(farIP)

	// An agent restart: the new RunFlows installs the flows at once.
	if err := stop(); err != nil {
		t.Fatalf("RunFlows: %v", err)
	}
	tn.ofctl("del-flows", "br-ex", fmt.Sprintf("cookie=0x%x/-1", Cookie))
	if got := installed(t, conn, Cookie); len(got) != 0 {
		t.Fatalf("flows left after del-flows: %v", got)
	}
	stop = runFlows(t, g)
	waitFlows(t, conn, hostOnly)
	patch = tn.addPatch()
	waitFlows(t, conn, g.desiredFlows(flowPorts{NIC: nic, Patch: patch}))
	if err := stop(); err != nil {
		t.Fatalf("RunFlows: %v", err)
	}
	// Stopped, it installs nothing more: flows deleted now stay deleted.
	tn.ofctl("del-flows", "br-ex", fmt.Sprintf("cookie=0x%x/-1", Cookie))
	time.Sleep(300 * time.Millisecond)
	if got := installed(t, conn, Cookie); len(got) != 0 {
		t.Errorf("flows installed after RunFlows returned: %v", got)
	}
	if got := installed(t, conn, 0x1234); !slices.Equal(got, foreign) {
		t.Errorf("foreign flow changed: %v, was %v", got, foreign)
	}
}

// TestRunFlowsWaitsForTheUplinkPort: while br-ex has no uplink port RunFlows installs nothing and keeps
// trying; once the port is back the steering is installed. When the port comes back under a new OpenFlow
// number (ovs-vswitchd does not reuse a freed number at once) while RunFlows runs, the flows follow it and
// those naming the old number are gone.
func TestRunFlowsWaitsForTheUplinkPort(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	nicMAC := tn.link("eth0").MAC
	g := tn.setup(tn.config())
	checkSetUp(t, tn, g, nicMAC, netip.MustParseAddr(routerIP))
	old := tn.ofport("eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodeovs.DeletePort(ctx, tn.OVS, "eth0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "eth0 off br-ex", func() (bool, string) {
		i, err := nodeovs.Interface(tn.OVS, "eth0")
		return i == nil && err == nil, fmt.Sprintf("%+v %v", i, err)
	})
	conn := tn.dialBridge()
	stop := runFlows(t, g)
	time.Sleep(500 * time.Millisecond)
	if got := installed(t, conn, Cookie); len(got) != 0 {
		t.Fatalf("flows installed without an uplink port: %v", got)
	}
	if err := nodeovs.EnsurePort(ctx, tn.OVS, "br-ex", nodeovs.PortSpec{Name: "eth0", ExternalIDs: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	nic := tn.ofport("eth0")
	waitFlows(t, conn, g.desiredFlows(flowPorts{NIC: nic}))
	t.Logf("eth0: OpenFlow port %d, was %d", nic, old)
	tn.ping(farIP)

	// The uplink goes away and comes back under a new number while RunFlows runs: the flows naming the old
	// number are replaced.
	if err := nodeovs.DeletePort(ctx, tn.OVS, "eth0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "eth0 off br-ex", func() (bool, string) {
		i, err := nodeovs.Interface(tn.OVS, "eth0")
		return i == nil && err == nil, fmt.Sprintf("%+v %v", i, err)
	})
	if err := nodeovs.EnsurePort(ctx, tn.OVS, "br-ex", nodeovs.PortSpec{Name: "eth0", ExternalIDs: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	nic2 := tn.ofport("eth0")
	if nic2 == nic {
		t.Logf("ovs-vswitchd gave eth0 its OpenFlow port %d again: the renumbering is not exercised", nic)
	}
	waitFlows(t, conn, g.desiredFlows(flowPorts{NIC: nic2}))
	tn.ping(farIP)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestTeardown: Teardown gives the node IP, its routes and ARP back to eth0 and removes br-ex and the
// bridge mapping, leaving br-int alone; a second Teardown is harmless.
func TestTeardown(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	nicMAC := tn.link("eth0").MAC
	g := tn.setup(tn.config())
	checkSetUp(t, tn, g, nicMAC, netip.MustParseAddr(routerIP))
	stop := runFlows(t, g)
	waitFlows(t, tn.dialBridge(), g.desiredFlows(flowPorts{NIC: tn.ofport("eth0")}))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	restored := linkState{Exists: true, MAC: nicMAC, Up: true, Addrs: []string{nodeIP}, Routes: addressed}
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := Teardown(ctx, tn.OVS, tn.config())
		cancel()
		if err != nil {
			t.Fatalf("Teardown %d: %v", i+1, err)
		}
		eventually(t, 10*time.Second, "br-ex removed", func() (bool, string) {
			b := tn.link("br-ex")
			return tn.bridge("br-ex") == nil && !b.Exists, fmt.Sprintf("OVS row %v, device %+v", tn.bridge("br-ex"), b)
		})
		// Checked once ovs-vswitchd has let go of eth0 (it restores the flags it changed).
		if e := tn.link("eth0"); !reflect.DeepEqual(e, restored) {
			t.Errorf("Teardown %d: eth0 %+v\nwant %+v", i+1, e, restored)
		}
		eventually(t, 10*time.Second, "bridge mapping removed", func() (bool, string) {
			v, ok := tn.mappings()
			return !ok, fmt.Sprintf("%s = %q", KeyBridgeMappings, v)
		})
		if br := tn.bridge("br-int"); br == nil {
			t.Errorf("Teardown %d removed br-int", i+1)
		}
		tn.ping(routerIP)
		tn.ping(farIP)
	}
	if v := tn.ipv6Disabled("eth0"); v != "0" {
		t.Errorf("after Teardown eth0 keeps disable_ipv6 = %s", v)
	}
	// Setup again after Teardown is exercised many times over by TestSetupRacesVswitchd.
}

// TestSetupWithoutDefaultRoute: a node IP without a default route gives no next hop (only the node's subnet
// is reachable for pods), unless one is configured.
func TestSetupWithoutDefaultRoute(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, false)
	tn.peerExec("ip", "addr", "add", routerIP+"/24", "dev", "up0")
	tn.exec("ip", "addr", "add", nodeIP, "dev", "eth0")
	g := tn.setup(tn.config())
	if g.Info().NextHop.IsValid() {
		t.Errorf("NextHop = %s, want none", g.Info().NextHop)
	}
	if b := tn.link("br-ex"); !slices.Equal(b.Addrs, []string{nodeIP}) || !slices.Equal(b.Routes, []string{"192.168.50.0/24"}) {
		t.Errorf("br-ex: %+v", b)
	}
	tn.ping(routerIP)
	cfg := tn.config()
	cfg.NextHop = netip.MustParseAddr(routerIP)
	if g = tn.setup(cfg); g.Info().NextHop != cfg.NextHop {
		t.Errorf("NextHop = %s, want %s", g.Info().NextHop, cfg.NextHop)
	}
}

// TestErrors: Setup and Teardown fail clearly, and Setup leaves nothing behind when it fails.
func TestErrors(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth1", 1, false) // no address
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noBridge := func(what string) {
		t.Helper()
		if br := tn.bridge("br-ex"); br != nil {
			t.Errorf("%s: br-ex was created: %+v", what, br)
		}
		if tn.link("br-ex").Exists {
			t.Errorf("%s: a br-ex device exists", what)
		}
		if v, ok := tn.mappings(); ok {
			t.Errorf("%s: %s set to %q", what, KeyBridgeMappings, v)
		}
	}

	t.Run("missing interface", func(t *testing.T) {
		cfg := tn.config()
		cfg.Interface = "nope"
		_, err := Setup(ctx, tn.OVS, cfg)
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("Setup with a missing uplink: %v", err)
		}
		t.Log(err)
		noBridge("Setup with a missing uplink")
	})
	t.Run("no node IP", func(t *testing.T) {
		cfg := tn.config()
		cfg.Interface = "eth1"
		_, err := Setup(ctx, tn.OVS, cfg)
		if err == nil || !strings.Contains(err.Error(), "node IP is unknown") {
			t.Fatalf("Setup with an unaddressed uplink: %v", err)
		}
		t.Log(err)
		noBridge("Setup with an unaddressed uplink")
		if e := tn.link("eth1"); e.NoARP {
			t.Errorf("failed Setup turned ARP off on eth1")
		}
	})
	t.Run("teardown without interface", func(t *testing.T) {
		cfg := tn.config()
		cfg.Interface = ""
		err := Teardown(ctx, tn.OVS, cfg)
		if err == nil || !strings.Contains(err.Error(), "uplink interface is required") {
			t.Fatalf("Teardown without Interface: %v", err)
		}
		t.Log(err)
	})
	t.Run("teardown with a missing interface", func(t *testing.T) {
		cfg := tn.config()
		cfg.Interface = "nope"
		err := Teardown(ctx, tn.OVS, cfg)
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("Teardown with a missing uplink: %v", err)
		}
		t.Log(err)
	})
	t.Run("teardown of a node never set up", func(t *testing.T) {
		cfg := tn.config()
		cfg.Interface = "eth1"
		if err := Teardown(ctx, tn.OVS, cfg); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		noBridge("Teardown")
	})
}
