package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
)

// The tests in this file reproduce bugs found in the package (all fixed): a first Setup racing ovs-vswitchd's
// configuration of the new bridge, a non-deterministic uplink choice, IPv6 left off on the NIC by Teardown.

// TestSetupRacesVswitchd: a first Setup (a new br-ex) must leave br-ex with the derived MAC, the node IP and
// all its routes, Info().MAC equal to that MAC, and eth0 with NOARP. Before Setup waited for ovs-vswitchd to
// finish configuring the new bridge, a few percent of the time ovs-vswitchd, after Setup moved the addressing,
// took the br-ex tap down to set its MAC (the kernel flushed the routes through it, and Info() reported the
// tap's random MAC, or moving a route failed with "network is unreachable"), or rewrote eth0's flags from its
// stale copy (NOARP cleared). Each round sets up a new bridge and tears it down.
func TestSetupRacesVswitchd(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	const rounds = 20
	var failures []string
	for i := range rounds {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		g, err := Setup(ctx, tn.OVS, tn.config())
		cancel()
		switch {
		case err != nil:
			failures = append(failures, fmt.Sprintf("round %d: Setup: %v", i, err))
		default:
			time.Sleep(100 * time.Millisecond)
			b, e := tn.link("br-ex"), tn.link("eth0")
			var what []string
			if g.Info().MAC != bridgeMAC {
				what = append(what, "Info().MAC "+g.Info().MAC)
			}
			if !slices.Equal(b.Routes, addressed) {
				what = append(what, fmt.Sprintf("br-ex routes %v", b.Routes))
			}
			if !e.NoARP {
				what = append(what, "eth0 answers ARP")
			}
			if what != nil {
				failures = append(failures, fmt.Sprintf("round %d: %s", i, strings.Join(what, ", ")))
			}
		}
		// Start over from the node as its OS configured it.
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		err = Teardown(ctx, tn.OVS, tn.config())
		cancel()
		if err != nil {
			t.Fatalf("round %d: Teardown: %v", i, err)
		}
		eventually(t, 10*time.Second, "br-ex gone", func() (bool, string) { return !tn.link("br-ex").Exists, "" })
		e := tn.link("eth0")
		if e.NoARP {
			failures = append(failures, fmt.Sprintf("round %d: eth0 has NOARP after Teardown", i))
		}
		if !slices.Equal(e.Addrs, []string{nodeIP}) || !slices.Equal(e.Routes, addressed) {
			// A lost route cannot come back: put it back for the next round.
			tn.exec("ip", "addr", "replace", nodeIP, "dev", "eth0")
			tn.exec("ip", "route", "replace", "default", "via", routerIP)
			tn.exec("ip", "route", "replace", farNet, "via", routerIP)
		}
	}
	if failures != nil {
		t.Errorf("%d of %d first Setups went wrong:\n%s", len(failures), rounds, strings.Join(failures, "\n"))
	}
}

// TestPortsWithTwoUplinkCandidates: with Interface empty, ports takes any interface of type "" as the NIC;
// with two of them on the bridge (an OVS bond's members, or any other plain port) it picks one at random on
// every call, so RunFlows rewrites the steering every interval and the host's traffic leaves by either.
func TestPortsWithTwoUplinkCandidates(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	tn.setup(tn.config())
	tn.addUplink("eth9", 9, false)
	if err := nodeovs.EnsurePort(context.Background(), tn.OVS, "br-ex", nodeovs.PortSpec{Name: "eth9"}); err != nil {
		t.Fatal(err)
	}
	tn.ofport("eth9")
	cfg := tn.config()
	cfg.Interface = ""
	g := tn.setup(cfg)
	seen := map[string]bool{}
	for range 50 {
		p, err := g.ports()
		seen[fmt.Sprintf("%+v %v", p, err)] = true
	}
	if len(seen) != 1 {
		t.Errorf("ports() is not deterministic: %v", seen)
	}
}

// TestTeardownRestoresIPv6: Setup disables IPv6 on the NIC (userspace datapath); Teardown gives it back
// ARP but not IPv6, so the node's NIC stays without IPv6 (link-local address, SLAAC) after a teardown.
func TestTeardownRestoresIPv6(t *testing.T) {
	tn := startNode(t)
	tn.addUplink("eth0", 0, true)
	before := tn.ipv6Disabled("eth0")
	tn.setup(tn.config())
	if err := Teardown(context.Background(), tn.OVS, tn.config()); err != nil {
		t.Fatal(err)
	}
	if after := tn.ipv6Disabled("eth0"); after != before {
		t.Errorf("eth0 disable_ipv6: %s before Setup, %s after Teardown", before, after)
	}
}
