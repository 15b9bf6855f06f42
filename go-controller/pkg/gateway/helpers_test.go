package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
	"github.com/kovn-io/kovn/go-controller/pkg/ovntest"
	"github.com/kovn-io/kovn/ovsdb-models/vswitchd"
)

// The test network: the node's uplink eth0 holds nodeIP; its veth peer, in a namespace of its own, is the
// router (routerIP, also answering for farIP behind the extra route farNet).
const (
	nodeIP   = "192.168.50.11/24"
	routerIP = "192.168.50.1"
	farNet   = "10.99.0.0/16"
	farIP    = "10.99.0.5"
)

var (
	clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	peerSeq     atomic.Int64
)

// raceHint points intermittent failures of a first Setup at the race Setup must avoid: ovs-vswitchd configuring
// the bridge it has just created (bouncing br-ex to set its MAC, flushing the routes moved there, rewriting
// eth0's flags). Setup waits for it (nodeovs.WaitApplied); TestSetupRacesVswitchd checks that.
const raceHint = "\n(if intermittent: Setup racing ovs-vswitchd configuring the new bridge, see TestSetupRacesVswitchd)"

// testNode is a node (its own ovsdb-server and ovs-vswitchd in a network namespace) with OVS configured for
// OVN as the agent does before the gateway, and the router namespace its uplinks lead to.
type testNode struct {
	*ovntest.Node
	t      *testing.T
	hostNS ns.NetNS
	peer   string // the router's namespace name
}

func startNode(t *testing.T) *testNode {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ovs-vswitchd and network namespaces")
	}
	n := ovntest.StartNode(t, "gw")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodeovs.Configure(ctx, n.OVS, nodeovs.Settings{SystemID: "node1", OVNRemote: "unix:/nonexistent",
		EncapType: "geneve", Bridge: "br-int", DatapathType: "netdev"}); err != nil {
		t.Fatal(err)
	}
	hostNS, err := ns.GetNS(n.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hostNS.Close() })
	peer := fmt.Sprintf("kovngwp%d-%d", os.Getpid(), peerSeq.Add(1))
	_ = exec.Command("ip", "netns", "del", peer).Run()
	if out, err := exec.Command("ip", "netns", "add", peer).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", peer, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", peer).Run() })
	tn := &testNode{Node: n, t: t, hostNS: hostNS, peer: peer}
	tn.peerExec("ip", "link", "set", "lo", "up")
	tn.peerExec("ip", "addr", "add", farIP+"/32", "dev", "lo")
	return tn
}

