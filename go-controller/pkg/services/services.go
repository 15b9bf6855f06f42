// Package services computes the OVN load balancers that implement Kubernetes Services (kovn replaces kube-proxy).
// Desired is a pure function from a Service, its EndpointSlices and the nodes to plain load-balancer rows and
// where each is attached; the controller applies them. It owns the rules:
//
//   - ClusterIP: one load balancer per service and protocol, in the cluster load-balancer group (attached to every
//     node switch and the cluster router), all endpoints; with internalTrafficPolicy Local, one per node instead,
//     on that node's switch, with the node's endpoints only.
//   - NodePort, externalIPs and status.loadBalancer.ingress IPs: one load balancer per node and protocol with the
//     node IP's NodePorts and the external IPs, on the node's gateway router (traffic from outside) and the node's
//     switch (traffic from its pods). With externalTrafficPolicy Local the gateway router's copy has only the
//     node's endpoints and keeps the client IP (skip_snat); pods still use every endpoint.
//   - Endpoints: ready ones; when none is ready, the serving-and-terminating ones. No endpoint: the VIP rejects
//     (TCP reset / ICMP unreachable), never a black hole.
//   - sessionAffinity ClientIP: the backend is chosen by a hash of the client IP (selection_fields ip_src); the
//     affinity timeout is not enforced (see newLB), and Warnings says so for an Event on the Service.
package services

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ClusterGroup is the load-balancer group every node switch and the cluster router carry (topology.ClusterLBGroup).
const ClusterGroup = "kovn_cluster_lbs"

// Node is what Desired needs to know about a node.
type Node struct {
	Name string
	// IP is the node IP its gateway router shares; invalid when the node has no gateway (no NodePorts there).
	IP netip.Addr
	// Switch and Router are the node's logical switch and gateway router.
	Switch, Router string
}

// LB is one desired Load_Balancer row and its attachments.
type LB struct {
	// ID is the row's ownership name within the service, e.g. "cluster-tcp" or "node-node1-udp".
	ID       string
	Name     string
	Protocol string // tcp, udp or sctp
	// VIPs maps "VIP:port" to "backend:port,backend:port" (empty: reject).
	VIPs    map[string]string
	Options map[string]string
	// SelectionFields are the packet fields the backend is chosen by (ip_src for ClientIP affinity).
	SelectionFields []string
	// Where it is attached.
	Groups, Switches, Routers []string
}

var protocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

// Desired returns the load balancers a service needs (none for headless and ExternalName services).
func Desired(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, nodes []Node) []LB {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return nil
	}
	var out []LB
	local := func(p *corev1.ServiceInternalTrafficPolicy) bool {
		return p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal
	}
	for _, proto := range protocols {
		ports := portsOf(svc, proto)
		if len(ports) == 0 {
			continue
		}
		if local(svc.Spec.InternalTrafficPolicy) {
			for _, n := range nodes {
				lb := newLB(svc, proto, "local", n.Name, "")
				lb.Switches = []string{n.Switch}
				addVIPs(lb.VIPs, clusterIPs(svc), ports, eps, proto, n.Name)
				out = append(out, lb)
			}
		} else {
			lb := newLB(svc, proto, "cluster", "", "")
			lb.Groups = []string{ClusterGroup}
			addVIPs(lb.VIPs, clusterIPs(svc), ports, eps, proto, "")
			out = append(out, lb)
		}
		out = append(out, nodeLBs(svc, eps, nodes, proto, ports)...)
	}
	return out
}

// nodeLBs returns the per-node load balancers of NodePorts and external IPs.
func nodeLBs(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, nodes []Node, proto corev1.Protocol, ports []corev1.ServicePort) []LB {
	ext := ExternalIPs(svc)
	hasNodePort := false
	for _, sp := range ports {
		hasNodePort = hasNodePort || sp.NodePort != 0
	}
	if !hasNodePort && len(ext) == 0 {
		return nil
	}
	etpLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	var out []LB
	for _, n := range nodes {
		if !n.IP.IsValid() {
			continue
		}
		lb := newLB(svc, proto, "node", n.Name, "")
		addNodePortVIPs(lb.VIPs, n.IP, ports, eps, proto, localTo(etpLocal, n.Name))
		addVIPs(lb.VIPs, ext, ports, eps, proto, localTo(etpLocal, n.Name))
		if !etpLocal {
			lb.Routers, lb.Switches = []string{n.Router}, []string{n.Switch}
			out = append(out, lb)
			continue
		}
		// The gateway router's copy keeps the client IP and uses the node's endpoints; the switch's copy
		// serves the node's pods with every endpoint. Each has its own ID, so that an ID always has the same
		// attachments (an externalTrafficPolicy change replaces rows instead of re-attaching them).
		lb.ID, lb.Name = lb.ID+"-external", lb.Name+"_external"
		lb.Routers = []string{n.Router}
		lb.Options["skip_snat"] = "true"
		internal := newLB(svc, proto, "node", n.Name, "internal")
		internal.Switches = []string{n.Switch}
		addNodePortVIPs(internal.VIPs, n.IP, ports, eps, proto, "")
		addVIPs(internal.VIPs, ext, ports, eps, proto, "")
		out = append(out, lb, internal)
	}
	return out
}

func localTo(local bool, node string) string {
	if local {
		return node
	}
	return ""
}

