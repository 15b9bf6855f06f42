package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Gateway is how pod traffic leaves the cluster through the per-node gateway routers.
type Gateway struct {
	// EgressSNAT is the cluster default: pod traffic leaving the cluster is SNATed to its node's IP. A namespace
	// overrides it with the kovn.io/egress-snat annotation.
	EgressSNAT bool `json:"egressSNAT"`
	// NoSNATDestinations are destination ranges pods reach with their own IPs even where SNAT is on (routed
	// networks that know the pod CIDRs).
	NoSNATDestinations []netip.Prefix `json:"noSNATDestinations,omitempty"`
	// SNATPortRange restricts the source ports egress SNAT picks on the node IP, so that they never collide with
	// the node's own connections (keep it apart from net.ipv4.ip_local_port_range). Zero: OVN's choice.
	SNATPortRange PortRange `json:"snatPortRange,omitzero"`
}

// PortRange is an inclusive range of L4 ports; in JSON it is the string "MIN-MAX".
type PortRange struct {
	Min, Max uint16
}

// MarshalText implements encoding.TextMarshaler.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *PortRange) UnmarshalText(b []byte) (err error) {
	*r, err = ParsePortRange(string(b))
	return err
}

// IsZero reports whether no range is set.
func (r PortRange) IsZero() bool { return r.Min == 0 && r.Max == 0 }

// String renders the range as OVN's external_port_range wants it ("1024-32767"); empty when unset.
func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// ParsePortRange parses "MIN-MAX" (an empty string is no range).
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortRange{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %q: want MIN-MAX", s)
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("port range %q: ports must be numbers from 1 to 65535", s)
	}
	r := PortRange{Min: uint16(a), Max: uint16(b)}
	return r, r.validate()
}

func (r PortRange) validate() error {
	if r.IsZero() {
		return nil
	}
	if r.Min == 0 || r.Min > r.Max {
		return fmt.Errorf("port range %d-%d: want 1 <= MIN <= MAX <= 65535", r.Min, r.Max)
	}
	return nil
}

func (g Gateway) validate() []error {
	var errs []error
	for _, p := range g.NoSNATDestinations {
		if !p.IsValid() || p != p.Masked() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("no-SNAT destination %s is not an IPv4 network address", p))
		}
	}
	if err := g.SNATPortRange.validate(); err != nil {
		errs = append(errs, fmt.Errorf("SNAT %w", err))
	}
	return errs
}

// NodeSubnetCount is how many node subnets the cluster CIDRs hold.
func (c Cluster) NodeSubnetCount() uint64 {
	var n uint64
	for _, cc := range c.ClusterCIDRs {
		if cc.CIDR.IsValid() && cc.HostPrefixLen > cc.CIDR.Bits() && cc.HostPrefixLen <= 32 {
			n += uint64(1) << (cc.HostPrefixLen - cc.CIDR.Bits())
		}
	}
	return n
}

// GatewayFlags are the command-line form of Gateway.
type GatewayFlags struct {
	EgressSNAT         bool
	NoSNATDestinations string
	SNATPortRange      string
}

func (f *GatewayFlags) addFlags(fs *pflag.FlagSet, d Gateway) {
	fs.BoolVar(&f.EgressSNAT, "egress-snat", d.EgressSNAT, "SNAT pod traffic leaving the cluster to the node IP (namespaces override with the kovn.io/egress-snat annotation)")
	fs.StringVar(&f.NoSNATDestinations, "no-snat-destinations", "", "destination CIDRs pods reach with their own IPs even with egress SNAT on (comma-separated)")
	fs.StringVar(&f.SNATPortRange, "snat-port-range", "", "source ports egress SNAT may use on the node IP, MIN-MAX (default: any)")
}

func (f *GatewayFlags) resolve(g *Gateway, set func(string, func() error)) {
	set("egress-snat", func() error { g.EgressSNAT = f.EgressSNAT; return nil })
	set("no-snat-destinations", func() (e error) { g.NoSNATDestinations, e = parsePrefixes(f.NoSNATDestinations); return })
	set("snat-port-range", func() (e error) { g.SNATPortRange, e = ParsePortRange(f.SNATPortRange); return })
}
