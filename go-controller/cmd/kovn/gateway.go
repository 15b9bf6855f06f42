package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/hostnat"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeagent"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
)

// gatewayFlags are the node agent's gateway settings.
type gatewayFlags struct {
	mode, iface, bridge, nextHop, runDir string
}

func (f *gatewayFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.mode, "gateway-mode", "shared", "shared: the node IP is shared by the host and the node's OVN gateway router on the external bridge; none: no gateway (pods cannot leave the cluster)")
	fs.StringVar(&f.iface, "gateway-interface", "", "uplink NIC to put on the external bridge, moving its IPv4 addresses and routes onto the bridge (empty: the bridge already holds the node IP)")
	fs.StringVar(&f.bridge, "gateway-bridge", "br-ex", "the external bridge")
	fs.StringVar(&f.nextHop, "gateway-nexthop", "", "next hop for pod egress (default: the gateway of the node's default route through the bridge)")
	fs.StringVar(&f.runDir, "ovs-rundir", "/var/run/openvswitch", "ovs-vswitchd's run directory (holds <bridge>.mgmt)")
}

func (f *gatewayFlags) config() (*gateway.Config, error) {
	c := &gateway.Config{Bridge: f.bridge, Interface: f.iface, OVSRunDir: f.runDir}
	if f.nextHop != "" {
		nh, err := netip.ParseAddr(f.nextHop)
		if err != nil || !nh.Is4() {
			return nil, fmt.Errorf("--gateway-nexthop %q: want an IPv4 address", f.nextHop)
		}
		c.NextHop = nh
	}
	return c, nil
}

func (f *gatewayFlags) apply(cfg *nodeagent.Config) error {
	switch f.mode {
	case "none":
		cfg.Gateway = nil
		return nil
	case "shared":
		c, err := f.config()
		cfg.Gateway = c
		return err
	}
	return fmt.Errorf("--gateway-mode %q: want shared or none", f.mode)
}

// newNodeTeardownCommand undoes what the agent did to the node's uplink: the node IP and routes go back to
// the NIC, the external bridge is deleted, and so is the host's NodePort table.
func newNodeTeardownCommand() *cobra.Command {
	var (
		f         gatewayFlags
		ovsRemote string
		hostNetns string
	)
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "give the node IP back to the uplink NIC, delete the external bridge and the host's NodePort table",
		RunE: func(cmd *cobra.Command, _ []string) error {
			gc, err := f.config()
			if err != nil {
				return err
			}
			if gc.HostNS, err = openNetns(hostNetns); err != nil {
				return err
			}
			defer gc.HostNS.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			ovs, err := ovndb.ConnectOVS(ctx, ovndb.Config{Address: ovsRemote})
			if err != nil {
				return err
			}
			defer ovs.Close()
			if err := gateway.Teardown(ctx, ovs, *gc); err != nil {
				return err
			}
			return hostnat.Remove(int(gc.HostNS.Fd()))
		},
	}
	fs := cmd.Flags()
	f.add(fs)
	fs.StringVar(&ovsRemote, "ovs-address", "unix:/var/run/openvswitch/db.sock", "the local Open_vSwitch database")
	fs.StringVar(&hostNetns, "host-netns", "", "network namespace of the node (default: the command's own)")
	_ = cmd.MarkFlagRequired("gateway-interface")
	return cmd
}

func openNetns(path string) (ns.NetNS, error) {
	if path == "" {
		return ns.GetCurrentNS()
	}
	return ns.GetNS(path)
}
