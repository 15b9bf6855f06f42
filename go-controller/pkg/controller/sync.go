package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// maxOpsPerTxn bounds the size of the full sync's transactions.
const maxOpsPerTxn = 5000

// fullSync runs once before the workers: it makes the cluster rows exist, rebuilds IPAM from node and pod
// annotations (and from NB for pods whose annotation is missing), deletes every kovn-owned row whose owner is
// gone, and sets every namespace address set to exactly its pods' IPs. With nothing changed it writes nothing.
func (c *Controller) fullSync(ctx context.Context) error {
	if err := c.ensureCluster(ctx); err != nil {
		return err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if subnet, ok, err := annotations.ParseNodeSubnet(n.Annotations); err == nil && ok {
			if c.subnets.Reserve(n.Name, subnet) == nil {
				_, _ = c.setPool(n.Name, subnet)
			}
		}
	}
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	nsIPs := map[string][]string{}
	for _, p := range pods {
		if !networked(p) {
			continue
		}
		if ip, ok := c.restorePodIP(p); ok {
			nsIPs[p.Namespace] = append(nsIPs[p.Namespace], ip.String())
		}
	}
	if err := c.peers.rebuild(c); err != nil {
		return err
	}
	// Peer address sets are recomputed: pods may have come, gone or changed labels while kovn was down.
	for _, p := range c.peers.snapshot() {
		c.peerQ.Add(p.Key())
	}
	if err := c.removeStale(ctx); err != nil {
		return err
	}
	// Every namespace's default-deny groups are recomputed (policies deleted while kovn was down).
	if nss, err := c.namespaces.List(labels.Everything()); err == nil {
		for _, ns := range nss {
			c.npQ.Add(ns.Name + "/" + isolationPolicy)
		}
	}
	if err := c.loadServiceLBIndex(ctx); err != nil {
		return err
	}
	return c.syncAddressSets(ctx, nsIPs)
}

// ensureCluster makes the cluster router and the join switch exist.
func (c *Controller) ensureCluster(ctx context.Context) error {
	t := topology.ForCluster(c.cfg.Cluster)
	var ops []ovsdb.Operation
	steps := []func() ([]ovsdb.Operation, error){
		func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, t.Router, &t.Router.ExternalIDs) },
		func() ([]ovsdb.Operation, error) {
			return nbops.CreateOrUpdate(c.nb, t.JoinSwitch, &t.JoinSwitch.ExternalIDs)
		},
		func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, t.RouterJoinPort) },
		func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, t.NoSNATDestinations) },
		func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, t.LBGroup, &t.LBGroup.Name) },
		func() ([]ovsdb.Operation, error) {
			meter, band := topology.ForACLLogMeter(c.cfg.ACLLogRate)
			o, err := nbops.CreateOrUpdate(c.nb, band)
			if err != nil {
				return nil, err
			}
			meter.Bands = []string{band.UUID}
			m, err := nbops.CreateOrUpdate(c.nb, meter)
			return append(o, m...), err
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, t.Router, &t.Router.LoadBalancerGroup, []string{t.LBGroup.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, t.Router, &t.Router.Ports, []string{t.RouterJoinPort.UUID})
		},
		func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, t.JoinRouterPort) },
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, t.JoinSwitch, &t.JoinSwitch.Ports, []string{t.JoinRouterPort.UUID})
		},
	}
	for _, step := range steps {
		o, err := step()
		if err != nil {
			return fmt.Errorf("cluster topology: %w", err)
		}
		ops = append(ops, o...)
	}
	return c.apply(ctx, "cluster topology", ops)
}

// restorePodIP marks a networked pod's IP as taken: the one its annotation records, or the one its port in NB
// carries when the annotation is missing. Conflicts are left for the pod's reconcile to report.
func (c *Controller) restorePodIP(p *corev1.Pod) (netip.Addr, bool) {
	pool := c.pool(p.Spec.NodeName)
	if pool == nil {
		return netip.Addr{}, false
	}
	key := p.Namespace + "/" + p.Name
	var ip netip.Addr
	if net, ok, err := annotations.ParsePodNetwork(p.Annotations); err == nil && ok {
		ip = net.IPs[0].Addr()
	} else if err == nil {
		lsp, _ := nbops.Lookup(c.nb, &nbdb.LogicalSwitchPort{Name: topology.PodPort(p.Namespace, p.Name)})
		if lsp == nil || len(lspIPs(lsp)) == 0 {
			return netip.Addr{}, false
		}
		ip, _ = netip.ParseAddr(lspIPs(lsp)[0])
	}
	if !ip.IsValid() || pool.Reserve(key, ip) != nil {
		return netip.Addr{}, false
	}
	return ip, true
}

// removeStale deletes every kovn-owned row whose owner no longer exists (or, for a pod, no longer has a network).
// Rows of kinds no controller here manages yet are left alone.
func (c *Controller) removeStale(ctx context.Context) error {
	stale, err := nbops.ListOwned(c.nb, func(id ownership.ID) bool { return !c.ownerExists(id.Owner) })
	if err != nil {
		return err
	}
	if len(stale) == 0 {
		return nil
	}
	c.log.Info("removing stale NB rows", "rows", len(stale))
	for chunk := range slices.Chunk(stale, maxOpsPerTxn/4) {
		ops, err := nbops.DeleteRows(c.nb, chunk)
		if err != nil {
			return err
		}
		if err := c.apply(ctx, "remove stale rows", ops); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) ownerExists(o ownership.Owner) bool {
	switch o.Kind {
	case ownership.KindNode:
		_, err := c.nodes.Get(o.Key)
		return err == nil
	case ownership.KindNamespace:
		_, err := c.namespaces.Get(o.Key)
		return err == nil
	case ownership.KindService:
		ns, name, _ := cache.SplitMetaNamespaceKey(o.Key)
		_, err := c.services.Services(ns).Get(name)
		return err == nil
	case ownership.KindNetworkPolicy:
		ns, name, _ := cache.SplitMetaNamespaceKey(o.Key)
		np, err := c.policy(ns, name)
		return err != nil || np != nil
	case ownership.KindPolicyPeer:
		return c.peers.used(o.Key)
	case ownership.KindPod:
		ns, name, _ := cache.SplitMetaNamespaceKey(o.Key)
		p, err := c.pods.Pods(ns).Get(name)
		return err == nil && networked(p)
	default:
		return true
	}
}

// syncAddressSets sets every namespace's address set to exactly the given IPs.
func (c *Controller) syncAddressSets(ctx context.Context, nsIPs map[string][]string) error {
	namespaces, err := c.namespaces.List(labels.Everything())
	if err != nil {
		return err
	}
	var ops []ovsdb.Operation
	for _, ns := range namespaces {
		as := topology.ForNamespace(ns.Name, nsIPs[ns.Name])
		o, err := nbops.CreateOrUpdate(c.nb, as, &as.Addresses, &as.ExternalIDs)
		if err != nil {
			return fmt.Errorf("namespace %s address set: %w", ns.Name, err)
		}
		ops = append(ops, o...)
		if len(ops) >= maxOpsPerTxn {
			if err := c.apply(ctx, "namespace address sets", ops); err != nil {
				return err
			}
			ops = nil
		}
	}
	return c.apply(ctx, "namespace address sets", ops)
}
