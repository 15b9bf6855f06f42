package nodeagent

import (
	"context"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/hostnat"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
)

// runServices watches Services. The gateway, when the node has one, steers their NodePorts and external IPs
// arriving on the NIC to the gateway router; hostnat serves their NodePorts to the node's own host. The host's
// table is checked every resync period and rewritten when someone flushed it.
func (a *Agent) runServices(ctx context.Context, gw *gateway.Gateway, resync time.Duration) error {
	nat, err := hostnat.Open(int(a.hostNS.Fd()), a.cfg.ManagementPort)
	if err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(a.cfg.Kube, 0)
	inf := f.Core().V1().Services()
	lister := inf.Lister()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, cur any) { poke(cur) }, DeleteFunc: poke,
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	var rules []hostnat.Rule
	synced := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			synced = false
		case <-tick.C:
			if err := nat.Check(rules); err != nil && synced {
				a.log.Warn("host NodePort table changed behind kovn's back; rewriting it", "err", err)
				synced = false
			}
		}
		if !inf.Informer().HasSynced() {
			cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced)
		}
		list, err := lister.List(labels.Everything())
		if err != nil || synced {
			continue
		}
		if gw != nil {
			gw.SetServiceTargets(ServiceTargets(list))
		}
		rules = HostNodePorts(list)
		if err := nat.Sync(rules); err != nil {
			a.log.Error("serving NodePorts to the host failed; retrying", "err", err, "rules", len(rules))
			continue
		}
		synced = true
	}
}

// ServiceTargets returns the NodePorts (TCP and UDP) and external IPs of the services.
func ServiceTargets(list []*corev1.Service) gateway.ServiceTargets {
	var t gateway.ServiceTargets
	for _, s := range list {
		if s.Spec.ClusterIP == corev1.ClusterIPNone || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, p := range s.Spec.Ports {
			proto := map[corev1.Protocol]uint8{corev1.ProtocolTCP: openflow.IPProtoTCP, "": openflow.IPProtoTCP,
				corev1.ProtocolUDP: openflow.IPProtoUDP}[p.Protocol]
			if p.NodePort != 0 && proto != 0 {
				t.NodePorts = append(t.NodePorts, gateway.NodePort{Proto: proto, Port: uint16(p.NodePort)})
			}
		}
		ips := append([]string{}, s.Spec.ExternalIPs...)
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				t.IPs = append(t.IPs, a)
			}
		}
	}
	return t
}

// HostNodePorts returns a host NAT rule for every TCP and UDP NodePort: to the service's IPv4 ClusterIP and port.
func HostNodePorts(list []*corev1.Service) []hostnat.Rule {
	var out []hostnat.Rule
	for _, s := range list {
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || !ip.Is4() || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, p := range s.Spec.Ports {
			proto := map[corev1.Protocol]hostnat.Proto{corev1.ProtocolTCP: hostnat.TCP, "": hostnat.TCP,
				corev1.ProtocolUDP: hostnat.UDP}[p.Protocol]
			if p.NodePort > 0 && p.NodePort <= 65535 && p.Port > 0 && p.Port <= 65535 && proto != 0 {
				out = append(out, hostnat.Rule{Proto: proto, NodePort: uint16(p.NodePort),
					Target: netip.AddrPortFrom(ip, uint16(p.Port))})
			}
		}
	}
	return out
}
