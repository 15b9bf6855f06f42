package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
)

// The node IP belongs to two parties on the external bridge: the host (the bridge's LOCAL port) and the
// node's gateway router (reached through the patch port ovn-controller creates for the localnet port). Both
// answer ARP with the same MAC. The flows below decide, per packet from the NIC, which one it is for:
//
//   - tunnel packets (Geneve/VXLAN) go straight between the NIC and the host, which terminates them;
//   - what the gateway router sends out is committed to conntrack (zone CtZone, ct_mark 1) on its way to the NIC,
//     so replies to it (established or related) go back to it, and everything else to the host;
//   - packets for pod IPs (pods whose namespace turns SNAT off, routed networks) go to the gateway router;
//   - ARP from the NIC goes to both; everything the host or the router sends goes to the NIC.
//
// The flows carry Cookie; the agent owns exactly those flows and replaces them whenever the ports change.

// Cookie marks the flows kovn installs on the external bridge ("kovngw").
const Cookie uint64 = 0x6b6f766e6777

// CtZone is the conntrack zone of the external bridge's steering, far from the zones ovn-controller allocates.
const CtZone uint16 = 64000

const markGateway uint32 = 1

// flowPorts are the OpenFlow port numbers the steering needs; Patch is 0 until ovn-controller has created the
// patch port (the controller has not built the gateway router yet).
type flowPorts struct {
	NIC, Patch openflow.Port
}

// desiredFlows returns the steering flows for the given ports.
func (g *Gateway) desiredFlows(p flowPorts) []openflow.Flow {
	local, nic, patch := openflow.PortLocal, p.NIC, p.Patch
	ip, arp, udp := openflow.EthTypeIPv4, openflow.EthTypeARP, openflow.IPProtoUDP
	out := openflow.Output
	f := func(table uint8, prio uint16, m openflow.Match, actions ...openflow.Action) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: Cookie, Match: m, Actions: actions}
	}
	flows := []openflow.Flow{
		f(0, 300, openflow.Match{InPort: local, EthType: ip, IPProto: udp, TpDst: g.cfg.EncapPort}, out(nic)),
		f(0, 300, openflow.Match{InPort: nic, EthType: ip, IPProto: udp, TpDst: g.cfg.EncapPort}, out(local)),
		f(0, 100, openflow.Match{InPort: local}, out(nic)),
		f(0, 5, openflow.Match{InPort: nic}, out(local)),
	}
	if patch == 0 {
		return flows
	}
	mark, table1 := markGateway, uint8(1)
	flows = append(flows,
		f(0, 110, openflow.Match{InPort: patch, EthType: ip},
			openflow.Ct{Commit: true, Zone: CtZone, SetMark: &mark}, out(nic)),
		f(0, 100, openflow.Match{InPort: patch}, out(nic)),
		f(0, 50, openflow.Match{InPort: nic, EthType: ip}, openflow.Ct{Zone: CtZone, Table: &table1}),
		f(0, 10, openflow.Match{InPort: nic, EthType: arp}, out(local), out(patch)),
		f(1, 100, openflow.Match{CtState: openflow.CtTrk | openflow.CtEst, CtStateMask: openflow.CtTrk | openflow.CtEst,
			CtMark: markGateway, CtMarkMask: 0xffffffff}, out(patch)),
		f(1, 100, openflow.Match{CtState: openflow.CtTrk | openflow.CtRel, CtStateMask: openflow.CtTrk | openflow.CtRel,
			CtMark: markGateway, CtMarkMask: 0xffffffff}, out(patch)),
		f(1, 0, openflow.Match{}, out(local)),
	)
	for _, cidr := range g.cfg.ClusterCIDRs {
		flows = append(flows, f(0, 100, openflow.Match{InPort: nic, EthType: ip, IPv4Dst: cidr}, out(patch)))
	}
	// Services: new connections to a NodePort on the node IP, or to an external IP, are the router's.
	t := g.serviceTargets()
	nodeIP := netip.PrefixFrom(g.info.IP.Addr(), 32)
	for _, np := range t.NodePorts {
		flows = append(flows, f(0, 100, openflow.Match{InPort: nic, EthType: ip, IPProto: np.Proto, IPv4Dst: nodeIP, TpDst: np.Port}, out(patch)))
	}
	for _, a := range t.IPs {
		flows = append(flows, f(0, 100, openflow.Match{InPort: nic, EthType: ip, IPv4Dst: netip.PrefixFrom(a, 32)}, out(patch)))
	}
	return flows
}

// NodePort is a Service NodePort: an IP protocol (TCP or UDP) and a port.
type NodePort struct {
	Proto uint8
	Port  uint16
}

