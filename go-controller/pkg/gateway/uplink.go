package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
)

// addressing is what the node's IP configuration on one device is: its IPv4 addresses and the routes through it
// that the kernel did not derive from an address.
type addressing struct {
	addrs  []netlink.Addr
	routes []netlink.Route
}

// readAddressing returns the global IPv4 addresses of link and the IPv4 routes through it other than the
// kernel's own (connected and local routes come back with the address).
func readAddressing(link netlink.Link) (addressing, error) {
	var a addressing
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return a, fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) {
			a.addrs = append(a.addrs, ad)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return a, fmt.Errorf("routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		if r.Protocol != unix.RTPROT_KERNEL {
			a.routes = append(a.routes, r)
		}
	}
	return a, nil
}

// moveAddressing moves the addresses and routes from one device to another: the destination gets the
// addresses, then the routes (a replace moves a route), and only then the source loses its addresses, so a
// failure half-way never leaves the node without its IP or its routes.
func moveAddressing(from, to netlink.Link, a addressing) error {
	for _, ad := range a.addrs {
		n := netlink.Addr{IPNet: ad.IPNet}
		if err := netlink.AddrReplace(to, &n); err != nil {
			return fmt.Errorf("add %s to %s: %w", ad.IPNet, to.Attrs().Name, err)
		}
	}
	for _, r := range a.routes {
		r.LinkIndex = to.Attrs().Index
		r.ILinkIndex = 0
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("route %s via %s on %s: %w", r.Dst, r.Gw, to.Attrs().Name, err)
		}
	}
	for _, ad := range a.addrs {
		n := netlink.Addr{IPNet: ad.IPNet}
		if err := netlink.AddrDel(from, &n); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove %s from %s: %w", ad.IPNet, from.Attrs().Name, err)
		}
	}
	return nil
}

// waitMAC waits for a device to exist with the given MAC (ovs-vswitchd sets a bridge's hwaddr after creating it).
func waitMAC(name, mac string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := netlink.LinkByName(name)
		if err == nil && l.Attrs().HardwareAddr.String() == mac {
			return l, nil
		}
		if time.Now().After(deadline) {
			got := "no device"
			if err == nil {
				got = l.Attrs().HardwareAddr.String()
			}
			return nil, fmt.Errorf("%s did not get MAC %s within %s (%s)", name, mac, timeout, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// uplinkIP is the node IP: the NIC's first address, or the bridge's when an earlier run has moved it there.
func uplinkIP(nic addressing, bridge string) (netip.Addr, error) {
	if len(nic.addrs) > 0 {
		return prefixOf(nic.addrs[0].IPNet).Addr(), nil
	}
	if br, err := netlink.LinkByName(bridge); err == nil {
		if a, err := readAddressing(br); err == nil && len(a.addrs) > 0 {
			return prefixOf(a.addrs[0].IPNet).Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("neither the uplink nor %s has an IPv4 address: the node IP is unknown", bridge)
}

// waitLink waits for ovs-vswitchd to create a bridge's or port's device.
func waitLink(name string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := netlink.LinkByName(name)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("device %s did not appear within %s: %w", name, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prepareUplink makes the NIC a pure bridge port. On the userspace datapath the NIC stays alive in the kernel,
// which must neither answer ARP nor do IPv6 on it, or it would answer for the bridge.
func prepareUplink(nic netlink.Link, netdev bool) error {
	if netdev {
		if err := netlink.LinkSetARPOff(nic); err != nil {
			return fmt.Errorf("arp off on %s: %w", nic.Attrs().Name, err)
		}
		if err := podnet.DisableIPv6(nic.Attrs().Name); err != nil {
			return err
		}
	}
	return netlink.LinkSetUp(nic)
}

// nodeAddress returns the node IP on the bridge (its first global IPv4 address) and the next hop of the
// default route through it, if any.
func nodeAddress(bridge netlink.Link) (netip.Prefix, netip.Addr, error) {
	a, err := readAddressing(bridge)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	if len(a.addrs) == 0 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s has no IPv4 address", bridge.Attrs().Name)
	}
	ip := prefixOf(a.addrs[0].IPNet)
	var nh netip.Addr
	for _, r := range a.routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw != nil {
			nh, _ = netip.AddrFromSlice(r.Gw.To4())
			break
		}
	}
	return ip, nh, nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

// ensureAddress puts the node IP (and the default route through the next hop) back on the bridge when its
// device lost them: ovs-vswitchd re-creates a userspace bridge's device empty when it restarts. It runs in the
// host namespace.
func (g *Gateway) ensureAddress() error {
	br, err := netlink.LinkByName(g.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("external bridge device: %w", err)
	}
	a, err := readAddressing(br)
	if err != nil {
		return err
	}
	for _, ad := range a.addrs {
		if prefixOf(ad.IPNet) == g.info.IP {
			return nil
		}
	}
	g.log.Warn("the external bridge lost the node IP (ovs-vswitchd restarted?); restoring it", "ip", g.info.IP)
	if mac, err := net.ParseMAC(g.info.MAC); err == nil && br.Attrs().HardwareAddr.String() != g.info.MAC {
		_ = netlink.LinkSetHardwareAddr(br, mac)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: g.info.IP.Addr().AsSlice(), Mask: net.CIDRMask(g.info.IP.Bits(), 32)}}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("restore %s on %s: %w", g.info.IP, g.cfg.Bridge, err)
	}
	if g.info.NextHop.IsValid() && !g.cfg.NextHop.IsValid() {
		r := &netlink.Route{LinkIndex: br.Attrs().Index, Gw: g.info.NextHop.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("restore the default route via %s: %w", g.info.NextHop, err)
		}
	}
	return nil
}
