package controller

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/nbops"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
	"github.com/kovn-io/kovn/ovsdb-models/nbdb"
)

// gatewayRowPrefix starts the ownership name of every row of a node's gateway.
const gatewayRowPrefix = "gw-"

// nodeGateway returns the node's gateway information: ok is false when the node has none (its agent runs
// without a gateway, or has not published it yet). A malformed annotation gets an Event and an error: the
// caller then leaves the node's gateway rows as they are.
func (c *Controller) nodeGateway(node *corev1.Node) (annotations.NodeGatewayInfo, bool, error) {
	gw, ok, err := annotations.ParseNodeGateway(node.Annotations)
	if err != nil {
		ref := &corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID, APIVersion: "v1"}
		c.warn(ref, "InvalidGatewayAnnotation", fmt.Sprintf("gateway left unchanged: %v", err))
	}
	return gw, ok, err
}

// exemptSetUUID returns the UUID of the address set of destinations exempt from SNAT, or "" when there are none.
func (c *Controller) exemptSetUUID() (string, error) {
	if len(c.cfg.Cluster.Gateway.NoSNATDestinations) == 0 {
		return "", nil
	}
	as, err := nbops.Lookup(c.nb, &nbdb.AddressSet{Name: topology.NoSNATDestinationsSet})
	if err != nil || as == nil {
		return "", fmt.Errorf("no-SNAT destinations address set: %w (missing: %v)", err, as == nil)
	}
	return as.UUID, nil
}

// gatewayOps returns the operations that make a node's gateway rows equal to what gw describes, or remove them
// when gw is nil.
func (c *Controller) gatewayOps(name string, subnet netip.Prefix, gw *annotations.NodeGatewayInfo) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		ops = append(ops, o...)
		return err
	}
	keep := map[string]bool{}
	if gw != nil {
		exempt, err := c.exemptSetUUID()
		if err != nil {
			return nil, err
		}
		g, err := topology.ForGateway(c.cfg.Cluster, name, subnet, *gw, exempt)
		if err != nil {
			return nil, err
		}
		if err := add(c.gatewayRowOps(g)); err != nil {
			return nil, err
		}
		for _, m := range gatewayModels(g) {
			id, _ := ownership.Parse(c.externalIDs(m))
			keep[id.Name] = true
		}
	}
	err := add(c.staleGatewayOps(ownership.NewOwner(ownership.KindNode, "", name), keep))
	return ops, err
}

