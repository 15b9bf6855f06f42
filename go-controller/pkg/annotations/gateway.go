package annotations

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Gateway annotation keys.
const (
	// NodeGateway is written by the node agent once the node's external bridge holds the node IP: what the
	// controller needs to build the node's gateway router (see NodeGateway).
	NodeGateway = "kovn.io/gateway"
	// EgressSNAT on a Namespace turns egress SNAT to the node IP on ("true") or off ("false") for its pods,
	// overriding the cluster default. With it off, pods leave the cluster with their own IPs.
	EgressSNAT = "kovn.io/egress-snat"
)

// NodeGatewayInfo is the node's side of its gateway: the external bridge and the address the gateway router
// shares with the node.
type NodeGatewayInfo struct {
	// ChassisID is the node's OVN chassis name (Open_vSwitch external_ids:system-id).
	ChassisID string `json:"chassisID"`
	// Bridge is the external OVS bridge that holds the node IP and the uplink NIC.
	Bridge string `json:"bridge"`
	// MAC is the external bridge's MAC; the gateway router's external port uses the same one.
	MAC string `json:"mac"`
	// IP is the node IP with the length of its subnet ("192.168.1.11/24").
	IP netip.Prefix `json:"ip"`
	// NextHop is the router pods' traffic leaves through (the node's default gateway); unset when the node has
	// none, in which case only the node IP's own subnet is reachable.
	NextHop netip.Addr `json:"nextHop,omitzero"`
}

// Validate checks that the values are complete and consistent.
func (g NodeGatewayInfo) Validate() error {
	if g.ChassisID == "" || g.Bridge == "" {
		return fmt.Errorf("chassisID and bridge are required")
	}
	if err := validMAC(g.MAC); err != nil {
		return err
	}
	if !g.IP.IsValid() || !g.IP.Addr().Is4() {
		return fmt.Errorf("ip %q: want an IPv4 address with prefix length", g.IP)
	}
	if g.NextHop.IsValid() && (!g.NextHop.Is4() || g.NextHop == g.IP.Addr()) {
		return fmt.Errorf("nextHop %s: want an IPv4 address other than the node's", g.NextHop)
	}
	return nil
}

// ParseNodeGateway returns the node's gateway information; ok is false when the node has none.
func ParseNodeGateway(annotations map[string]string) (g NodeGatewayInfo, ok bool, err error) {
	raw, found := annotations[NodeGateway]
	if !found {
		return g, false, nil
	}
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return NodeGatewayInfo{}, false, fmt.Errorf("annotation %s: %w", NodeGateway, err)
	}
	if err := g.Validate(); err != nil {
		return NodeGatewayInfo{}, false, fmt.Errorf("annotation %s: %w", NodeGateway, err)
	}
	g.MAC = strings.ToLower(g.MAC)
	return g, true, nil
}

// MarshalNodeGateway returns the annotation value for g.
func MarshalNodeGateway(g NodeGatewayInfo) (string, error) {
	if err := g.Validate(); err != nil {
		return "", fmt.Errorf("annotation %s: %w", NodeGateway, err)
	}
	b, err := json.Marshal(g)
	return string(b), err
}

// ParseEgressSNAT reads a namespace's egress SNAT setting; set is false when the annotation is absent.
func ParseEgressSNAT(annotations map[string]string) (snat, set bool, err error) {
	return parseBool(annotations, EgressSNAT)
}

// parseBool reads a true/false annotation; set is false when it is absent.
func parseBool(annotations map[string]string, key string) (v, set bool, err error) {
	raw, found := annotations[key]
	if !found {
		return false, false, nil
	}
	v, err = strconv.ParseBool(strings.TrimSpace(raw))
	if err != nil {
		return false, false, fmt.Errorf("annotation %s: %q is not true or false", key, raw)
	}
	return v, true, nil
}