// ServiceTargets are what the node's gateway router serves for Services: NodePorts on the node IP, and
// external IPs (spec.externalIPs, load-balancer ingress IPs).
type ServiceTargets struct {
	NodePorts []NodePort
	IPs       []netip.Addr
}

// SetServiceTargets replaces the Service targets steered to the gateway router; RunFlows applies them at once.
func (g *Gateway) SetServiceTargets(t ServiceTargets) {
	slices.SortFunc(t.NodePorts, func(a, b NodePort) int { return int(a.Proto)<<16 + int(a.Port) - (int(b.Proto)<<16 + int(b.Port)) })
	t.NodePorts = slices.Compact(t.NodePorts)
	slices.SortFunc(t.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
	t.IPs = slices.Compact(t.IPs)
	g.mu.Lock()
	g.targets = t
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *Gateway) serviceTargets() ServiceTargets {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.targets
}

// uplinkTypes are the interface types an uplink NIC can have on the bridge.
var uplinkTypes = map[string]bool{"": true, "system": true, "dpdk": true, "afxdp": true}

// ports reads the NIC's and the patch port's OpenFlow numbers from the OVS database. Without a configured
// uplink the bridge must have exactly one NIC.
func (g *Gateway) ports() (flowPorts, error) {
	ifaces, err := nodeovs.BridgeInterfaces(g.ovs, g.cfg.Bridge)
	if err != nil {
		return flowPorts{}, err
	}
	var p flowPorts
	var nics []string
	for name, i := range ifaces {
		if i.Ofport == nil || *i.Ofport <= 0 {
			continue
		}
		switch {
		case i.Type == "patch":
			p.Patch = openflow.Port(*i.Ofport)
		case uplinkTypes[i.Type] && name != g.cfg.Bridge && (g.cfg.Interface == "" || name == g.cfg.Interface):
			p.NIC = openflow.Port(*i.Ofport)
			nics = append(nics, name)
		}
	}
	switch {
	case len(nics) == 0:
		return flowPorts{}, fmt.Errorf("bridge %s has no uplink port with an OpenFlow number yet", g.cfg.Bridge)
	case len(nics) > 1:
		slices.Sort(nics)
		return flowPorts{}, fmt.Errorf("bridge %s has several uplink candidates %v: name the uplink with --gateway-interface", g.cfg.Bridge, nics)
	}
	return p, nil
}

// RunFlows keeps the steering flows installed until ctx ends: every interval (and at once when the Service
// targets change) it compares the flows on the bridge with the desired ones and replaces them when they
// differ (ports renumbered, ovs-vswitchd restarted, someone deleted them).
func (g *Gateway) RunFlows(ctx context.Context, interval time.Duration) error {
	var lastErr string
	for {
		err := g.syncFlows(ctx)
		if err != nil && ctx.Err() == nil && err.Error() != lastErr {
			g.log.Warn("external bridge steering not installed", "err", err)
		}
		if err == nil && lastErr != "" {
			g.log.Info("external bridge steering installed")
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.wake:
		case <-time.After(interval):
		}
	}
}

// syncFlows installs the desired flows unless the bridge has exactly them already, after making sure the bridge
// still holds the node IP (an ovs-vswitchd restart re-creates the bridge's device without it).
func (g *Gateway) syncFlows(ctx context.Context) error {
	if err := g.cfg.HostNS.Do(func(ns.NetNS) error { return g.ensureAddress() }); err != nil {
		return err
	}
	p, err := g.ports()
	if err != nil {
		return err
	}
	want := g.desiredFlows(p)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := openflow.Dial(ctx, filepath.Join(g.cfg.OVSRunDir, g.cfg.Bridge+".mgmt"))
	if err != nil {
		return err
	}
	defer conn.Close()
	have, err := conn.Flows(ctx, Cookie)
	if err != nil {
		return fmt.Errorf("read steering flows of %s: %w", g.cfg.Bridge, err)
	}
	if sameFlows(have, want) {
		return nil
	}
	if err := conn.Replace(ctx, Cookie, want); err != nil {
		return fmt.Errorf("install steering flows on %s: %w", g.cfg.Bridge, err)
	}
	g.log.Info("external bridge steering flows replaced", "flows", len(want), "had", len(have), "nic", p.NIC, "patch", p.Patch)
	return nil
}

func sameFlows(a, b []openflow.Flow) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		sa[i], sb[i] = a[i].String(), b[i].String()
	}
	slices.Sort(sa)
	slices.Sort(sb)
	return slices.Equal(sa, sb)
}

// FlowsString renders flows one per line, for logs and tests.
func FlowsString(flows []openflow.Flow) string {
	lines := make([]string, len(flows))
	for i, f := range flows {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}
