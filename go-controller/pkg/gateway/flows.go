package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	return flows
}

// ports reads the NIC's and the patch port's OpenFlow numbers from the OVS database.
func (g *Gateway) ports() (flowPorts, error) {
	ifaces, err := nodeovs.BridgeInterfaces(g.ovs, g.cfg.Bridge)
	if err != nil {
		return flowPorts{}, err
	}
	var p flowPorts
	for name, i := range ifaces {
		if i.Ofport == nil || *i.Ofport <= 0 {
			continue
		}
		switch {
		case i.Type == "patch":
			p.Patch = openflow.Port(*i.Ofport)
		case i.Type == "" && name != g.cfg.Bridge && (g.cfg.Interface == "" || name == g.cfg.Interface):
			p.NIC = openflow.Port(*i.Ofport)
		}
	}
	if p.NIC == 0 {
		return p, fmt.Errorf("bridge %s has no uplink port with an OpenFlow number yet", g.cfg.Bridge)
	}
	return p, nil
}

// RunFlows keeps the steering flows installed until ctx ends: it re-checks the ports every interval and
// re-installs the flows when they change, and every minute anyway (ovs-vswitchd restarts lose them).
func (g *Gateway) RunFlows(ctx context.Context, interval time.Duration) error {
	var applied []openflow.Flow
	var appliedAt time.Time
	for {
		p, err := g.ports()
		if err == nil {
			want := g.desiredFlows(p)
			if !slices.EqualFunc(want, applied, func(a, b openflow.Flow) bool { return a.String() == b.String() }) ||
				time.Since(appliedAt) > time.Minute {
				if err = g.installFlows(ctx, want); err == nil {
					if len(want) != len(applied) {
						g.log.Info("external bridge steering installed", "flows", len(want), "nic", p.NIC, "patch", p.Patch)
					}
					applied, appliedAt = want, time.Now()
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			g.log.Warn("external bridge steering not installed yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func (g *Gateway) installFlows(ctx context.Context, flows []openflow.Flow) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := openflow.Dial(ctx, filepath.Join(g.cfg.OVSRunDir, g.cfg.Bridge+".mgmt"))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Replace(ctx, Cookie, flows); err != nil {
		return fmt.Errorf("install steering flows on %s: %w", g.cfg.Bridge, err)
	}
	return nil
}

// FlowsString renders flows one per line, for logs and tests.
func FlowsString(flows []openflow.Flow) string {
	lines := make([]string, len(flows))
	for i, f := range flows {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}