// exec runs a command in the node's namespace and fails the test if it fails.
func (tn *testNode) exec(args ...string) string {
	tn.t.Helper()
	out, err := tn.Exec(args...)
	if err != nil {
		tn.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (tn *testNode) peerExec(args ...string) string {
	tn.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", tn.peer}, args...)...).CombinedOutput()
	if err != nil {
		tn.t.Fatalf("router: %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ofctl runs ovs-ofctl against the node's ovs-vswitchd.
func (tn *testNode) ofctl(args ...string) string {
	tn.t.Helper()
	return tn.exec(append([]string{"env", "OVS_RUNDIR=" + tn.Dir, "ovs-ofctl", "-O", "OpenFlow13"}, args...)...)
}

// addUplink creates the veth name in the node, its peer (up<idx>) in the router's namespace. With addressed,
// name gets the node IP, a default route and the route to farNet, both via the router, as a node configured
// by its OS has.
func (tn *testNode) addUplink(name string, idx int, addressed bool) {
	tn.t.Helper()
	peer := fmt.Sprintf("up%d", idx)
	tn.exec("ip", "link", "add", name, "type", "veth", "peer", "name", peer, "netns", tn.peer)
	tn.exec("ip", "link", "set", name, "up")
	tn.peerExec("ip", "link", "set", peer, "up")
	if !addressed {
		return
	}
	tn.peerExec("ip", "addr", "add", routerIP+"/24", "dev", peer)
	tn.exec("ip", "addr", "add", nodeIP, "dev", name)
	tn.exec("ip", "route", "add", "default", "via", routerIP)
	tn.exec("ip", "route", "add", farNet, "via", routerIP)
}

// config is the gateway configuration the agent would pass for uplink eth0 on the userspace datapath.
func (tn *testNode) config() Config {
	return Config{Interface: "eth0", DatapathType: "netdev", ChassisID: "node1",
		ClusterCIDRs: []netip.Prefix{clusterCIDR}, EncapPort: 6081, OVSRunDir: tn.Dir, HostNS: tn.hostNS,
		Logger: slog.New(slog.NewTextHandler(tn.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

func (tn *testNode) setup(cfg Config) *Gateway {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := Setup(ctx, tn.OVS, cfg)
	if err != nil {
		tn.t.Fatalf("Setup: %v%s", err, raceHint)
	}
	return g
}

// linkState is what the kernel of the node has on one device.
type linkState struct {
	Exists bool
	MAC    string
	Up     bool
	NoARP  bool
	Addrs  []string // global IPv4 addresses
	Routes []string // main-table IPv4 routes through the device: "dst" or "dst via gw", sorted
}

func (tn *testNode) link(name string) linkState {
	tn.t.Helper()
	var s linkState
	err := tn.hostNS.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			if errors.As(err, new(netlink.LinkNotFoundError)) {
				return nil
			}
			return err
		}
		s.Exists = true
		s.MAC = l.Attrs().HardwareAddr.String()
		s.Up = l.Attrs().Flags&net.FlagUp != 0
		s.NoARP = l.Attrs().RawFlags&unix.IFF_NOARP != 0
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.Scope == int(netlink.SCOPE_UNIVERSE) {
				s.Addrs = append(s.Addrs, a.IPNet.String())
			}
		}
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range routes {
			dst := "default"
			if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
				dst = r.Dst.String()
			}
			if r.Gw != nil {
				dst += " via " + r.Gw.String()
			}
			s.Routes = append(s.Routes, dst)
		}
		slices.Sort(s.Routes)
		return nil
	})
	if err != nil {
		tn.t.Fatalf("link %s: %v", name, err)
	}
	return s
}

// ipv6Disabled reads a device's disable_ipv6 sysctl in the node.
func (tn *testNode) ipv6Disabled(name string) string {
	tn.t.Helper()
	return strings.TrimSpace(tn.exec("cat", "/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6"))
}

// addressed is the routing the node IP comes with, on whichever device holds it.
var addressed = []string{farNet + " via " + routerIP, "192.168.50.0/24", "default via " + routerIP}

// ping checks that the node reaches dst, retrying for a while (ARP, the datapath's first packets).
func (tn *testNode) ping(dst string) {
	tn.t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if out, err = tn.Exec("ping", "-c", "1", "-W", "1", dst); err == nil {
			return
		}
	}
	tn.t.Fatalf("node cannot reach %s: %v: %s", dst, err, out)
}

// eventually waits up to timeout for cond, failing with its last explanation.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var why string
	for deadline := time.Now().Add(timeout); ; {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mappings returns the Open_vSwitch row's ovn-bridge-mappings, and whether it is set.
func (tn *testNode) mappings() (string, bool) {
	tn.t.Helper()
	var rows []*vswitchd.OpenvSwitch
	if err := tn.OVS.List(context.Background(), &rows); err != nil || len(rows) != 1 {
		tn.t.Fatalf("Open_vSwitch rows: %v (%d)", err, len(rows))
	}
	v, ok := rows[0].ExternalIDs[KeyBridgeMappings]
	return v, ok
}

func (tn *testNode) bridge(name string) *vswitchd.Bridge {
	tn.t.Helper()
	br, err := nbops.Lookup(tn.OVS, &vswitchd.Bridge{Name: name})
	if err != nil {
		tn.t.Fatal(err)
	}
	return br
}

// ofport waits for ovs-vswitchd to give an interface its OpenFlow port number.
func (tn *testNode) ofport(name string) openflow.Port {
	tn.t.Helper()
	var p openflow.Port
	eventually(tn.t, 20*time.Second, "ofport of "+name, func() (bool, string) {
		i, err := nodeovs.Interface(tn.OVS, name)
		if err != nil || i == nil || i.Ofport == nil || *i.Ofport <= 0 {
			return false, fmt.Sprintf("interface %+v, err %v", i, err)
		}
		p = openflow.Port(*i.Ofport)
		return true, ""
	})
	return p
}

// addPatch connects br-ex to br-int with a pair of patch ports, as ovn-controller does for the localnet port,
// and returns the OpenFlow number of the br-ex side.
func (tn *testNode) addPatch() openflow.Port {
	tn.t.Helper()
	c := tn.OVS
	var ops []ovsdb.Operation
	for _, side := range []struct{ bridge, name, peer string }{
		{"br-ex", "patch-ex-to-int", "patch-int-to-ex"},
		{"br-int", "patch-int-to-ex", "patch-ex-to-int"},
	} {
		iface := &vswitchd.Interface{UUID: nbops.NewNamedUUID(), Name: side.name, Type: "patch",
			Options: map[string]string{"peer": side.peer}}
		port := &vswitchd.Port{UUID: nbops.NewNamedUUID(), Name: side.name, Interfaces: []string{iface.UUID}}
		for _, m := range []model.Model{iface, port} {
			o, err := c.Create(m)
			if err != nil {
				tn.t.Fatal(err)
			}
			ops = append(ops, o...)
		}
		br := &vswitchd.Bridge{Name: side.bridge}
		o, err := nbops.InsertToSet(c, br, &br.Ports, []string{port.UUID})
		if err != nil {
			tn.t.Fatal(err)
		}
		ops = append(ops, o...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := nbops.Transact(ctx, c, ops); err != nil {
		tn.t.Fatalf("add patch ports: %v", err)
	}
	return tn.ofport("patch-ex-to-int")
}

func (tn *testNode) deletePatch() {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range []string{"patch-ex-to-int", "patch-int-to-ex"} {
		if err := nodeovs.DeletePort(ctx, tn.OVS, name); err != nil {
			tn.t.Fatal(err)
		}
	}
}

// runFlows runs g.RunFlows until the returned stop is called (or the test ends); stop returns RunFlows' result.
func runFlows(t *testing.T, g *Gateway) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.RunFlows(ctx, 100*time.Millisecond) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(20 * time.Second):
				result = fmt.Errorf("RunFlows did not return after its context ended")
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// dialBridge opens an OpenFlow connection to the node's br-ex.
func (tn *testNode) dialBridge() *openflow.Conn {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := openflow.Dial(ctx, tn.Dir+"/br-ex.mgmt")
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { _ = c.Close() })
	return c
}

func sortedFlows(flows []openflow.Flow) []string {
	s := strings.Split(FlowsString(flows), "\n")
	if len(flows) == 0 {
		s = nil
	}
	slices.Sort(s)
	return s
}

// installed returns the flows on the bridge with cookie, sorted.
func installed(t *testing.T, c *openflow.Conn, cookie uint64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flows, err := c.Flows(ctx, cookie)
	if err != nil {
		t.Fatal(err)
	}
	return sortedFlows(flows)
}

// waitFlows waits until the flows with Cookie on the bridge are exactly want.
func waitFlows(t *testing.T, c *openflow.Conn, want []openflow.Flow) {
	t.Helper()
	w := sortedFlows(want)
	eventually(t, 20*time.Second, "steering flows", func() (bool, string) {
		got := installed(t, c, Cookie)
		return slices.Equal(got, w), fmt.Sprintf("installed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
	})
}
