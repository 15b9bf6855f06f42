// Package config holds the cluster-wide network settings kovn runs with: the pod network (cluster CIDRs and the
// size of each node's subnet), the service network, the join subnet between routers, encapsulation and MTU.
// A Cluster value is built once from flags (and optionally a JSON file), validated, and passed to whatever needs
// it; nothing reads settings from globals.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Encapsulation types ovn-controller can tunnel with.
const (
	EncapGeneve = "geneve"
	EncapVXLAN  = "vxlan"
)

// Overhead of each encapsulation over IPv4, in bytes (outer IP + UDP + tunnel header, with Geneve options room).
var encapOverhead = map[string]int{EncapGeneve: 100, EncapVXLAN: 50}

// ClusterCIDR is one pod network range and the prefix length of the subnet each node gets from it.
type ClusterCIDR struct {
	CIDR          netip.Prefix `json:"cidr"`
	HostPrefixLen int          `json:"hostPrefixLength"`
}

func (c ClusterCIDR) String() string { return fmt.Sprintf("%s/%d", c.CIDR, c.HostPrefixLen) }

// Cluster is the cluster-wide network configuration.
type Cluster struct {
	// ClusterCIDRs are the pod network ranges, each with the size of the per-node subnets carved from it.
	ClusterCIDRs []ClusterCIDR `json:"clusterCIDRs"`
	// ServiceCIDRs are the ranges Service ClusterIPs come from (routed to the load balancers, never allocated).
	ServiceCIDRs []netip.Prefix `json:"serviceCIDRs"`
	// JoinSubnet addresses the links between the cluster router and the per-node gateway routers.
	JoinSubnet netip.Prefix `json:"joinSubnet"`
	// Encap is the tunnel type between nodes: geneve (default) or vxlan.
	Encap string `json:"encap"`
	// MTU is the underlay (node NIC) MTU; pods get MTU minus the encapsulation overhead.
	MTU int `json:"mtu"`
	// Gateway is how pod traffic leaves the cluster.
	Gateway Gateway `json:"gateway"`
}

// Default returns the configuration kovn uses when nothing is set.
func Default() Cluster {
	return Cluster{
		ClusterCIDRs: []ClusterCIDR{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), HostPrefixLen: 24}},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		JoinSubnet:   netip.MustParsePrefix("100.64.0.0/16"),
		Encap:        EncapGeneve,
		MTU:          1500,
		Gateway:      Gateway{EgressSNAT: true},
	}
}

// PodMTU is the MTU pods get: the underlay MTU minus the encapsulation overhead.
func (c Cluster) PodMTU() int { return c.MTU - encapOverhead[c.Encap] }

// Validate reports every problem with the configuration at once.
func (c Cluster) Validate() error {
	var errs []error
	if len(c.ClusterCIDRs) == 0 {
		errs = append(errs, errors.New("no cluster CIDR"))
	}
	var all []netip.Prefix
	for _, cc := range c.ClusterCIDRs {
		if !cc.CIDR.IsValid() || cc.CIDR != cc.CIDR.Masked() {
			errs = append(errs, fmt.Errorf("cluster CIDR %s is not a network address", cc.CIDR))
			continue
		}
		if !cc.CIDR.Addr().Is4() {
			errs = append(errs, fmt.Errorf("cluster CIDR %s: only IPv4 is supported", cc.CIDR))
		}
		if cc.HostPrefixLen <= cc.CIDR.Bits() || cc.HostPrefixLen > cc.CIDR.Addr().BitLen()-2 {
			errs = append(errs, fmt.Errorf("cluster CIDR %s: node subnet length /%d must be longer than /%d and leave room for hosts",
				cc.CIDR, cc.HostPrefixLen, cc.CIDR.Bits()))
		}
		all = append(all, cc.CIDR)
	}
	for _, s := range c.ServiceCIDRs {
		if !s.IsValid() || s != s.Masked() {
			errs = append(errs, fmt.Errorf("service CIDR %s is not a network address", s))
		}
		all = append(all, s)
	}
	if !c.JoinSubnet.IsValid() || c.JoinSubnet != c.JoinSubnet.Masked() || c.JoinSubnet.Bits() > 29 {
		errs = append(errs, fmt.Errorf("join subnet %s must be a network address of /29 or larger", c.JoinSubnet))
	} else {
		all = append(all, c.JoinSubnet)
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].IsValid() && all[j].IsValid() && all[i].Overlaps(all[j]) {
				errs = append(errs, fmt.Errorf("ranges %s and %s overlap", all[i], all[j]))
			}
		}
	}
	if _, ok := encapOverhead[c.Encap]; !ok {
		errs = append(errs, fmt.Errorf("encap %q: want geneve or vxlan", c.Encap))
	} else if c.MTU < 576+encapOverhead[c.Encap] || c.MTU > 9216 {
		errs = append(errs, fmt.Errorf("MTU %d: want between %d and 9216", c.MTU, 576+encapOverhead[c.Encap]))
	}
	errs = append(errs, c.Gateway.validate()...)
	if c.JoinSubnet.IsValid() && c.JoinSubnet.Bits() <= 29 {
		// Every node subnet gets a gateway router address on the join subnet (see topology.GatewayJoinIP).
		if need, have := c.NodeSubnetCount()+1, uint64(1)<<(32-c.JoinSubnet.Bits())-2; need > have {
			errs = append(errs, fmt.Errorf("join subnet %s has %d addresses; the cluster CIDRs need %d (one per node subnet and the cluster router)",
				c.JoinSubnet, have, need))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid cluster network config: %w", errors.Join(errs...))
	}
	return nil
}

