// Package annotations reads and writes the annotations kovn keeps on Kubernetes objects: a node's subnet, a pod's
// network (IPs, MAC, gateway, routes, MTU), and the static IP/MAC a user may request for a pod. The controller
// writes them; the node agent and the CNI read them. Parsing is strict: a malformed value is an error that says
// which annotation and why, never a silent default.
package annotations

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Annotation keys.
const (
	// NodeSubnets records the node's subnet(s) on the pod network: {"default":["10.244.1.0/24"]}.
	NodeSubnets = "kovn.io/node-subnets"
	// PodNetworks records a pod's network attachment(s), keyed by network name ("default").
	PodNetworks = "kovn.io/pod-networks"
	// RequestedIP asks for a static pod IP ("10.244.1.50"); it must lie in the node's subnet and be free.
	RequestedIP = "kovn.io/ip-address"
	// RequestedMAC asks for a static pod MAC ("0a:58:0a:f4:01:32"); it must be a unicast MAC.
	RequestedMAC = "kovn.io/mac-address"
)

// DefaultNetwork is the name of the cluster's pod network in the annotations.
const DefaultNetwork = "default"

// Route is one route a pod gets besides its default route.
type Route struct {
	Dest    netip.Prefix `json:"dest"`
	NextHop netip.Addr   `json:"nextHop"`
}

// PodNetwork is a pod's attachment to one network.
type PodNetwork struct {
	// IPs are the pod's addresses with the subnet's prefix length ("10.244.1.5/24").
	IPs []netip.Prefix `json:"ip_addresses"`
	MAC string         `json:"mac_address"`
	// Gateways are the default gateways (the cluster router's port on the node switch).
	Gateways []netip.Addr `json:"gateway_ips"`
	Routes   []Route      `json:"routes,omitempty"`
	MTU      int          `json:"mtu"`
}

// HardwareAddr returns the parsed MAC.
func (n PodNetwork) HardwareAddr() (net.HardwareAddr, error) { return net.ParseMAC(n.MAC) }

// Validate checks that the attachment is complete and consistent.
func (n PodNetwork) Validate() error {
	if len(n.IPs) == 0 {
		return fmt.Errorf("no ip_addresses")
	}
	for _, ip := range n.IPs {
		if !ip.IsValid() {
			return fmt.Errorf("invalid ip address %v", ip)
		}
	}
	if err := validMAC(n.MAC); err != nil {
		return err
	}
	for _, gw := range n.Gateways {
		ok := false
		for _, ip := range n.IPs {
			ok = ok || ip.Masked().Contains(gw)
		}
		if !ok {
			return fmt.Errorf("gateway %s is not on the pod's subnet %v", gw, n.IPs)
		}
	}
	if n.MTU < 0 || n.MTU > 9216 {
		return fmt.Errorf("mtu %d out of range", n.MTU)
	}
	return nil
}

// ParsePodNetwork returns the pod's attachment to the default network; ok is false when the pod has none yet.
func ParsePodNetwork(annotations map[string]string) (net PodNetwork, ok bool, err error) {
	raw, found := annotations[PodNetworks]
	if !found {
		return PodNetwork{}, false, nil
	}
	var all map[string]PodNetwork
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		return PodNetwork{}, false, fmt.Errorf("annotation %s: %w", PodNetworks, err)
	}
	n, found := all[DefaultNetwork]
	if !found {
		return PodNetwork{}, false, fmt.Errorf("annotation %s: no %q network", PodNetworks, DefaultNetwork)
	}
	if err := n.Validate(); err != nil {
		return PodNetwork{}, false, fmt.Errorf("annotation %s: %w", PodNetworks, err)
	}
	return n, true, nil
}

// MarshalPodNetwork returns the annotation value for a pod attached to the default network.
func MarshalPodNetwork(n PodNetwork) (string, error) {
	b, err := json.Marshal(map[string]PodNetwork{DefaultNetwork: n})
	return string(b), err
}

// ParseNodeSubnet returns the node's subnet on the default network; ok is false when it has none yet.
func ParseNodeSubnet(annotations map[string]string) (subnet netip.Prefix, ok bool, err error) {
	raw, found := annotations[NodeSubnets]
	if !found {
		return netip.Prefix{}, false, nil
	}
	var all map[string][]string
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		return netip.Prefix{}, false, fmt.Errorf("annotation %s: %w", NodeSubnets, err)
	}
	subnets := all[DefaultNetwork]
	if len(subnets) != 1 {
		return netip.Prefix{}, false, fmt.Errorf("annotation %s: want one %q subnet, got %d", NodeSubnets, DefaultNetwork, len(subnets))
	}
	p, err := netip.ParsePrefix(subnets[0])
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("annotation %s: %w", NodeSubnets, err)
	}
	if p != p.Masked() {
		return netip.Prefix{}, false, fmt.Errorf("annotation %s: %s is not a network address", NodeSubnets, p)
	}
	return p, true, nil
}

// MarshalNodeSubnet returns the annotation value for a node's subnet on the default network.
func MarshalNodeSubnet(p netip.Prefix) string {
	b, _ := json.Marshal(map[string][]string{DefaultNetwork: {p.String()}})
	return string(b)
}

// StaticRequest is the static IP and/or MAC a pod asks for (zero values when it asks for none).
type StaticRequest struct {
	IP  netip.Addr
	MAC string
}

// ParseStaticRequest reads the requested IP and MAC annotations.
func ParseStaticRequest(annotations map[string]string) (StaticRequest, error) {
	var r StaticRequest
	if s, ok := annotations[RequestedIP]; ok {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return r, fmt.Errorf("annotation %s: %q is not an IP address", RequestedIP, s)
		}
		if !ip.Is4() {
			return r, fmt.Errorf("annotation %s: %s is not IPv4 (kovn's pod network is IPv4)", RequestedIP, ip)
		}
		r.IP = ip
	}
	if s, ok := annotations[RequestedMAC]; ok {
		s = strings.ToLower(strings.TrimSpace(s))
		if err := validMAC(s); err != nil {
			return r, fmt.Errorf("annotation %s: %w", RequestedMAC, err)
		}
		r.MAC = s
	}
	return r, nil
}

func validMAC(s string) error {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("%q is not an Ethernet MAC address", s)
	}
	if mac[0]&1 == 1 {
		return fmt.Errorf("%s is a multicast MAC address", s)
	}
	if mac.String() == "00:00:00:00:00:00" {
		return fmt.Errorf("%s is the zero MAC address", s)
	}
	return nil
}
