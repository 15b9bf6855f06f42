// Package namedns manages the named network namespaces (/var/run/netns/NAME) the sandbox uses for its
// underlay, nodes and pods: create (with loopback up), delete, list, and run code inside one.
package namedns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Path returns the path of a named namespace.
func Path(name string) string { return "/var/run/netns/" + name }

// Create creates a named namespace with loopback up, as a container runtime's loopback plugin leaves it. An
// existing one of that name is reused.
func Create(name string) error {
	if _, err := os.Stat(Path(name)); err == nil {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	defer h.Close()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if serr := netns.Set(orig); serr != nil {
		return fmt.Errorf("return to the original netns: %w", serr)
	}
	return err
}

// Delete removes a named namespace; a missing one is fine.
func Delete(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// List returns the named namespaces whose names start with prefix.
func List(prefix string) []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Do runs fn with the calling thread in the named namespace.
func Do(name string, fn func() error) error {
	return ns.WithNetNSPath(Path(name), func(ns.NetNS) error { return fn() })
}
