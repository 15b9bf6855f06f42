// Package podnet owns the kernel side of a pod's network: the veth pair between the pod's network namespace and
// the node, the pod interface's MAC, addresses, routes and MTU, and the host end's settings for the OVS
// userspace datapath. Everything is done with netlink (and one ethtool ioctl), never by running commands.
package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
)

// Attachment is one pod interface to set up.
type Attachment struct {
	Netns    string // path of the pod's network namespace
	IfName   string // interface name inside the pod, e.g. eth0
	HostName string // host-side veth name (15 characters at most)
	Network  annotations.PodNetwork
	// NoTxChecksum turns off transmit checksum offload inside the pod. The OVS userspace datapath forwards
	// CHECKSUM_PARTIAL packets unchanged, so without it TCP from the pod fails (ping works).
	NoTxChecksum bool
}

// HostVethName derives the host-side veth name from the container ID, as a runtime-unique, readable name.
func HostVethName(containerID string) string {
	if len(containerID) > 15 {
		return containerID[:15]
	}
	return containerID
}

// Result is what Setup made.
type Result struct {
	HostMAC, PodMAC net.HardwareAddr
	PodIndex        int
}

// Setup creates the veth pair and configures both ends. Leftovers of an earlier attempt for the same
// attachment are removed first, so a repeated ADD starts clean. hostNS is the node's namespace.
func Setup(hostNS ns.NetNS, a Attachment) (Result, error) {
	var res Result
	mac, err := a.Network.HardwareAddr()
	if err != nil {
		return res, err
	}
	if err := deleteLink(hostNS, a.HostName); err != nil {
		return res, fmt.Errorf("remove stale host veth %s: %w", a.HostName, err)
	}
	err = ns.WithNetNSPath(a.Netns, func(_ ns.NetNS) error {
		if l, err := netlink.LinkByName(a.IfName); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				return fmt.Errorf("remove stale %s: %w", a.IfName, err)
			}
		}
		hostVeth, podVeth, err := ip.SetupVethWithName(a.IfName, a.HostName, a.Network.MTU, mac.String(), hostNS)
		if err != nil {
			return fmt.Errorf("create veth %s/%s: %w", a.IfName, a.HostName, err)
		}
		res.HostMAC, res.PodMAC, res.PodIndex = hostVeth.HardwareAddr, podVeth.HardwareAddr, podVeth.Index
		return configurePod(a)
	})
	if err != nil {
		_ = deleteLink(hostNS, a.HostName)
		return res, err
	}
	if err := hostNS.Do(func(ns.NetNS) error { return configureHost(a.HostName) }); err != nil {
		_ = Teardown(hostNS, a.Netns, a.IfName, a.HostName)
		return res, err
	}
	return res, nil
}

// configurePod runs inside the pod's namespace: addresses, link up, routes, checksum offload.
func configurePod(a Attachment) error {
	link, err := netlink.LinkByName(a.IfName)
	if err != nil {
		return err
	}
	for _, p := range a.Network.IPs {
		addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w", p, a.IfName, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", a.IfName, err)
	}
	for _, gw := range a.Network.Gateways {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(), Dst: defaultDst(gw)}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("add default route via %s: %w", gw, err)
		}
	}
	for _, rt := range a.Network.Routes {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: rt.NextHop.AsSlice(), Dst: prefixToIPNet(rt.Dest.Masked())}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("add route %s via %s: %w", rt.Dest, rt.NextHop, err)
		}
	}
	if a.NoTxChecksum {
		if err := SetTxChecksum(a.IfName, false); err != nil {
			return fmt.Errorf("turn off tx checksum offload on %s: %w", a.IfName, err)
		}
	}
	return nil
}

// configureHost brings the host end up with ARP and IPv6 off: OVS forwards its frames, and the node's kernel
// must neither answer for it nor take copies of its traffic.
func configureHost(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetARPOff(link); err != nil {
		return fmt.Errorf("arp off on %s: %w", name, err)
	}
	if err := DisableIPv6(name); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// DisableIPv6 turns IPv6 off on an interface of the current namespace.
func DisableIPv6(name string) error { return SetIPv6(name, false) }

// SetIPv6 turns IPv6 on or off on a device (net.ipv6.conf.<name>.disable_ipv6) in the current namespace.
func SetIPv6(name string, on bool) error {
	path := "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6"
	v := "1"
	if on {
		v = "0"
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("set disable_ipv6=%s on %s: %w", v, name, err)
	}
	return nil
}

// Teardown removes the pod interface: the host end when present (which takes its peer along), and the pod end
// when the namespace still exists. Missing pieces are fine: DEL must succeed after a half-done ADD, a deleted
// namespace or a second DEL.
func Teardown(hostNS ns.NetNS, netnsPath, ifName, hostName string) error {
	if err := deleteLink(hostNS, hostName); err != nil {
		return err
	}
	if netnsPath == "" {
		return nil
	}
	err := ns.WithNetNSPath(netnsPath, func(_ ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return nil
		}
		return netlink.LinkDel(l)
	})
	var notExist ns.NSPathNotExistErr
	if errors.As(err, &notExist) || (err != nil && strings.Contains(err.Error(), "no such file")) {
		return nil
	}
	return err
}

// Check verifies that the pod interface exists with the expected MAC and addresses and the host end is up.
func Check(hostNS ns.NetNS, a Attachment) error {
	if err := hostNS.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(a.HostName)
		if err != nil {
			return fmt.Errorf("host veth %s: %w", a.HostName, err)
		}
		if l.Attrs().OperState == netlink.OperDown {
			return fmt.Errorf("host veth %s is down", a.HostName)
		}
		return nil
	}); err != nil {
		return err
	}
	return ns.WithNetNSPath(a.Netns, func(_ ns.NetNS) error {
		l, err := netlink.LinkByName(a.IfName)
		if err != nil {
			return fmt.Errorf("pod interface %s: %w", a.IfName, err)
		}
		if got := l.Attrs().HardwareAddr.String(); got != a.Network.MAC {
			return fmt.Errorf("pod interface %s has MAC %s, want %s", a.IfName, got, a.Network.MAC)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, want := range a.Network.IPs {
			found := false
			for _, have := range addrs {
				found = found || have.IPNet.String() == want.String()
			}
			if !found {
				return fmt.Errorf("pod interface %s lacks address %s", a.IfName, want)
			}
		}
		return nil
	})
}

func deleteLink(hostNS ns.NetNS, name string) error {
	return hostNS.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return err
		}
		return netlink.LinkDel(l)
	})
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func defaultDst(gw netip.Addr) *net.IPNet {
	if gw.Is4() {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}