// newLB returns an empty load balancer of a service: kind is cluster, local or node; node and suffix are
// optional. ID "node-node1-tcp-internal" goes with name "Service_ns/name_TCP_node_node1_internal".
func newLB(svc *corev1.Service, proto corev1.Protocol, kind, node, suffix string) LB {
	p := strings.ToLower(string(proto))
	id, name := kind, fmt.Sprintf("Service_%s/%s_%s_%s", svc.Namespace, svc.Name, strings.ToUpper(p), kind)
	if node != "" {
		id, name = id+"-"+node, name+"_"+node
	}
	id += "-" + p
	if suffix != "" {
		id, name = id+"-"+suffix, name+"_"+suffix
	}
	lb := LB{ID: id, Name: name, Protocol: p, VIPs: map[string]string{},
		Options: map[string]string{"reject": "true", "event": "false"}}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		// The backend is chosen by a hash of the client IP: a client stays on its backend as long as the
		// backends do not change. OVN 23.03's affinity_timeout is not used: its learned affinity flow matches
		// the service VIP, but once the first packet has been dropped (by design) and committed to conntrack,
		// the retransmissions arrive already translated to the backend, miss the flow and are dropped again
		// until the conntrack entry expires; through a gateway router the first connection is reset.
		lb.SelectionFields = []string{"ip_src"}
	}
	return lb
}

func portsOf(svc *corev1.Service, proto corev1.Protocol) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol == proto || (sp.Protocol == "" && proto == corev1.ProtocolTCP) {
			out = append(out, sp)
		}
	}
	return out
}

func clusterIPs(svc *corev1.Service) []netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	return ipv4s(ips)
}

// ExternalIPs are a service's IPv4 spec.externalIPs and load-balancer ingress IPs (ipMode VIP), without
// duplicates: the addresses kovn serves the service on besides its ClusterIP and NodePorts.
func ExternalIPs(svc *corev1.Service) []netip.Addr {
	ips := slices.Clone(svc.Spec.ExternalIPs)
	for _, in := range svc.Status.LoadBalancer.Ingress {
		// ipMode Proxy: the load balancer sends to nodeIP:nodePort itself; in-cluster clients must go through it.
		if in.IPMode == nil || *in.IPMode == corev1.LoadBalancerIPModeVIP {
			ips = append(ips, in.IP)
		}
	}
	return ipv4s(ips)
}

func ipv4s(in []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

func addVIPs(vips map[string]string, ips []netip.Addr, ports []corev1.ServicePort, eps []*discoveryv1.EndpointSlice,
	proto corev1.Protocol, node string) {
	for _, ip := range ips {
		for _, sp := range ports {
			vips[netip.AddrPortFrom(ip, uint16(sp.Port)).String()] = strings.Join(Backends(eps, sp.Name, proto, node), ",")
		}
	}
}

func addNodePortVIPs(vips map[string]string, ip netip.Addr, ports []corev1.ServicePort, eps []*discoveryv1.EndpointSlice,
	proto corev1.Protocol, node string) {
	for _, sp := range ports {
		if sp.NodePort != 0 {
			vips[netip.AddrPortFrom(ip, uint16(sp.NodePort)).String()] = strings.Join(Backends(eps, sp.Name, proto, node), ",")
		}
	}
}

// Backends returns "ip:port" of the endpoints serving the named service port: the ready ones or, when none is
// ready, the serving-and-terminating ones; only those on node when node is set. Sorted, without duplicates.
func Backends(eps []*discoveryv1.EndpointSlice, portName string, proto corev1.Protocol, node string) []string {
	var ready, terminating []string
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port, ok := slicePort(s, portName, proto)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if node != "" && (e.NodeName == nil || *e.NodeName != node) {
				continue
			}
			isReady := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := e.Conditions.Serving == nil || *e.Conditions.Serving
			isTerminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			for _, a := range ipv4s(e.Addresses) {
				b := netip.AddrPortFrom(a, uint16(port)).String()
				switch {
				case isReady: // ready and terminating only with publishNotReadyAddresses: still ready

					ready = append(ready, b)
				case serving && isTerminating:
					terminating = append(terminating, b)
				}
			}
		}
	}
	out := ready
	if len(out) == 0 {
		out = terminating
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func slicePort(s *discoveryv1.EndpointSlice, name string, proto corev1.Protocol) (int32, bool) {
	for _, p := range s.Ports {
		pn, pp := "", corev1.ProtocolTCP
		if p.Name != nil {
			pn = *p.Name
		}
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pn == name && pp == proto && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// IDs returns the IDs of lbs, sorted.
func IDs(lbs []LB) []string {
	ids := make([]string, len(lbs))
	for i, lb := range lbs {
		ids[i] = lb.ID
	}
	slices.Sort(ids)
	return ids
}

// Warnings lists, for a Warning Event on the Service, what of svc kovn does not honour.
func Warnings(svc *corev1.Service) []string {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return nil
	}
	timeout := int32(corev1.DefaultClientIPServiceAffinitySeconds)
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		timeout = *c.ClientIP.TimeoutSeconds
	}
	return []string{fmt.Sprintf("sessionAffinity ClientIP: each client IP stays on one backend for as long as the "+
		"backends do not change; the %d s timeout is not enforced (OVN 23.03's affinity timeout breaks every new "+
		"client's first connection)", timeout)}
}