// ParseClusterCIDRs parses "10.244.0.0/16/24,10.245.0.0/16" (a missing host length defaults to 24).
func ParseClusterCIDRs(s string) ([]ClusterCIDR, error) {
	var out []ClusterCIDR
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host := 24
		if parts := strings.Split(item, "/"); len(parts) == 3 {
			n, err := strconv.Atoi(parts[2])
			if err != nil {
				return nil, fmt.Errorf("cluster CIDR %q: bad node subnet length: %w", item, err)
			}
			host, item = n, parts[0]+"/"+parts[1]
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("cluster CIDR %q: %w", item, err)
		}
		out = append(out, ClusterCIDR{CIDR: p, HostPrefixLen: host})
	}
	return out, nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Flags are the command-line form of Cluster; Resolve turns them into a validated Cluster.
type Flags struct {
	File         string
	ClusterCIDRs string
	ServiceCIDRs string
	JoinSubnet   string
	Encap        string
	MTU          int
	Gateway      GatewayFlags
}

// AddFlags registers the cluster network flags. Flags override the file given by --config.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.StringVar(&f.File, "config", "", "JSON file with the cluster network config (flags given explicitly override it)")
	fs.StringVar(&f.ClusterCIDRs, "cluster-cidrs", d.ClusterCIDRs[0].String(), "pod network ranges with per-node subnet length, e.g. 10.244.0.0/16/24 (comma-separated)")
	fs.StringVar(&f.ServiceCIDRs, "service-cidrs", d.ServiceCIDRs[0].String(), "Service ClusterIP ranges (comma-separated)")
	fs.StringVar(&f.JoinSubnet, "join-subnet", d.JoinSubnet.String(), "subnet linking the cluster router and the node gateway routers")
	fs.StringVar(&f.Encap, "encap", d.Encap, "tunnel type between nodes: geneve or vxlan")
	fs.IntVar(&f.MTU, "mtu", d.MTU, "underlay MTU; pods get this minus the encapsulation overhead")
	f.Gateway.addFlags(fs, d.Gateway)
}

// Resolve builds the Cluster config: defaults, then the file, then the flags that were set explicitly.
func (f *Flags) Resolve(fs *pflag.FlagSet) (Cluster, error) {
	c := Default()
	if f.File != "" {
		data, err := os.ReadFile(f.File)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return c, fmt.Errorf("parse config %s: %w", f.File, err)
		}
	}
	var err error
	set := func(name string, apply func() error) {
		if err == nil && (f.File == "" || fs.Changed(name)) {
			if e := apply(); e != nil {
				err = fmt.Errorf("--%s: %w", name, e)
			}
		}
	}
	set("cluster-cidrs", func() (e error) { c.ClusterCIDRs, e = ParseClusterCIDRs(f.ClusterCIDRs); return })
	set("service-cidrs", func() (e error) { c.ServiceCIDRs, e = parsePrefixes(f.ServiceCIDRs); return })
	set("join-subnet", func() (e error) { c.JoinSubnet, e = netip.ParsePrefix(f.JoinSubnet); return })
	set("encap", func() error { c.Encap = f.Encap; return nil })
	set("mtu", func() error { c.MTU = f.MTU; return nil })
	f.Gateway.resolve(&c.Gateway, set)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}
