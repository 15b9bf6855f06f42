// Package gateway is the node side of kovn's north-south path. It owns the node's external OVS bridge, which
// holds the node IP and the uplink NIC (created, with the IP and routes moved onto it from the NIC, when the
// agent is told the NIC; restored by Teardown); the OVN bridge mapping that attaches the node's gateway router
// to that bridge; the OpenFlow steering on the bridge that lets the host and the gateway router share the node
// IP (see flows.go); and the description of all this that the controller needs (annotations.NodeGatewayInfo).
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/vishvananda/netlink"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
)

// KeyBridgeMappings is the Open_vSwitch external_ids key ovn-controller reads localnet mappings from.
const KeyBridgeMappings = "ovn-bridge-mappings"

// Config is the node's gateway setup.
type Config struct {
	// Bridge is the external bridge (default br-ex).
	Bridge string
	// Interface is the uplink NIC to put on the bridge, its IPv4 addresses and routes moving onto the bridge.
	// Empty: the bridge exists already and holds the node IP.
	Interface string
	// DatapathType of the bridge: system, or netdev for the userspace datapath.
	DatapathType string
	// NextHop overrides the next hop of the node's default route for pod egress.
	NextHop netip.Addr
	// ChassisID is the node's OVN chassis name.
	ChassisID string
	// ClusterCIDRs are the pod network ranges: traffic to them arriving on the NIC belongs to the gateway router.
	ClusterCIDRs []netip.Prefix
	// EncapPort is the UDP port of the tunnels (6081 Geneve, 4789 VXLAN); they bypass the steering.
	EncapPort uint16
	// OVSRunDir is ovs-vswitchd's run directory, where the bridge's OpenFlow socket <bridge>.mgmt lives.
	OVSRunDir string
	// HostNS is the node's network namespace.
	HostNS ns.NetNS
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Bridge == "" {
		c.Bridge = "br-ex"
	}
	if c.OVSRunDir == "" {
		c.OVSRunDir = "/var/run/openvswitch"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Gateway is a node's configured gateway.
type Gateway struct {
	cfg  Config
	ovs  client.Client
	info annotations.NodeGatewayInfo
	log  *slog.Logger

	mu      sync.Mutex
	targets ServiceTargets
	wake    chan struct{}
}

// Info is what the controller needs to build the node's gateway router.
func (g *Gateway) Info() annotations.NodeGatewayInfo { return g.info }

// Setup makes the external bridge exist with the uplink NIC and the node IP on it, and maps the OVN physical
// network to it. Repeating it (an agent restart) changes nothing.
func Setup(ctx context.Context, ovs client.Client, cfg Config) (*Gateway, error) {
	cfg.defaults()
	g := &Gateway{cfg: cfg, ovs: ovs, log: cfg.Logger.With("bridge", cfg.Bridge), wake: make(chan struct{}, 1)}
	var err error
	if cfg.Interface != "" {
		err = cfg.HostNS.Do(func(ns.NetNS) error { return g.attachUplink(ctx) })
	}
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	var ip netip.Prefix
	var nh netip.Addr
	var mac string
	err = cfg.HostNS.Do(func(ns.NetNS) error {
		br, err := waitLink(cfg.Bridge, 20*time.Second)
		if err != nil {
			return err
		}
		mac = br.Attrs().HardwareAddr.String()
		ip, nh, err = nodeAddress(br)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if cfg.NextHop.IsValid() {
		nh = cfg.NextHop
	}
	g.info = annotations.NodeGatewayInfo{ChassisID: cfg.ChassisID, Bridge: cfg.Bridge, MAC: mac, IP: ip, NextHop: nh}
	if err := g.info.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	mapping := map[string]string{KeyBridgeMappings: topology.PhysicalNetwork + ":" + cfg.Bridge}
	if err := nodeovs.SetExternalIDs(ctx, ovs, mapping); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.log.Info("gateway bridge ready", "ip", ip, "mac", mac, "nextHop", nh, "uplink", cfg.Interface)
	return g, nil
}

// attachUplink creates the bridge with the NIC on it and moves the NIC's addressing onto the bridge. It runs in
// the host namespace.
func (g *Gateway) attachUplink(ctx context.Context) error {
	cfg := g.cfg
	nic, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("uplink %s: %w", cfg.Interface, err)
	}
	a, err := readAddressing(nic)
	if err != nil {
		return err
	}
	netdev := cfg.DatapathType == "netdev"
	// The kernel datapath's bridge takes the NIC's MAC, as the node had it. On the userspace datapath the NIC
	// stays alive in the kernel with its MAC, so the bridge gets its own, derived from the node IP (found on the
	// NIC, or on the bridge when an earlier run moved it).
	mac := nic.Attrs().HardwareAddr.String()
	if netdev {
		ip, err := uplinkIP(a, cfg.Bridge)
		if err != nil {
			return err
		}
		mac = ipam.MACFromIP(ip).String()
	}
	other := map[string]string{"hwaddr": mac}
	ids := ownership.NewOwner(ownership.KindNode, "", cfg.ChassisID).ID("external-bridge").ExternalIDs(nil)
	if err := nodeovs.EnsureBridge(ctx, g.ovs, nodeovs.BridgeSpec{Name: cfg.Bridge, DatapathType: cfg.DatapathType,
		FailMode: "standalone", OtherConfig: other, ExternalIDs: ids}); err != nil {
		return err
	}
	if err := nodeovs.EnsurePort(ctx, g.ovs, cfg.Bridge, nodeovs.PortSpec{Name: cfg.Interface}); err != nil {
		return err
	}
	// ovs-vswitchd configures the new devices (the bridge's MAC, the NIC's flags) asynchronously, taking the
	// bridge down meanwhile, which would flush the routes moved onto it: wait until it is done.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := nodeovs.WaitApplied(wctx, g.ovs); err != nil {
		return err
	}
	br, err := waitMAC(cfg.Bridge, mac, 10*time.Second)
	if err != nil {
		return err
	}
	if nic, err = netlink.LinkByName(cfg.Interface); err != nil {
		return fmt.Errorf("uplink %s: %w", cfg.Interface, err)
	}
	if err := prepareUplink(nic, netdev); err != nil {
		return err
	}
	if err := netlink.LinkSetMTU(br, nic.Attrs().MTU); err != nil {
		return fmt.Errorf("mtu of %s: %w", cfg.Bridge, err)
	}
	if netdev {
		if err := podnet.DisableIPv6(cfg.Bridge); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return err
	}
	if len(a.addrs) == 0 {
		return nil // moved by an earlier run
	}
	g.log.Info("moving the node's addresses onto the external bridge", "from", cfg.Interface, "addresses", len(a.addrs), "routes", len(a.routes))
	return moveAddressing(nic, br, a)
}

// Teardown undoes Setup: the addresses and routes go back to the NIC, the bridge and the mapping are removed.
func Teardown(ctx context.Context, ovs client.Client, cfg Config) error {
	cfg.defaults()
	if cfg.Interface == "" {
		return fmt.Errorf("gateway teardown: the uplink interface is required")
	}
	err := cfg.HostNS.Do(func(ns.NetNS) error {
		nic, err := netlink.LinkByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", cfg.Interface, err)
		}
		br, err := netlink.LinkByName(cfg.Bridge)
		if err != nil {
			return nil // nothing to move back
		}
		a, err := readAddressing(br)
		if err != nil {
			return err
		}
		return moveAddressing(br, nic, a)
	})
	if err != nil {
		return fmt.Errorf("gateway teardown: %w", err)
	}
	if err := nodeovs.DeleteBridge(ctx, ovs, cfg.Bridge); err != nil {
		return fmt.Errorf("gateway teardown: %w", err)
	}
	// ovs-vswitchd rewrites the NIC's flags from its own copy when it lets the port go: wait for it before
	// giving the NIC its ARP and IPv6 back.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := nodeovs.WaitApplied(wctx, ovs); err != nil {
		return fmt.Errorf("gateway teardown: %w", err)
	}
	err = cfg.HostNS.Do(func(ns.NetNS) error {
		nic, err := netlink.LinkByName(cfg.Interface)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", cfg.Interface, err)
		}
		if err := netlink.LinkSetARPOn(nic); err != nil {
			return err
		}
		return podnet.SetIPv6(cfg.Interface, true)
	})
	if err != nil {
		return fmt.Errorf("gateway teardown: %w", err)
	}
	return nodeovs.DeleteExternalIDs(ctx, ovs, KeyBridgeMappings)
}
