package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/services"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// serviceLBIndex remembers which load balancers (by ownership name) each service has in NB, so that a sync finds
// the ones it no longer wants without scanning the Load_Balancer table. It is filled at start from NB.
type serviceLBIndex struct {
	mu sync.Mutex
	m  map[string]map[string]bool // service key -> LB ownership names
}

func (x *serviceLBIndex) get(key string) map[string]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]bool{}
	for id := range x.m[key] {
		out[id] = true
	}
	return out
}

func (x *serviceLBIndex) set(key string, ids map[string]bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(ids) == 0 {
		delete(x.m, key)
		return
	}
	x.m[key] = ids
}

// sliceHandler enqueues the service an EndpointSlice belongs to.
func sliceHandler(q workqueue.TypedRateLimitingInterface[string]) cache.ResourceEventHandler {
	add := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			q.Add(s.Namespace + "/" + name)
		}
	}
	// A slice relabelled to another service leaves the old one: both are resynced.
	return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(old, cur any) { add(old); add(cur) }, DeleteFunc: add}
}

// syncService makes the service's load balancers in NB equal to what services.Desired says, in one transaction.
func (c *Controller) syncService(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	var desired []services.LB
	svc, err := c.services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	default:
		sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
		slices, err := c.slices.EndpointSlices(ns).List(sel)
		if err != nil {
			return err
		}
		nodes, err := c.serviceNodes()
		if err != nil {
			return err
		}
		desired = services.Desired(svc, slices, nodes)
	}
	owner := ownership.NewOwner(ownership.KindService, ns, name)
	ops, err := c.serviceOps(owner, desired)
	if err != nil {
		return fmt.Errorf("service %s: %w", key, err)
	}
	if err := c.apply(ctx, "service "+key, ops); err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, lb := range desired {
		ids[lb.ID] = true
	}
	c.svcLBs.set(key, ids)
	return nil
}

// serviceAdded tells, with a Warning Event, what of a new (or, at start, existing) service kovn does not honour.
func (c *Controller) serviceAdded(obj any) {
	if svc, ok := obj.(*corev1.Service); ok {
		c.warnService(svc)
	}
}

// serviceUpdated warns again only when what is not honoured changed, not on every update.
func (c *Controller) serviceUpdated(old, cur any) {
	o, ok1 := old.(*corev1.Service)
	n, ok2 := cur.(*corev1.Service)
	if ok1 && ok2 && !slices.Equal(services.Warnings(o), services.Warnings(n)) {
		c.warnService(n)
	}
}

func (c *Controller) warnService(svc *corev1.Service) {
	for _, w := range services.Warnings(svc) {
		c.warn(&corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name,
			UID: svc.UID}, "ServiceNotFullyHonoured", w)
	}
}

// serviceNodes lists the nodes whose switch exists in NB, with their node IP when their gateway router exists.
func (c *Controller) serviceNodes() ([]services.Node, error) {
	list, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []services.Node
	for _, n := range list {
		if sw, _ := nbops.Lookup(c.nb, &nbdb.LogicalSwitch{Name: n.Name}); sw == nil {
			continue
		}
		sn := services.Node{Name: n.Name, Switch: n.Name, Router: topology.GatewayRouter(n.Name)}
		if gw, ok, err := annotations.ParseNodeGateway(n.Annotations); err == nil && ok {
			if gr, _ := nbops.Lookup(c.nb, &nbdb.LogicalRouter{Name: sn.Router}); gr != nil {
				sn.IP = gw.IP.Addr()
			}
		}
		out = append(out, sn)
	}
	return out, nil
}

// serviceOps creates or updates each desired load balancer, attaches it, and deletes the service's others.
func (c *Controller) serviceOps(owner ownership.Owner, desired []services.LB) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	stale := c.svcLBs.get(owner.Key)
	for _, lb := range desired {
		delete(stale, lb.ID)
		proto := lb.Protocol
		row := &nbdb.LoadBalancer{Name: lb.Name, Protocol: &proto, Vips: lb.VIPs, Options: lb.Options,
			SelectionFields: lb.SelectionFields, ExternalIDs: owner.ID(lb.ID).ExternalIDs(nil)}
		if err := add(nbops.CreateOrUpdate(c.nb, row)); err != nil {
			return nil, err
		}
		for _, g := range lb.Groups {
			grp := &nbdb.LoadBalancerGroup{Name: g}
			if err := add(nbops.EnsureInSet(c.nb, grp, &grp.LoadBalancer, []string{row.UUID})); err != nil {
				return nil, err
			}
		}
		for _, s := range lb.Switches {
			sw := &nbdb.LogicalSwitch{Name: s}
			if err := add(nbops.EnsureInSet(c.nb, sw, &sw.LoadBalancer, []string{row.UUID})); err != nil {
				return nil, err
			}
		}
		for _, r := range lb.Routers {
			lr := &nbdb.LogicalRouter{Name: r}
			if err := add(nbops.EnsureInSet(c.nb, lr, &lr.LoadBalancer, []string{row.UUID})); err != nil {
				return nil, err
			}
		}
	}
	for id := range stale {
		// Switches, routers and groups refer to load balancers weakly: the server drops those references.
		if err := add(nbops.Delete(c.nb, &nbdb.LoadBalancer{ExternalIDs: owner.ID(id).ExternalIDs(nil)})); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// loadServiceLBIndex fills the index from the load balancers in NB (at start, before the workers run).
func (c *Controller) loadServiceLBIndex(ctx context.Context) error {
	var lbs []*nbdb.LoadBalancer
	if err := c.nb.List(ctx, &lbs); err != nil {
		return err
	}
	byService := map[string]map[string]bool{}
	for _, lb := range lbs {
		id, ok := ownership.Parse(lb.ExternalIDs)
		if !ok || id.Kind != ownership.KindService {
			continue
		}
		if byService[id.Key] == nil {
			byService[id.Key] = map[string]bool{}
		}
		byService[id.Key][id.Name] = true
	}
	for k, ids := range byService {
		c.svcLBs.set(k, ids)
	}
	return nil
}

// enqueueNodeServices resyncs the services that have per-node load balancers (the set of nodes, or a node's
// gateway, changed).
func (c *Controller) enqueueNodeServices() {
	list, err := c.services.List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range list {
		itpLocal := s.Spec.InternalTrafficPolicy != nil && *s.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
		if s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer ||
			len(s.Spec.ExternalIPs) > 0 || itpLocal {
			c.svcQ.Add(s.Namespace + "/" + s.Name)
		}
	}
}
