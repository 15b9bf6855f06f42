package nodeagent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/healthcheck"
	"github.com/kovn-io/kovn/go-controller/pkg/hostnat"
	"github.com/kovn-io/kovn/go-controller/pkg/openflow"
	"github.com/kovn-io/kovn/go-controller/pkg/services"
)

// runServices watches Services and EndpointSlices. The gateway, when the node has one, steers the NodePorts and
// external IPs arriving on the NIC to the gateway router; hostnat serves the NodePorts to the node's own host;
// healthcheck serves the health-check node ports of externalTrafficPolicy Local load balancers. The host's
// NAT table is checked every resync period and rewritten when someone flushed it.
func (a *Agent) runServices(ctx context.Context, gw *gateway.Gateway, resync time.Duration) error {
	nat, err := hostnat.Open(int(a.hostNS.Fd()), a.cfg.ManagementPort)
	if err != nil {
		return err
	}
	health := healthcheck.NewServer(a.listenHost, a.log)
	defer health.Close()
	m := newServiceMetrics(a.reg)
	f := informers.NewSharedInformerFactory(a.cfg.Kube, 0)
	svcInf, sliceInf := f.Core().V1().Services(), f.Discovery().V1().EndpointSlices()
	svcChanged, sliceChanged := make(chan struct{}, 1), make(chan struct{}, 1)
	for inf, ch := range map[cache.SharedIndexInformer]chan struct{}{svcInf.Informer(): svcChanged, sliceInf.Informer(): sliceChanged} {
		poke := func(any) {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: poke, UpdateFunc: func(_, cur any) { poke(cur) }, DeleteFunc: poke,
		}); err != nil {
			return err
		}
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		return nil
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	var rules []hostnat.Rule
	natSynced, healthSynced := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-svcChanged:
			natSynced, healthSynced = false, false
		case <-sliceChanged:
			healthSynced = false
		case <-tick.C:
			if err := nat.Check(rules); err != nil && natSynced {
				a.log.Warn("host NodePort table changed behind kovn's back; rewriting it", "err", err)
				natSynced = false
			}
		}
		services, err := svcInf.Lister().List(labels.Everything())
		if err != nil {
			continue
		}
		if !natSynced {
			if gw != nil {
				gw.SetServiceTargets(ServiceTargets(services))
			}
			rules = HostNATRules(services)
			if err := nat.Sync(rules); err != nil {
				m.errors.WithLabelValues("hostnat").Inc()
				a.log.Error("serving NodePorts to the host failed; retrying", "err", err, "rules", len(rules))
			} else {
				natSynced = true
				m.nodePorts.Set(float64(len(rules)))
			}
		}
		if !healthSynced {
			slices, err := sliceInf.Lister().List(labels.Everything())
			if err != nil {
				continue
			}
			if err := health.Sync(healthcheck.Desired(services, slices, a.cfg.NodeName)); err != nil {
				m.errors.WithLabelValues("healthcheck").Inc()
				a.log.Error("serving service health checks failed; retrying", "err", err)
			} else {
				healthSynced = true
			}
			m.healthPorts.Set(float64(len(health.Ports())))
		}
	}
}

type serviceMetrics struct {
	nodePorts, healthPorts prometheus.Gauge
	errors                 *prometheus.CounterVec
}

func newServiceMetrics(reg prometheus.Registerer) serviceMetrics {
	m := serviceMetrics{
		nodePorts: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "kovn", Subsystem: "node", Name: "host_nodeport_rules",
			Help: "NodePort and external-IP rules in the host's nftables table (the node's own host reaching them)"}),
		healthPorts: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "kovn", Subsystem: "node", Name: "healthcheck_ports",
			Help: "health-check node ports served for externalTrafficPolicy Local load balancers"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kovn", Subsystem: "node", Name: "service_sync_errors_total",
			Help: "failed attempts to apply Services on the node"}, []string{"what"}),
	}
	reg.MustRegister(m.nodePorts, m.healthPorts, m.errors)
	return m
}

// listenHost opens a TCP listener on every address of the node's host network namespace.
func (a *Agent) listenHost(port uint16) (net.Listener, error) {
	var ln net.Listener
	err := a.hostNS.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	return ln, err
}

// ServiceTargets returns the NodePorts (TCP and UDP) and external IPs of the services.
func ServiceTargets(list []*corev1.Service) gateway.ServiceTargets {
	var t gateway.ServiceTargets
	for _, s := range list {
		if s.Spec.ClusterIP == corev1.ClusterIPNone || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, p := range s.Spec.Ports {
			proto := transport(p.Protocol)
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

// HostNATRules returns the host's NAT rules for the services: every TCP and UDP NodePort, and every port of
// their IPv4 external IPs and load-balancer ingress IPs (ipMode VIP), to the IPv4 ClusterIP and port.
func HostNATRules(list []*corev1.Service) []hostnat.Rule {
	var out []hostnat.Rule
	for _, s := range list {
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || !ip.Is4() || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		external := services.ExternalIPs(s)
		for _, p := range s.Spec.Ports {
			proto := hostnat.Proto(transport(p.Protocol))
			if proto == 0 || p.Port <= 0 || p.Port > 65535 {
				continue
			}
			target := netip.AddrPortFrom(ip, uint16(p.Port))
			if p.NodePort > 0 && p.NodePort <= 65535 {
				out = append(out, hostnat.Rule{Proto: proto, Port: uint16(p.NodePort), Target: target})
			}
			for _, e := range external {
				out = append(out, hostnat.Rule{Proto: proto, IP: e, Port: uint16(p.Port), Target: target})
			}
		}
	}
	return out
}

// transport is the IP protocol number of a TCP or UDP service port (the default is TCP), 0 for others.
func transport(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolTCP, "":
		return openflow.IPProtoTCP
	case corev1.ProtocolUDP:
		return openflow.IPProtoUDP
	}
	return 0
}
