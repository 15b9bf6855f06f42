package ipam

import (
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
)

// Pool hands out the addresses of one node subnet. The network address, the first host (the gateway: the
// cluster router's port), the second (the node's management port) and the broadcast address are never given to
// pods. Allocation takes the lowest free address. It is safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	subnet  netip.Prefix
	size    int      // number of addresses in the subnet
	used    []uint64 // bitset over offsets from the network address
	owners  map[int]string
	byOwner map[string]int
}

// Offsets inside every node subnet.
const (
	GatewayOffset    = 1
	ManagementOffset = 2
	firstPodOffset   = 3
)

// NewPool returns a pool over an IPv4 node subnet.
func NewPool(subnet netip.Prefix) (*Pool, error) {
	if !subnet.Addr().Is4() || subnet.Bits() > 29 || subnet != subnet.Masked() {
		return nil, fmt.Errorf("node subnet %s: want an IPv4 network of /29 or larger", subnet)
	}
	size := 1 << (32 - subnet.Bits())
	p := &Pool{subnet: subnet, size: size, used: make([]uint64, (size+63)/64), owners: map[int]string{}, byOwner: map[string]int{}}
	for _, off := range []int{0, GatewayOffset, ManagementOffset, size - 1} {
		p.set(off)
	}
	return p, nil
}

// Subnet returns the pool's subnet.
func (p *Pool) Subnet() netip.Prefix { return p.subnet }

// Gateway returns the subnet's gateway address (the cluster router's port on the node switch).
func (p *Pool) Gateway() netip.Addr { return p.at(GatewayOffset) }

// Management returns the address of the node's management port.
func (p *Pool) Management() netip.Addr { return p.at(ManagementOffset) }

// Allocate returns owner's address, allocating the lowest free one when it has none.
func (p *Pool) Allocate(owner string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if off, ok := p.byOwner[owner]; ok {
		return p.at(off), nil
	}
	for w, word := range p.used {
		if word == ^uint64(0) {
			continue
		}
		off := w*64 + bits.TrailingZeros64(^word)
		if off >= p.size {
			break
		}
		p.take(off, owner)
		return p.at(off), nil
	}
	return netip.Addr{}, fmt.Errorf("pod IP for %s in %s: %w", owner, p.subnet, ErrFull)
}

// Reserve gives ip to owner: a requested static IP, or one recorded in an annotation read at start. It fails
// when ip is outside the subnet, reserved, or held by another owner. An address owner held before is released.
func (p *Pool) Reserve(owner string, ip netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	off, err := p.offset(ip)
	if err != nil {
		return fmt.Errorf("pod IP %s for %s: %w", ip, owner, err)
	}
	if other, ok := p.owners[off]; ok {
		if other == owner {
			return nil
		}
		return fmt.Errorf("pod IP %s for %s: %w %s", ip, owner, ErrInUse, other)
	}
	if p.isSet(off) {
		return fmt.Errorf("pod IP %s for %s: %w (network, gateway, management or broadcast address of %s)", ip, owner, ErrReserved, p.subnet)
	}
	if old, ok := p.byOwner[owner]; ok {
		p.free(old)
	}
	p.take(off, owner)
	return nil
}

// Release frees owner's address, if any.
func (p *Pool) Release(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if off, ok := p.byOwner[owner]; ok {
		p.free(off)
	}
}

// Get returns owner's address.
func (p *Pool) Get(owner string) (netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	off, ok := p.byOwner[owner]
	if !ok {
		return netip.Addr{}, false
	}
	return p.at(off), true
}

// Owner returns who holds ip.
func (p *Pool) Owner(ip netip.Addr) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	off, err := p.offset(ip)
	if err != nil {
		return "", false
	}
	o, ok := p.owners[off]
	return o, ok
}

// Free returns how many addresses are left for pods.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, w := range p.used {
		n += bits.OnesCount64(^w)
	}
	return n - (len(p.used)*64 - p.size)
}

func (p *Pool) offset(ip netip.Addr) (int, error) {
	if !p.subnet.Contains(ip) {
		return 0, fmt.Errorf("%w: not in %s", ErrOutOfRange, p.subnet)
	}
	a, b := ip.As4(), p.subnet.Addr().As4()
	return int(be32(a) - be32(b)), nil
}

func (p *Pool) at(off int) netip.Addr {
	b := p.subnet.Addr().As4()
	v := be32(b) + uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (p *Pool) set(off int)        { p.used[off/64] |= 1 << (off % 64) }
func (p *Pool) isSet(off int) bool { return p.used[off/64]&(1<<(off%64)) != 0 }

func (p *Pool) take(off int, owner string) {
	p.set(off)
	p.owners[off], p.byOwner[owner] = owner, off
}

func (p *Pool) free(off int) {
	p.used[off/64] &^= 1 << (off % 64)
	delete(p.byOwner, p.owners[off])
	delete(p.owners, off)
}
