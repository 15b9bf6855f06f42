package nodeagent

import (
	"context"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
)

// runServiceSteering watches Services and tells the gateway which NodePorts and external IPs arriving on the
// node's NIC belong to its gateway router.
func (a *Agent) runServiceSteering(ctx context.Context, gw *gateway.Gateway) error {
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		if !inf.Informer().HasSynced() {
			cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced)
		}
		list, err := lister.List(labels.Everything())
		if err != nil {
			continue
		}
		gw.SetServiceTargets(ServiceTargets(list))
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
