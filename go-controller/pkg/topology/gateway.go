package topology

import (
	"fmt"
	"net/netip"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// The north-south part of the topology, one gateway router per node:
//
//	     kovn_cluster_router --- kovn_join --- GR_node1 (bound to node1's chassis; SNAT pod subnet -> node IP)
//	(src-ip route: node1's subnet -> GR_node1)         |  rtoe-GR_node1: node IP, the external bridge's MAC
//	                                               ext_node1 --- lnet_node1 (localnet "physnet")
//	                                                                |  ovn-bridge-mappings physnet:br-ex
//	                                                         br-ex on node1: node IP, uplink NIC -> the world

// PhysicalNetwork is the localnet network name every node maps to its external bridge (ovn-bridge-mappings).
const PhysicalNetwork = "physnet"

// Gateway row names.
func GatewayRouter(node string) string            { return "GR_" + node }
func ExternalSwitch(node string) string           { return "ext_" + node }
func LocalnetPort(node string) string             { return "lnet_" + node }
func gatewayJoinPort(node string) string          { return "rtoj-" + GatewayRouter(node) }
func joinSwitchGatewayPort(node string) string    { return "jtor-" + GatewayRouter(node) }
func gatewayExternalPort(node string) string      { return "rtoe-" + GatewayRouter(node) }
func externalSwitchRouterPort(node string) string { return "etor-" + GatewayRouter(node) }

// NoSNATDestinationsSet is the address set of destinations pods reach without SNAT (config NoSNATDestinations).
const NoSNATDestinationsSet = "kovn_no_snat_destinations"

// ForNoSNATDestinations returns the cluster's address set of destinations exempt from egress SNAT.
func ForNoSNATDestinations(cfg config.Cluster) *nbdb.AddressSet {
	addrs := make([]string, len(cfg.Gateway.NoSNATDestinations))
	for i, p := range cfg.Gateway.NoSNATDestinations {
		addrs[i] = p.String()
	}
	return &nbdb.AddressSet{Name: NoSNATDestinationsSet, Addresses: addrs,
		ExternalIDs: clusterOwner.ID("no-snat-destinations").ExternalIDs(nil)}
}

// Gateway is the part of the topology a node's gateway owns.
type Gateway struct {
	Router             *nbdb.LogicalRouter
	JoinPort           *nbdb.LogicalRouterPort // GR's port on the join switch
	JoinSwitchPort     *nbdb.LogicalSwitchPort // its peer on the join switch
	ExternalSwitch     *nbdb.LogicalSwitch
	ExternalPort       *nbdb.LogicalRouterPort // GR's port on the external switch: the node IP
	ExternalSwitchPort *nbdb.LogicalSwitchPort // its peer
	LocalnetPort       *nbdb.LogicalSwitchPort // the external switch's way out: the node's external bridge
	// Routes live on the gateway router: the cluster CIDRs back to the cluster router, and the default route.
	Routes []*nbdb.LogicalRouterStaticRoute
	// ClusterRoute lives on the cluster router: traffic from the node's pods leaves through its gateway router.
	ClusterRoute *nbdb.LogicalRouterStaticRoute
	// JoinRoute lives on the cluster router: traffic to the gateway router's join IP (replies to Service
	// traffic it SNATed) goes to it, whatever node the sender is on (it must beat the src-ip routes).
	JoinRoute *nbdb.LogicalRouterStaticRoute
	// HostPolicy lives on the cluster router: the node's pods reach their own node's IP through the
	// management port, without NAT.
	HostPolicy *nbdb.LogicalRouterPolicy
	// SNAT is the node subnet's egress SNAT to the node IP; nil when egress SNAT is off by default.
	SNAT *nbdb.NAT
}

// GatewayJoinIP is the gateway router's address on the join subnet: one per node subnet, in the order of the
// subnets in the cluster CIDRs, after the cluster router's (config.Validate checks that they fit).
func GatewayJoinIP(cfg config.Cluster, subnet netip.Prefix) (netip.Addr, error) {
	var base uint64
	for _, cc := range cfg.ClusterCIDRs {
		size := uint64(1) << (cc.HostPrefixLen - cc.CIDR.Bits())
		if subnet.Bits() == cc.HostPrefixLen && cc.CIDR.Contains(subnet.Addr()) {
			idx := (ip4Uint(subnet.Masked().Addr()) - ip4Uint(cc.CIDR.Addr())) >> (32 - cc.HostPrefixLen)
			return uint4IP(ip4Uint(cfg.JoinSubnet.Masked().Addr()) + 2 + uint32(base+uint64(idx))), nil
		}
		base += size
	}
	return netip.Addr{}, fmt.Errorf("subnet %s is not a node subnet of the cluster CIDRs", subnet)
}

// ClusterRouterJoinIP is the cluster router's address on the join subnet.
func ClusterRouterJoinIP(cfg config.Cluster) netip.Addr { return firstHost(cfg.JoinSubnet) }

// ForGateway returns the rows of a node's gateway. exemptSet is the UUID of the NoSNATDestinationsSet row, or
// empty when no destination is exempt from SNAT.
func ForGateway(cfg config.Cluster, node string, subnet netip.Prefix, gw annotations.NodeGatewayInfo, exemptSet string) (Gateway, error) {
	joinIP, err := GatewayJoinIP(cfg, subnet)
	if err != nil {
		return Gateway{}, fmt.Errorf("gateway of node %s: %w", node, err)
	}
	o := ownership.NewOwner(ownership.KindNode, "", node)
	ids := func(name string) map[string]string { return o.ID(name).ExternalIDs(map[string]string{KeyNode: node}) }
	gr := GatewayRouter(node)
	g := Gateway{
		Router: &nbdb.LogicalRouter{Name: gr, ExternalIDs: ids("gw-router"), Options: map[string]string{
			"chassis":                       gw.ChassisID,
			"always_learn_from_arp_request": "false",
			"dynamic_neigh_routers":         "true",
			// Service traffic the router load-balances to another node leaves SNATed to the router's join IP,
			// so the reply comes back through it (load balancers with skip_snat keep the client IP).
			"lb_force_snat_ip": "router_ip",
		}},
		JoinPort: &nbdb.LogicalRouterPort{Name: gatewayJoinPort(node), MAC: ipam.MACFromIP(joinIP).String(),
			Networks: []string{netip.PrefixFrom(joinIP, cfg.JoinSubnet.Bits()).String()}, ExternalIDs: ids("gw-join-port")},
		JoinSwitchPort: &nbdb.LogicalSwitchPort{Name: joinSwitchGatewayPort(node), Type: "router", Addresses: []string{"router"},
			Options: map[string]string{"router-port": gatewayJoinPort(node)}, ExternalIDs: ids("gw-join-switch-port")},
		ExternalSwitch: &nbdb.LogicalSwitch{Name: ExternalSwitch(node), ExternalIDs: ids("gw-external-switch")},
		ExternalPort: &nbdb.LogicalRouterPort{Name: gatewayExternalPort(node), MAC: gw.MAC,
			Networks: []string{gw.IP.String()}, ExternalIDs: ids("gw-external-port")},
		ExternalSwitchPort: &nbdb.LogicalSwitchPort{Name: externalSwitchRouterPort(node), Type: "router", Addresses: []string{"router"},
			Options: map[string]string{"router-port": gatewayExternalPort(node)}, ExternalIDs: ids("gw-external-switch-port")},
		LocalnetPort: &nbdb.LogicalSwitchPort{Name: LocalnetPort(node), Type: "localnet", Addresses: []string{"unknown"},
			Options: map[string]string{"network_name": PhysicalNetwork}, ExternalIDs: ids("gw-localnet-port")},
		ClusterRoute: &nbdb.LogicalRouterStaticRoute{IPPrefix: subnet.String(), Nexthop: joinIP.String(),
			Policy: ptr(nbdb.LogicalRouterStaticRoutePolicySrcIP), ExternalIDs: ids("gw-cluster-route")},
		JoinRoute: &nbdb.LogicalRouterStaticRoute{IPPrefix: joinIP.String() + "/32", Nexthop: joinIP.String(),
			ExternalIDs: ids("gw-join-route")},
		HostPolicy: &nbdb.LogicalRouterPolicy{Priority: HostPolicyPriority,
			Match:    fmt.Sprintf("inport == %q && ip4.dst == %s", RouterToSwitchPort(node), gw.IP.Addr()),
			Action:   nbdb.LogicalRouterPolicyActionReroute,
			Nexthops: []string{addrAt(subnet, ipam.ManagementOffset).String()}, ExternalIDs: ids("gw-host-policy")},
	}
	for _, cc := range cfg.ClusterCIDRs {
		g.Routes = append(g.Routes, &nbdb.LogicalRouterStaticRoute{IPPrefix: cc.CIDR.String(),
			Nexthop: ClusterRouterJoinIP(cfg).String(), ExternalIDs: ids("gw-route-" + cc.CIDR.String())})
	}
	if gw.NextHop.IsValid() {
		g.Routes = append(g.Routes, &nbdb.LogicalRouterStaticRoute{IPPrefix: "0.0.0.0/0", Nexthop: gw.NextHop.String(),
			OutputPort: ptr(gatewayExternalPort(node)), ExternalIDs: ids("gw-default-route")})
	}
	if cfg.Gateway.EgressSNAT {
		g.SNAT = EgressNAT(cfg, o.ID("gw-snat"), subnet, gw.IP.Addr(), exemptSet)
		g.SNAT.ExternalIDs[KeyNode] = node
	}
	return g, nil
}

// HostPolicyPriority is the priority of the cluster router policies that send a node's pods to their own node.
const HostPolicyPriority = 1004

// EgressNAT returns an SNAT row of logical (a node subnet, or one pod's IP) to external on a gateway router,
// with the cluster's SNAT port range and exempt destinations. external equal to the pod's own IP is how a pod
// whose namespace turns SNAT off leaves unchanged through a gateway that SNATs its subnet (the more specific
// logical IP wins).
func EgressNAT(cfg config.Cluster, id ownership.ID, logical netip.Prefix, external netip.Addr, exemptSet string) *nbdb.NAT {
	n := &nbdb.NAT{Type: nbdb.NATTypeSNAT, LogicalIP: logical.Masked().String(), ExternalIP: external.String(),
		ExternalIDs: id.ExternalIDs(nil)}
	if logical.Bits() == 32 {
		n.LogicalIP = logical.Addr().String()
	}
	if external != logical.Addr() {
		n.ExternalPortRange = cfg.Gateway.SNATPortRange.String()
		if exemptSet != "" {
			n.ExemptedExtIPs = &exemptSet
		}
	}
	return n
}

// PodEgressNAT returns the NAT row a pod needs on its node's gateway router when its namespace's egress SNAT
// setting differs from the cluster default, or nil when it needs none.
func PodEgressNAT(cfg config.Cluster, namespace, name string, podIP, nodeIP netip.Addr, snat bool, exemptSet string) *nbdb.NAT {
	if snat == cfg.Gateway.EgressSNAT {
		return nil
	}
	external := podIP
	if snat {
		external = nodeIP
	}
	id := ownership.NewOwner(ownership.KindPod, namespace, name).ID("egress-nat")
	return EgressNAT(cfg, id, netip.PrefixFrom(podIP, 32), external, exemptSet)
}

func ptr[T any](v T) *T { return &v }

func ip4Uint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uint4IP(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
