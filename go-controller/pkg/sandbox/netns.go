package sandbox

import (
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// handle returns a netlink handle for a named namespace ("" for the current one).
func handle(nsName string) (*netlink.Handle, error) {
	if nsName == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", nsName, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// veth creates a veth pair with one end (aName) in namespace aNS and the other (bName) in bNS ("" = current).
func veth(aNS, aName, bNS, bName string, mtu int) error {
	h, err := handle("")
	if err != nil {
		return err
	}
	defer h.Close()
	tmpA, tmpB := "ksbtmp"+randSuffix(), "ksbtmp"+randSuffix()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = tmpA, mtu
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: tmpB}); err != nil {
		return fmt.Errorf("veth %s/%s: %w", aName, bName, err)
	}
	if err := moveAndRename(h, tmpA, aNS, aName); err != nil {
		return err
	}
	return moveAndRename(h, tmpB, bNS, bName)
}

func moveAndRename(h *netlink.Handle, tmp, nsName, name string) error {
	l, err := h.LinkByName(tmp)
	if err != nil {
		return err
	}
	target := h
	if nsName != "" {
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			return err
		}
		defer ns.Close()
		if err := h.LinkSetNsFd(l, int(ns)); err != nil {
			return fmt.Errorf("move %s to %s: %w", name, nsName, err)
		}
		if target, err = netlink.NewHandleAt(ns); err != nil {
			return err
		}
		defer target.Close()
		if l, err = target.LinkByName(tmp); err != nil {
			return err
		}
	}
	if err := target.LinkSetName(l, name); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, name, err)
	}
	return nil
}

// setUp brings a link up, optionally attaching it to a bridge (master) and giving it an address.
func setUp(nsName, name, master, cidr string) error {
	h, err := handle(nsName)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", name, nsName, err)
	}
	if master != "" {
		br, err := h.LinkByName(master)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", name, master, err)
		}
	}
	if cidr != "" {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return err
		}
		if err := h.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", cidr, name, err)
		}
	}
	return h.LinkSetUp(l)
}

// bridge creates a Linux bridge in a namespace.
func bridge(nsName, name string) error {
	h, err := handle(nsName)
	if err != nil {
		return err
	}
	defer h.Close()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !os.IsExist(err) {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	return setUp(nsName, name, "", "")
}

// deleteLink removes a link from the current namespace, if it exists.
func deleteLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

func randSuffix() string {
	b := make([]byte, 4)
	f, err := os.Open("/dev/urandom")
	if err == nil {
		_, _ = f.Read(b)
		f.Close()
	}
	return fmt.Sprintf("%x", b)
}

// defaultRoute routes everything not on a link through gw, out of dev.
func defaultRoute(nsName, dev, gw string) error {
	h, err := handle(nsName)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", dev, nsName, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		return fmt.Errorf("default route via %s in %s: %w", gw, nsName, err)
	}
	return nil
}
