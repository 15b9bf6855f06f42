package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
)

func cidr(s string, host int) config.ClusterCIDR {
	return config.ClusterCIDR{CIDR: netip.MustParsePrefix(s), HostPrefixLen: host}
}

func TestSubnetAllocator(t *testing.T) {
	a := NewSubnetAllocator([]config.ClusterCIDR{cidr("10.244.0.0/22", 24), cidr("10.250.0.0/23", 24)})
	want := []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.250.0.0/24", "10.250.1.0/24"}
	for i, w := range want {
		p, err := a.Allocate(fmt.Sprintf("node%d", i))
		if err != nil || p.String() != w {
			t.Fatalf("allocation %d: got %v %v, want %s", i, p, err, w)
		}
	}
	if p, _ := a.Allocate("node2"); p.String() != "10.244.2.0/24" {
		t.Fatalf("a node keeps its subnet, got %s", p)
	}
	if _, err := a.Allocate("node6"); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	a.Release("node1")
	if p, err := a.Allocate("node6"); err != nil || p.String() != "10.244.1.0/24" {
		t.Fatalf("released subnet not reused: %v %v", p, err)
	}
}

func TestSubnetReserve(t *testing.T) {
	a := NewSubnetAllocator([]config.ClusterCIDR{cidr("10.244.0.0/16", 24)})
	for _, tc := range []struct {
		owner, subnet string
		err           error
	}{
		{"n1", "10.244.5.0/24", nil},
		{"n1", "10.244.5.0/24", nil},           // again: fine
		{"n2", "10.244.5.0/24", ErrInUse},      // someone else's
		{"n2", "10.245.0.0/24", ErrOutOfRange}, // outside the cluster CIDR
		{"n2", "10.244.6.0/25", ErrOutOfRange}, // wrong length
		{"n2", "10.244.6.1/24", ErrOutOfRange}, // not a network address
		{"n1", "10.244.7.0/24", nil},           // moves n1
		{"n3", "10.244.5.0/24", nil},           // n1's old one is free again
	} {
		err := a.Reserve(tc.owner, netip.MustParsePrefix(tc.subnet))
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Fatalf("Reserve(%s, %s) = %v, want %v", tc.owner, tc.subnet, err, tc.err)
		}
	}
	// Allocation skips reserved subnets.
	if p, _ := a.Allocate("n4"); p.String() != "10.244.0.0/24" {
		t.Fatalf("got %s", p)
	}
	a.Reserve("n5", netip.MustParsePrefix("10.244.1.0/24"))
	if p, _ := a.Allocate("n6"); p.String() != "10.244.2.0/24" {
		t.Fatalf("got %s", p)
	}
}

func TestPoolAllocatesLowestFreeSkippingReserved(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.244.1.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Gateway().String() != "10.244.1.1" || p.Management().String() != "10.244.1.2" {
		t.Fatalf("gateway %s management %s", p.Gateway(), p.Management())
	}
	if p.Free() != 4 { // .3 .4 .5 .6
		t.Fatalf("free = %d, want 4", p.Free())
	}
	var got []string
	for i := range 4 {
		ip, err := p.Allocate(fmt.Sprintf("pod%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if fmt.Sprint(got) != "[10.244.1.3 10.244.1.4 10.244.1.5 10.244.1.6]" {
		t.Fatalf("allocated %v", got)
	}
	if _, err := p.Allocate("pod9"); !errors.Is(err, ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	p.Release("pod1")
	if ip, _ := p.Allocate("pod9"); ip.String() != "10.244.1.4" {
		t.Fatalf("freed address not reused: %s", ip)
	}
	if ip, _ := p.Allocate("pod9"); ip.String() != "10.244.1.4" {
		t.Fatalf("an owner keeps its address: %s", ip)
	}
}

func TestPoolReserve(t *testing.T) {
	p, _ := NewPool(netip.MustParsePrefix("10.244.1.0/24"))
	for _, tc := range []struct {
		owner, ip string
		err       error
	}{
		{"a", "10.244.1.10", nil},
		{"a", "10.244.1.10", nil},
		{"b", "10.244.1.10", ErrInUse},
		{"b", "10.244.1.1", ErrReserved},   // gateway
		{"b", "10.244.1.2", ErrReserved},   // management port
		{"b", "10.244.1.0", ErrReserved},   // network
		{"b", "10.244.1.255", ErrReserved}, // broadcast
		{"b", "10.244.2.7", ErrOutOfRange},
		{"a", "10.244.1.11", nil}, // moves a, frees .10
		{"b", "10.244.1.10", nil},
	} {
		err := p.Reserve(tc.owner, netip.MustParseAddr(tc.ip))
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Fatalf("Reserve(%s, %s) = %v, want %v", tc.owner, tc.ip, err, tc.err)
		}
	}
	if o, _ := p.Owner(netip.MustParseAddr("10.244.1.11")); o != "a" {
		t.Fatalf("owner of .11 = %q", o)
	}
	if ip, _ := p.Allocate("c"); ip.String() != "10.244.1.3" {
		t.Fatalf("got %s", ip)
	}
	if p.Free() != 256-4-3 {
		t.Fatalf("free = %d", p.Free())
	}
}

func TestPoolRejectsTinyOrBadSubnets(t *testing.T) {
	for _, s := range []string{"10.0.0.0/30", "10.0.0.0/32", "10.0.0.1/24", "fd00::/64"} {
		if _, err := NewPool(netip.MustParsePrefix(s)); err == nil {
			t.Errorf("NewPool(%s) accepted", s)
		}
	}
}

func TestMACFromIP(t *testing.T) {
	if m := MACFromIP(netip.MustParseAddr("10.244.1.5")).String(); m != "0a:58:0a:f4:01:05" {
		t.Fatalf("got %s", m)
	}
}

func BenchmarkPoolAllocate(b *testing.B) {
	p, _ := NewPool(netip.MustParsePrefix("10.0.0.0/16"))
	i := 0
	for b.Loop() {
		owner := fmt.Sprint(i)
		if _, err := p.Allocate(owner); err != nil {
			b.Fatal(err)
		}
		p.Release(owner)
		i++
	}
}
