// Package topology computes the OVN logical network kovn wants, as plain Northbound rows, from Kubernetes facts
// (a node and its subnet, a pod and its network). It owns the names of kovn's logical routers, switches and
// ports and the ownership marks on each row. It reads nothing and writes nothing: the controllers feed it and
// apply its output through nbops.
//
//	                 kovn_cluster_router
//	rtoj-kovn_cluster_router | rtos-node1          | rtos-node2
//	    (100.64.0.1/16)      | (10.244.0.1/24)     | (10.244.1.1/24)
//	       kovn_join       node1 (switch)        node2 (switch)
//	(gateway routers,      |   k8s-node1 (.2)      |   k8s-node2 (.2)
//	 a later issue)        |   ns_pod-a ...        |   ns_pod-b ...
package topology

import (
	"net/netip"
	"strings"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// Names of the cluster-wide rows.
const (
	ClusterRouter = "kovn_cluster_router"
	JoinSwitch    = "kovn_join"
)

// The cluster owns the rows that exist once per cluster.
var clusterOwner = ownership.NewOwner(ownership.KindCluster, "", "kovn")

// Port names.
func RouterToSwitchPort(sw string) string { return "rtos-" + sw }
func SwitchToRouterPort(sw string) string { return "stor-" + sw }
func ManagementPort(node string) string   { return "k8s-" + node }
func PodPort(namespace, name string) string {
	return namespace + "_" + name
}

// NamespaceAddressSet is the name of the address set holding a namespace's pod IPs. Namespace names are DNS
// labels (letters, digits, '-'), so mapping '-' to '_' keeps names distinct and valid in ACL matches ($name).
func NamespaceAddressSet(namespace string) string {
	return "kovn_ns_" + strings.ReplaceAll(namespace, "-", "_")
}

// Cluster is the cluster-wide part of the topology: the cluster router and the join switch linked to it.
type Cluster struct {
	Router         *nbdb.LogicalRouter
	JoinSwitch     *nbdb.LogicalSwitch
	RouterJoinPort *nbdb.LogicalRouterPort
	JoinRouterPort *nbdb.LogicalSwitchPort
	// NoSNATDestinations is the address set of destinations exempt from egress SNAT.
	NoSNATDestinations *nbdb.AddressSet
	// LBGroup holds the load balancers every node switch and the cluster router carry (Service ClusterIPs).
	// Load_Balancer_Group has no external_ids: kovn knows it by name.
	LBGroup *nbdb.LoadBalancerGroup
}

// ClusterLBGroup is the name of the cluster's load-balancer group.
const ClusterLBGroup = "kovn_cluster_lbs"

// ACLLogMeter rate-limits the ACL log messages of namespaces that turn logging on.
const ACLLogMeter = "kovn_acl_logging"

// ForACLLogMeter returns the meter (and its band) that limits ACL logging to rate messages per second.
func ForACLLogMeter(rate int) (*nbdb.Meter, *nbdb.MeterBand) {
	band := &nbdb.MeterBand{Action: nbdb.MeterBandActionDrop, Rate: rate,
		ExternalIDs: clusterOwner.ID("acl-log-meter-band").ExternalIDs(nil)}
	return &nbdb.Meter{Name: ACLLogMeter, Unit: nbdb.MeterUnitPktps, Fair: ptr(true),
		ExternalIDs: clusterOwner.ID("acl-log-meter").ExternalIDs(nil)}, band
}

// ForCluster returns the cluster-wide rows for cfg.
func ForCluster(cfg config.Cluster) Cluster {
	joinIP := firstHost(cfg.JoinSubnet)
	return Cluster{
		Router: &nbdb.LogicalRouter{
			Name:        ClusterRouter,
			ExternalIDs: clusterOwner.ID("cluster-router").ExternalIDs(nil),
		},
		JoinSwitch: &nbdb.LogicalSwitch{
			Name:        JoinSwitch,
			ExternalIDs: clusterOwner.ID("join-switch").ExternalIDs(nil),
		},
		RouterJoinPort: &nbdb.LogicalRouterPort{
			Name:        RouterToSwitchPort(JoinSwitch),
			MAC:         ipam.MACFromIP(joinIP).String(),
			Networks:    []string{netip.PrefixFrom(joinIP, cfg.JoinSubnet.Bits()).String()},
			ExternalIDs: clusterOwner.ID("router-join-port").ExternalIDs(nil),
		},
		JoinRouterPort:     routerTypePort(clusterOwner.ID("join-router-port"), JoinSwitch),
		NoSNATDestinations: ForNoSNATDestinations(cfg),
		LBGroup:            &nbdb.LoadBalancerGroup{Name: ClusterLBGroup},
	}
}

// Node is the part of the topology one node owns: its switch, linked to the cluster router, and its
// management port (the node's own interface on the pod network).
type Node struct {
	Switch           *nbdb.LogicalSwitch
	RouterPort       *nbdb.LogicalRouterPort // on the cluster router
	SwitchRouterPort *nbdb.LogicalSwitchPort // on the node switch, peer of RouterPort
	ManagementPort   *nbdb.LogicalSwitchPort
	// ManagementIP is the management port's address (the node's own address on the pod network).
	ManagementIP string
}

// ForNode returns the rows of a node with the given subnet.
func ForNode(name string, subnet netip.Prefix) Node {
	owner := ownership.NewOwner(ownership.KindNode, "", name)
	gw := netip.PrefixFrom(addrAt(subnet, ipam.GatewayOffset), subnet.Bits())
	mgmt := addrAt(subnet, ipam.ManagementOffset)
	mgmtAddr := ipam.MACFromIP(mgmt).String() + " " + mgmt.String()
	return Node{
		Switch: &nbdb.LogicalSwitch{
			Name:        name,
			OtherConfig: map[string]string{"subnet": subnet.String()},
			ExternalIDs: owner.ID("switch").ExternalIDs(nil),
		},
		RouterPort: &nbdb.LogicalRouterPort{
			Name:        RouterToSwitchPort(name),
			MAC:         ipam.MACFromIP(gw.Addr()).String(),
			Networks:    []string{gw.String()},
			ExternalIDs: owner.ID("router-port").ExternalIDs(nil),
		},
		SwitchRouterPort: routerTypePort(owner.ID("switch-router-port"), name),
		// No port security: the host answers its pods from its other addresses too (a pod reaching its own
		// node's IP is rerouted here, and the reply leaves from that IP).
		ManagementPort: &nbdb.LogicalSwitchPort{
			Name:        ManagementPort(name),
			Addresses:   []string{mgmtAddr},
			ExternalIDs: owner.ID("management-port").ExternalIDs(nil),
		},
		ManagementIP: mgmt.String(),
	}
}

func routerTypePort(id ownership.ID, sw string) *nbdb.LogicalSwitchPort {
	return &nbdb.LogicalSwitchPort{
		Name:        SwitchToRouterPort(sw),
		Type:        "router",
		Addresses:   []string{"router"},
		Options:     map[string]string{"router-port": RouterToSwitchPort(sw)},
		ExternalIDs: id.ExternalIDs(nil),
	}
}

// PodNetwork is the network a pod gets on a node subnet: its IP, MAC, the gateway, and the MTU.
func PodNetwork(cfg config.Cluster, subnet netip.Prefix, ip netip.Addr, mac string) annotations.PodNetwork {
	if mac == "" {
		mac = ipam.MACFromIP(ip).String()
	}
	return annotations.PodNetwork{
		IPs:      []netip.Prefix{netip.PrefixFrom(ip, subnet.Bits())},
		MAC:      mac,
		Gateways: []netip.Addr{addrAt(subnet, ipam.GatewayOffset)},
		MTU:      cfg.PodMTU(),
	}
}

// KeyNode is the external_ids key naming the node whose switch holds a pod's port.
const KeyNode = "kovn.io/node"

// ForPod returns the logical switch port of a pod on a node with the given network: its addresses, and port
// security that lets it send only from them.
func ForPod(namespace, name, node string, n annotations.PodNetwork) *nbdb.LogicalSwitchPort {
	addr := n.MAC
	for _, ip := range n.IPs {
		addr += " " + ip.Addr().String()
	}
	return &nbdb.LogicalSwitchPort{
		Name:         PodPort(namespace, name),
		Addresses:    []string{addr},
		PortSecurity: []string{addr},
		ExternalIDs: ownership.NewOwner(ownership.KindPod, namespace, name).ID("port").
			ExternalIDs(map[string]string{"namespace": namespace, "pod": name, KeyNode: node}),
	}
}

// ForNamespace returns a namespace's address set holding its pods' IPs.
func ForNamespace(namespace string, ips []string) *nbdb.AddressSet {
	return &nbdb.AddressSet{
		Name:        NamespaceAddressSet(namespace),
		Addresses:   ips,
		ExternalIDs: ownership.NewOwner(ownership.KindNamespace, "", namespace).ID("pod-ips").ExternalIDs(nil),
	}
}

func firstHost(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

func addrAt(p netip.Prefix, off int) netip.Addr {
	a := p.Masked().Addr()
	for range off {
		a = a.Next()
	}
	return a
}