// gatewayRowOps creates or updates every row of g and links them together.
func (c *Controller) gatewayRowOps(g topology.Gateway) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	steps := []func() ([]ovsdb.Operation, error){
		func() ([]ovsdb.Operation, error) {
			return nbops.CreateOrUpdate(c.nb, g.Router, &g.Router.Options, &g.Router.ExternalIDs)
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.CreateOrUpdate(c.nb, g.ExternalSwitch, &g.ExternalSwitch.ExternalIDs)
		},
	}
	for _, m := range []model.Model{g.JoinPort, g.JoinSwitchPort, g.ExternalPort, g.ExternalSwitchPort, g.LocalnetPort,
		g.ClusterRoute, g.JoinRoute, g.HostPolicy} {
		steps = append(steps, func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, m) })
	}
	for _, r := range g.Routes {
		steps = append(steps, func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, r) })
	}
	if g.SNAT != nil {
		steps = append(steps, func() ([]ovsdb.Operation, error) { return nbops.CreateOrUpdate(c.nb, g.SNAT) })
	}
	for _, step := range steps {
		o, err := step()
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	// Links, now that every row has its UUID (real or named).
	cr := &nbdb.LogicalRouter{Name: topology.ClusterRouter}
	join := &nbdb.LogicalSwitch{Name: topology.JoinSwitch}
	routes := uuids(g.Routes)
	var nat []string
	if g.SNAT != nil {
		nat = []string{g.SNAT.UUID}
	}
	links := []func() ([]ovsdb.Operation, error){
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, g.Router, &g.Router.Ports, []string{g.JoinPort.UUID, g.ExternalPort.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, g.Router, &g.Router.StaticRoutes, routes)
		},
		func() ([]ovsdb.Operation, error) { return nbops.EnsureInSet(c.nb, g.Router, &g.Router.Nat, nat) },
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, g.ExternalSwitch, &g.ExternalSwitch.Ports, []string{g.ExternalSwitchPort.UUID, g.LocalnetPort.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, join, &join.Ports, []string{g.JoinSwitchPort.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, cr, &cr.StaticRoutes, []string{g.ClusterRoute.UUID, g.JoinRoute.UUID})
		},
		func() ([]ovsdb.Operation, error) {
			return nbops.EnsureInSet(c.nb, cr, &cr.Policies, []string{g.HostPolicy.UUID})
		},
	}
	for _, link := range links {
		o, err := link()
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

// staleGatewayOps deletes the owner's gateway rows whose names are not in keep. The tables are the ones gateway
// rows live in; the pod-sized tables (switch ports) are searched by the fixed names gateway ports have.
func (c *Controller) staleGatewayOps(owner ownership.Owner, keep map[string]bool) ([]ovsdb.Operation, error) {
	stale := func(ids map[string]string) bool {
		id, ok := ownership.Parse(ids)
		return ok && id.Owner == owner && strings.HasPrefix(id.Name, gatewayRowPrefix) && !keep[id.Name]
	}
	rows := c.rowsWhere([]string{nbdb.LogicalRouterStaticRouteTable, nbdb.LogicalRouterPolicyTable, nbdb.NATTable,
		nbdb.LogicalRouterTable, nbdb.LogicalRouterPortTable}, stale)
	node := owner.Key
	for _, name := range []string{"gw-join-switch-port", "gw-external-switch-port", "gw-localnet-port"} {
		if !keep[name] {
			rows = append(rows, &nbdb.LogicalSwitchPort{ExternalIDs: owner.ID(name).ExternalIDs(nil)})
		}
	}
	if !keep["gw-external-switch"] {
		rows = append(rows, &nbdb.LogicalSwitch{Name: topology.ExternalSwitch(node)})
	}
	var ops []ovsdb.Operation
	for _, m := range rows {
		existing, err := nbops.Lookup(c.nb, m)
		if err != nil {
			return nil, err
		}
		if existing == nil || !stale(c.externalIDs(existing)) {
			continue
		}
		o, err := nbops.Delete(c.nb, existing)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

// gatewayModels lists every row of g.
func gatewayModels(g topology.Gateway) []model.Model {
	ms := []model.Model{g.Router, g.JoinPort, g.JoinSwitchPort, g.ExternalSwitch, g.ExternalPort, g.ExternalSwitchPort,
		g.LocalnetPort, g.ClusterRoute, g.JoinRoute, g.HostPolicy}
	for _, r := range g.Routes {
		ms = append(ms, r)
	}
	if g.SNAT != nil {
		ms = append(ms, g.SNAT)
	}
	return ms
}

func uuids(routes []*nbdb.LogicalRouterStaticRoute) []string {
	out := make([]string, 0, len(routes))
	for _, r := range routes {
		out = append(out, r.UUID)
	}
	return slices.Compact(out)
}

// rowsWhere returns copies of the cached rows of the given tables whose external_ids satisfy keep.
func (c *Controller) rowsWhere(tables []string, keep func(map[string]string) bool) []model.Model {
	var out []model.Model
	for _, t := range tables {
		rc := c.nb.Cache().Table(t)
		if rc == nil {
			continue
		}
		for _, r := range rc.RowsShallow() {
			if keep(c.externalIDs(r)) {
				out = append(out, model.Clone(r))
			}
		}
	}
	return out
}

// externalIDs returns the external_ids column of a row of any table that has one.
func (c *Controller) externalIDs(m model.Model) map[string]string {
	info, err := c.nb.Cache().DatabaseModel().NewModelInfo(m)
	if err != nil {
		return nil
	}
	v, err := info.FieldByColumn("external_ids")
	if err != nil {
		return nil
	}
	ids, _ := v.(map[string]string)
	return ids
}
