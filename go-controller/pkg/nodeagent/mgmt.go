package nodeagent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/ipam"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
)

// runManagementPort waits for the node's subnet, then creates and configures the management port: an OVS
// internal port bound to the node's management LSP, with the subnet's management address and routes to the
// cluster CIDRs through the cluster router, so the node reaches pods and pods reach the node without NAT.
func (a *Agent) runManagementPort(ctx context.Context) error {
	subnet, err := a.waitNodeSubnet(ctx)
	if err != nil || !subnet.IsValid() {
		return err
	}
	pool, err := ipam.NewPool(subnet)
	if err != nil {
		return fmt.Errorf("management port: %w", err)
	}
	ip, gw := pool.Management(), pool.Gateway()
	mac := ipam.MACFromIP(ip)
	name := a.cfg.ManagementPort
	owner := ownership.NewOwner(ownership.KindNode, "", a.cfg.NodeName)
	spec := nodeovs.PortSpec{Name: name, Type: "internal", MAC: mac.String(),
		ExternalIDs: owner.ID("management-port").ExternalIDs(map[string]string{nodeovs.KeyIfaceID: topology.ManagementPort(a.cfg.NodeName)})}
	if err := nodeovs.EnsurePort(ctx, a.ovs, a.cfg.OVS.Bridge, spec); err != nil {
		return fmt.Errorf("management port: %w", err)
	}
	if err := a.hostNS.Do(func(ns.NetNS) error { return a.configureManagement(ctx, name, mac, ip, gw, subnet) }); err != nil {
		return fmt.Errorf("management port %s: %w", name, err)
	}
	// Wait as long as it takes (OVN central or ovn-controller may come up late), saying why meanwhile.
	w := nodeovs.NewInstallWatcher(a.ovs)
	for {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := w.Wait(wctx, name)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		notReady := fmt.Errorf("management port: %w", err)
		a.ready.Store(&notReady)
		a.log.Warn("management port not installed yet; still waiting", "err", err)
	}
	a.ready.Store(nil)
	a.log.Info("management port ready", "interface", name, "ip", ip, "subnet", subnet)
	// Keep it so: if the device loses its address or routes (ovs-vswitchd re-creating the tap, an operator),
	// put them back.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
		if err := a.hostNS.Do(func(ns.NetNS) error { return a.checkManagement(name, ip, subnet) }); err != nil {
			a.log.Warn("management port lost its configuration; restoring it", "interface", name, "err", err)
			if err := a.hostNS.Do(func(ns.NetNS) error { return a.configureManagement(ctx, name, mac, ip, gw, subnet) }); err != nil {
				a.log.Error("restoring the management port failed", "interface", name, "err", err)
			}
		}
	}
}

// checkManagement reports what is missing from the management port: the device, its address, or a route.
func (a *Agent) checkManagement(name string, ip netip.Addr, subnet netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s is down", name)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	found := false
	for _, ad := range addrs {
		found = found || ad.IPNet.String() == netip.PrefixFrom(ip, subnet.Bits()).String()
	}
	if !found {
		return fmt.Errorf("%s has no address %s", name, ip)
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, dst := range a.managementRoutes() {
		ok := false
		for _, r := range routes {
			ok = ok || (r.Dst != nil && r.Dst.String() == dst.String())
		}
		if !ok {
			return fmt.Errorf("no route to %s via %s", dst, name)
		}
	}
	return nil
}

// managementRoutes are the destinations the node reaches through the management port: the pod network, and
// the Service ClusterIPs (load-balanced on the node's switch, so host-network clients use Services too).
func (a *Agent) managementRoutes() []netip.Prefix {
	var out []netip.Prefix
	for _, cc := range a.cfg.Cluster.ClusterCIDRs {
		out = append(out, cc.CIDR)
	}
	return append(out, a.cfg.Cluster.ServiceCIDRs...)
}

// configureManagement runs in the node's namespace.
func (a *Agent) configureManagement(ctx context.Context, name string, mac net.HardwareAddr, ip, gw netip.Addr, subnet netip.Prefix) error {
	var link netlink.Link
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if link, err = netlink.LinkByName(name); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ovs-vswitchd did not create the device within 30s: %w", err)
		}
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set MAC %s: %w", mac, err)
		}
	}
	if mtu := a.cfg.Cluster.PodMTU(); link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU %d: %w", mtu, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("set address %s: %w", addr.IPNet, err)
	}
	if err := podnet.DisableIPv6(name); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	for _, dst := range a.managementRoutes() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(),
			Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s via %s: %w", dst, gw, err)
		}
	}
	if a.cfg.OVS.DatapathType == "netdev" {
		if err := podnet.SetTxChecksum(name, false); err != nil {
			return err
		}
	}
	return nil
}

// waitNodeSubnet watches the agent's own Node until the controller has recorded its subnet.
func (a *Agent) waitNodeSubnet(ctx context.Context) (netip.Prefix, error) {
	f := informers.NewSharedInformerFactoryWithOptions(a.cfg.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String()
	}))
	found := make(chan netip.Prefix, 1)
	check := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		subnet, ok, err := annotations.ParseNodeSubnet(n.Annotations)
		if err != nil {
			a.log.Warn("node subnet annotation unreadable; waiting for the controller to fix it", "err", err)
			return
		}
		if ok {
			select {
			case found <- subnet:
			default:
			}
		}
	}
	inf := f.Core().V1().Nodes().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: check, UpdateFunc: func(_, o any) { check(o) }})
	wctx, cancel := context.WithCancel(ctx)
	f.Start(wctx.Done())
	defer func() { cancel(); f.Shutdown() }() // Shutdown waits for the informer, which stops on cancel
	a.log.Info("waiting for the controller to allocate this node's subnet")
	select {
	case s := <-found:
		return s, nil
	case <-ctx.Done():
		return netip.Prefix{}, nil
	}
}
