// Package ipam allocates kovn's addresses: a subnet per node carved from the cluster CIDRs, and inside each node
// subnet an IP per pod. Allocators are plain in-memory state, rebuilt at start from what Kubernetes annotations
// and the Northbound database record (Reserve), so a restart never hands out an address twice.
package ipam

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
)

// Errors callers tell apart: a full range, an address held by someone else, an address that is not ours to give.
var (
	ErrFull       = errors.New("no free address left")
	ErrInUse      = errors.New("already allocated to another owner")
	ErrOutOfRange = errors.New("outside the managed range")
	ErrReserved   = errors.New("reserved")
)

// SubnetAllocator hands out node subnets from the cluster CIDRs. It is safe for concurrent use.
type SubnetAllocator struct {
	mu      sync.Mutex
	ranges  []config.ClusterCIDR
	byOwner map[string]netip.Prefix
	owners  map[netip.Prefix]string
}

// NewSubnetAllocator returns an allocator over the given cluster CIDRs.
func NewSubnetAllocator(ranges []config.ClusterCIDR) *SubnetAllocator {
	return &SubnetAllocator{ranges: ranges, byOwner: map[string]netip.Prefix{}, owners: map[netip.Prefix]string{}}
}

// Allocate returns owner's subnet, allocating the first free one when it has none.
func (a *SubnetAllocator) Allocate(owner string) (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.byOwner[owner]; ok {
		return p, nil
	}
	for _, r := range a.ranges {
		n := subnetCount(r)
		for i := uint64(0); i < n; i++ {
			p := nthSubnet(r, i)
			if _, taken := a.owners[p]; !taken {
				a.byOwner[owner], a.owners[p] = p, owner
				return p, nil
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("node subnet for %s: %w in %v", owner, ErrFull, a.ranges)
}

// Reserve records that owner holds p (from an annotation read at start). It fails when p is not a node subnet
// of a cluster CIDR, or another owner holds it. A different subnet owner held before is released.
func (a *SubnetAllocator) Reserve(owner string, p netip.Prefix) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.isNodeSubnet(p) {
		return fmt.Errorf("node subnet %s for %s: %w (cluster CIDRs %v)", p, owner, ErrOutOfRange, a.ranges)
	}
	if other, ok := a.owners[p]; ok && other != owner {
		return fmt.Errorf("node subnet %s for %s: %w %s", p, owner, ErrInUse, other)
	}
	if old, ok := a.byOwner[owner]; ok && old != p {
		delete(a.owners, old)
	}
	a.byOwner[owner], a.owners[p] = p, owner
	return nil
}

// Release frees owner's subnet, if any.
func (a *SubnetAllocator) Release(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.byOwner[owner]; ok {
		delete(a.owners, p)
		delete(a.byOwner, owner)
	}
}

// Get returns owner's subnet.
func (a *SubnetAllocator) Get(owner string) (netip.Prefix, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.byOwner[owner]
	return p, ok
}

func (a *SubnetAllocator) isNodeSubnet(p netip.Prefix) bool {
	for _, r := range a.ranges {
		if p.IsValid() && p == p.Masked() && p.Bits() == r.HostPrefixLen && r.CIDR.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func subnetCount(r config.ClusterCIDR) uint64 {
	bits := r.HostPrefixLen - r.CIDR.Bits()
	if bits >= 32 {
		return 1 << 32
	}
	return 1 << bits
}

func nthSubnet(r config.ClusterCIDR, i uint64) netip.Prefix {
	shift := uint(r.CIDR.Addr().BitLen() - r.HostPrefixLen)
	return netip.PrefixFrom(addOffset(r.CIDR.Addr(), new(big.Int).Lsh(new(big.Int).SetUint64(i), shift)), r.HostPrefixLen)
}

func addOffset(a netip.Addr, off *big.Int) netip.Addr {
	n := new(big.Int).SetBytes(a.AsSlice())
	n.Add(n, off)
	buf := make([]byte, a.BitLen()/8)
	n.FillBytes(buf)
	out, _ := netip.AddrFromSlice(buf)
	return out
}

// MACFromIP derives a pod's MAC from its IPv4 address (0a:58 followed by the address), as ovn-kubernetes does:
// unique wherever the IP is, and readable when tracing.
func MACFromIP(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}
